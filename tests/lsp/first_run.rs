//! The first run: with no model configured and the default one not downloaded, the server says
//! so (state `noModel`, with what it would download and its size) and fetches nothing until the
//! client asks with `wellspring.downloadModel`.

use serde_json::{json, Value};

use crate::http_server;
use crate::support::{tiny_model, TestServer};

const URI: &str = "file:///w/fib.py";
const TEXT: &str = "def fib(n):\n    if n < 2:\n        return n\n    return \n";
/// Where the default model (`hf:ggml-org/Qwen2.5-Coder-1.5B-Q8_0-GGUF/qwen2.5-coder-1.5b-q8_0.gguf`)
/// is fetched from, below `HF_ENDPOINT`.
const DEFAULT_MODEL_URL_PATH: &str =
    "/ggml-org/Qwen2.5-Coder-1.5B-Q8_0-GGUF/resolve/main/qwen2.5-coder-1.5b-q8_0.gguf";

fn download_model(server: &mut TestServer) -> Result<Value, Value> {
    server.request(
        "workspace/executeCommand",
        json!({"command": "wellspring.downloadModel", "arguments": []}),
    )
}

#[test]
fn with_no_model_configured_the_default_is_offered_and_downloaded_only_when_asked() {
    let http = http_server::TestServer::start();
    let gate = http.route_gated_file(DEFAULT_MODEL_URL_PATH, std::fs::read(tiny_model()).unwrap());
    let home = tempfile::tempdir().unwrap();
    // No `model.path`: the server's default, which is not in this empty cache.
    let mut server = TestServer::builder()
        .env("HF_ENDPOINT", &http.url)
        .env("XDG_CACHE_HOME", home.path().to_str().unwrap())
        .initialization_options(json!({
            "model": {"n_ctx": 2048, "n_slots": 2},
            "completion": {"max_tokens": 4},
        }))
        .start();
    let status = server.notification("wellspring/status", |params| params["state"] != "loading");
    assert_eq!(status["state"], "noModel", "{status}\n{}", server.log());
    let offer = &status["offer"];
    assert_eq!(
        offer["spec"], "hf:ggml-org/Qwen2.5-Coder-1.5B-Q8_0-GGUF/qwen2.5-coder-1.5b-q8_0.gguf",
        "{status}"
    );
    assert!(offer["bytes"].as_u64().unwrap() > 1_000_000_000, "{status}");
    let builtins: Vec<&str> = offer["builtins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|builtin| builtin["name"].as_str().unwrap())
        .collect();
    assert!(builtins.contains(&"qwen2.5-coder-0.5b"), "{status}");
    let message = status["message"].as_str().unwrap();
    assert!(
        message.contains("1.6 GB") && message.contains("not downloaded"),
        "{message}"
    );

    let info = server.server_info();
    assert_eq!(info["state"], "noModel", "{info}");
    assert_eq!(info["offer"], *offer, "{info}");
    assert_eq!(info["fim"], Value::Null, "{info}");
    assert!(
        info["binary"].as_str().unwrap().contains("wellspring"),
        "{info}"
    );

    // Everything else works meanwhile, without suggestions, and nothing was fetched.
    server.open(URI, "python", TEXT);
    let inline = server.request(
        "textDocument/inlineCompletion",
        json!({"textDocument": {"uri": URI}, "position": {"line": 3, "character": 11}, "context": {"triggerKind": 2}}),
    );
    assert_eq!(inline.unwrap(), Value::Null);
    assert_eq!(server.document_state(URI).unwrap()["text"], TEXT);
    assert!(
        http.requests().is_empty(),
        "the server went to the network before it was asked: {:?}",
        http.requests()
    );

    // Asked: it downloads (the status reports progress) and loads.
    assert_eq!(download_model(&mut server).unwrap(), Value::Null);
    let loading = server.notification("wellspring/status", |params| params["state"] == "loading");
    assert!(loading["offer"].is_null(), "{loading}");
    gate.open();
    let status = server.notification("wellspring/status", |params| {
        params["state"] == "ready" || params["state"] == "error"
    });
    assert_eq!(status["state"], "ready", "{status}\n{}", server.log());
    assert_eq!(status["fim"], true, "{status}");
    let fetched: Vec<String> = http
        .requests()
        .into_iter()
        .map(|request| request.path)
        .collect();
    assert!(
        fetched.iter().any(|path| path == DEFAULT_MODEL_URL_PATH),
        "{fetched:?}"
    );
    let info = server.server_info();
    assert!(
        info["model"]
            .as_str()
            .unwrap()
            .starts_with(home.path().to_str().unwrap()),
        "{info}"
    );
    assert!(info["offer"].is_null(), "{info}");
    assert_eq!(info["fim"], true, "{info}");

    // With the model in, there is nothing left to download.
    let refused = download_model(&mut server).unwrap_err();
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("nothing to download"),
        "{refused}"
    );
    assert!(server.shutdown().success());
}

#[test]
fn a_default_model_already_in_the_cache_loads_without_asking() {
    let home = tempfile::tempdir().unwrap();
    let cached = home
        .path()
        .join("wellspring/models/hf/ggml-org/Qwen2.5-Coder-1.5B-Q8_0-GGUF/main");
    std::fs::create_dir_all(&cached).unwrap();
    std::fs::copy(tiny_model(), cached.join("qwen2.5-coder-1.5b-q8_0.gguf")).unwrap();
    // An endpoint nothing listens on: the cached file must be enough.
    let mut server = TestServer::builder()
        .env("HF_ENDPOINT", "http://127.0.0.1:9")
        .env("XDG_CACHE_HOME", home.path().to_str().unwrap())
        .initialization_options(json!({"model": {"n_ctx": 2048, "n_slots": 2}}))
        .start();
    let status = server.notification("wellspring/status", |params| params["state"] != "loading");
    assert_eq!(status["state"], "ready", "{status}\n{}", server.log());
    assert!(server.shutdown().success());
}
