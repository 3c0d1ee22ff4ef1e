//! Incremental document sync: random multi-line, non-ASCII edits in every position encoding,
//! checked against the client's own copy of the text and against a fresh parse.

use serde_json::json;
use wellspring::syntax::{node_listing, Language};

use crate::support::{lsp_position, Rng, TestServer};

const PIECES: &[&str] = &[
    "a",
    "fn x() {",
    "}",
    "\n",
    "\r\n",
    "  ",
    "λ",
    "😀",
    "日本",
    "é",
    "\"str\"",
    "// c\n",
    "let y = 1;\n",
    "(",
    ")",
    "{\n",
    "\t",
];

fn char_boundary_not_inside_crlf(text: &str, rng: &mut Rng) -> usize {
    loop {
        let byte_idx = rng.below(text.len() + 1);
        let inside_crlf = byte_idx > 0
            && text.as_bytes().get(byte_idx - 1) == Some(&b'\r')
            && text.as_bytes().get(byte_idx) == Some(&b'\n');
        if text.is_char_boundary(byte_idx) && !inside_crlf {
            return byte_idx;
        }
    }
}

fn random_edits(encoding: &'static str, seed: u64) {
    let mut server = TestServer::builder().encodings(&[encoding]).start();
    let uri = "file:///w/src/lib.rs";
    let mut text = String::from("fn main() {\n    println!(\"héllo 😀\");\r\n}\n");
    server.open(uri, "rust", &text);
    let mut rng = Rng::new(seed);
    for version in 2..60 {
        let mut changes = Vec::new();
        for _ in 0..1 + rng.below(3) {
            let a = char_boundary_not_inside_crlf(&text, &mut rng);
            let b = char_boundary_not_inside_crlf(&text, &mut rng);
            let (start, end) = (a.min(b), a.max(b));
            let end = if end - start > 40 { start } else { end };
            let mut insert = String::new();
            for _ in 0..rng.below(4) {
                insert.push_str(PIECES[rng.below(PIECES.len())]);
            }
            changes.push(json!({
                "range": {"start": lsp_position(&text, start, encoding), "end": lsp_position(&text, end, encoding)},
                "text": insert,
            }));
            text.replace_range(start..end, &insert);
        }
        server.notify(
            "textDocument/didChange",
            json!({"textDocument": {"uri": uri, "version": version}, "contentChanges": changes}),
        );
    }
    let state = server.document_state(uri).unwrap();
    assert_eq!(
        state["text"].as_str().unwrap(),
        text,
        "encoding {encoding}, seed {seed}"
    );
    assert_eq!(state["version"], 59);
    let fresh = Language::Rust.parser().parse(&text, None).unwrap();
    assert_eq!(
        state["tree"].as_str().unwrap(),
        node_listing(&fresh),
        "incremental tree differs from a fresh parse"
    );
    assert!(server.shutdown().success());
}

#[test]
fn random_edits_utf16() {
    random_edits("utf-16", 1);
}

#[test]
fn random_edits_utf8() {
    random_edits("utf-8", 2);
}

#[test]
fn random_edits_utf32() {
    random_edits("utf-32", 3);
}

#[test]
fn full_sync_changes_replace_the_text() {
    let mut server = TestServer::builder().start();
    let uri = "file:///w/a.py";
    server.open(uri, "python", "x = 1\n");
    server.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": uri, "version": 2}, "contentChanges": [{"text": "def f():\n    return 2\n"}]}),
    );
    let state = server.document_state(uri).unwrap();
    assert_eq!(state["text"], "def f():\n    return 2\n");
    assert!(state["tree"]
        .as_str()
        .unwrap()
        .contains("function_definition"));
}

#[test]
fn versions_only_go_up() {
    let mut server = TestServer::builder().start();
    let uri = "file:///w/a.go";
    server.open(uri, "go", "package a\n");
    let change = |version: i32, text: &str| json!({"textDocument": {"uri": uri, "version": version}, "contentChanges": [{"text": text}]});
    server.notify("textDocument/didChange", change(5, "package b\n"));
    server.notify("textDocument/didChange", change(3, "package stale\n"));
    let state = server.document_state(uri).unwrap();
    assert_eq!(state["version"], 5);
    assert_eq!(state["text"], "package b\n");
}
