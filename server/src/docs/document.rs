//! One open document: rope, tree, version, language, and the edit operation that keeps them in step.

use std::sync::atomic::{AtomicU64, Ordering};

use ropey::Rope;
use tree_sitter::{InputEdit, Point, Tree};

use super::history::{self, EditLog, Span};
use crate::syntax::Language;

/// Numbers each opening of a document, so that text from before a close and reopen is never
/// mistaken for the same document's.
static NEXT_OPENING: AtomicU64 = AtomicU64::new(1);

/// Documents larger than this are kept as text but not parsed: tree-sitter would take seconds on
/// every full parse, and prompts only ever need the neighbourhood of the cursor.
pub const MAX_PARSE_BYTES: usize = 8 * 1024 * 1024;

/// How much of a document's start is sniffed for NUL bytes to decide it is binary.
const BINARY_SNIFF_BYTES: usize = 8 * 1024;

/// Whether the model may be asked about this document at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentKind {
    /// Ordinary text; parsed when the language is known and the size is below the cap.
    Text,
    /// Text too large to parse; completions fall back to plain lines around the cursor.
    TooLargeToParse,
    /// Contains NUL bytes: kept so edits stay in sync, never sent to the model.
    Binary,
}

/// A replacement of the bytes `start_byte..end_byte` by `text`, against the current content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextEdit {
    pub start_byte: usize,
    pub end_byte: usize,
    pub text: String,
}

#[derive(Debug, Clone)]
pub struct Document {
    pub uri: String,
    pub language_id: String,
    pub language: Option<Language>,
    /// Only ever increases; the store rejects changes that would lower it.
    pub version: i32,
    pub rope: Rope,
    /// The tree for exactly this `rope`, or `None` when the document is not parsed (unknown
    /// language, too large, binary) or its parse has not finished yet.
    pub tree: Option<Tree>,
    pub kind: DocumentKind,
    /// Which opening of the document this is; versions only compare within one opening.
    pub opening: u64,
    /// Where each version's changes fell, so edits computed on an older version can be moved.
    pub history: EditLog,
}

impl Document {
    pub fn new(uri: &str, language_id: &str, version: i32, text: &str) -> Document {
        let rope = Rope::from_str(text);
        let language = Language::detect(language_id, uri);
        let mut document = Document {
            uri: uri.to_owned(),
            language_id: language_id.to_owned(),
            language,
            version,
            rope,
            tree: None,
            kind: DocumentKind::Text,
            opening: NEXT_OPENING.fetch_add(1, Ordering::Relaxed),
            history: EditLog::new(version),
        };
        document.kind = document.classify();
        document
    }

    fn classify(&self) -> DocumentKind {
        // Rope slices must end on a character boundary: a character straddling the sniff limit
        // is left out of the sniff (it holds no NUL byte anyway).
        let sniff_char_end = self
            .rope
            .byte_to_char(self.rope.len_bytes().min(BINARY_SNIFF_BYTES));
        let has_nul = self
            .rope
            .slice(..sniff_char_end)
            .chunks()
            .any(|chunk| chunk.as_bytes().contains(&0));
        if has_nul {
            DocumentKind::Binary
        } else if self.rope.len_bytes() > MAX_PARSE_BYTES {
            DocumentKind::TooLargeToParse
        } else {
            DocumentKind::Text
        }
    }

    /// Whether this document should have a tree.
    pub fn wants_tree(&self) -> bool {
        self.kind == DocumentKind::Text && self.language.is_some()
    }

    /// The tree-sitter point of a byte offset: row from the rope's lines, column in bytes.
    pub fn point_at(&self, byte_idx: usize) -> Point {
        let row = self.rope.byte_to_line(byte_idx);
        Point {
            row,
            column: byte_idx - self.rope.line_to_byte(row),
        }
    }

    /// Replaces the whole text (a full-sync change); the tree is dropped and reparsed from scratch.
    pub fn replace_all(&mut self, text: &str) {
        self.history
            .record(history::diff_span(&self.rope.to_string(), text));
        self.rope = Rope::from_str(text);
        self.tree = None;
        self.kind = self.classify();
    }

    /// Applies one edit to the rope and tells the tree about it, so the next parse is incremental.
    ///
    /// The byte range must lie on character boundaries inside the document; `lsp/convert.rs`
    /// guarantees that for client edits.
    pub fn apply_edit(&mut self, edit: &TextEdit) {
        debug_assert!(edit.start_byte <= edit.end_byte && edit.end_byte <= self.rope.len_bytes());
        let start_position = self.point_at(edit.start_byte);
        let old_end_position = self.point_at(edit.end_byte);
        let start_char_idx = self.rope.byte_to_char(edit.start_byte);
        let end_char_idx = self.rope.byte_to_char(edit.end_byte);
        self.rope.remove(start_char_idx..end_char_idx);
        self.rope.insert(start_char_idx, &edit.text);
        let new_end_byte = edit.start_byte + edit.text.len();
        self.history.record(Span {
            start_byte: edit.start_byte,
            old_end_byte: edit.end_byte,
            new_end_byte,
        });
        let input_edit = InputEdit {
            start_byte: edit.start_byte,
            old_end_byte: edit.end_byte,
            new_end_byte,
            start_position,
            old_end_position,
            new_end_position: self.point_at(new_end_byte),
        };
        if let Some(tree) = self.tree.as_mut() {
            tree.edit(&input_edit);
        }
        // A document can turn binary (or grow past the cap) through edits; only re-sniff when the
        // edit touched the sniffed region or the size crossed the cap.
        if edit.start_byte < BINARY_SNIFF_BYTES || self.kind != DocumentKind::Binary {
            let kind = self.classify();
            if kind != DocumentKind::Text {
                self.tree = None;
            }
            self.kind = kind;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_character_across_the_binary_sniff_limit_is_no_problem() {
        // `é` takes bytes 8191 and 8192, across the limit; edits re-sniff the start.
        let text = format!(
            "{}é{}",
            "a".repeat(BINARY_SNIFF_BYTES - 1),
            "b\n".repeat(10)
        );
        let mut document = Document::new("file:///t.txt", "plaintext", 1, &text);
        assert_eq!(document.kind, DocumentKind::Text);
        document.apply_edit(&TextEdit {
            start_byte: 0,
            end_byte: 0,
            text: "x".to_owned(),
        });
        document.apply_edit(&TextEdit {
            start_byte: 1,
            end_byte: 1,
            text: "\0".to_owned(),
        });
        assert_eq!(document.kind, DocumentKind::Binary);
    }
}
