//! The map of open documents, with copy-on-write updates so readers hold cheap snapshots.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use tree_sitter::{Parser, Tree};

use super::document::Document;
use crate::syntax::{self, Language};

/// How long an edit may spend reparsing on the caller's thread before the parse moves to a
/// blocking worker. Incremental reparses of ordinary files take well under a millisecond.
const SYNC_PARSE_BUDGET: Duration = Duration::from_millis(20);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("document {0} is not open")]
    NotOpen(String),
    #[error("document {uri}: version {new} is not newer than {current}")]
    StaleVersion { uri: String, current: i32, new: i32 },
    #[error("document {uri}: {message}")]
    InvalidEdit { uri: String, message: String },
}

thread_local! {
    static PARSERS: RefCell<HashMap<Language, Parser>> = RefCell::new(HashMap::new());
}

fn with_parser<T>(language: Language, f: impl FnOnce(&mut Parser) -> T) -> T {
    PARSERS.with(|parsers| {
        let mut parsers = parsers.borrow_mut();
        let parser = parsers.entry(language).or_insert_with(|| language.parser());
        f(parser)
    })
}

/// Parses `document` against its (already edited) old tree, within `budget` if one is given.
fn reparse(document: &Document, budget: Option<Duration>) -> Option<Tree> {
    let language = document.language?;
    if !document.wants_tree() {
        return None;
    }
    let deadline = budget.map(|budget| Instant::now() + budget);
    // tree-sitter skips a byte-order mark only when it lexes from the very start, so reparsing a
    // document that begins with one against its old tree can disagree with a fresh parse (the
    // documents fuzz target found it with Lua): such a document is parsed whole.
    let starts_with_bom = document.rope.len_bytes() >= 3 && document.rope.char(0) == '\u{feff}';
    let old_tree = document.tree.as_ref().filter(|_| !starts_with_bom);
    with_parser(language, |parser| {
        syntax::parse_rope(parser, &document.rope, old_tree, deadline)
    })
}

/// Open documents keyed by URI. Every update replaces the `Arc<Document>`, so a request that took
/// a snapshot keeps a consistent rope and tree however long it runs.
#[derive(Default)]
pub struct DocumentStore {
    documents: DashMap<String, Arc<Document>>,
}

impl DocumentStore {
    pub fn new() -> DocumentStore {
        DocumentStore::default()
    }

    pub fn get(&self, uri: &str) -> Option<Arc<Document>> {
        self.documents
            .get(uri)
            .map(|entry| Arc::clone(entry.value()))
    }

    pub fn len(&self) -> usize {
        self.documents.len()
    }

    pub fn is_empty(&self) -> bool {
        self.documents.is_empty()
    }

    /// Snapshots of every open document, for context gathered across files.
    pub fn all(&self) -> Vec<Arc<Document>> {
        self.documents
            .iter()
            .map(|entry| Arc::clone(entry.value()))
            .collect()
    }

    /// Opens (or reopens) a document. Returns it, and whether its parse still has to be finished
    /// by [`DocumentStore::finish_parse`] because it ran over the synchronous budget.
    pub fn open(
        &self,
        uri: &str,
        language_id: &str,
        version: i32,
        text: &str,
    ) -> (Arc<Document>, bool) {
        let mut document = Document::new(uri, language_id, version, text);
        document.tree = reparse(&document, Some(SYNC_PARSE_BUDGET));
        let needs_parse = document.wants_tree() && document.tree.is_none();
        let document = Arc::new(document);
        self.documents.insert(uri.to_owned(), Arc::clone(&document));
        (document, needs_parse)
    }

    pub fn close(&self, uri: &str) -> Option<Arc<Document>> {
        self.documents.remove(uri).map(|(_, document)| document)
    }

    /// Applies a batch of changes through `apply`, which edits a private copy; the store only
    /// publishes the copy when every change applied, so a bad batch leaves the document intact.
    ///
    /// The returned flag says the reparse ran over budget; see [`DocumentStore::finish_parse`].
    pub fn update(
        &self,
        uri: &str,
        version: i32,
        apply: impl FnOnce(&mut Document) -> Result<(), String>,
    ) -> Result<(Arc<Document>, bool), Error> {
        let mut entry = self
            .documents
            .get_mut(uri)
            .ok_or_else(|| Error::NotOpen(uri.to_owned()))?;
        let current = entry.value();
        if version <= current.version {
            return Err(Error::StaleVersion {
                uri: uri.to_owned(),
                current: current.version,
                new: version,
            });
        }
        let mut document = Document::clone(current);
        apply(&mut document).map_err(|message| Error::InvalidEdit {
            uri: uri.to_owned(),
            message,
        })?;
        document.version = version;
        document.history.commit(version);
        document.tree = reparse(&document, Some(SYNC_PARSE_BUDGET));
        let needs_parse = document.wants_tree() && document.tree.is_none();
        let document = Arc::new(document);
        *entry.value_mut() = Arc::clone(&document);
        Ok((document, needs_parse))
    }

    /// Finishes a parse that ran over the synchronous budget (call it on a blocking worker) and
    /// installs the tree if the document has not moved on in the meantime.
    pub fn finish_parse(&self, uri: &str, version: i32) {
        let Some(document) = self.get(uri) else {
            return;
        };
        if document.version != version || document.tree.is_some() {
            return;
        }
        let Some(tree) = reparse(&document, None) else {
            return;
        };
        if let Some(mut entry) = self.documents.get_mut(uri) {
            if entry.version == version && entry.tree.is_none() {
                let mut parsed = Document::clone(entry.value());
                parsed.tree = Some(tree);
                *entry.value_mut() = Arc::new(parsed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::docs::TextEdit;

    const PIECES: &[&str] = &[
        "x",
        "def f(a):\n",
        "    return a\n",
        "\r\n",
        "\n",
        "ü",
        "😀",
        "(",
        ")",
        ":",
        "  ",
        "if a:\n        pass\n",
        "'s'",
        "#c\n",
    ];

    fn edit_strategy() -> impl Strategy<
        Value = (
            prop::sample::Index,
            prop::sample::Index,
            Vec<prop::sample::Index>,
        ),
    > {
        (
            any::<prop::sample::Index>(),
            any::<prop::sample::Index>(),
            prop::collection::vec(any::<prop::sample::Index>(), 0..4),
        )
    }

    fn char_boundary(text: &str, index: &prop::sample::Index) -> usize {
        let boundaries: Vec<usize> = text
            .char_indices()
            .map(|(byte_idx, _)| byte_idx)
            .chain([text.len()])
            .collect();
        boundaries[index.index(boundaries.len())]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// After any run of edits, the rope equals the client's text and the incrementally
        /// maintained tree equals a fresh parse.
        #[test]
        fn incremental_edits_match_a_fresh_parse(edits in prop::collection::vec(edit_strategy(), 1..25)) {
            let store = DocumentStore::new();
            let mut text = String::from("def main():\n    print('héllo 😀')\r\n\nclass A:\n    pass\n");
            store.open("file:///p.py", "python", 1, &text);
            for (version, (a, b, pieces)) in edits.iter().enumerate() {
                let (start, end) = {
                    let a = char_boundary(&text, a);
                    let b = char_boundary(&text, b);
                    (a.min(b), a.max(b))
                };
                let insert: String = pieces.iter().map(|piece| PIECES[piece.index(PIECES.len())]).collect();
                let edit = TextEdit { start_byte: start, end_byte: end, text: insert.clone() };
                store.update("file:///p.py", version as i32 + 2, |document| { document.apply_edit(&edit); Ok(()) }).unwrap();
                text.replace_range(start..end, &insert);
            }
            let document = store.get("file:///p.py").unwrap();
            prop_assert_eq!(document.rope.to_string(), text.clone());
            let fresh = Language::Python.parser().parse(&text, None).unwrap();
            prop_assert_eq!(crate::syntax::node_listing(document.tree.as_ref().unwrap()), crate::syntax::node_listing(&fresh));
        }
    }

    #[test]
    fn a_failed_batch_leaves_the_document_untouched() {
        let store = DocumentStore::new();
        store.open("file:///a.rs", "rust", 1, "fn a() {}\n");
        let error = store
            .update("file:///a.rs", 2, |document| {
                document.apply_edit(&TextEdit {
                    start_byte: 0,
                    end_byte: 2,
                    text: "pub fn".into(),
                });
                Err("second change was invalid".into())
            })
            .unwrap_err();
        assert!(matches!(error, Error::InvalidEdit { .. }));
        let document = store.get("file:///a.rs").unwrap();
        assert_eq!(document.rope.to_string(), "fn a() {}\n");
        assert_eq!(document.version, 1);
    }

    #[test]
    fn a_document_that_becomes_binary_loses_its_tree() {
        let store = DocumentStore::new();
        store.open("file:///a.c", "c", 1, "int x;\n");
        let (document, _) = store
            .update("file:///a.c", 2, |document| {
                document.apply_edit(&TextEdit {
                    start_byte: 0,
                    end_byte: 0,
                    text: "\u{0}".into(),
                });
                Ok(())
            })
            .unwrap();
        assert_eq!(document.kind, crate::docs::DocumentKind::Binary);
        assert!(document.tree.is_none());
    }
}
