//! Editor features built from the document store, the context builder and the engine: inline
//! suggestions, code actions and chat answers.
//!
//! Knows nothing of LSP: positions are byte offsets, results are domain types that `lsp/` converts.
//! Owns the prompts for actions and chat and the parsing of the model's answers into edits; leaves
//! prompt *context* (what surrounds the cursor, definitions) to `context/` and inference to `engine/`.

pub mod actions;
pub mod chat;
pub mod completion;

use std::ops::Range;

use crate::docs::Document;
use crate::syntax::Language;

/// The code a feature works on: the selection, or when it is empty the smallest enclosing
/// function-like scope, or the cursor's line.
pub fn target_range(document: &Document, selection: Range<usize>) -> Range<usize> {
    if selection.start < selection.end {
        return selection;
    }
    let rope = &document.rope;
    let cursor_byte = selection.start.min(rope.len_bytes());
    if let (Some(language), Some(tree)) = (document.language, document.tree.as_ref()) {
        let scopes = crate::context::outline::scopes(language, rope, tree, Some(cursor_byte));
        if let Some(scope) = scopes
            .iter()
            .filter(|scope| {
                !scope.is_class
                    && scope.byte_range.start <= cursor_byte
                    && cursor_byte <= scope.byte_range.end
            })
            .min_by_key(|scope| scope.byte_range.len())
        {
            // Start at the beginning of the scope's first line so indentation stays whole.
            let line_start = rope.line_to_byte(rope.byte_to_line(scope.byte_range.start));
            return line_start..scope.byte_range.end;
        }
    }
    let line_idx = rope.byte_to_line(cursor_byte);
    let start_byte = rope.line_to_byte(line_idx);
    let end_byte = if line_idx + 1 < rope.len_lines() {
        rope.line_to_byte(line_idx + 1)
    } else {
        rope.len_bytes()
    };
    start_byte..end_byte
}

/// The fence name a model expects for a language.
pub fn fence_name(language: Option<Language>) -> &'static str {
    match language {
        Some(Language::Rust) => "rust",
        Some(Language::Python) => "python",
        Some(Language::JavaScript) => "javascript",
        Some(Language::TypeScript) => "typescript",
        Some(Language::Tsx) => "tsx",
        Some(Language::Go) => "go",
        Some(Language::C) => "c",
        Some(Language::Cpp) => "cpp",
        Some(Language::Java) => "java",
        Some(Language::Lua) => "lua",
        None => "",
    }
}

fn slice(document: &Document, byte_range: Range<usize>) -> String {
    let rope = &document.rope;
    let end_byte = byte_range.end.min(rope.len_bytes());
    let start_byte = byte_range.start.min(end_byte);
    rope.byte_slice(start_byte..end_byte).to_string()
}
