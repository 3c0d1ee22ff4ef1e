//! No egress: a whole editing session with a local model (completion, a code action, chat)
//! opens no network connection. The server runs under `strace`, which records every `connect`
//! it and its threads make, inside a network namespace with no interfaces where the machine
//! allows one, so that even a connection attempt the trace missed could not leave.

use std::process::Command;

use serde_json::{json, Value};

use crate::support::{connect_tracer, tiny_model, TestServer};

#[test]
fn a_whole_editing_session_with_a_local_model_connects_to_nothing() {
    let trace_dir = tempfile::tempdir().expect("temp dir");
    let trace_path = trace_dir.path().join("connect.trace");
    let mut wrapper: Vec<String> = Vec::new();
    let isolated = Command::new("unshare")
        .args(["-n", "true"])
        .status()
        .is_ok_and(|status| status.success());
    if isolated {
        wrapper.extend(["unshare".to_owned(), "-n".to_owned()]);
    }
    wrapper.extend(connect_tracer(&trace_path));

    // The tracer must see a connection when one is made, or the check below proves nothing.
    let probe = Command::new(&wrapper[0])
        .args(&wrapper[1..])
        .args(["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9"])
        .status()
        .expect("run the probe under the same wrapper");
    assert!(!probe.success(), "nothing listens on port 9");
    let probe_trace = std::fs::read_to_string(&trace_path).expect("strace wrote its trace");
    assert!(
        probe_trace.contains("AF_INET"),
        "the tracer missed a connection:\n{probe_trace}"
    );

    let mut server = TestServer::builder()
        .wrapper(wrapper)
        .initialization_options(json!({
            "model": {"path": tiny_model(), "n_ctx": 2048, "n_slots": 2},
            "completion": {"max_tokens": 8},
            "chat": {"max_tokens": 12, "max_edit_tokens": 16, "resolve_timeout_ms": 0},
            // The shared engine runs under the tracer too, which waits for it: it leaves a
            // second after this server does.
            "engine": {"idle_exit_seconds": 1},
        }))
        .capabilities(
            json!({"textDocument": {"codeAction": {"resolveSupport": {"properties": ["edit"]}}}}),
        )
        .start();
    let status = server.notification("wellspring/status", |params| {
        params["state"] == "ready" || params["state"] == "error"
    });
    assert_eq!(status["state"], "ready", "{status}\n{}", server.log());

    let uri = "file:///w/notes.txt";
    server.open(uri, "plaintext", "first line\nsecond line\nthird line\n");
    let completion = server
        .request(
            "textDocument/inlineCompletion",
            json!({"textDocument": {"uri": uri}, "position": {"line": 1, "character": 6},
                   "context": {"triggerKind": 2}}),
        )
        .expect("a completion");
    assert!(completion["items"].is_array(), "{completion}");
    let lines = json!({"start": {"line": 1, "character": 0}, "end": {"line": 2, "character": 0}});
    let simplify = server.code_action(uri, &lines, "Wellspring: Simplify");
    let resolved = server
        .request("codeAction/resolve", simplify)
        .expect("resolved");
    assert!(!resolved["edit"].is_null(), "{resolved}");
    let id = server.send_chat("private", uri, lines, "What is this?");
    let answer: Value = server.response(json!(id)).expect("answered");
    assert!(answer["text"].is_string());
    assert!(server.shutdown().success());

    let trace = std::fs::read_to_string(&trace_path).expect("strace wrote its trace");
    let inet: Vec<&str> = trace
        .lines()
        .filter(|line| line.contains("AF_INET"))
        .collect();
    assert!(
        inet.is_empty(),
        "the server tried to reach the network (isolated: {isolated}):\n{}",
        inet.join("\n")
    );
}
