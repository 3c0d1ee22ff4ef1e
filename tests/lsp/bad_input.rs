//! Bad input of every kind gets a clear error or a log line, and the server stays up with every
//! other document intact.

use serde_json::json;

use crate::support::TestServer;

const KEEP_URI: &str = "file:///w/keep.rs";
const KEEP_TEXT: &str = "fn keep() -> u32 { 42 }\n";

fn server_with_a_document() -> TestServer {
    let mut server = TestServer::builder().start();
    server.open(KEEP_URI, "rust", KEEP_TEXT);
    server
}

/// The server still answers and the untouched document is unchanged.
fn assert_alive_and_intact(server: &mut TestServer) {
    let state = server
        .document_state(KEEP_URI)
        .expect("server still answers");
    assert_eq!(state["text"], KEEP_TEXT);
    assert_eq!(state["version"], 1);
}

#[test]
fn malformed_json_gets_a_parse_error_and_the_server_keeps_serving() {
    let mut server = server_with_a_document();
    server.send_raw(b"Content-Length: 5\r\n\r\n{bad}");
    let error = server.response(json!(null)).unwrap_err();
    assert_eq!(error["code"], -32700);
    server.send_raw(b"this is not a header\r\n");
    server.send_raw(b"Content-Length: 13\r\n\r\n[1,2,3,4,5,6]");
    let error = server.response(json!(null)).unwrap_err();
    assert_eq!(error["code"], -32600);
    server.send(&json!({"jsonrpc": "2.0", "id": 77, "method": 5}));
    let error = server.response(json!(77)).unwrap_err();
    assert_eq!(error["code"], -32600);
    // A key given twice used to stop the server, and a request carrying a result was never
    // answered (both found by the fuzz target `transport_classify`).
    for (id, body) in [
        (
            78,
            r#"{"jsonrpc":"2.0","id":78,"method":"wellspring/serverInfo","method":"x"}"#,
        ),
        (
            79,
            r#"{"jsonrpc":"2.0","id":79,"method":"wellspring/serverInfo","result":1}"#,
        ),
    ] {
        server.send_raw(format!("Content-Length: {}\r\n\r\n{body}", body.len()).as_bytes());
        let error = server.response(json!(id)).unwrap_err();
        assert_eq!(error["code"], -32600);
    }
    assert_alive_and_intact(&mut server);
}

#[test]
fn unknown_methods_get_method_not_found() {
    let mut server = server_with_a_document();
    let error = server
        .request("textDocument/unheardOf", json!({}))
        .unwrap_err();
    assert_eq!(error["code"], -32601);
    server.notify("$/unheardOf", json!({}));
    let error = server
        .request("wellspring/documentState", json!({"wrong": 1}))
        .unwrap_err();
    assert_eq!(error["code"], -32602);
    assert_alive_and_intact(&mut server);
}

#[test]
fn edits_past_the_end_are_clamped_and_logged() {
    let mut server = server_with_a_document();
    let uri = "file:///w/b.rs";
    server.open(uri, "rust", "let a = 1;\nlet b = 2;\n");
    let change = json!({"textDocument": {"uri": uri, "version": 2}, "contentChanges": [
        {"range": {"start": {"line": 0, "character": 500}, "end": {"line": 0, "character": 900}}, "text": " // end"},
        {"range": {"start": {"line": 40, "character": 0}, "end": {"line": 41, "character": 3}}, "text": "tail"},
    ]});
    server.notify("textDocument/didChange", change);
    let state = server.document_state(uri).unwrap();
    assert_eq!(state["text"], "let a = 1; // end\nlet b = 2;\ntail");
    assert!(server.log().contains("invalid range"), "clamping is logged");
    assert_alive_and_intact(&mut server);
}

#[test]
fn a_position_inside_a_surrogate_pair_is_snapped_for_edits() {
    let mut server = server_with_a_document();
    let uri = "file:///w/c.py";
    server.open(uri, "python", "s = '😀'\n");
    // Column 6 is between the two UTF-16 halves of the emoji.
    let change = json!({"textDocument": {"uri": uri, "version": 2}, "contentChanges": [
        {"range": {"start": {"line": 0, "character": 6}, "end": {"line": 0, "character": 6}}, "text": "x"},
    ]});
    server.notify("textDocument/didChange", change);
    let state = server.document_state(uri).unwrap();
    assert_eq!(state["text"], "s = 'x😀'\n");
    assert!(server.log().contains("inside a character"));
    assert_alive_and_intact(&mut server);
}

#[test]
fn change_for_a_document_never_opened_is_ignored_with_a_log_line() {
    let mut server = server_with_a_document();
    server.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": "file:///w/ghost.rs", "version": 2}, "contentChanges": [{"text": "boo"}]}),
    );
    server.notify(
        "textDocument/didClose",
        json!({"textDocument": {"uri": "file:///w/ghost.rs"}}),
    );
    let error = server.document_state("file:///w/ghost.rs").unwrap_err();
    assert!(error["message"].as_str().unwrap().contains("not open"));
    assert_alive_and_intact(&mut server);
    assert!(server.log().contains("ghost.rs is not open"));
}

#[test]
fn a_20_mb_file_is_kept_but_not_parsed() {
    let mut server = server_with_a_document();
    let uri = "file:///w/huge.js";
    let line = "const value = compute(1, 2, 3); // padding padding padding\n";
    let text = line.repeat(20 * 1024 * 1024 / line.len() + 1);
    server.open(uri, "javascript", &text);
    server.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": uri, "version": 2}, "contentChanges": [
            {"range": {"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 5}}, "text": "let"}]}),
    );
    let state = server.document_state(uri).unwrap();
    assert_eq!(state["kind"], "tooLargeToParse");
    assert!(state["tree"].is_null());
    assert_eq!(state["text"].as_str().unwrap().len(), text.len() - 2);
    assert_alive_and_intact(&mut server);
}

#[test]
fn a_binary_file_is_kept_but_never_parsed() {
    let mut server = server_with_a_document();
    let uri = "file:///w/blob.c";
    server.open(uri, "c", "\u{0}\u{1}ELF\u{0}\u{0}binary");
    let state = server.document_state(uri).unwrap();
    assert_eq!(state["kind"], "binary");
    assert!(state["tree"].is_null());
    assert_alive_and_intact(&mut server);
}

#[test]
fn methods_without_params_accept_empty_params_in_every_form() {
    let mut server = server_with_a_document();
    for params in [json!({}), json!(null), json!([])] {
        let info = server
            .request("wellspring/serverInfo", params.clone())
            .expect("serverInfo answers");
        assert_eq!(info["openDocuments"], 1, "{params}");
        // No model is loaded, so stats are an error; but not one about the params.
        let error = server
            .request("wellspring/stats", params.clone())
            .unwrap_err();
        assert_eq!(error["code"], -32001, "{params}: {error}");
    }
    server.send(&json!({"jsonrpc": "2.0", "id": 90, "method": "wellspring/serverInfo"}));
    assert!(server.response(json!(90)).is_ok());
    // Methods that do take params are left alone.
    let error = server
        .request("wellspring/documentState", json!({}))
        .unwrap_err();
    assert_eq!(error["code"], -32602, "{error}");
    assert_alive_and_intact(&mut server);
}

/// Found by the fuzz target `dispatch_engine_failed`: a code action's `data` comes back from the
/// client, and a mangled `byteRange` in it overflowed while being moved through the edits since
/// (a panic), or came out reversed or inside a character, for the model's code to slice with.
#[test]
fn a_mangled_code_action_range_is_refused() {
    let mut server = server_with_a_document();
    let uri = "file:///w/d.py";
    server.open(uri, "python", "x = 1\ns = 'é'\n");
    // Version 2 deletes the first line, so ranges after it move back by 6 bytes.
    server.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": uri, "version": 2}, "contentChanges": [
            {"range": {"start": {"line": 0, "character": 0}, "end": {"line": 1, "character": 0}}, "text": ""}]}),
    );
    let range = json!({"start": {"line": 1, "character": 0}, "end": {"line": 1, "character": 1}});
    // Reversed across the deletion, reversed after it, and ending inside the "é".
    for byte_range in [json!([12, 0]), json!([9, 7]), json!([12, 13])] {
        let data = json!({"action": "fix", "uri": uri, "range": range, "version": 1, "byteRange": byte_range});
        let error = server
            .request("codeAction/resolve", json!({"title": "Fix", "data": data}))
            .unwrap_err();
        assert_eq!(error["code"], -32602, "{byte_range}: {error}");
    }
    assert_alive_and_intact(&mut server);
}

/// Found by the fuzz target `dispatch_engine_failed`: a diagnostic on the last line a `u32` can
/// name overflowed while its line number was written for the model (a panic, reported as an
/// internal error).
#[test]
fn a_diagnostic_on_the_largest_line_number_is_no_panic() {
    let mut server = server_with_a_document();
    let uri = "file:///w/d.py";
    server.open(uri, "python", "x = 1\n");
    let range = json!({"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 1}});
    let far = json!({"start": {"line": u32::MAX, "character": 0}, "end": {"line": u32::MAX, "character": 0}});
    let actions = server.request(
        "textDocument/codeAction",
        json!({"textDocument": {"uri": uri}, "range": range,
               "context": {"diagnostics": [{"range": far, "message": "far away", "severity": 1}]}}),
    );
    assert!(actions.is_ok(), "{actions:?}");
    assert_alive_and_intact(&mut server);
}
