//! Editor features end to end with the real engine on the tiny random-weight model: its text is
//! noise, so these tests check shapes, ranges, streaming order, cancellation and cache reuse,
//! never the words.

use serde_json::{json, Value};

use crate::http_server;
use crate::support::{tiny_model, TestServer};

const URI: &str = "file:///w/fib.py";
const TEXT: &str =
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return \n\nprint(fibonacci(10))\n";

fn ready_server(extra: Value) -> TestServer {
    let mut options = json!({
        "model": {"path": tiny_model(), "n_ctx": 2048, "n_slots": 2},
        "completion": {"max_tokens": 8},
        "chat": {"max_tokens": 12, "max_edit_tokens": 32, "resolve_timeout_ms": 0},
    });
    merge(&mut options, extra);
    let mut server = TestServer::builder()
        .initialization_options(options)
        .capabilities(
            json!({"textDocument": {"codeAction": {"resolveSupport": {"properties": ["edit"]}}},
                   "experimental": {"wellspring": {"chatProgress": true, "instructPrompt": true}}}),
        )
        .start();
    let status = server.notification("wellspring/status", |params| {
        params["state"] == "ready" || params["state"] == "error"
    });
    assert_eq!(status["state"], "ready", "{status}\n{}", server.log());
    server
}

fn merge(base: &mut Value, extra: Value) {
    if let (Value::Object(base), Value::Object(extra)) = (base, extra) {
        for (key, value) in extra {
            match base.get_mut(&key) {
                Some(existing) if existing.is_object() => merge(existing, value),
                _ => {
                    base.insert(key, value);
                }
            }
        }
    }
}

fn inline_at(
    server: &mut TestServer,
    uri: &str,
    line: u32,
    character: u32,
) -> Result<Value, Value> {
    server.request(
        "textDocument/inlineCompletion",
        json!({"textDocument": {"uri": uri}, "position": {"line": line, "character": character}, "context": {"triggerKind": 2}}),
    )
}

#[test]
fn inline_completion_answers_at_the_cursor_and_reuses_the_cache_while_typing() {
    let mut server = ready_server(json!({}));
    server.open(URI, "python", TEXT);
    let first = inline_at(&mut server, URI, 3, 11).unwrap();
    let items = first["items"].as_array().expect("a list of items");
    assert_eq!(items.len(), 1, "{first}");
    assert_eq!(
        items[0]["range"],
        json!({"start": {"line": 3, "character": 11}, "end": {"line": 3, "character": 11}})
    );
    assert!(!items[0]["insertText"].as_str().unwrap().trim().is_empty());

    // Type one character and ask again: the prompt differs only in its tail.
    server.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": URI, "version": 2}, "contentChanges": [
            {"range": {"start": {"line": 3, "character": 11}, "end": {"line": 3, "character": 11}}, "text": "f"}]}),
    );
    let second = inline_at(&mut server, URI, 3, 12).unwrap();
    assert_eq!(
        second["items"][0]["range"]["start"],
        json!({"line": 3, "character": 12})
    );
    let stats = server.request("wellspring/stats", json!(null)).unwrap();
    let recent = stats["recent"].as_array().unwrap();
    let last = recent.last().unwrap();
    assert!(
        last["servedWithoutInference"] == true
            || last["nReused"].as_u64().unwrap() > last["nEvaluated"].as_u64().unwrap(),
        "the second keystroke should reuse most of the prompt: {stats}"
    );
    assert!(server.shutdown().success());
}

/// `wellspring/serverInfo` and the ready status say where the layers run: the CPU in the default
/// build; with `WELLSPRING_TEST_BACKEND` set (CI's offload job: `vulkan` on Mesa's llvmpipe),
/// that backend with every layer offloaded and the device memory the engine took.
#[test]
fn server_info_and_status_report_the_device() {
    let mut server = TestServer::builder()
        .initialization_options(
            json!({"model": {"path": tiny_model(), "n_ctx": 2048, "n_slots": 2}}),
        )
        .start();
    let status = server.notification("wellspring/status", |params| {
        params["state"] == "ready" || params["state"] == "error"
    });
    assert_eq!(status["state"], "ready", "{status}\n{}", server.log());
    let info = server.server_info();
    let device = &info["device"];
    assert_eq!(status["device"], *device, "{status}");
    let layers = device["layers"].as_u64().unwrap();
    assert!(layers > 0, "{info}");
    assert_eq!(info["backend"], device["backend"]);
    match std::env::var("WELLSPRING_TEST_BACKEND") {
        Ok(backend) => {
            assert_eq!(device["backend"], backend.as_str(), "{info}");
            assert_eq!(device["layersOffloaded"].as_u64(), Some(layers), "{info}");
            assert!(!device["name"].as_str().unwrap().is_empty(), "{info}");
            assert!(device["memoryTotal"].as_u64().unwrap() > 0, "{info}");
            assert!(device["memoryUsed"].is_u64(), "{info}");
            assert!(
                status["message"].as_str().unwrap().contains("layers"),
                "{status}"
            );
        }
        Err(_) => {
            assert_eq!(device["backend"], "cpu", "{info}");
            assert_eq!(device["layersOffloaded"], 0, "{info}");
            assert!(device["memoryUsed"].is_null(), "{info}");
        }
    }
    assert!(server.shutdown().success());
}

#[test]
fn invalid_positions_get_invalid_params_and_the_server_stays_up() {
    let mut server = ready_server(json!({}));
    server.open(URI, "python", TEXT);
    let error = inline_at(&mut server, URI, 99, 0).unwrap_err();
    assert_eq!(error["code"], -32602);
    assert!(
        error["message"].as_str().unwrap().contains("past the end"),
        "{error}"
    );
    let error = inline_at(&mut server, "file:///w/never-opened.py", 0, 0).unwrap_err();
    assert_eq!(error["code"], -32602);
    assert!(inline_at(&mut server, URI, 3, 11).is_ok());
}

#[test]
fn completion_fallback_returns_one_incomplete_item_replacing_the_word() {
    let mut server = ready_server(json!({}));
    server.open(URI, "python", TEXT);
    // Cursor after "fib" on the last line.
    let result = server
        .request(
            "textDocument/completion",
            json!({"textDocument": {"uri": URI}, "position": {"line": 5, "character": 9}}),
        )
        .unwrap();
    assert_eq!(result["isIncomplete"], true);
    let item = &result["items"][0];
    assert_eq!(
        item["textEdit"]["range"]["start"],
        json!({"line": 5, "character": 6})
    );
    assert_eq!(
        item["textEdit"]["range"]["end"],
        json!({"line": 5, "character": 9})
    );
    assert!(item["textEdit"]["newText"]
        .as_str()
        .unwrap()
        .starts_with("fib"));
}

#[test]
fn code_actions_are_listed_instantly_and_resolve_to_an_edit_that_applies() {
    let mut server = ready_server(json!({}));
    // A plain-text file: the noise the tiny model writes cannot be checked against a grammar.
    let uri = "file:///w/notes.txt";
    let text = "first line\nsecond line\nthird line\n";
    server.open(uri, "plaintext", text);
    let range = json!({"start": {"line": 1, "character": 0}, "end": {"line": 2, "character": 0}});
    let actions = server.code_actions(uri, &range);
    let titles: Vec<&str> = actions
        .iter()
        .map(|action| action["title"].as_str().unwrap())
        .collect();
    for expected in [
        "Explain",
        "Fix",
        "Add documentation",
        "Write tests",
        "Simplify",
        "Edit with instruction",
    ] {
        assert!(
            titles.iter().any(|title| title.contains(expected)),
            "{titles:?}"
        );
    }
    // Actions that carry a command resolve to themselves.
    let explain = actions
        .iter()
        .find(|action| action["title"] == "Wellspring: Explain")
        .unwrap()
        .clone();
    assert_eq!(
        server
            .request("codeAction/resolve", explain.clone())
            .unwrap(),
        explain
    );
    let simplify = actions
        .iter()
        .find(|action| action["title"] == "Wellspring: Simplify")
        .unwrap()
        .clone();
    assert!(simplify["edit"].is_null(), "the model runs only on resolve");
    let resolved = server.request("codeAction/resolve", simplify).unwrap();
    let edits = &resolved["edit"]["changes"][uri];
    assert_eq!(edits.as_array().unwrap().len(), 1, "{resolved}");
    assert_eq!(
        edits[0]["range"], range,
        "the edit replaces the selected lines"
    );
    assert!(!edits[0]["newText"].as_str().unwrap().trim().is_empty());
}

#[test]
fn chat_streams_deltas_in_order_then_returns_the_whole_answer() {
    let mut server = ready_server(json!({}));
    server.open(URI, "python", TEXT);
    let range = json!({"start": {"line": 0, "character": 0}, "end": {"line": 3, "character": 0}});
    let id = server.send_chat("chat-1", URI, range, "What does this function compute?");
    let answer = server.response(json!(id)).unwrap();
    assert_eq!(answer["chatId"], "chat-1");
    let stream = server.chat_stream("chat-1");
    assert!(stream[0]["title"].as_str().unwrap().starts_with("Chat:"));
    assert!(stream.len() > 2, "the answer streams in pieces");
    let streamed: String = stream
        .iter()
        .map(|progress| progress["delta"].as_str().unwrap())
        .collect();
    assert_eq!(streamed, answer["text"].as_str().unwrap());
    assert!(!streamed.is_empty());
}

#[test]
fn a_cancelled_chat_stops_and_ends_its_stream() {
    let mut server = ready_server(json!({"chat": {"max_tokens": 4096}}));
    server.open(URI, "python", TEXT);
    let cursor = json!({"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 0}});
    let id = server.send_chat("chat-2", URI, cursor, "Explain");
    server.notification("wellspring/chatProgress", |params| {
        params["chatId"] == "chat-2"
    });
    server.notify("$/cancelRequest", json!({"id": id}));
    let error = server.response(json!(id)).unwrap_err();
    assert_eq!(error["code"], -32800, "{error}");
    server.notification("wellspring/chatProgress", |params| {
        params["chatId"] == "chat-2" && params["done"] == true
    });
    // Completions still work afterwards.
    assert!(inline_at(&mut server, URI, 3, 11).unwrap()["items"].is_array());
}

#[test]
fn long_chats_in_flight_do_not_hold_up_other_requests() {
    // Each chat runs until cancelled; the engine answers one at a time, so all but the first wait.
    let mut server = ready_server(json!({"chat": {"max_tokens": 100000}}));
    server.open(URI, "python", TEXT);
    let function =
        json!({"start": {"line": 0, "character": 0}, "end": {"line": 3, "character": 0}});
    let chats: Vec<i64> = (0..8)
        .map(|i| server.send_chat(&format!("long-{i}"), URI, function.clone(), "Explain"))
        .collect();
    server.notification("wellspring/chatProgress", |params| {
        params["chatId"] == "long-0" && params["delta"].as_str().is_some_and(|d| !d.is_empty())
    });
    // While they are in flight, the editor keeps working: code actions, edits and completions.
    let range = json!({"start": {"line": 0, "character": 0}, "end": {"line": 1, "character": 0}});
    assert!(!server.code_actions(URI, &range).is_empty());
    server.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": URI, "version": 2}, "contentChanges": [{
            "range": {"start": {"line": 3, "character": 11}, "end": {"line": 3, "character": 11}},
            "text": "fib"}]}),
    );
    let state = server.document_state(URI).unwrap();
    assert_eq!(state["version"], 2, "{state}");
    assert!(inline_at(&mut server, URI, 3, 14).unwrap()["items"].is_array());
    assert!(
        !server.has_notification("wellspring/chatProgress", |params| params["done"] == true),
        "a chat ended before the other requests were answered; they waited for it"
    );
    for id in chats {
        server.notify("$/cancelRequest", json!({"id": id}));
        assert_eq!(server.response(json!(id)).unwrap_err()["code"], -32800);
    }
}

#[test]
fn a_chat_model_still_downloading_holds_back_chats_but_not_completions() {
    let http = http_server::TestServer::start();
    let gate = http.route_gated_file(
        "/acme/chat-GGUF/resolve/main/chat.gguf",
        std::fs::read(tiny_model()).unwrap(),
    );
    let home = tempfile::tempdir().unwrap();
    let mut server = TestServer::builder()
        .env("HF_ENDPOINT", &http.url)
        .env("XDG_CACHE_HOME", home.path().to_str().unwrap())
        .initialization_options(json!({
            "model": {"path": tiny_model(), "chat_path": "hf:acme/chat-GGUF/chat.gguf", "n_ctx": 2048, "n_slots": 2},
            "completion": {"max_tokens": 8},
            "chat": {"max_tokens": 4},
        }))
        .start();
    let status = server.notification("wellspring/status", |params| {
        params["state"] == "ready" || params["state"] == "error"
    });
    assert_eq!(status["state"], "ready", "{status}\n{}", server.log());
    server.open(URI, "python", TEXT);
    assert!(inline_at(&mut server, URI, 3, 11).unwrap()["items"].is_array());
    let info = server.server_info();
    assert_eq!(info["chatModelState"], "loading", "{info}");
    assert_eq!(info["chatModel"], Value::Null, "{info}");

    let function =
        json!({"start": {"line": 0, "character": 0}, "end": {"line": 3, "character": 0}});
    let chat = server.send_chat("after-download", URI, function, "What does this do?");
    assert!(inline_at(&mut server, URI, 3, 11).unwrap()["items"].is_array());
    assert!(
        !server.has_notification("wellspring/chatProgress", |params| params["chatId"]
            == "after-download"),
        "the chat started before its model arrived"
    );
    gate.open();
    let answer = server.response(json!(chat)).unwrap();
    assert_eq!(answer["chatId"], "after-download");
    let info = server.server_info();
    assert_eq!(info["chatModelState"], "ready", "{info}");
    let cached = info["chatModel"].as_str().unwrap();
    assert!(cached.starts_with(home.path().to_str().unwrap()), "{info}");
    assert!(server.shutdown().success());
}

#[test]
fn a_draft_model_that_cannot_be_had_is_reported_and_completions_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let notes = dir.path().join("notes.gguf");
    std::fs::write(&notes, "not a model").unwrap();
    let mut server = ready_server(json!({"model": {"draft_path": notes}}));
    server.open(URI, "python", TEXT);
    assert!(inline_at(&mut server, URI, 3, 11).unwrap()["items"].is_array());
    // Its loading thread, started before the model's, found no GGUF header long before the
    // model was ready.
    let info = server.server_info();
    assert_eq!(info["draftModelState"], "unavailable", "{info}");
    let error = info["draftModelError"].as_str().unwrap();
    assert!(error.contains("notes.gguf"), "{info}");
    assert!(inline_at(&mut server, URI, 3, 11).unwrap()["items"].is_array());
    assert!(server.shutdown().success());
}

#[test]
fn a_broken_model_file_is_reported_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.gguf");
    std::fs::write(&broken, b"this is not a model").unwrap();
    let mut server = TestServer::builder()
        .initialization_options(json!({"model": {"path": broken}}))
        .start();
    let status = server.notification("wellspring/status", |params| {
        params["state"] == "error" || params["state"] == "ready"
    });
    assert_eq!(status["state"], "error");
    let message = server.notification("window/showMessage", |_| true);
    assert!(
        message["message"].as_str().unwrap().contains("broken.gguf"),
        "{message}"
    );
    server.open(URI, "python", TEXT);
    assert_eq!(inline_at(&mut server, URI, 3, 11).unwrap(), Value::Null);
    let info = server.server_info();
    assert_eq!(info["state"], "error");
    assert!(server.shutdown().success());
}

#[test]
fn a_conversation_longer_than_the_context_drops_its_oldest_turns_and_says_so() {
    let mut server = ready_server(json!({"model": {"chat_n_ctx": 1024}}));
    server.open(URI, "python", TEXT);
    let history: Vec<Value> = (0..300)
        .flat_map(|turn| {
            [
                json!({"role": "user", "content": format!("Question {turn}: what does line {turn} of the function do, and why?")}),
                json!({"role": "assistant", "content": format!("Answer {turn}: it returns the sum of the two previous Fibonacci numbers.")}),
            ]
        })
        .collect();
    let id = server.send_request(
        "workspace/executeCommand",
        json!({"command": "wellspring.chat", "arguments": [{
            "chatId": "long-history", "textDocument": {"uri": URI},
            "range": {"start": {"line": 0, "character": 0}, "end": {"line": 3, "character": 0}},
            "question": "And the base case?", "history": history}]}),
    );
    let answer = server
        .response(json!(id))
        .expect("a long conversation is answered");
    let stream = server.chat_stream("long-history");
    let notice = stream[0]["notice"]
        .as_str()
        .expect("the first notification says what was left out");
    assert!(
        notice.contains("oldest messages") && notice.contains("1024-token context"),
        "{notice}"
    );
    assert_eq!(answer["notice"], stream[0]["notice"]);
    assert!(stream[1..]
        .iter()
        .all(|progress| progress["notice"].is_null()));
}

#[test]
fn a_client_that_hangs_up_mid_chat_stops_the_server() {
    // A chat that would run for minutes: the server must not wait for it once nobody listens.
    let mut server =
        ready_server(json!({"model": {"chat_n_ctx": 32768}, "chat": {"max_tokens": 100000}}));
    server.open(URI, "python", TEXT);
    let function =
        json!({"start": {"line": 0, "character": 0}, "end": {"line": 3, "character": 0}});
    server.send_chat("closing", URI, function, "Explain everything.");
    server.notification("wellspring/chatProgress", |params| {
        params["chatId"] == "closing" && params["delta"].as_str().is_some_and(|d| !d.is_empty())
    });
    let status = server.hang_up();
    assert!(status.code().is_some(), "killed by a signal: {status:?}");
}
