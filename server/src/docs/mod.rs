//! Document store: the text of every open document as a rope, its syntax tree and its version.
//!
//! This module owns applying edits (given as byte ranges) and keeping each tree in step with its
//! rope. It does not know LSP positions or encodings: `lsp/convert.rs` turns those into byte
//! offsets before anything here is called.

mod document;
mod history;
mod store;

pub use document::{Document, DocumentKind, TextEdit};
pub use history::{move_range, EditLog, Span};
pub use store::{DocumentStore, Error};
