//! Engine faults end to end: a model file llama.cpp refuses, a model file truncated while it is
//! loaded, a context or a draft model too big for the memory there is, and a download cut off. Each one is said
//! through `wellspring/status` and `window/showMessage`, and the server keeps serving what it
//! can: documents stay intact, and everything but the model goes on working.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::http_server::{self, Route};
use crate::support::{tiny_model, TestServer, TestServerBuilder};

const URI: &str = "file:///w/fib.py";
const TEXT: &str =
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return \n\nprint(fibonacci(10))\n";

fn builder(model: Value) -> TestServerBuilder {
    TestServer::builder()
        .initialization_options(json!({
            "model": model,
            "completion": {"max_tokens": 4},
            "chat": {"max_tokens": 4},
        }))
        .capabilities(json!({"experimental": {"wellspring": {"chatProgress": true}}}))
}

/// The next `wellspring/status` that says a load ended: the model is ready or has failed.
/// Statuses sent after completions (which carry their latency) are skipped.
fn settled_status(server: &mut TestServer) -> Value {
    server.notification("wellspring/status", |params| {
        params["lastLatencyMs"].is_null()
            && (params["state"] == "ready" || params["state"] == "error")
    })
}

/// Checks that the model failed with a message containing each of `parts`, in the status and in
/// the one message shown, and returns that message.
fn expect_failure(server: &mut TestServer, parts: &[&str]) -> String {
    let status = settled_status(server);
    assert_eq!(status["state"], "error", "{status}\n{}", server.log());
    let shown = server.notification("window/showMessage", |_| true);
    let message = shown["message"].as_str().unwrap().to_owned();
    for part in parts {
        assert!(
            status["message"].as_str().unwrap().contains(part),
            "{status}"
        );
        assert!(message.contains(part), "{message}");
    }
    message
}

fn inline_at(server: &mut TestServer, line: u32, character: u32) -> Result<Value, Value> {
    server.request(
        "textDocument/inlineCompletion",
        json!({"textDocument": {"uri": URI}, "position": {"line": line, "character": character}, "context": {"triggerKind": 2}}),
    )
}

/// Without a model: no suggestion (and no error), the document as it was typed, the server's
/// state reported as an error.
fn serves_without_a_model(server: &mut TestServer) {
    server.open(URI, "python", TEXT);
    assert_eq!(inline_at(server, 3, 11).unwrap(), Value::Null);
    let state = server.document_state(URI).unwrap();
    assert_eq!(state["text"], TEXT);
    assert_eq!(state["version"], 1);
    let info = server.server_info();
    assert_eq!(info["state"], "error", "{info}");
}

/// A copy of the tiny model in `dir` with its architecture renamed to one llama.cpp does not
/// know. The name keeps its length, so the file's layout is intact and it passes Wellspring's
/// own GGUF check.
fn model_with_unknown_architecture(dir: &Path) -> PathBuf {
    let entry = |value: &[u8]| {
        let key = b"general.architecture";
        let mut entry = (key.len() as u64).to_le_bytes().to_vec();
        entry.extend_from_slice(key);
        entry.extend_from_slice(&8u32.to_le_bytes());
        entry.extend_from_slice(&(value.len() as u64).to_le_bytes());
        entry.extend_from_slice(value);
        entry
    };
    let (from, to) = (entry(b"qwen2"), entry(b"qwenx"));
    let mut bytes = std::fs::read(tiny_model()).unwrap();
    let at = bytes
        .windows(from.len())
        .position(|window| window == from)
        .expect("the tiny model is a qwen2 model");
    bytes[at..at + to.len()].copy_from_slice(&to);
    let path = dir.join("unknown-architecture.gguf");
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn a_model_llama_cpp_rejects_is_reported_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let path = model_with_unknown_architecture(dir.path());
    let mut server = builder(json!({"path": path})).start();
    expect_failure(
        &mut server,
        &[
            "unknown-architecture.gguf",
            "unknown model architecture: 'qwenx'",
        ],
    );
    serves_without_a_model(&mut server);
    assert!(server.shutdown().success());
}

#[test]
fn a_model_file_truncated_while_loaded_does_not_stop_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.gguf");
    std::fs::copy(tiny_model(), &path).unwrap();
    let mut server = builder(json!({"path": path, "n_ctx": 1024, "n_slots": 1})).start();
    assert_eq!(settled_status(&mut server)["state"], "ready");
    server.open(URI, "python", TEXT);

    // Truncating in place: a mapped model would die (SIGBUS) at its next touch of a lost page.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(100)
        .unwrap();
    for character in [11, 10, 9] {
        let answer = inline_at(&mut server, 3, character).unwrap();
        assert!(answer["items"].is_array(), "{answer}");
    }
    let function =
        json!({"start": {"line": 0, "character": 0}, "end": {"line": 3, "character": 0}});
    let chat = server.send_chat("after-truncation", URI, function, "What does this do?");
    let answer = server.response(json!(chat)).unwrap();
    assert_eq!(answer["chatId"], "after-truncation");

    // The next load reads the file again and says what became of it.
    server.notify(
        "workspace/didChangeConfiguration",
        json!({"settings": {"model": {"n_ctx": 2048}}}),
    );
    expect_failure(&mut server, &["model.gguf is truncated"]);
    let state = server.document_state(URI).unwrap();
    assert_eq!(state["text"], TEXT);
    assert_eq!(inline_at(&mut server, 3, 11).unwrap(), Value::Null);
    assert!(server.shutdown().success());
}

#[test]
fn a_context_too_big_for_memory_says_what_to_lower_and_a_smaller_one_loads() {
    let mut server = builder(json!({
        "path": tiny_model(), "n_ctx": 4_000_000_000u64, "n_slots": 1, "n_gpu_layers": 0,
    }))
    .start();
    expect_failure(
        &mut server,
        &[
            "out of memory: a context of 4000000000 tokens needs at least",
            "lower model.n_ctx",
            // And what would fit instead.
            "tokens fits at kv_cache_type = \"f16\"",
        ],
    );
    serves_without_a_model(&mut server);
    server.notify(
        "workspace/didChangeConfiguration",
        json!({"settings": {"model": {"n_ctx": 1024}}}),
    );
    let status = settled_status(&mut server);
    assert_eq!(status["state"], "ready", "{status}\n{}", server.log());
    assert!(inline_at(&mut server, 3, 11).unwrap()["items"].is_array());
    assert!(server.shutdown().success());
}

/// A process's `VmSize` in bytes: what an address-space limit is counted against.
fn vm_size_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with("VmSize:"))
        .unwrap();
    let kib: u64 = line["VmSize:".len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    kib * 1024
}

/// The address space of a server with no model, started as the tests below start theirs.
fn idle_address_space() -> u64 {
    // glibc reserves address space per malloc arena; fewer arenas make the idle size steadier.
    let idle = builder(json!({"path": ""}))
        .env("MALLOC_ARENA_MAX", "2")
        .start();
    let idle_bytes = vm_size_bytes(idle.pid());
    assert!(idle.shutdown().success());
    idle_bytes
}

#[test]
fn a_server_under_an_address_space_limit_refuses_what_does_not_fit_and_keeps_serving() {
    let idle_bytes = idle_address_space();
    // Room for the weights of the tiny model and llama.cpp's loading, not for its 300 MiB of
    // output buffers (151936 logits for each of 512 batch tokens) on top.
    let limit_bytes = idle_bytes + (400 << 20);
    let mut server = builder(json!({"path": tiny_model(), "n_ctx": 1024, "n_slots": 1, "n_batch": 512, "n_gpu_layers": 0}))
        .env("MALLOC_ARENA_MAX", "2")
        .wrapper(vec!["prlimit".into(), format!("--as={limit_bytes}")])
        .start();
    expect_failure(
        &mut server,
        &[
            "out of memory: ",
            "left under the process's address-space limit (ulimit -v)",
        ],
    );
    serves_without_a_model(&mut server);
    assert!(server.shutdown().success());
}

#[test]
fn a_draft_model_that_does_not_fit_beside_the_model_is_refused_and_completions_go_on() {
    let idle_bytes = idle_address_space();
    // The tiny model's plan with these settings takes 637 MiB (`wellspring doctor`: its weights
    // and the output buffers of a completion and a chat context), and the plan keeps 256 MiB
    // free under the limit. 320 MiB more leaves the draft model, the same file planned in the
    // same shape, far less than its 637 MiB, and the model room to load.
    let limit_bytes = idle_bytes + ((256 + 637 + 320) << 20);
    let model = json!({"path": tiny_model(), "draft_path": tiny_model(), "n_ctx": 1024, "n_slots": 1, "n_batch": 512, "n_gpu_layers": 0});
    let mut server = builder(model)
        .env("MALLOC_ARENA_MAX", "2")
        .wrapper(vec!["prlimit".into(), format!("--as={limit_bytes}")])
        .start();
    let status = settled_status(&mut server);
    assert_eq!(status["state"], "ready", "{status}\n{}", server.log());
    server.open(URI, "python", TEXT);
    assert!(inline_at(&mut server, 3, 11).unwrap()["items"].is_array());
    let info = server_info_once_the_draft_model_settles(&mut server);
    assert_eq!(info["draftModelState"], "unavailable", "{info}");
    let error = info["draftModelError"].as_str().unwrap();
    for part in [
        "does not fit beside the model: ",
        "left under the process's address-space limit (ulimit -v)",
    ] {
        assert!(error.contains(part), "{info}");
    }
    assert!(inline_at(&mut server, 3, 11).unwrap()["items"].is_array());
    let state = server.document_state(URI).unwrap();
    assert_eq!(state["text"], TEXT);
    assert!(server.shutdown().success());
}

/// `wellspring/serverInfo` once the draft model is no longer loading: it is planned and loaded
/// after the model is ready, so the first answers may still say so.
fn server_info_once_the_draft_model_settles(server: &mut TestServer) -> Value {
    for _ in 0..100_000 {
        let info = server.server_info();
        if info["draftModelState"] != "loading" {
            return info;
        }
    }
    panic!("the draft model is still loading after 100000 requests")
}

#[test]
fn a_download_cut_off_is_reported_and_the_next_start_resumes_it() {
    let model = std::fs::read(tiny_model()).unwrap();
    let http = http_server::TestServer::start();
    let url_path = "/acme/coder-GGUF/resolve/main/coder.gguf";
    http.route(
        url_path,
        Route {
            cut_first_response_at: Some(model.len() / 3),
            ..Route::file(model.clone())
        },
    );
    let home = tempfile::tempdir().unwrap();
    let start = || {
        builder(json!({"path": "hf:acme/coder-GGUF/coder.gguf", "n_ctx": 1024, "n_slots": 1}))
            .env("HF_ENDPOINT", &http.url)
            .env("XDG_CACHE_HOME", home.path().to_str().unwrap())
            .start()
    };
    let cached = home
        .path()
        .join("wellspring/models/hf/acme/coder-GGUF/main/coder.gguf");
    let part = home
        .path()
        .join("wellspring/models/hf/acme/coder-GGUF/main/coder.gguf.part");

    let mut server = start();
    expect_failure(
        &mut server,
        &[
            &format!("download of {}{url_path} stopped after", http.url),
            "the next attempt resumes from there",
        ],
    );
    serves_without_a_model(&mut server);
    assert!(server.shutdown().success());
    let kept_bytes = std::fs::metadata(&part).expect("the part stays").len();
    assert!(kept_bytes > 0 && kept_bytes <= model.len() as u64 / 3);
    assert!(!cached.exists(), "an incomplete download was published");

    let mut server = start();
    let status = settled_status(&mut server);
    assert_eq!(status["state"], "ready", "{status}\n{}", server.log());
    assert_eq!(std::fs::read(&cached).unwrap(), model);
    assert!(!part.exists());
    let ranges = http.get_ranges();
    assert_eq!(ranges, vec![None, Some(format!("bytes={kept_bytes}-"))]);
    assert!(server.shutdown().success());
}
