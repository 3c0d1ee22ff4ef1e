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
use crate::text;

/// The code a feature works on: the selection, or when the selection is a cursor (empty, or one
/// character, as editors whose cursor is a one-character selection send it) the code around it:
/// the smallest enclosing function-like scope, else the statement or definition that starts on
/// the cursor's line, else the cursor's line. Whatever is chosen starts at the beginning of its
/// first line, so indentation stays whole.
pub fn target_range(document: &Document, selection: Range<usize>) -> Range<usize> {
    let rope = &document.rope;
    if !is_cursor(document, &selection) {
        return selection;
    }
    let cursor_byte = selection.start.min(rope.len_bytes());
    let line_idx = rope.byte_to_line(cursor_byte);
    let line_start_byte = rope.line_to_byte(line_idx);
    if let (Some(language), Some(tree)) = (document.language, document.tree.as_ref()) {
        let scopes = crate::syntax::outline::scopes_touching(language, rope, tree, cursor_byte);
        if let Some(scope) = scopes
            .iter()
            .filter(|scope| !scope.is_class)
            .min_by_key(|scope| scope.byte_range.len())
        {
            return text::line_start_of(rope, scope.byte_range.start)..scope.byte_range.end;
        }
        // A cursor in a line's indentation stands for the line's first character.
        let indent_len = rope
            .line(line_idx)
            .bytes()
            .take_while(|byte| *byte == b' ' || *byte == b'\t')
            .count();
        let code_byte = cursor_byte.max(line_start_byte + indent_len);
        if let Some(statement) = statement_starting_on_line(tree, code_byte, line_idx) {
            return line_start_byte..statement.end_byte();
        }
    }
    let end_byte = if line_idx + 1 < rope.len_lines() {
        rope.line_to_byte(line_idx + 1)
    } else {
        rope.len_bytes()
    };
    line_start_byte..end_byte
}

/// Whether `selection` is a cursor rather than a choice of code. Clients send a cursor in several
/// shapes: empty (VS Code), one character (Helix), the word or token under it (Kate, Emacs'
/// eglot, and Helix after a word motion, which selects the word and the space after it), or
/// from it to the end of its line (Vim's yegappan/lsp); all of them act on the code around the
/// cursor. A selection that starts where its line's code starts, or spans lines, is a choice.
fn is_cursor(document: &Document, selection: &Range<usize>) -> bool {
    let rope = &document.rope;
    if selection.start >= selection.end {
        return true;
    }
    if selection.end > rope.len_bytes() {
        return false;
    }
    let slice = rope.byte_slice(selection.clone());
    if slice.len_chars() == 1 {
        return true;
    }
    // Leave out the line breaks the selection ends with; what is left must hold none, and only
    // that (at most one line) is copied out.
    let mut chars = slice.chars_at(slice.len_chars());
    let mut n_trailing_bytes = 0;
    while let Some(character) = chars.prev() {
        if character != '\n' && character != '\r' {
            break;
        }
        n_trailing_bytes += character.len_utf8();
    }
    let content = rope.byte_slice(selection.start..selection.end - n_trailing_bytes);
    if content.chunks().any(|chunk| chunk.contains('\n')) {
        return false;
    }
    let trimmed = content.to_string();
    let trimmed = trimmed.as_str();
    let line_idx = rope.byte_to_line(selection.start);
    // Blank, such as the indentation a word motion selects.
    if trimmed.trim().is_empty() {
        return true;
    }
    let line = rope.line(line_idx).to_string();
    let line_start_byte = rope.line_to_byte(line_idx);
    let code_start_byte = line_start_byte + line.len() - line.trim_start_matches([' ', '\t']).len();
    let line_end_byte = line_start_byte + line.trim_end_matches(['\n', '\r']).len();
    if selection.start > code_start_byte && selection.start + trimmed.len() == line_end_byte {
        return true;
    }
    // Inside one token, once the blanks around it are left out.
    let start_byte = selection.start + (trimmed.len() - trimmed.trim_start().len());
    let end_byte = selection.start + trimmed.trim_end().len();
    document.tree.as_ref().is_some_and(|tree| {
        tree.root_node()
            .descendant_for_byte_range(start_byte, end_byte)
            .is_some_and(|node| {
                node.child_count() == 0
                    && node.start_byte() <= start_byte
                    && end_byte <= node.end_byte()
            })
    })
}

/// The largest node around `byte_idx` that starts on line `line_idx`, short of the whole file:
/// the statement or definition the line begins.
fn statement_starting_on_line(
    tree: &tree_sitter::Tree,
    byte_idx: usize,
    line_idx: usize,
) -> Option<tree_sitter::Node<'_>> {
    let root = tree.root_node();
    let mut node = root.named_descendant_for_byte_range(byte_idx, byte_idx)?;
    let mut found = None;
    while node.id() != root.id()
        && node.start_position().row == line_idx
        && !is_statement_list(node)
    {
        found = Some(node);
        node = node.parent()?;
    }
    found
}

/// Whether `node` is a list of statements (a block, a class body) rather than one: two of its
/// children start on different lines at the column where its first child starts.
fn is_statement_list(node: tree_sitter::Node<'_>) -> bool {
    let mut cursor = node.walk();
    let mut children = node.named_children(&mut cursor);
    let Some(first) = children.next() else {
        return false;
    };
    let first_start = first.start_position();
    children.any(|child| {
        let start = child.start_position();
        start.row != first_start.row && start.column == first_start.column
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docs::DocumentStore;

    /// Checks the code chosen for a selection marked `$0…$0` (or a cursor `$0`) in `fixture`.
    fn check(language_id: &str, fixture: &str, expected: &str) {
        let marks: Vec<usize> = fixture.match_indices("$0").map(|(idx, _)| idx).collect();
        let text = fixture.replace("$0", "");
        let selection = match marks[..] {
            [cursor] => cursor..cursor,
            [start, end] => start..end - 2,
            _ => panic!("one or two $0 marks"),
        };
        let store = DocumentStore::new();
        let (document, _) = store.open("file:///t/f", language_id, 1, &text);
        let target = target_range(&document, selection);
        assert_eq!(&text[target], expected, "{fixture}");
    }

    const PYTHON: &str = "import os\n\nclass Stats:\n    unit = 'ms'\n\n    def mean(self, values):\n        total = sum(values)\n        return total / len(values)\n\nprint(Stats().mean([1]))\n";

    #[test]
    fn a_cursor_or_one_character_selects_the_code_around_it() {
        let function = "    def mean(self, values):\n        total = sum(values)\n        return total / len(values)";
        let cases = [
            // An empty cursor, and a one-character selection, inside a method.
            ("        total = $0sum(values)", function),
            ("        total = $0s$0um(values)", function),
            // On the method's header, and in its indentation.
            ("    def $0mean(self, values):", function),
            ("$0        return total / len(values)", function),
            // Outside any function: the statement or definition starting on the line.
            ("    unit = $0'ms'", "    unit = 'ms'"),
            ("print(Stats().$0mean([1]))", "print(Stats().mean([1]))"),
            ("class $0Stats:", &PYTHON[11..PYTHON.len() - 27]),
            ("import $0os", "import os"),
        ];
        for (line, expected) in cases {
            let unmarked = line.replace("$0", "");
            let fixture = PYTHON.replacen(&unmarked, line, 1);
            assert_ne!(fixture, PYTHON, "{line} is in the fixture");
            check("python", &fixture, expected);
        }
    }

    #[test]
    fn a_real_selection_is_kept_and_unparsed_text_falls_back_to_the_line() {
        check("python", "x = 1\n$0y = 2$0\n", "y = 2");
        check("python", "x = 1\n$0y = 2\nz$0 = 3\n", "y = 2\nz");
        // A multi-byte character is still one character.
        check("plaintext", "first\nsé$0é$0cond\nthird\n", "séécond\n");
        check("plaintext", "first\n$0\nthird\n", "\n");
    }

    #[test]
    fn a_word_or_the_rest_of_a_line_is_a_cursor_as_other_clients_send_it() {
        let function = "    def mean(self, values):\n        total = sum(values)\n        return total / len(values)";
        let cases = [
            // The token under the cursor (Kate, eglot).
            ("        total = $0sum$0(values)", function),
            // From the cursor to the end of its line (Vim).
            ("        total = $0sum(values)$0", function),
            // A selection from where the line's code starts is a choice, kept as it is.
            ("        $0total = sum(values)$0", "total = sum(values)"),
            // Two tokens are a choice too.
            ("        total = $0sum(values$0)", "sum(values"),
            // A word with the space after it, and bare indentation, as Helix's `w` selects them.
            ("        $0total $0= sum(values)", function),
            ("$0        $0total = sum(values)", function),
        ];
        for (line, expected) in cases {
            let unmarked = line.replace("$0", "");
            let fixture = PYTHON.replacen(&unmarked, line, 1);
            check("python", &fixture, expected);
        }
    }
}
