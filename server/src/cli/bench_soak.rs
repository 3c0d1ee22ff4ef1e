//! `wellspring bench soak`: a long session against the real server over stdio, to show that
//! memory stays flat, nothing fails, and the server's text never drifts from the editor's.
//!
//! A simulated editor types into several documents at a steady rate, asking for a completion on
//! every keystroke and cancelling some of them, lists and resolves code actions, starts chats and
//! cancels some, and now and then starts a second server, begins a chat on it and hangs up, as an
//! editor window closed mid-answer would. The server's resident memory is sampled throughout.
//! At the end every document's text is compared with the server's copy. Numbers go to stdout as
//! a table; the exit status says whether the run was clean.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde_json::{json, Value};

use crate::config::Config;

#[derive(clap::Args, Debug)]
pub struct SoakArgs {
    /// How long to run.
    #[arg(long, default_value_t = 3600)]
    pub seconds: u64,
    /// Keystrokes per second, across all documents.
    #[arg(long, default_value_t = 10)]
    pub rate: u32,
    /// Documents typed into.
    #[arg(long, default_value_t = 8)]
    pub documents: usize,
    /// Seconds between memory samples.
    #[arg(long, default_value_t = 10)]
    pub sample_seconds: u64,
    /// Fail when the resident memory of the language server or of the shared engine, each fitted
    /// on its own, grows faster than this after warm-up (MiB per 10 minutes).
    #[arg(long)]
    pub max_rss_slope: Option<f64>,
    /// Runs the typed-into language server under this command (split at spaces), e.g. a heap
    /// profiler such as `heaptrack -o FILE`, to find what grows.
    #[arg(long, value_name = "COMMAND")]
    pub wrap: Option<String>,
}

/// Error codes that are outcomes, not failures: the client cancelled the request.
const REQUEST_CANCELLED: i64 = -32800;

/// What a request was, to count its outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Completion,
    CodeActions,
    Resolve,
    Chat,
    DocumentState,
}

#[derive(Default)]
struct Outcomes {
    answered: u64,
    cancelled: u64,
    /// A code action the model could not turn into an edit (no code block, no change, broken
    /// syntax): the tiny model's noise does that, and the user is told; not a server failure.
    declined: u64,
    errors: Vec<String>,
}

impl Outcomes {
    /// Counts the response `message` to a request of `kind`; returns whether it succeeded.
    fn record(&mut self, kind: Kind, message: &Value) -> bool {
        let Some(error) = message.get("error") else {
            self.answered += 1;
            return true;
        };
        let text = error["message"].as_str().unwrap_or_default().to_owned();
        if error["code"].as_i64() == Some(REQUEST_CANCELLED) {
            self.cancelled += 1;
        } else if kind == Kind::Resolve && DECLINES.iter().any(|reason| text.contains(reason)) {
            self.declined += 1;
        } else {
            self.errors.push(text);
        }
        false
    }
}

/// What a resolved code action says when the model's answer could not become an edit, or when
/// the user typed into the same code meanwhile: outcomes the user is told about, not failures.
const DECLINES: [&str; 6] = [
    "no code block",
    "no change",
    "syntax errors",
    "changed since",
    "edited meanwhile",
    "changed too much meanwhile",
];

/// A document as the simulated editor has it.
struct EditorDocument {
    uri: String,
    text: String,
    version: i32,
}

/// `program` as the last word of the command line `wrapper` (`heaptrack -o FILE`, `strace -f`,
/// `unshare -n`), or on its own when `wrapper` is empty.
pub fn command_under<S: AsRef<OsStr>>(wrapper: &[S], program: impl AsRef<OsStr>) -> Command {
    match wrapper.split_first() {
        Some((first, rest)) => {
            let mut command = Command::new(first);
            command.args(rest).arg(program);
            command
        }
        None => Command::new(program),
    }
}

/// One server process and the editor's end of its pipes.
struct Connection {
    child: Child,
    stdin: Option<ChildStdin>,
    messages: Receiver<Value>,
    next_id: i64,
    /// The shared engine's process, when the model runs in one.
    engine_pid: Option<u32>,
}

impl Connection {
    fn start(binary: &PathBuf, options: &Value, wrap: Option<&str>) -> anyhow::Result<Connection> {
        let wrapper: Vec<&str> = wrap.unwrap_or_default().split_whitespace().collect();
        let mut child = command_under(&wrapper, binary)
            .arg("serve")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, messages) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            while let Some(message) = read_message(&mut reader) {
                if sender.send(message).is_err() {
                    break;
                }
            }
        });
        let mut connection = Connection {
            stdin: child.stdin.take(),
            child,
            messages,
            next_id: 1,
            engine_pid: None,
        };
        let id = connection.request(
            "initialize",
            json!({"processId": null, "rootUri": null, "initializationOptions": options,
                   "capabilities": {
                       "general": {"positionEncodings": ["utf-8"]},
                       "textDocument": {"codeAction": {"resolveSupport": {"properties": ["edit"]}}},
                       "experimental": {"wellspring": {"chatProgress": true}}}}),
        );
        connection.wait_for(|message| message["id"] == id && message.get("method").is_none())?;
        connection.notify("initialized", json!({}));
        connection
            .wait_for(|message| {
                message["method"] == "wellspring/status"
                    && matches!(message["params"]["state"].as_str(), Some("ready" | "error"))
            })
            .and_then(|status| match status["params"]["state"].as_str() {
                Some("ready") => Ok(()),
                _ => bail!("the model did not load: {}", status["params"]["message"]),
            })?;
        let id = connection.request("wellspring/serverInfo", Value::Null);
        let info = connection
            .wait_for(|message| message["id"] == id && message.get("method").is_none())?;
        connection.engine_pid = info["result"]["engine"]["pid"]
            .as_u64()
            .and_then(|pid| u32::try_from(pid).ok())
            .filter(|pid| *pid != connection.child.id());
        Ok(connection)
    }

    fn send(&mut self, message: &Value) {
        let body = serde_json::to_vec(message).expect("JSON serialises");
        if let Some(stdin) = self.stdin.as_mut() {
            let _ = stdin.write_all(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
            let _ = stdin.write_all(&body);
            let _ = stdin.flush();
        }
    }

    fn notify(&mut self, method: &str, params: Value) {
        self.send(&json!({"jsonrpc": "2.0", "method": method, "params": params}));
    }

    fn request(&mut self, method: &str, params: Value) -> i64 {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        id
    }

    /// Answers a request from the server the way an editor that applies nothing would.
    fn answer(&mut self, request: &Value) {
        let result = match request["method"].as_str() {
            Some("workspace/applyEdit") => json!({"applied": false, "failureReason": "soak"}),
            Some("window/showDocument") => json!({"success": false}),
            Some("workspace/configuration") => json!([null]),
            _ => Value::Null,
        };
        self.send(&json!({"jsonrpc": "2.0", "id": request["id"], "result": result}));
    }

    /// Waits (at most two minutes) for a message that `wanted` accepts, answering the server's
    /// requests meanwhile and dropping everything else.
    fn wait_for(&mut self, wanted: impl Fn(&Value) -> bool) -> anyhow::Result<Value> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let message = self
                .messages
                .recv_timeout(remaining)
                .context("the server did not answer in time")?;
            if wanted(&message) {
                return Ok(message);
            }
            if message.get("method").is_some() && message.get("id").is_some() {
                self.answer(&message);
            }
        }
    }

    /// The server's resident memory and its shared engine's together.
    fn rss_kib(&self) -> Option<u64> {
        let (server, engine) = self.rss_parts_kib()?;
        Some(server + engine)
    }

    /// The server's resident memory, and its shared engine's (0 for an engine in process).
    fn rss_parts_kib(&self) -> Option<(u64, u64)> {
        let server = process_rss_kib(self.child.id())?;
        match self.engine_pid {
            Some(pid) => Some((server, process_rss_kib(pid)?)),
            None => Some((server, 0)),
        }
    }
}

fn process_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Reads one LSP message (`Content-Length` framing) off a byte stream; `None` at its end or on
/// anything malformed. Shared with the end-to-end tests' client.
pub fn read_message(reader: &mut impl BufRead) -> Option<Value> {
    let mut content_len = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some(value) = line.strip_prefix("Content-Length:") {
            content_len = value.trim().parse::<usize>().ok();
        }
    }
    let mut body = vec![0; content_len?];
    reader.read_exact(&mut body).ok()?;
    serde_json::from_slice(&body).ok()
}

/// A small deterministic generator, so a run can be repeated.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
}

/// The LSP position (UTF-8 columns, as negotiated) of `byte_idx` in `text`.
fn position(text: &str, byte_idx: usize) -> Value {
    let before = &text[..byte_idx];
    let line = before.matches('\n').count();
    let line_start = before.rfind('\n').map_or(0, |idx| idx + 1);
    json!({"line": line, "character": byte_idx - line_start})
}

fn starting_text(document_idx: usize) -> String {
    (0..40)
        .map(|line_idx| {
            format!(
                "def step_{document_idx}_{line_idx}(values):\n    total = sum(values) * {line_idx}  # é日本\n    return total\n\n"
            )
        })
        .collect()
}

/// Least-squares slope of `samples` (seconds, MiB), in MiB per 10 minutes.
fn slope_per_ten_minutes(samples: &[(f64, f64)]) -> Option<f64> {
    if samples.len() < 3 {
        return None;
    }
    let n = samples.len() as f64;
    let mean_t = samples.iter().map(|(t, _)| t).sum::<f64>() / n;
    let mean_m = samples.iter().map(|(_, m)| m).sum::<f64>() / n;
    let covariance: f64 = samples
        .iter()
        .map(|(t, m)| (t - mean_t) * (m - mean_m))
        .sum();
    let variance: f64 = samples.iter().map(|(t, _)| (t - mean_t).powi(2)).sum();
    (variance > 0.0).then(|| covariance / variance * 600.0)
}

pub fn run_soak(config: &Config, args: &SoakArgs) -> anyhow::Result<()> {
    let binary = std::env::current_exe().context("cannot find the wellspring binary")?;
    let socket_dir = std::env::temp_dir().join(format!("wellspring-soak-{}", std::process::id()));
    let options = json!({
        "model": {"path": config.model.path, "n_ctx": config.model.n_ctx, "n_slots": config.model.n_slots},
        "completion": {"max_tokens": config.completion.max_tokens.min(16)},
        "chat": {"max_tokens": 32, "max_edit_tokens": 32, "resolve_timeout_ms": 0},
        "context": {"index_workspace": false},
        // An engine of the soak's own (the servers it starts share it), never an editor's.
        "engine": {"socket_dir": socket_dir, "idle_exit_seconds": 2},
    });
    let mut server = Connection::start(&binary, &options, args.wrap.as_deref())?;
    let mut rng = Rng(0x5eed_cafe_f00d);
    let mut documents: Vec<EditorDocument> = (0..args.documents.max(1))
        .map(|idx| EditorDocument {
            uri: format!("file:///soak/doc_{idx}.py"),
            text: starting_text(idx),
            version: 1,
        })
        .collect();
    for document in &documents {
        server.notify(
            "textDocument/didOpen",
            json!({"textDocument": {"uri": document.uri, "languageId": "python", "version": 1, "text": document.text}}),
        );
    }

    let started = Instant::now();
    let duration = Duration::from_secs(args.seconds);
    let keystroke_interval = Duration::from_secs_f64(1.0 / f64::from(args.rate.max(1)));
    let mut pending: HashMap<i64, Kind> = HashMap::new();
    let mut outcomes: HashMap<Kind, Outcomes> = HashMap::new();
    let mut rss_samples: Vec<(f64, f64)> = Vec::new();
    // The same samples split: the language server's and the shared engine's.
    let mut rss_parts: Vec<(f64, f64)> = Vec::new();
    let mut next_sample = Instant::now();
    let mut next_disconnect = started + Duration::from_secs(30);
    let (mut n_disconnects, mut n_disconnects_clean) = (0, 0);
    let mut n_keystrokes = 0u64;

    while started.elapsed() < duration {
        let tick = Instant::now();
        // One keystroke: type a character (or a newline, or delete one) at a random line end.
        let document_idx = rng.below(documents.len());
        let document = &mut documents[document_idx];
        let line_ends: Vec<usize> = document
            .text
            .match_indices('\n')
            .map(|(idx, _)| idx)
            .collect();
        let cursor = line_ends[rng.below(line_ends.len())];
        let (range_start, range_end, inserted) = match rng.below(10) {
            0 if cursor > 0
                && document.text.is_char_boundary(cursor - 1)
                && &document.text[cursor - 1..cursor] != "\n" =>
            {
                (cursor - 1, cursor, String::new())
            }
            1 => (cursor, cursor, "\n    ".to_owned()),
            _ => (
                cursor,
                cursor,
                ["x", "(", ".", " ", "é"][rng.below(5)].to_owned(),
            ),
        };
        let change = json!({"range": {"start": position(&document.text, range_start), "end": position(&document.text, range_end)}, "text": inserted});
        document
            .text
            .replace_range(range_start..range_end, &inserted);
        document.version += 1;
        let cursor_after = range_start + inserted.len();
        let (uri, version, cursor_position) = (
            document.uri.clone(),
            document.version,
            position(&document.text, cursor_after),
        );
        server.notify(
            "textDocument/didChange",
            json!({"textDocument": {"uri": uri, "version": version}, "contentChanges": [change]}),
        );
        let id = server.request(
            "textDocument/inlineCompletion",
            json!({"textDocument": {"uri": uri}, "position": cursor_position, "context": {"triggerKind": 2}}),
        );
        pending.insert(id, Kind::Completion);
        if rng.below(5) == 0 {
            server.notify("$/cancelRequest", json!({"id": id}));
        }
        n_keystrokes += 1;

        if n_keystrokes.is_multiple_of(25) {
            let line = rng.below(100);
            let range = json!({"start": {"line": line, "character": 0}, "end": {"line": line + 2, "character": 0}});
            let id = server.request(
                "textDocument/codeAction",
                json!({"textDocument": {"uri": uri}, "range": range, "context": {"diagnostics": []}}),
            );
            pending.insert(id, Kind::CodeActions);
        }
        if n_keystrokes.is_multiple_of(100)
            && !pending.values().any(|pending| *pending == Kind::Chat)
        {
            let range =
                json!({"start": {"line": 0, "character": 0}, "end": {"line": 3, "character": 0}});
            let id = server.request(
                "workspace/executeCommand",
                json!({"command": "wellspring.chat", "arguments": [{"chatId": format!("soak-{n_keystrokes}"),
                       "textDocument": {"uri": uri}, "range": range, "question": "What does this do?"}]}),
            );
            pending.insert(id, Kind::Chat);
            if rng.below(3) == 0 {
                server.notify("$/cancelRequest", json!({"id": id}));
            }
        }

        // Take in whatever arrived: responses, the server's requests, notifications.
        while let Ok(message) = server.messages.try_recv() {
            if message.get("method").is_some() {
                if message.get("id").is_some() {
                    server.answer(&message);
                }
                continue;
            }
            let Some(id) = message["id"].as_i64() else {
                continue;
            };
            let Some(kind) = pending.remove(&id) else {
                continue;
            };
            let answered = outcomes.entry(kind).or_default().record(kind, &message);
            let busy = pending.values().any(|pending| *pending == Kind::Resolve);
            if kind == Kind::CodeActions && answered && !busy {
                // Resolve the first edit the list offers, as a user picking it would (one at a
                // time: a person waits for an edit before asking for the next).
                let action = message["result"]
                    .as_array()
                    .and_then(|actions| actions.iter().find(|action| !action["data"].is_null()))
                    .cloned();
                if let Some(action) = action {
                    let id = server.request("codeAction/resolve", action);
                    pending.insert(id, Kind::Resolve);
                }
            }
        }

        if Instant::now() >= next_sample {
            if let Some((server_kib, engine_kib)) = server.rss_parts_kib() {
                let mib = |kib: u64| kib as f64 / 1024.0;
                rss_samples.push((
                    started.elapsed().as_secs_f64(),
                    mib(server_kib + engine_kib),
                ));
                rss_parts.push((mib(server_kib), mib(engine_kib)));
            }
            next_sample += Duration::from_secs(args.sample_seconds.max(1));
        }
        if Instant::now() >= next_disconnect {
            n_disconnects += 1;
            if disconnect_mid_chat(&binary, &options).unwrap_or(false) {
                n_disconnects_clean += 1;
            }
            next_disconnect += Duration::from_secs(60);
        }
        if let Some(rest) = keystroke_interval.checked_sub(tick.elapsed()) {
            std::thread::sleep(rest);
        }
    }

    // Let what is still running finish, then compare every document with the server's copy.
    let drain_deadline = Instant::now() + Duration::from_secs(180);
    while !pending.is_empty() && Instant::now() < drain_deadline {
        let Ok(message) = server.messages.recv_timeout(Duration::from_secs(1)) else {
            continue;
        };
        if message.get("method").is_some() {
            if message.get("id").is_some() {
                server.answer(&message);
            }
            continue;
        }
        if let Some(kind) = message["id"].as_i64().and_then(|id| pending.remove(&id)) {
            outcomes.entry(kind).or_default().record(kind, &message);
        }
    }
    let mut n_equal = 0;
    for document in &documents {
        let id = server.request("wellspring/documentState", json!({"uri": document.uri}));
        let state =
            server.wait_for(|message| message["id"] == id && message.get("method").is_none())?;
        if state["result"]["text"].as_str() == Some(document.text.as_str()) {
            n_equal += 1;
        }
        outcomes.entry(Kind::DocumentState).or_default().answered += 1;
    }
    let final_rss = server.rss_kib().map(|kib| kib as f64 / 1024.0);
    let id = server.request("shutdown", Value::Null);
    let _ = server.wait_for(|message| message["id"] == id && message.get("method").is_none());
    server.notify("exit", Value::Null);
    drop(server.stdin.take());
    let _ = server.child.wait();
    let _ = std::fs::remove_dir_all(&socket_dir);

    // Warm-up: the first fifth of the run (caches and the KV slots fill then). Each process is
    // fitted on its own: the engine's resident size saws up and down by tens of MiB as llama.cpp's
    // buffers come and go and the trim hands them back, which would hide the server's trend in the
    // sum.
    let warm_from = args.seconds as f64 / 5.0;
    let slope_of = |value: &dyn Fn(usize) -> f64| {
        let after_warm_up: Vec<(f64, f64)> = (0..rss_samples.len())
            .filter(|&idx| rss_samples[idx].0 >= warm_from)
            .map(|idx| (rss_samples[idx].0, value(idx)))
            .collect();
        slope_per_ten_minutes(&after_warm_up)
    };
    let slope = slope_of(&|idx| rss_samples[idx].1);
    let server_slope = slope_of(&|idx| rss_parts[idx].0);
    let engine_slope = slope_of(&|idx| rss_parts[idx].1);
    let describe_slope = |slope: Option<f64>| {
        slope.map_or("too few samples".to_owned(), |slope| {
            format!("{slope:+.2} MiB per 10 min")
        })
    };

    println!(
        "soak: {} s, {} keystrokes over {} documents, model {}",
        args.seconds,
        n_keystrokes,
        documents.len(),
        config.model.path
    );
    println!();
    println!("RSS: the language server's and its shared engine's, together, then each.");
    println!();
    println!("| time s | RSS MiB | server MiB | engine MiB |");
    println!("|---:|---:|---:|---:|");
    for ((seconds, mib), (server_mib, engine_mib)) in rss_samples.iter().zip(&rss_parts) {
        println!("| {seconds:.0} | {mib:.1} | {server_mib:.1} | {engine_mib:.1} |");
    }
    println!();
    println!("| requests | answered | cancelled | declined | errors |");
    println!("|---|---:|---:|---:|---:|");
    let mut n_errors = 0;
    for kind in [
        Kind::Completion,
        Kind::CodeActions,
        Kind::Resolve,
        Kind::Chat,
    ] {
        let outcome = outcomes.remove(&kind).unwrap_or_default();
        n_errors += outcome.errors.len();
        println!(
            "| {kind:?} | {} | {} | {} | {} |",
            outcome.answered,
            outcome.cancelled,
            outcome.declined,
            outcome.errors.len()
        );
        for error in outcome.errors.iter().take(5) {
            println!("|   error: {} | | | | |", error.replace('|', "/"));
        }
    }
    println!();
    println!("| check | result |");
    println!("|---|---|");
    println!(
        "| RSS at the end | {} |",
        final_rss.map_or("unknown".to_owned(), |mib| format!("{mib:.1} MiB"))
    );
    println!(
        "| RSS slope after warm-up ({warm_from:.0} s on), both processes | {} |",
        describe_slope(slope)
    );
    println!(
        "| the language server's RSS slope | {} |",
        describe_slope(server_slope)
    );
    println!(
        "| the shared engine's RSS slope | {} |",
        describe_slope(engine_slope)
    );
    println!("| requests unanswered at the end | {} |", pending.len());
    println!(
        "| clients that hung up mid-chat, server exited | {n_disconnects_clean}/{n_disconnects} |"
    );
    println!(
        "| documents equal to the server's copy | {n_equal}/{} |",
        documents.len()
    );

    let mut failures = Vec::new();
    if n_errors > 0 {
        failures.push(format!("{n_errors} error responses"));
    }
    if !pending.is_empty() {
        failures.push(format!("{} requests never answered", pending.len()));
    }
    if n_equal != documents.len() {
        failures.push(format!(
            "{} documents differ from the server's copy",
            documents.len() - n_equal
        ));
    }
    if n_disconnects_clean != n_disconnects {
        failures.push("a server whose client hung up did not exit".to_owned());
    }
    if let Some(max) = args.max_rss_slope {
        for (process, slope) in [
            ("the language server", server_slope),
            ("the shared engine", engine_slope),
        ] {
            if let Some(slope) = slope.filter(|slope| *slope > max) {
                failures.push(format!(
                    "{process}'s RSS grew {slope:.2} MiB per 10 min, more than {max}"
                ));
            }
        }
    }
    if failures.is_empty() {
        println!("\nsoak: clean");
        Ok(())
    } else {
        bail!("soak: {}", failures.join("; "))
    }
}

/// Starts a second server, asks it for a long chat, hangs up once the answer streams, and
/// returns whether the server then exited on its own.
fn disconnect_mid_chat(binary: &PathBuf, options: &Value) -> anyhow::Result<bool> {
    let mut options = options.clone();
    options["chat"]["max_tokens"] = json!(100_000);
    let mut connection = Connection::start(binary, &options, None)?;
    let uri = "file:///soak/closing.py";
    connection.notify(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": uri, "languageId": "python", "version": 1, "text": starting_text(99)}}),
    );
    let range = json!({"start": {"line": 0, "character": 0}, "end": {"line": 3, "character": 0}});
    connection.request(
        "workspace/executeCommand",
        json!({"command": "wellspring.chat", "arguments": [{"chatId": "closing", "textDocument": {"uri": uri},
               "range": range, "question": "Explain everything."}]}),
    );
    connection.wait_for(|message| message["method"] == "wellspring/chatProgress")?;
    drop(connection.stdin.take());
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if connection.child.try_wait()?.is_some() {
            return Ok(true);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = connection.child.kill();
    let _ = connection.child.wait();
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slopes_are_in_mib_per_ten_minutes() {
        let flat: Vec<(f64, f64)> = (0..10).map(|i| (f64::from(i) * 60.0, 100.0)).collect();
        assert_eq!(slope_per_ten_minutes(&flat), Some(0.0));
        let growing: Vec<(f64, f64)> = (0..10)
            .map(|i| (f64::from(i) * 60.0, 100.0 + f64::from(i)))
            .collect();
        let slope = slope_per_ten_minutes(&growing).unwrap();
        assert!((slope - 10.0).abs() < 1e-9, "{slope}");
        assert_eq!(slope_per_ten_minutes(&flat[..2]), None);
    }

    #[test]
    fn positions_are_utf8_columns() {
        let text = "ab\né日x";
        assert_eq!(position(text, 3), json!({"line": 1, "character": 0}));
        assert_eq!(
            position(text, text.len()),
            json!({"line": 1, "character": 6})
        );
    }
}
