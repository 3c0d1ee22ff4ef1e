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
    with_parser(language, |parser| {
        syntax::parse_rope(parser, &document.rope, document.tree.as_ref(), deadline)
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
