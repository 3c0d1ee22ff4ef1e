//! The HTTP engine against a recording server that speaks each API as documented: the requests
//! it sends (paths, bodies, the bearer token), how it reads streamed answers and their figures,
//! and what closing a stream, a newer keystroke, a redirect and a server that went away do.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use super::EndpointSpec;
use crate::config::ModelConfig;
use crate::engine::{
    ChatMessage, ChatRequest, CompletionRequest, Engine, Error, FimPrompt, SamplingConfig,
    StopReason,
};

/// One request as the server received it.
#[derive(Debug, Clone)]
struct Recorded {
    method: String,
    path: String,
    authorization: Option<String>,
    body: Value,
}

/// How the server answers one request.
enum Reply {
    Json(u16, Value),
    /// Lines written one by one, `pause` apart, then the connection is closed.
    Stream {
        lines: Vec<String>,
        pause: Duration,
    },
    Redirect(String),
}

type Handler = dyn Fn(&Recorded) -> Reply + Send + Sync;

/// A recording HTTP/1.1 server on 127.0.0.1 (one connection at a time per thread, closed after
/// each answer).
struct Recorder {
    port: u16,
    requests: Arc<Mutex<Vec<Recorded>>>,
    /// Streams the client closed before their last line.
    n_closed_early: Arc<Mutex<u32>>,
    stopped: Arc<AtomicBool>,
}

impl Recorder {
    fn start(handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let n_closed_early = Arc::new(Mutex::new(0));
        let stopped = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let (requests_in, closed_in, stopped_in) =
            (requests.clone(), n_closed_early.clone(), stopped.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped_in.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let (handler, requests, closed) =
                    (handler.clone(), requests_in.clone(), closed_in.clone());
                std::thread::spawn(move || serve(stream, &*handler, &requests, &closed));
            }
        });
        Recorder {
            port,
            requests,
            n_closed_early,
            stopped,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    fn last(&self, path: &str) -> Recorded {
        self.requests()
            .into_iter()
            .rev()
            .find(|request| request.path == path)
            .unwrap_or_else(|| panic!("no request for {path}"))
    }

    /// Stops accepting connections: the port refuses them from then on.
    fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
        // Wakes the accept loop so that it sees the flag and drops the listener.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(
    stream: TcpStream,
    handler: &Handler,
    requests: &Mutex<Vec<Recorded>>,
    closed: &Mutex<u32>,
) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();
    let mut content_length = 0;
    let mut authorization = None;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            match name.trim().to_lowercase().as_str() {
                "content-length" => content_length = value.trim().parse().unwrap_or(0),
                "authorization" => authorization = Some(value.trim().to_owned()),
                _ => {}
            }
        }
    }
    let mut body = vec![0; content_length];
    reader.read_exact(&mut body).expect("body");
    let recorded = Recorded {
        method,
        path,
        authorization,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    };
    requests.lock().unwrap().push(recorded.clone());
    let mut stream = stream;
    match handler(&recorded) {
        Reply::Json(status, value) => {
            let body = value.to_string();
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
        Reply::Redirect(location) => {
            let _ = write!(
                stream,
                "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
        Reply::Stream { lines, pause } => {
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
            );
            for line in &lines {
                std::thread::sleep(pause);
                if stream
                    .write_all(line.as_bytes())
                    .and_then(|()| stream.flush())
                    .is_err()
                {
                    *closed.lock().unwrap() += 1;
                    return;
                }
            }
        }
    }
}

fn sse(value: Value) -> String {
    format!("data: {value}\n\n")
}

fn connect(spec: &str, config: &ModelConfig) -> Result<Engine, Error> {
    Engine::connect_http(config, EndpointSpec::parse(spec).unwrap(), None)
}

fn request(document: &str, line_head: &str, single_line: bool) -> CompletionRequest {
    CompletionRequest {
        document: document.to_owned(),
        client: 0,
        prompt: FimPrompt {
            path: "src/main.rs".to_owned(),
            prefix: "fn main() {\n".to_owned(),
            suffix: "\n}\n".to_owned(),
            line_head: line_head.to_owned(),
            ..FimPrompt::default()
        },
        max_tokens: 32,
        single_line,
        stop: Vec::new(),
        time_budget: Duration::from_secs(20),
        sampling: SamplingConfig::default(),
        done_when: None,
    }
}

/// An OpenAI-compatible server (vLLM's shape) serving model `m`, whose completions stream
/// `pieces` and end with usage figures.
fn openai_server(pieces: &'static [&'static str]) -> Recorder {
    Recorder::start(move |request| match request.path.as_str() {
        "/v1/models" => Reply::Json(
            200,
            json!({"object": "list", "data": [{"id": "m", "object": "model"}]}),
        ),
        "/v1/completions" => {
            let mut lines: Vec<String> = pieces
                .iter()
                .map(|piece| {
                    sse(json!({"choices": [{"text": piece, "index": 0, "finish_reason": null}]}))
                })
                .collect();
            lines.push(sse(
                json!({"choices": [{"text": "", "index": 0, "finish_reason": "stop"}]}),
            ));
            lines.push(sse(json!({"choices": [], "usage": {"prompt_tokens": 30, "completion_tokens": pieces.len(), "prompt_tokens_details": {"cached_tokens": 24}}})));
            lines.push("data: [DONE]\n\n".to_owned());
            Reply::Stream {
                lines,
                pause: Duration::ZERO,
            }
        }
        "/v1/chat/completions" => Reply::Stream {
            lines: vec![
                sse(json!({"choices": [{"delta": {"role": "assistant"}, "finish_reason": null}]})),
                sse(json!({"choices": [{"delta": {"content": "Hel"}, "finish_reason": null}]})),
                sse(json!({"choices": [{"delta": {"content": "lo"}, "finish_reason": "stop"}]})),
                "data: [DONE]\n\n".to_owned(),
            ],
            pause: Duration::ZERO,
        },
        _ => Reply::Json(404, json!({"error": {"message": "no such route"}})),
    })
}

#[tokio::test]
async fn openai_completions_send_the_documented_request_and_read_usage() {
    let server = openai_server(&["let", " x", " = 1;", "\n"]);
    let token_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(token_file.path(), "s3cret\n").unwrap();
    let config = ModelConfig {
        api_token_file: token_file.path().display().to_string(),
        ..ModelConfig::default()
    };
    let engine = tokio::task::spawn_blocking({
        let spec = format!("openai+{}/v1#m", server.url());
        move || connect(&spec, &config)
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        engine.token_counting(),
        Some(super::Counting::LocalAssumed.describe())
    );
    assert!(
        engine.caps().has_fim,
        "the bundled vocabulary's family is assumed"
    );
    let completion = engine
        .complete(request("file:///a.rs", "    ", false))
        .await
        .unwrap();
    assert_eq!(completion.text, "let x = 1;\n");
    assert_eq!(completion.token_ends, vec![3, 5, 10, 11]);
    let generation = completion.figures.generation;
    assert_eq!(
        (
            generation.n_prompt,
            generation.n_reused,
            generation.n_evaluated
        ),
        (30, 24, 6)
    );
    assert_eq!(generation.n_generated, 4);
    assert_eq!(completion.figures.stop, StopReason::EndOfGeneration);

    let sent = server.last("/v1/completions");
    assert_eq!(sent.method, "POST");
    assert_eq!(sent.authorization.as_deref(), Some("Bearer s3cret"));
    assert_eq!(sent.body["model"], "m");
    assert_eq!(sent.body["stream"], true);
    assert_eq!(sent.body["max_tokens"], 32);
    assert_eq!(
        sent.body["prompt"],
        "<|file_sep|>src/main.rs\n<|fim_prefix|>fn main() {\n<|fim_suffix|>\n}\n<|fim_middle|>    "
    );
    assert!(sent.body.get("id_slot").is_none() && sent.body.get("raw").is_none());
    assert!(server
        .requests()
        .iter()
        .all(|request| request.authorization.as_deref() == Some("Bearer s3cret")));

    let (deltas, mut received) = tokio::sync::mpsc::unbounded_channel();
    let chat = ChatRequest {
        messages: vec![ChatMessage {
            role: "user".to_owned(),
            content: "hi".to_owned(),
        }],
        max_tokens: 8,
        grammar: Some("root ::= \"x\"".to_owned()),
        sampling: SamplingConfig::default(),
    };
    let outcome = engine.chat(chat, deltas).await.unwrap();
    assert_eq!(outcome.text, "Hello");
    let mut streamed = String::new();
    while let Ok(delta) = received.try_recv() {
        streamed.push_str(&delta);
    }
    assert_eq!(streamed, "Hello");
    let sent = server.last("/v1/chat/completions");
    assert_eq!(sent.body["model"], "m");
    assert_eq!(
        sent.body["messages"],
        json!([{"role": "user", "content": "hi"}])
    );
    assert!(
        sent.body.get("grammar").is_none(),
        "only llama-server takes a grammar"
    );
    let stats = engine.stats().await;
    assert_eq!((stats.n_completions, stats.n_chats), (1, 1));
    assert_eq!(stats.n_tokens_evaluated, 6);
}

#[tokio::test]
async fn ollama_generate_is_raw_and_its_figures_are_read() {
    let server = Recorder::start(|request| match request.path.as_str() {
        "/api/show" if request.body["model"] == "qwen2.5-coder:1.5b-base" => {
            Reply::Json(200, json!({"details": {"family": "qwen2"}}))
        }
        "/api/show" => Reply::Json(404, json!({"error": "model not found"})),
        "/api/generate" => Reply::Stream {
            lines: vec![
                format!("{}\n", json!({"response": "x = ", "done": false})),
                format!("{}\n", json!({"response": "1", "done": false})),
                format!(
                    "{}\n",
                    json!({"response": "", "done": true, "done_reason": "stop", "prompt_eval_count": 7, "prompt_eval_duration": 3_000_000, "eval_count": 2, "eval_duration": 8_000_000})
                ),
            ],
            pause: Duration::ZERO,
        },
        "/api/chat" => Reply::Stream {
            lines: vec![
                format!(
                    "{}\n",
                    json!({"message": {"role": "assistant", "content": "ok"}, "done": false})
                ),
                format!(
                    "{}\n",
                    json!({"message": {"role": "assistant", "content": ""}, "done": true, "eval_count": 1})
                ),
            ],
            pause: Duration::ZERO,
        },
        _ => Reply::Json(404, json!({"error": "no such route"})),
    });
    let url = server.url();
    let missing = tokio::task::spawn_blocking({
        let spec = format!("ollama+{url}#nope");
        move || connect(&spec, &ModelConfig::default())
    })
    .await
    .unwrap();
    let Err(Error::Backend(message)) = missing else {
        panic!("connected to a missing model")
    };
    assert!(message.contains("ollama pull nope"), "{message}");
    let engine = tokio::task::spawn_blocking(move || {
        connect(
            &format!("ollama+{url}#qwen2.5-coder:1.5b-base"),
            &ModelConfig::default(),
        )
    })
    .await
    .unwrap()
    .unwrap();
    let completion = engine
        .complete(request("file:///a.py", "", false))
        .await
        .unwrap();
    assert_eq!(completion.text, "x = 1");
    let generation = completion.figures.generation;
    assert_eq!((generation.n_evaluated, generation.n_generated), (7, 2));
    assert_eq!(
        (generation.t_prefill_ms, generation.t_decode_ms),
        (3.0, 8.0)
    );
    let sent = server.last("/api/generate");
    assert_eq!(sent.body["raw"], true);
    assert_eq!(sent.body["stream"], true);
    assert_eq!(sent.body["model"], "qwen2.5-coder:1.5b-base");
    assert_eq!(sent.body["options"]["num_predict"], 32);
    assert_eq!(
        sent.body["options"]["num_ctx"],
        ModelConfig::default().n_ctx
    );
    assert!(sent.body["prompt"]
        .as_str()
        .unwrap()
        .ends_with("<|fim_middle|>"));
    assert_eq!(sent.authorization, None);
    let (deltas, _received) = tokio::sync::mpsc::unbounded_channel();
    let chat = ChatRequest {
        messages: vec![ChatMessage {
            role: "user".to_owned(),
            content: "hi".to_owned(),
        }],
        max_tokens: 8,
        grammar: None,
        sampling: SamplingConfig::default(),
    };
    assert_eq!(engine.chat(chat, deltas).await.unwrap().text, "ok");
    assert_eq!(
        server.last("/api/chat").body["messages"][0]["content"],
        "hi"
    );
}

/// A llama-server stand-in whose completions stream `n_lines` chunks of `piece`, `pause` apart.
fn slow_llama_server(piece: &'static str, n_lines: usize, pause: Duration) -> Recorder {
    Recorder::start(move |request| match request.path.as_str() {
        "/props" => Reply::Json(
            200,
            json!({"total_slots": 2, "model_path": "/m/tiny.gguf", "default_generation_settings": {"n_ctx": 2048}}),
        ),
        // Every FIM marker and every probe is one token: the vocabulary differs from the bundled
        // one, so counting goes to the server.
        "/tokenize" => Reply::Json(200, json!({"tokens": [1, 2, 3]})),
        "/completion" => {
            // Like llama-server, it stops at `n_predict` tokens.
            let n_predict = request.body["n_predict"]
                .as_u64()
                .map_or(n_lines, |n| n as usize);
            let n_sent = n_lines.min(n_predict);
            let lines = (1..=n_sent)
                .map(|n| {
                    let limit = n == n_predict;
                    let stop_type = if limit { "limit" } else { "none" };
                    sse(json!({"content": piece, "stop": limit, "stop_type": stop_type, "timings": {"prompt_n": 5, "cache_n": 100, "predicted_n": n}}))
                })
                .collect();
            Reply::Stream { lines, pause }
        }
        _ => Reply::Json(404, json!({"error": {"message": "no such route"}})),
    })
}

async fn connect_llama(server: &Recorder) -> Engine {
    let spec = format!("llama-server+{}", server.url());
    tokio::task::spawn_blocking(move || connect(&spec, &ModelConfig::default()))
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn stop_rules_close_the_stream_and_slots_follow_documents() {
    let server = slow_llama_server("ab\n", 200, Duration::from_millis(5));
    let engine = connect_llama(&server).await;
    assert_eq!(
        engine.token_counting(),
        Some(super::Counting::Server.describe())
    );
    assert_eq!(engine.caps().n_ctx_per_slot, 2048);
    let completion = engine
        .complete(request("file:///one.rs", "x", true))
        .await
        .unwrap();
    assert_eq!(completion.text, "ab");
    assert_eq!(completion.figures.stop, StopReason::EndOfLine);
    let generation = completion.figures.generation;
    assert_eq!(
        (
            generation.n_prompt,
            generation.n_reused,
            generation.n_evaluated
        ),
        (105, 100, 5)
    );
    let sent = server.last("/completion");
    assert_eq!(sent.body["cache_prompt"], true);
    assert_eq!(sent.body["stop"], json!(["\n"]));
    let first_slot = sent.body["id_slot"].as_u64().unwrap();
    // The same document keeps its slot; another one gets the other slot.
    engine
        .complete(request("file:///one.rs", "y", true))
        .await
        .unwrap();
    assert_eq!(
        server.last("/completion").body["id_slot"].as_u64(),
        Some(first_slot)
    );
    engine
        .complete(request("file:///two.rs", "z", true))
        .await
        .unwrap();
    assert_eq!(
        server.last("/completion").body["id_slot"].as_u64(),
        Some(1 - first_slot)
    );
    // Each stream was closed after its first line, long before its 200th.
    for _ in 0..200 {
        if *server.n_closed_early.lock().unwrap() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(*server.n_closed_early.lock().unwrap(), 3);
}

#[tokio::test]
async fn a_newer_keystroke_supersedes_and_a_dropped_request_closes_its_stream() {
    let server = slow_llama_server("a", 400, Duration::from_millis(10));
    let engine = connect_llama(&server).await;
    let mut older = request("file:///one.rs", "x", false);
    older.max_tokens = 1000;
    let older = tokio::spawn(engine.complete(older));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut newer = request("file:///one.rs", "xy", false);
    newer.max_tokens = 3;
    let newer = engine.complete(newer).await.unwrap();
    assert_eq!(newer.text, "aaa");
    assert_eq!(newer.figures.stop, StopReason::MaxTokens);
    assert_eq!(older.await.unwrap(), Err(Error::Superseded));
    let mut dropped = request("file:///two.rs", "x", false);
    dropped.max_tokens = 1000;
    let waiting = tokio::spawn(engine.complete(dropped));
    tokio::time::sleep(Duration::from_millis(100)).await;
    waiting.abort();
    for _ in 0..300 {
        if *server.n_closed_early.lock().unwrap() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The superseded stream and the dropped one; the newer one ended at its `n_predict`.
    assert_eq!(*server.n_closed_early.lock().unwrap(), 2);
    let stats = engine.stats().await;
    assert_eq!(stats.n_superseded, 1);
}

#[tokio::test]
async fn warming_fills_the_documents_slot_without_generating_an_answer() {
    let server = slow_llama_server("a", 50, Duration::ZERO);
    let engine = connect_llama(&server).await;
    engine.warm(request("file:///one.rs", "x", false));
    for _ in 0..500 {
        if engine.stats().await.n_warmings == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stats = engine.stats().await;
    assert_eq!(
        (stats.n_warmings, stats.n_tokens_warmed, stats.n_completions),
        (1, 5, 0)
    );
    let warmed = server.last("/completion");
    assert_eq!(warmed.body["n_predict"], 1);
    assert_eq!(warmed.body["cache_prompt"], true);
    // The keystroke that follows uses the same slot.
    engine
        .complete(request("file:///one.rs", "xy", true))
        .await
        .unwrap();
    assert_eq!(
        server.last("/completion").body["id_slot"],
        warmed.body["id_slot"]
    );
}

#[tokio::test]
async fn the_time_budget_returns_what_came_so_far() {
    let server = slow_llama_server("a", 100, Duration::from_millis(50));
    let engine = connect_llama(&server).await;
    let mut budgeted = request("file:///one.rs", "x", false);
    budgeted.time_budget = Duration::from_millis(400);
    budgeted.max_tokens = 1000;
    let completion = engine.complete(budgeted).await.unwrap();
    assert_eq!(completion.figures.stop, StopReason::TimeBudget);
    assert!(
        !completion.text.is_empty() && completion.text.len() < 100,
        "{:?}",
        completion.text
    );
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let elsewhere = openai_server(&["x"]);
    let location = format!("{}/v1/models", elsewhere.url());
    let server = Recorder::start(move |_| Reply::Redirect(location.clone()));
    let spec = format!("openai+{}/v1#m", server.url());
    let result = tokio::task::spawn_blocking(move || connect(&spec, &ModelConfig::default()))
        .await
        .unwrap();
    // `/models` redirected is a server without a model list; the completion itself then fails.
    let engine = result.unwrap();
    let error = engine
        .complete(request("file:///a.rs", "", false))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("302"), "{error}");
    assert!(
        elsewhere.requests().is_empty(),
        "nothing went to the redirect's target"
    );
}

#[tokio::test]
async fn a_server_that_goes_away_is_reported_once_and_requests_fail_clearly() {
    let server = slow_llama_server("a", 3, Duration::ZERO);
    let engine = connect_llama(&server).await;
    engine
        .complete(request("file:///one.rs", "x", false))
        .await
        .unwrap();
    let stopped = engine
        .stopped()
        .expect("an HTTP engine reports when its server goes away");
    server.stop();
    // The listener closes once the accept loop has seen the flag.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let error = engine
        .complete(request("file:///one.rs", "xy", false))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("cannot reach"), "{error}");
    let reason = tokio::time::timeout(Duration::from_secs(5), stopped)
        .await
        .unwrap();
    assert!(reason.contains(&server.url()), "{reason}");
}

#[test]
fn tokens_never_show_in_debug_output() {
    let client = super::Client::new("http://h:1", Some(super::Token::new("s3cret".into())));
    assert!(!format!("{client:?}").contains("s3cret"));
}
