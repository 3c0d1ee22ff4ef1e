//! Incremental edits over stdio, against the client's copy: what `tests/lsp/sync.rs` does with
//! well-formed edits of tidy pieces, here with text of any characters, lone CRs and surrogate
//! pairs, positions past the end and inside characters, positions no `u32` holds (which make the
//! server drop the whole notification, as the protocol leaves it no other choice), stale versions
//! and whole-text replacements.
//!
//! Each case opens a new document, sends a run of `didChange`s, and checks the server's text,
//! version and syntax tree against the client's copy and a fresh parse.

use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe};

use proptest::collection::vec;
use proptest::prelude::*;
use serde_json::{json, Value};
use wellspring::lsp::convert::PositionEncoding;
use wellspring::syntax::{node_listing, Language};
use wellspring_fuzz::{client_text, fuzz, gen, Limits};

use crate::support::TestServer;

/// One end of an edit's range.
#[derive(Debug, Clone)]
enum End {
    /// A byte of the client's text, picked as a number modulo the boundaries there are.
    Byte(usize),
    /// A position anywhere a `u32` reaches.
    Raw(u32, u32),
    /// A line or column no `u32` holds.
    Unrepresentable(Value),
}

#[derive(Debug, Clone)]
enum Change {
    Edit { start: End, end: End, text: String },
    Full(String),
}

fn end() -> BoxedStrategy<End> {
    let coordinate = || prop_oneof![0..16_u32, Just(u32::MAX)];
    let unrepresentable = vec![
        json!(-1),
        json!(4_294_967_296_u64),
        json!(1.5),
        json!("2"),
        json!(null),
    ];
    prop_oneof![
        12 => any::<usize>().prop_map(End::Byte),
        2 => (coordinate(), coordinate())
            .prop_map(|(line, character)| End::Raw(line, character)),
        1 => prop::sample::select(unrepresentable).prop_map(End::Unrepresentable),
    ]
    .boxed()
}

fn change() -> BoxedStrategy<Change> {
    prop_oneof![
        12 => (end(), end(), gen::text(5))
            .prop_map(|(start, end, text)| Change::Edit { start, end, text }),
        1 => gen::text(12).prop_map(Change::Full),
    ]
    .boxed()
}

#[derive(Debug, Clone)]
struct Case {
    language: (&'static str, &'static str),
    initial: String,
    /// Each notification's version step (0 or less is a stale version) and changes.
    notifications: Vec<(i32, Vec<Change>)>,
}

fn case() -> BoxedStrategy<Case> {
    (
        prop::sample::select(vec![
            ("rust", "rs"),
            ("python", "py"),
            ("javascript", "js"),
            ("go", "go"),
            ("c", "c"),
            ("plaintext", "txt"),
        ]),
        gen::text(16),
        vec(
            (
                prop_oneof![8 => Just(1), 1 => Just(2), 1 => Just(0), 1 => Just(-1)],
                vec(change(), 1..4),
            ),
            1..10,
        ),
    )
        .prop_map(|(language, initial, notifications)| Case {
            language,
            initial,
            notifications,
        })
        .boxed()
}

/// The wire position of `end`, and the line and column the server will read (`None` when it
/// cannot read them).
fn wire_position(text: &str, end: &End, encoding: PositionEncoding) -> (Value, Option<(u32, u32)>) {
    match end {
        End::Byte(pick) => {
            let (line, character) =
                client_text::position(text, client_text::client_byte(text, *pick), encoding);
            (
                json!({"line": line, "character": character}),
                Some((line, character)),
            )
        }
        End::Raw(line, character) => (
            json!({"line": line, "character": character}),
            Some((*line, *character)),
        ),
        End::Unrepresentable(value) => (json!({"line": value, "character": 0}), None),
    }
}

fn encoding_name(encoding: PositionEncoding) -> &'static str {
    match encoding {
        PositionEncoding::Utf8 => "utf-8",
        PositionEncoding::Utf16 => "utf-16",
        PositionEncoding::Utf32 => "utf-32",
    }
}

fn run_case(
    server: &mut TestServer,
    encoding: PositionEncoding,
    case_idx: u64,
    case: &Case,
) -> Result<(), TestCaseError> {
    let (language_id, extension) = case.language;
    let uri = format!("file:///w/fuzz/case{case_idx}.{extension}");
    let mut text = case.initial.clone();
    let mut version = 1;
    server.open(&uri, language_id, &text);
    for (step, changes) in &case.notifications {
        let new_version = version + step;
        let mut copy = text.clone();
        let mut wire_changes = Vec::new();
        let mut readable = true;
        for change in changes {
            match change {
                Change::Full(new_text) => {
                    wire_changes.push(json!({"text": new_text}));
                    copy = new_text.clone();
                }
                Change::Edit {
                    start,
                    end,
                    text: inserted,
                } => {
                    let (start_wire, start) = wire_position(&copy, start, encoding);
                    let (end_wire, end) = wire_position(&copy, end, encoding);
                    wire_changes.push(
                        json!({"range": {"start": start_wire, "end": end_wire}, "text": inserted}),
                    );
                    let (Some(start), Some(end)) = (start, end) else {
                        readable = false;
                        continue;
                    };
                    let start_byte =
                        client_text::byte_offset_clamped(&copy, start.0, start.1, encoding);
                    let end_byte = client_text::byte_offset_clamped(&copy, end.0, end.1, encoding);
                    copy.replace_range(
                        start_byte.min(end_byte)..start_byte.max(end_byte),
                        inserted,
                    );
                }
            }
        }
        let text_document = json!({"uri": uri, "version": new_version});
        server.notify(
            "textDocument/didChange",
            json!({"textDocument": text_document, "contentChanges": wire_changes}),
        );
        // The server applies a notification it can read whose version is newer; so does the
        // client's copy here.
        if readable && new_version > version {
            text = copy;
            version = new_version;
        }
    }
    let state = server
        .document_state(&uri)
        .map_err(|error| TestCaseError::fail(format!("documentState failed: {error}")))?;
    prop_assert_eq!(
        state["text"].as_str(),
        Some(text.as_str()),
        "encoding {:?}",
        encoding
    );
    prop_assert_eq!(&state["version"], &json!(version));
    let language = Language::detect(language_id, &uri);
    let binary = text.contains('\u{0}');
    prop_assert_eq!(
        &state["kind"],
        &json!(if binary { "binary" } else { "text" })
    );
    // The tree may still be parsing in the background if the machine is slow; then there is
    // nothing to compare yet.
    if let (Some(language), Some(tree), false) = (language, state["tree"].as_str(), binary) {
        let fresh = language
            .parser()
            .parse(&text, None)
            .expect("a parse without a deadline finishes");
        prop_assert_eq!(
            tree,
            node_listing(&fresh),
            "the tree differs from a fresh parse of {:?}",
            text
        );
    }
    server.notify(
        "textDocument/didClose",
        json!({"textDocument": {"uri": uri}}),
    );
    Ok(())
}

#[test]
fn random_edits_over_stdio_match_the_clients_copy() {
    let encodings = [
        PositionEncoding::Utf16,
        PositionEncoding::Utf8,
        PositionEncoding::Utf32,
    ];
    fuzz("stdio_edits", Limits::SERVER, case(), |batch_idx| {
        // Each batch negotiates the next encoding in turn.
        let encoding = encodings[batch_idx as usize % encodings.len()];
        let server: RefCell<Option<TestServer>> = RefCell::new(None);
        let case_idx = Cell::new(0_u64);
        move |case: Case| {
            let mut slot = server.borrow_mut();
            case_idx.set(case_idx.get() + 1);
            let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
                let server = slot.get_or_insert_with(|| {
                    TestServer::builder()
                        .env("WELLSPRING_LOG", "info")
                        .encodings(&[encoding_name(encoding)])
                        .initialization_options(json!({"model": {"path": ""}}))
                        .start()
                });
                run_case(server, encoding, case_idx.get(), &case)
            }));
            // After a failure the server's state is suspect: the next case starts a new one.
            if !matches!(outcome, Ok(Ok(()))) {
                *slot = None;
            }
            match outcome {
                Ok(result) => result,
                Err(panic) => panic::resume_unwind(panic),
            }
        }
    });
}
