//! Incremental edits against the client's copy, in-process: the public `DocumentStore`, fed the
//! byte ranges `lsp/convert.rs` makes of LSP ranges the way `textDocument/didChange` feeds it.
//!
//! `tests/lsp/sync.rs` already types well-formed edits over stdio, and the store's own property
//! test edits one Python file at byte offsets. This target goes where neither goes: text of any
//! characters (lone CRs, NUL, U+2028, surrogate pairs), positions past the end of lines and of the
//! document or inside characters, whole-text replacements between incremental ones, and every
//! grammar. After each version it checks the rope against the client's copy, the tree against a
//! fresh parse node by node (kinds, bytes and points), and that ranges moved through the edit log
//! still cover the text they covered.

use proptest::collection::vec;
use proptest::prelude::*;
use ropey::Rope;
use tower_lsp_server::ls_types::{Position, Range};
use tree_sitter::{Node, Tree};
use wellspring::docs::{move_range, DocumentKind, DocumentStore, TextEdit};
use wellspring::lsp::convert::{self, Leniency, PositionEncoding};
use wellspring::syntax::Language;
use wellspring_fuzz::{client_text, fuzz, gen, Limits};

/// One end of an edit's range: a byte of the client's text (picked as a fraction of its length),
/// or a raw position that may be anywhere.
#[derive(Debug, Clone)]
enum End {
    Byte(usize),
    Raw(u32, u32),
}

#[derive(Debug, Clone)]
enum Change {
    Edit { start: End, end: End, text: String },
    Full(String),
}

fn end() -> BoxedStrategy<End> {
    let raw = prop_oneof![
        8 => 0..16_u32,
        1 => prop::sample::select(vec![u32::MAX, i32::MAX as u32]),
    ];
    prop_oneof![
        6 => any::<usize>().prop_map(End::Byte),
        1 => (raw.clone(), raw).prop_map(|(line, character)| End::Raw(line, character)),
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

fn lsp_position(text: &str, end: &End, encoding: PositionEncoding) -> Position {
    match *end {
        End::Byte(pick) => {
            let (line, character) =
                client_text::position(text, client_text::client_byte(text, pick), encoding);
            Position::new(line, character)
        }
        End::Raw(line, character) => Position::new(line, character),
    }
}

/// Walks two trees side by side and reports the first node where they differ.
fn first_difference(incremental: &Tree, fresh: &Tree) -> Option<String> {
    fn describe(node: Node<'_>) -> String {
        format!(
            "{} bytes {:?} points {:?}..{:?} missing {} error {}",
            node.kind(),
            node.byte_range(),
            node.start_position(),
            node.end_position(),
            node.is_missing(),
            node.is_error()
        )
    }
    let mut stack = vec![(incremental.root_node(), fresh.root_node())];
    while let Some((left, right)) = stack.pop() {
        let (left_text, right_text) = (describe(left), describe(right));
        if left_text != right_text || left.child_count() != right.child_count() {
            return Some(format!(
                "incremental: {left_text}\nfresh:       {right_text}"
            ));
        }
        for child_idx in 0..left.child_count() {
            let left_child = left.child(child_idx).expect("index below child_count");
            let right_child = right.child(child_idx).expect("index below child_count");
            stack.push((left_child, right_child));
        }
    }
    None
}

#[derive(Debug, Clone)]
struct Case {
    language: (&'static str, &'static str),
    encoding: PositionEncoding,
    initial: String,
    /// Each version's changes, with the gap to the version before.
    versions: Vec<(i32, Vec<Change>)>,
    /// Ranges of old versions to move onto the current text: version index, two byte picks.
    moves: Vec<(usize, usize, usize)>,
}

fn case() -> BoxedStrategy<Case> {
    (
        prop::sample::select(gen::LANGUAGES),
        prop::sample::select(vec![
            PositionEncoding::Utf8,
            PositionEncoding::Utf16,
            PositionEncoding::Utf32,
        ]),
        gen::text(20),
        vec((1..3_i32, vec(change(), 1..4)), 1..12),
        vec((any::<usize>(), any::<usize>(), any::<usize>()), 0..4),
    )
        .prop_map(|(language, encoding, initial, versions, moves)| Case {
            language,
            encoding,
            initial,
            versions,
            moves,
        })
        .boxed()
}

fn check_tree(
    store: &DocumentStore,
    uri: &str,
    text: &str,
    language: Option<Language>,
) -> Result<(), TestCaseError> {
    let document = store.get(uri).expect("the document is open");
    let expected_kind = if text.contains('\u{0}') {
        DocumentKind::Binary
    } else {
        DocumentKind::Text
    };
    prop_assert_eq!(document.kind, expected_kind);
    let Some(language) = language.filter(|_| expected_kind == DocumentKind::Text) else {
        prop_assert!(document.tree.is_none(), "an unparsed document has no tree");
        return Ok(());
    };
    let incremental = document
        .tree
        .as_ref()
        .expect("parsed within the budget or finished");
    let fresh = language
        .parser()
        .parse(text, None)
        .expect("a parse without a deadline finishes");
    if let Some(difference) = first_difference(incremental, &fresh) {
        return Err(TestCaseError::fail(format!(
            "the incremental tree differs from a fresh parse of {text:?}:\n{difference}"
        )));
    }
    Ok(())
}

fn run_case(case: Case) -> Result<(), TestCaseError> {
    let (language_id, uri) = case.language;
    let language = Language::detect(language_id, uri);
    let encoding = case.encoding;
    let store = DocumentStore::new();
    let mut text = case.initial.clone();
    let mut version = 1;
    let (_, needs_parse) = store.open(uri, language_id, version, &text);
    if needs_parse {
        store.finish_parse(uri, version);
    }
    check_tree(&store, uri, &text, language)?;
    let mut history = vec![(version, text.clone())];
    for (gap, changes) in &case.versions {
        version += gap;
        // The client applies each change to its copy and sends the positions it used.
        let mut lsp_changes = Vec::new();
        for change in changes {
            match change {
                Change::Full(new_text) => {
                    lsp_changes.push((None, new_text.clone()));
                    text = new_text.clone();
                }
                Change::Edit {
                    start,
                    end,
                    text: inserted,
                } => {
                    let start = lsp_position(&text, start, encoding);
                    let end = lsp_position(&text, end, encoding);
                    let start_byte = client_text::byte_offset_clamped(
                        &text,
                        start.line,
                        start.character,
                        encoding,
                    );
                    let end_byte =
                        client_text::byte_offset_clamped(&text, end.line, end.character, encoding);
                    text.replace_range(
                        start_byte.min(end_byte)..start_byte.max(end_byte),
                        inserted,
                    );
                    lsp_changes.push((Some(Range::new(start, end)), inserted.clone()));
                }
            }
        }
        // The server converts them as `textDocument/didChange` does.
        let (_, needs_parse) = store
            .update(uri, version, |document| {
                for (range, inserted) in &lsp_changes {
                    let Some(range) = range else {
                        document.replace_all(inserted);
                        continue;
                    };
                    let bytes =
                        convert::byte_range(&document.rope, *range, encoding, Leniency::Strict)
                            .or_else(|_| {
                                convert::byte_range(
                                    &document.rope,
                                    *range,
                                    encoding,
                                    Leniency::Clamp,
                                )
                            })
                            .map_err(|error| error.to_string())?;
                    document.apply_edit(&TextEdit {
                        start_byte: bytes.start,
                        end_byte: bytes.end,
                        text: inserted.clone(),
                    });
                }
                Ok(())
            })
            .map_err(|error| TestCaseError::fail(error.to_string()))?;
        if needs_parse {
            store.finish_parse(uri, version);
        }
        let document = store.get(uri).expect("the document is open");
        prop_assert_eq!(
            document.rope.to_string(),
            text.clone(),
            "after version {}",
            version
        );
        prop_assert_eq!(document.version, version);
        check_tree(&store, uri, &text, language)?;
        history.push((version, text.clone()));
    }
    // A range of an old version, moved through the log, still covers the same text, unless the
    // log refuses because the range was edited since.
    let document = store.get(uri).expect("the document is open");
    for (version_pick, a, b) in case.moves {
        let (old_version, old_text) = &history[version_pick % history.len()];
        let (a, b) = (
            client_text::client_byte(old_text, a),
            client_text::client_byte(old_text, b),
        );
        let range = a.min(b)..a.max(b);
        let spans = document
            .history
            .since(*old_version)
            .expect("the log reaches back this far");
        if let Some(moved) = move_range(range.clone(), &spans) {
            let current = Rope::from_str(&text);
            prop_assert!(
                moved.end <= current.len_bytes(),
                "moved past the end: {:?}",
                moved
            );
            prop_assert_eq!(
                &text[moved.clone()],
                &old_text[range.clone()],
                "moved {:?} to {:?}",
                range,
                moved
            );
        }
    }
    Ok(())
}

#[test]
fn incremental_edits_keep_the_clients_text_and_a_fresh_tree() {
    fuzz("documents_edits", Limits::FAST, case(), |_| run_case);
}
