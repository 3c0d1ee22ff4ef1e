//! A model on a real llama-server (`scripts/build-llama-server.sh` builds it; it runs the tiny
//! model here): completions through the language server with the server's own figures, chat,
//! cancellation that stops the server's work, the bearer token, and a server that goes down and
//! comes back.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{connect_tracer, llama_server, tiny_model, TestServer, TestServerBuilder};

const URI: &str = "file:///w/remote.py";
const TEXT: &str = "def add(a, b):\n    return a + b\n\nresult = add(1, 2)\n";
const WAIT: Duration = Duration::from_secs(60);
/// The API key the first test's llama-server requires.
const API_KEY: &str = "ws-test-key-5f1c9a";

/// A llama-server process on 127.0.0.1, killed when dropped.
struct LlamaServer {
    child: Child,
    port: u16,
    log: Receiver<String>,
    api_key: Option<&'static str>,
}

impl LlamaServer {
    /// Starts llama-server on `port`, requiring `api_key` when given.
    fn start(port: u16, api_key: Option<&'static str>) -> LlamaServer {
        let mut command = Command::new(llama_server());
        if let Some(api_key) = api_key {
            command.args(["--api-key", api_key]);
        }
        let mut child = command
            .args(["-m", tiny_model().to_str().unwrap()])
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["-c", "4096", "-np", "2", "-t", "1", "-tb", "1"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start llama-server");
        let stderr = child.stderr.take().expect("piped stderr");
        let (sender, log) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let server = LlamaServer {
            child,
            port,
            log,
            api_key,
        };
        // It says so once its model is loaded and it takes requests.
        server.wait_for_log("listening on http");
        server
    }

    fn wait_for_log(&self, wanted: &str) {
        let deadline = Instant::now() + WAIT;
        let mut seen = Vec::new();
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(remaining) {
                Ok(line) if line.contains(wanted) => return,
                Ok(line) => seen.push(line),
                Err(error) => panic!(
                    "llama-server never said {wanted:?} ({error}):\n{}",
                    seen.join("\n")
                ),
            }
        }
    }

    fn spec(&self) -> String {
        format!("llama-server+http://127.0.0.1:{}", self.port)
    }

    /// GETs `path` from the server (a plain HTTP/1.1 exchange; the body is JSON).
    fn get(&self, path: &str) -> Value {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        let authorization = self
            .api_key
            .map(|key| format!("Authorization: Bearer {key}\r\n"))
            .unwrap_or_default();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{authorization}Connection: close\r\n\r\n"
        )
        .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        let body = answer.split_once("\r\n\r\n").map_or("", |(_, body)| body);
        serde_json::from_str(body).unwrap_or_else(|error| panic!("{error}: {answer}"))
    }
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn language_server(llama: &LlamaServer, completion: Value) -> TestServer {
    builder(llama, completion).start()
}

fn builder(llama: &LlamaServer, completion: Value) -> TestServerBuilder {
    TestServer::builder()
        .env("WELLSPRING_API_TOKEN", llama.api_key.unwrap_or(""))
        .initialization_options(json!({
            "model": {"path": llama.spec()},
            "completion": completion,
            "chat": {"max_tokens": 4096},
        }))
        .capabilities(json!({"experimental": {"wellspring": {"chatProgress": true}}}))
}

/// The next status that says whether the engine is ready (statuses after completions carry a
/// latency; while connecting the state is `loading`).
fn settled(server: &mut TestServer) -> Value {
    server.notification("wellspring/status", |params| {
        params["lastLatencyMs"].is_null()
            && (params["state"] == "ready" || params["state"] == "error")
    })
}

fn inline_at(server: &mut TestServer, line: u32, character: u32) -> Result<Value, Value> {
    server.request(
        "textDocument/inlineCompletion",
        json!({"textDocument": {"uri": URI}, "position": {"line": line, "character": character}, "context": {"triggerKind": 2}}),
    )
}

fn type_at_end(server: &mut TestServer, version: i64, text: &str) {
    let line = TEXT.lines().count() as u32 - 1;
    let character = TEXT.lines().last().unwrap().len() as u32;
    server.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": URI, "version": version},
               "contentChanges": [{"range": {"start": {"line": line, "character": character}, "end": {"line": line, "character": character}}, "text": text}]}),
    );
}

#[test]
fn completions_and_chat_run_on_llama_server_and_cancelling_stops_its_work() {
    let llama = LlamaServer::start(free_port(), Some(API_KEY));
    // Every connection the language server makes is traced: they must all go to the server.
    let trace_dir = tempfile::tempdir().unwrap();
    let trace_path = trace_dir.path().join("connect.trace");
    let wrapper = connect_tracer(&trace_path);
    let mut server = builder(&llama, json!({"max_tokens": 8}))
        .wrapper(wrapper)
        .start();
    let status = settled(&mut server);
    assert_eq!(status["state"], "ready", "{status}\n{}", server.log());
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("llama-server at http://127.0.0.1"),
        "{status}"
    );
    let info = server.server_info();
    assert_eq!(info["engine"]["endpoint"], llama.spec(), "{info}");
    assert_eq!(info["backend"], "llama-server");
    assert_eq!(
        info["fim"], true,
        "llama-server's vocabulary has Qwen's FIM tokens"
    );
    assert!(
        info["engine"]["tokenCounting"]
            .as_str()
            .unwrap()
            .contains("bundled"),
        "{info}"
    );

    server.open(URI, "python", TEXT);
    let line = TEXT.lines().count() as u32 - 1;
    let end = TEXT.lines().last().unwrap().len() as u32;
    assert!(inline_at(&mut server, line, end).unwrap()["items"].is_array());
    // Keystrokes on the line: the server's cache holds the prompt, and each costs the line head's
    // new tokens only (llama-server's own `prompt_n`).
    let mut text_end = end;
    for (version, typed) in [(2, " #"), (3, " z"), (4, "q")] {
        type_at_end(&mut server, version, typed);
        text_end += typed.len() as u32;
        assert!(inline_at(&mut server, line, text_end).unwrap()["items"].is_array());
    }
    let stats = server.request("wellspring/stats", json!(null)).unwrap();
    let recent = stats["recent"].as_array().unwrap();
    let last = recent
        .iter()
        .rev()
        .find(|figures| figures["servedWithoutInference"] == false)
        .unwrap();
    assert!(last["nReused"].as_u64().unwrap() > 20, "{stats}");
    assert!(last["nEvaluated"].as_u64().unwrap() <= 4, "{stats}");
    assert!(stats["nTokensGenerated"].as_u64().unwrap() > 0, "{stats}");

    let function =
        json!({"start": {"line": 0, "character": 0}, "end": {"line": 2, "character": 0}});
    let id = server.send_chat("remote-1", URI, function.clone(), "What does this do?");
    server.notification("wellspring/chatProgress", |params| {
        params["chatId"] == "remote-1"
            && params["delta"]
                .as_str()
                .is_some_and(|delta| !delta.is_empty())
    });
    server.notify("$/cancelRequest", json!({"id": id}));
    let error = server.response(json!(id)).unwrap_err();
    assert_eq!(error["code"], -32800, "{error}");
    // Closing the stream stopped the generation on the server: its slots go idle long before a
    // 4096-token answer could be done.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let slots = llama.get("/slots");
        let busy = slots
            .as_array()
            .unwrap()
            .iter()
            .any(|slot| slot["is_processing"] == true);
        if !busy {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "llama-server still generating: {slots}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // A chat that runs to its end (the new setting applies before the next request).
    server.notify(
        "workspace/didChangeConfiguration",
        json!({"settings": {"wellspring": {"model": {"path": llama.spec()}, "chat": {"max_tokens": 12}}}}),
    );
    let id = server.send_chat("remote-2", URI, function, "Explain");
    let answer = server.response(json!(id)).unwrap();
    let streamed: String = server
        .chat_stream("remote-2")
        .iter()
        .filter_map(|progress| progress["delta"].as_str())
        .collect();
    assert_eq!(streamed, answer["text"].as_str().unwrap());
    assert!(!streamed.is_empty());
    // Every request carried the key (llama-server refuses any without it), and no log shows it.
    assert!(!server.log().contains(API_KEY) && !server.stderr().contains(API_KEY));
    assert_eq!(server.shutdown().code(), Some(0));
    let trace = std::fs::read_to_string(&trace_path).expect("strace wrote its trace");
    let network: Vec<&str> = trace
        .lines()
        .filter(|line| line.contains("connect(") && !line.contains("AF_UNIX"))
        .collect();
    assert!(!network.is_empty(), "the trace saw no connection:\n{trace}");
    let to_server = format!(
        "sin_port=htons({}), sin_addr=inet_addr(\"127.0.0.1\")",
        llama.port
    );
    let elsewhere: Vec<&&str> = network
        .iter()
        .filter(|line| !line.contains(&to_server))
        .collect();
    assert!(
        elsewhere.is_empty(),
        "connections to anywhere but the server: {elsewhere:#?}"
    );
}

#[test]
fn a_llama_server_that_goes_down_is_reported_and_used_again_when_it_comes_back() {
    let port = free_port();
    let llama = LlamaServer::start(port, None);
    let mut server = language_server(&llama, json!({"max_tokens": 4}));
    assert_eq!(settled(&mut server)["state"], "ready");
    server.open(URI, "python", TEXT);
    assert!(inline_at(&mut server, 0, 4).unwrap()["items"].is_array());

    drop(llama);
    // The next request finds it gone: no suggestion, and the status says what is wrong.
    let _ = inline_at(&mut server, 1, 4);
    let status = settled(&mut server);
    assert_eq!(status["state"], "error", "{status}");
    let message = status["message"].as_str().unwrap();
    assert!(
        message.contains("cannot reach") && message.contains("trying again"),
        "{message}"
    );
    server.notification("window/showMessage", |params| {
        params["message"]
            .as_str()
            .is_some_and(|message| message.contains("Completions resume when the server answers"))
    });

    let _llama = LlamaServer::start(port, None);
    // Errors while it loads its model ("503 Loading model") until it answers.
    let status = server.notification("wellspring/status", |params| {
        params["lastLatencyMs"].is_null() && params["state"] == "ready"
    });
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("llama-server at"),
        "{status}"
    );
    let answer = inline_at(&mut server, 3, 8);
    assert!(
        answer
            .as_ref()
            .is_ok_and(|answer| answer["items"].is_array()),
        "{answer:?}\n{}",
        server.log()
    );
    let stats = server.request("wellspring/stats", json!(null)).unwrap();
    assert!(
        stats["recent"]
            .as_array()
            .is_some_and(|recent| !recent.is_empty()),
        "{stats}"
    );
}
