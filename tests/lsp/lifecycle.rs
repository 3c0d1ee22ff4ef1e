//! Handshake, capability negotiation and clean shutdown.

use serde_json::json;

use crate::support::TestServer;

#[test]
fn negotiates_position_encoding() {
    let cases: [(&[&str], &str); 4] = [
        (&[], "utf-16"),
        (&["utf-16"], "utf-16"),
        (&["utf-16", "utf-32"], "utf-32"),
        (&["utf-32", "utf-16", "utf-8"], "utf-8"),
    ];
    for (offered, expected) in cases {
        let mut server = TestServer::builder().encodings(offered).spawn();
        let result = server
            .request("initialize", json!({"processId": null, "rootUri": null, "capabilities": {"general": {"positionEncodings": offered}}}))
            .unwrap();
        assert_eq!(
            result["capabilities"]["positionEncoding"], expected,
            "offered {offered:?}"
        );
        assert_eq!(result["capabilities"]["textDocumentSync"]["change"], 2);
        assert_eq!(result["serverInfo"]["name"], "wellspring");
        server.notify("initialized", json!({}));
        let info = server.server_info();
        assert_eq!(info["positionEncoding"], expected);
        assert!(server.shutdown().success());
    }
}

#[test]
fn shutdown_then_exit_ends_the_process_cleanly() {
    let mut server = TestServer::builder().start();
    server.open("file:///w/a.rs", "rust", "fn main() {}\n");
    let state = server.document_state("file:///w/a.rs").unwrap();
    assert_eq!(state["language"], "rust");
    let status = server.shutdown();
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_vanishing_client_stops_the_server_without_a_crash() {
    let mut server = TestServer::builder().start();
    server.open("file:///w/a.py", "python", "print(1)\n");
    let status = server.hang_up();
    assert!(status.code().is_some(), "killed by a signal: {status:?}");
}

#[test]
fn settings_layers_apply_and_bad_settings_are_reported() {
    let mut server = TestServer::builder()
        .initialization_options(json!({"wellspring": {"completion": {"max_tokens": 7}}}))
        .start();
    server.notify(
        "workspace/didChangeConfiguration",
        json!({"settings": {"completion": {"nonsense": 1}}}),
    );
    let message = server.notification("window/showMessage", |_| true);
    assert!(
        message["message"].as_str().unwrap().contains("nonsense"),
        "{message}"
    );
    assert!(server.request("wellspring/serverInfo", json!(null)).is_ok());
    assert!(server.shutdown().success());
}
