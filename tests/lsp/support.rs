//! A JSON-RPC client that drives the real `wellspring` binary over stdio, for end-to-end tests.
//!
//! Waits are bounded (a hung server fails the test with its log attached) but nothing here
//! asserts on timing.

// Not every test file uses every helper.
#![allow(dead_code)]

use std::io::{BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// How long any single wait may take before the test fails; generous for loaded CI machines.
pub const WAIT: Duration = Duration::from_secs(120);

#[path = "../../server/src/testing.rs"]
mod testing;
// The fuzz targets include this file too, and use the tiny model only.
#[allow(unused_imports)]
pub use testing::{llama_server, real_model, tiny_model};

/// A command line (for `TestServerBuilder::wrapper`) that runs the server under `strace`,
/// recording every `connect` it and its threads make into `trace_path`.
pub fn connect_tracer(trace_path: &std::path::Path) -> Vec<String> {
    [
        "strace",
        "-f",
        "-qq",
        "--seccomp-bpf",
        "-e",
        "trace=connect",
        "-o",
    ]
    .map(str::to_owned)
    .into_iter()
    .chain([trace_path.display().to_string()])
    .collect()
}

pub struct TestServerBuilder {
    /// A command line the binary runs under (a tracer, a namespace), if any.
    wrapper: Vec<String>,
    args: Vec<String>,
    encodings: Option<Vec<&'static str>>,
    initialization_options: Option<Value>,
    env: Vec<(String, String)>,
    capabilities: Value,
}

impl TestServerBuilder {
    /// Runs the binary as the last argument of this command line (`unshare -n`, `strace …`).
    pub fn wrapper(mut self, wrapper: Vec<String>) -> Self {
        self.wrapper = wrapper;
        self
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn encodings(mut self, encodings: &[&'static str]) -> Self {
        self.encodings = Some(encodings.to_vec());
        self
    }

    pub fn initialization_options(mut self, options: Value) -> Self {
        self.initialization_options = Some(options);
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn capabilities(mut self, capabilities: Value) -> Self {
        self.capabilities = capabilities;
        self
    }

    /// Starts the server without initializing it.
    pub fn spawn(self) -> TestServer {
        let log_dir = tempfile::tempdir().expect("temp dir");
        let log_path = log_dir.path().join("server.log");
        let stderr_path = log_dir.path().join("stderr.log");
        let stderr = std::fs::File::create(&stderr_path).expect("create the stderr file");
        let binary = server_binary();
        let mut command = wellspring::cli::bench_soak::command_under(&self.wrapper, binary);
        command
            .args(&self.args)
            .arg("--log-file")
            .arg(&log_path)
            .env("WELLSPRING_LOG", "debug")
            .env("XDG_CONFIG_HOME", log_dir.path())
            // Each test server gets shared engines of its own; they exit once this directory
            // (and their socket in it) is gone.
            .env("XDG_RUNTIME_DIR", log_dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr);
        for (key, value) in &self.env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("start the wellspring binary");
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            while let Some(message) = wellspring::cli::bench_soak::read_message(&mut reader) {
                if sender.send(message).is_err() {
                    break;
                }
            }
        });
        TestServer {
            child,
            stdin: Some(stdin),
            receiver,
            next_id: 1,
            notifications: Vec::new(),
            server_requests: Vec::new(),
            responses: Vec::new(),
            apply_edit_answer: json!({"applied": true}),
            initialize_result: Value::Null,
            log_path,
            stderr_path,
            _log_dir: log_dir,
            builder: self,
        }
    }

    /// Starts the server and completes the `initialize`/`initialized` handshake.
    pub fn start(self) -> TestServer {
        let mut server = self.spawn();
        server.initialize_result = server.initialize().expect("initialize succeeds");
        server
    }
}

/// The server binary. The fuzz targets in `fuzz/` reuse this client through `#[path]`, and Cargo
/// only names the binaries of a test's own package, so there it is the same `main.rs` built as
/// `fuzzed-wellspring`.
fn server_binary() -> &'static str {
    option_env!("CARGO_BIN_EXE_wellspring")
        .or(option_env!("CARGO_BIN_EXE_fuzzed-wellspring"))
        .expect("cargo names the server binary to its integration tests")
}

pub struct TestServer {
    child: Child,
    stdin: Option<ChildStdin>,
    receiver: Receiver<Value>,
    next_id: i64,
    /// Notifications received and not yet consumed, in arrival order.
    pub notifications: Vec<Value>,
    /// Requests the server sent to the client (answered automatically).
    pub server_requests: Vec<Value>,
    /// Responses that arrived while the test waited for something else.
    responses: Vec<Value>,
    /// What `workspace/applyEdit` requests are answered with.
    pub apply_edit_answer: Value,
    /// The server's answer to `initialize`, once [`TestServerBuilder::start`] sent it.
    pub initialize_result: Value,
    log_path: PathBuf,
    /// Where the server's stderr goes: panics print there, whatever the log settings.
    stderr_path: PathBuf,
    _log_dir: tempfile::TempDir,
    builder: TestServerBuilder,
}

impl TestServer {
    pub fn builder() -> TestServerBuilder {
        TestServerBuilder {
            wrapper: Vec::new(),
            args: Vec::new(),
            encodings: None,
            initialization_options: None,
            env: Vec::new(),
            capabilities: json!({}),
        }
    }

    /// The server's process id (under a wrapper that `exec`s it, such as `prlimit`, the same).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// What the server wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    fn initialize(&mut self) -> Result<Value, Value> {
        let mut capabilities = self.builder.capabilities.clone();
        if let Some(encodings) = &self.builder.encodings {
            capabilities["general"] = json!({ "positionEncodings": encodings });
        }
        let mut params = json!({
            "processId": null,
            "rootUri": null,
            "capabilities": capabilities,
        });
        if let Some(options) = &self.builder.initialization_options {
            params["initializationOptions"] = options.clone();
        }
        let result = self.request("initialize", params)?;
        self.notify("initialized", json!({}));
        Ok(result)
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin is open until hang_up");
        stdin.write_all(bytes).expect("write to server");
        stdin.flush().expect("flush to server");
    }

    pub fn send(&mut self, message: &Value) {
        let body = serde_json::to_vec(message).expect("serialise");
        let mut framed = format!("Content-Length: {}\r\n\r\n", body.len()).into_bytes();
        framed.extend(body);
        self.send_raw(&framed);
    }

    pub fn notify(&mut self, method: &str, params: Value) {
        self.send(&json!({"jsonrpc": "2.0", "method": method, "params": params}));
    }

    /// Sends a request and returns its id without waiting.
    pub fn send_request(&mut self, method: &str, params: Value) -> i64 {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        id
    }

    /// Sends a request and waits for its response: `Ok(result)` or `Err(error object)`.
    pub fn request(&mut self, method: &str, params: Value) -> Result<Value, Value> {
        let id = self.send_request(method, params);
        self.response(json!(id))
    }

    /// `wellspring/serverInfo`'s answer.
    pub fn server_info(&mut self) -> Value {
        self.request("wellspring/serverInfo", json!(null))
            .unwrap_or_else(|error| panic!("wellspring/serverInfo failed: {error}"))
    }

    /// Waits for the response with this id, buffering notifications and answering server requests.
    pub fn response(&mut self, id: Value) -> Result<Value, Value> {
        let is_it = |message: &Value| message.get("method").is_none() && message["id"] == id;
        let message = match self.responses.iter().position(is_it) {
            Some(position) => self.responses.remove(position),
            None => self.wait_for(is_it),
        };
        match message.get("error") {
            Some(error) => Err(error.clone()),
            None => Ok(message["result"].clone()),
        }
    }

    /// Sends `wellspring.chat` about `range` of `uri` without waiting; returns the request id.
    pub fn send_chat(&mut self, chat_id: &str, uri: &str, range: Value, question: &str) -> i64 {
        self.send_request(
            "workspace/executeCommand",
            json!({"command": "wellspring.chat", "arguments": [{
                "chatId": chat_id, "textDocument": {"uri": uri}, "range": range, "question": question}]}),
        )
    }

    /// Asks for the code actions on `range` of `uri`, with no diagnostics, and expects a list.
    pub fn code_actions(&mut self, uri: &str, range: &Value) -> Vec<Value> {
        let actions = self
            .request(
                "textDocument/codeAction",
                json!({"textDocument": {"uri": uri}, "range": range, "context": {"diagnostics": []}}),
            )
            .expect("code actions are listed");
        match actions {
            Value::Array(actions) => actions,
            other => panic!("code actions should be a list, got {other}"),
        }
    }

    /// The code action titled `title` among those listed for `range` of `uri`.
    pub fn code_action(&mut self, uri: &str, range: &Value, title: &str) -> Value {
        self.code_actions(uri, range)
            .into_iter()
            .find(|action| action["title"] == title)
            .unwrap_or_else(|| panic!("no code action titled {title:?}"))
    }

    /// Collects chat `chat_id`'s `wellspring/chatProgress` notifications up to the one marked
    /// done: every one received, in order.
    pub fn chat_stream(&mut self, chat_id: &str) -> Vec<Value> {
        let mut stream = Vec::new();
        loop {
            let progress = self.notification("wellspring/chatProgress", |params| {
                params["chatId"] == chat_id
            });
            let done = progress["done"] == true;
            stream.push(progress);
            if done {
                return stream;
            }
        }
    }

    /// Waits for the server's request `method` (answered automatically) and returns it.
    pub fn server_request(&mut self, method: &str) -> Value {
        let seen = |requests: &[Value]| {
            requests
                .iter()
                .position(|request| request["method"] == method)
        };
        if let Some(position) = seen(&self.server_requests) {
            return self.server_requests.remove(position);
        }
        let request =
            self.wait_for(|message| message["method"] == method && message.get("id").is_some());
        self.answer_server_request(&request);
        let position = seen(&self.server_requests).expect("just answered");
        self.server_requests.remove(position)
    }

    /// Waits for a work-done progress to begin with a title starting `title` and returns its
    /// token.
    pub fn progress_begins(&mut self, title: &str) -> Value {
        let begin = self.notification("$/progress", |params| {
            params["value"]["kind"] == "begin"
                && params["value"]["title"]
                    .as_str()
                    .is_some_and(|it| it.starts_with(title))
        });
        begin["token"].clone()
    }

    /// Waits for the end of the progress on `token`, and returns every report it had, in order.
    pub fn progress_reports_until_end(&mut self, token: &Value) -> Vec<Value> {
        let mut reports = Vec::new();
        loop {
            let progress = self.notification("$/progress", |params| params["token"] == *token);
            match progress["value"]["kind"].as_str() {
                Some("end") => return reports,
                Some("report") => reports.push(progress["value"].clone()),
                _ => {}
            }
        }
    }

    /// Whether a notification with this method that satisfies `predicate` has arrived and is
    /// buffered (read so far; it does not wait).
    pub fn has_notification(&self, method: &str, predicate: impl Fn(&Value) -> bool) -> bool {
        self.notifications
            .iter()
            .any(|message| message["method"] == method && predicate(&message["params"]))
    }

    /// Waits for a notification with this method that satisfies `predicate` and removes it.
    pub fn notification(&mut self, method: &str, predicate: impl Fn(&Value) -> bool) -> Value {
        if let Some(position) = self
            .notifications
            .iter()
            .position(|message| message["method"] == method && predicate(&message["params"]))
        {
            return self.notifications.remove(position)["params"].clone();
        }
        let message = self.wait_for(|message| {
            message.get("id").is_none()
                && message["method"] == method
                && predicate(&message["params"])
        });
        message["params"].clone()
    }

    fn wait_for(&mut self, wanted: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let message = match self.receiver.recv_timeout(remaining) {
                Ok(message) => message,
                Err(RecvTimeoutError::Timeout) => {
                    panic!("timed out waiting for the server; log:\n{}", self.log())
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("server closed its output; log:\n{}", self.log())
                }
            };
            if wanted(&message) {
                return message;
            }
            if message.get("method").is_some() && message.get("id").is_some() {
                self.answer_server_request(&message);
            } else if message.get("method").is_some() {
                self.notifications.push(message);
            } else {
                self.responses.push(message);
            }
        }
    }

    fn answer_server_request(&mut self, request: &Value) {
        let result = match request["method"].as_str() {
            Some("workspace/applyEdit") => self.apply_edit_answer.clone(),
            Some("window/showDocument") => json!({"success": true}),
            Some("workspace/configuration") => json!([null]),
            _ => Value::Null,
        };
        self.server_requests.push(request.clone());
        let id = request["id"].clone();
        self.send(&json!({"jsonrpc": "2.0", "id": id, "result": result}));
    }

    pub fn open(&mut self, uri: &str, language_id: &str, text: &str) {
        self.notify(
            "textDocument/didOpen",
            json!({"textDocument": {"uri": uri, "languageId": language_id, "version": 1, "text": text}}),
        );
    }

    pub fn document_state(&mut self, uri: &str) -> Result<Value, Value> {
        self.request("wellspring/documentState", json!({"uri": uri}))
    }

    /// Shuts down politely and returns the exit status.
    pub fn shutdown(mut self) -> ExitStatus {
        self.request("shutdown", Value::Null)
            .expect("shutdown succeeds");
        self.notify("exit", Value::Null);
        self.wait_exit()
    }

    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for server") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "server did not exit; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Closes the server's stdin, as a client that vanishes would.
    pub fn hang_up(mut self) -> ExitStatus {
        drop(self.stdin.take());
        self.wait_exit()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A small deterministic generator, so failures replay from the seed in the test name.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// Client-side position arithmetic, written independently of the server's `lsp/convert.rs` so the
/// two cross-check each other.
pub fn lsp_position(text: &str, byte_idx: usize, encoding: &str) -> Value {
    let before = &text[..byte_idx];
    // LSP lines end at \n, \r\n or a lone \r.
    let mut line = 0;
    let mut line_start = 0;
    let bytes = before.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\n' || (bytes[i] == b'\r' && bytes.get(i + 1) != Some(&b'\n')) {
            line += 1;
            line_start = i + 1;
        }
        i += 1;
    }
    let column_text = &before[line_start..];
    let character = match encoding {
        "utf-8" => column_text.len(),
        "utf-32" => column_text.chars().count(),
        _ => column_text.encode_utf16().count(),
    };
    json!({"line": line, "character": character})
}
