//! The shared engine: language servers with the same model settings use one engine process (the
//! model loaded once), each keeps its own documents, and an engine that dies is replaced without
//! losing any document.

use std::process::Command;

use serde_json::{json, Value};

use crate::support::{tiny_model, TestServer, TestServerBuilder};

const URI: &str = "file:///w/shared.py";
const TEXT: &str = "def add(a, b):\n    return a + b\n\nresult = add(1, 2)\n";

fn builder(runtime_dir: &std::path::Path) -> TestServerBuilder {
    TestServer::builder()
        .env("XDG_RUNTIME_DIR", runtime_dir.to_str().unwrap())
        .initialization_options(json!({
            "model": {"path": tiny_model(), "n_ctx": 2048, "n_slots": 2},
            "completion": {"max_tokens": 4},
            "chat": {"max_tokens": 2000},
        }))
        .capabilities(json!({"experimental": {"wellspring": {"chatProgress": true}}}))
}

/// The next status that says the engine is ready (statuses after completions carry a latency).
fn ready(server: &mut TestServer) {
    let status = server.notification("wellspring/status", |params| {
        params["lastLatencyMs"].is_null()
            && (params["state"] == "ready" || params["state"] == "error")
    });
    assert_eq!(status["state"], "ready", "{status}\n{}", server.log());
}

fn engine_info(server: &mut TestServer) -> Value {
    let info = server.server_info();
    assert_eq!(info["engine"]["mode"], "shared", "{info}");
    info["engine"].clone()
}

fn inline_at(server: &mut TestServer, uri: &str, line: u32, character: u32) -> Value {
    server
        .request(
            "textDocument/inlineCompletion",
            json!({"textDocument": {"uri": uri}, "position": {"line": line, "character": character}, "context": {"triggerKind": 2}}),
        )
        .unwrap()
}

#[test]
fn two_language_servers_share_one_engine_and_keep_their_own_documents() {
    let runtime = tempfile::tempdir().unwrap();
    let mut first = builder(runtime.path()).start();
    ready(&mut first);
    let mut second = builder(runtime.path()).start();
    ready(&mut second);

    let first_engine = engine_info(&mut first);
    let second_engine = engine_info(&mut second);
    assert_eq!(first_engine["pid"], second_engine["pid"]);
    assert_ne!(first_engine["pid"], json!(first.pid()));
    assert_eq!(second_engine["clients"], 2);
    // The engine logs to the log of the server that started it: the model was loaded once.
    let loads =
        first.log().matches("engine ready").count() + second.log().matches("engine ready").count();
    assert_eq!(loads, 1, "{}", first.log());

    // The same file open in both windows, with different text: each is completed on its own.
    first.open(URI, "python", TEXT);
    second.open(URI, "python", "x = 1\n");
    assert!(inline_at(&mut first, URI, 3, 11)["items"].is_array());
    assert!(inline_at(&mut second, URI, 0, 4)["items"].is_array());
    assert_eq!(first.document_state(URI).unwrap()["text"], TEXT);
    assert_eq!(second.document_state(URI).unwrap()["text"], "x = 1\n");
    let other = "file:///w/only-in-first.py";
    first.open(other, "python", "print(1)\n");
    assert!(second.document_state(other).is_err());

    let stats = second.request("wellspring/stats", json!(null)).unwrap();
    assert_eq!(stats["nCompletions"], 2, "{stats}");

    assert!(first.shutdown().success());
    assert_eq!(engine_info(&mut second)["clients"], 1);
    assert!(inline_at(&mut second, URI, 0, 4)["items"].is_array());
    assert!(second.shutdown().success());
}

#[test]
fn an_engine_killed_in_the_middle_of_a_chat_is_replaced_and_no_document_is_lost() {
    let runtime = tempfile::tempdir().unwrap();
    let mut server = builder(runtime.path()).start();
    ready(&mut server);
    server.open(URI, "python", TEXT);
    let old_pid = engine_info(&mut server)["pid"].as_u64().unwrap();

    let function =
        json!({"start": {"line": 0, "character": 0}, "end": {"line": 2, "character": 0}});
    let chat = server.send_chat("killed", URI, function, "Explain this at length.");
    server.notification("wellspring/chatProgress", |params| {
        params["chatId"] == "killed"
    });
    let killed = Command::new("kill")
        .args(["-9", &old_pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    // The chat ends with an answer or an error, never silence.
    let _ = server.response(json!(chat));

    let restarting = server.notification("wellspring/status", |params| {
        params["message"]
            .as_str()
            .is_some_and(|message| message.contains("engine stopped"))
    });
    assert_eq!(restarting["state"], "loading", "{restarting}");
    ready(&mut server);
    let new_pid = engine_info(&mut server)["pid"].as_u64().unwrap();
    assert_ne!(new_pid, old_pid);

    assert_eq!(server.document_state(URI).unwrap()["text"], TEXT);
    assert!(inline_at(&mut server, URI, 3, 11)["items"].is_array());
    assert!(server.shutdown().success());
}

/// A team's engine on TCP: a server with the node's token uses it, one without is refused and
/// says so.
#[test]
fn an_engine_on_tcp_serves_the_right_token_and_refuses_a_wrong_one() {
    let dir = tempfile::tempdir().unwrap();
    let token = "team-node-token-0123456789";
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut engine = Command::new(env!("CARGO_BIN_EXE_wellspring"))
        .args([
            "engine",
            "--listen",
            &format!("tcp:127.0.0.1:{port}"),
            "--token-file",
        ])
        .arg(&token_file)
        .arg("--model-file")
        .arg(tiny_model())
        .args(["--idle-exit-seconds", "0", "--log-file"])
        .arg(dir.path().join("engine.log"))
        .env_remove("WELLSPRING_ENGINE_TOKEN")
        .spawn()
        .unwrap();
    let options = |token: &str| {
        TestServer::builder()
            .env("WELLSPRING_ENGINE_TOKEN", token)
            .initialization_options(json!({
                "model": {"path": tiny_model(), "n_ctx": 2048, "n_slots": 2},
                "completion": {"max_tokens": 4},
                "engine": {"remote": format!("tcp:127.0.0.1:{port}")},
            }))
    };
    // The engine may still be binding: a refused connection is reported as an error status.
    let mut server = None;
    for _ in 0..100 {
        let mut candidate = options(token).start();
        let status = candidate.notification("wellspring/status", |params| {
            params["state"] == "ready" || params["state"] == "error"
        });
        if status["state"] == "ready" {
            server = Some(candidate);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let mut server = server.expect("a server with the token gets ready");
    let info = engine_info(&mut server);
    assert_eq!(info["socket"], format!("tcp:127.0.0.1:{port}"));
    assert_eq!(info["pid"], engine.id());
    server.open(URI, "python", TEXT);
    assert!(inline_at(&mut server, URI, 3, 11)["items"].is_array());

    let mut refused = options("not-the-token-at-all").start();
    let status = refused.notification("wellspring/status", |params| {
        params["state"] == "ready" || params["state"] == "error"
    });
    assert_eq!(status["state"], "error", "{status}");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("wrong or missing token"),
        "{status}"
    );
    assert!(refused.shutdown().success());
    assert!(server.shutdown().success());
    let _ = engine.kill();
    let _ = engine.wait();
}

/// A server whose model settings change lets go of its old engine: the connection closes, so the
/// old engine sees one client fewer (and can exit when it has none).
#[test]
fn a_reload_lets_go_of_the_old_engine() {
    let runtime = tempfile::tempdir().unwrap();
    let mut first = builder(runtime.path()).start();
    ready(&mut first);
    let mut second = builder(runtime.path()).start();
    ready(&mut second);
    let old_pid = engine_info(&mut second)["pid"].clone();
    assert_eq!(engine_info(&mut second)["clients"], 2);

    first.notify(
        "workspace/didChangeConfiguration",
        json!({"settings": {"model": {"n_ctx": 1024}}}),
    );
    ready(&mut first);
    assert_ne!(engine_info(&mut first)["pid"], old_pid);
    let deadline = std::time::Instant::now() + crate::support::WAIT;
    loop {
        let info = engine_info(&mut second);
        assert_eq!(info["pid"], old_pid);
        if info["clients"] == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the old engine still counts {} clients",
            info["clients"]
        );
    }
    assert!(first.shutdown().success());
    assert!(second.shutdown().success());
}
