//! Language registry and parsing: which tree-sitter grammar a document uses and how to feed it.
//!
//! This module owns the mapping from LSP `languageId`s and file extensions to grammars, and the
//! rope-chunk parse entry point. Queries (`grammars/queries/<lang>/*.scm`) are loaded by the
//! context builder through [`queries`]; this module compiles and runs them but does not interpret
//! their captures.

pub mod outline;
mod queries;

use ropey::Rope;
use std::time::Instant;

use tree_sitter::{ParseOptions, Parser, Tree};

pub use queries::{queries, query_sources, run_query, LanguageQueries, QueryMatch};

/// A language Wellspring has a grammar for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Language {
    Rust,
    Python,
    JavaScript,
    TypeScript,
    Tsx,
    Go,
    C,
    Cpp,
    Java,
    Lua,
}

impl Language {
    pub const ALL: [Language; 10] = [
        Language::Rust,
        Language::Python,
        Language::JavaScript,
        Language::TypeScript,
        Language::Tsx,
        Language::Go,
        Language::C,
        Language::Cpp,
        Language::Java,
        Language::Lua,
    ];

    /// Resolves an LSP `languageId` (as VS Code and Neovim send them).
    pub fn from_language_id(language_id: &str) -> Option<Language> {
        let language = match language_id {
            "rust" => Language::Rust,
            "python" => Language::Python,
            "javascript" | "javascriptreact" | "jsx" => Language::JavaScript,
            "typescript" => Language::TypeScript,
            "typescriptreact" | "tsx" => Language::Tsx,
            "go" => Language::Go,
            "c" => Language::C,
            "cpp" | "c++" | "cuda" => Language::Cpp,
            "java" => Language::Java,
            "lua" => Language::Lua,
            _ => return None,
        };
        Some(language)
    }

    /// Resolves a file path by its extension.
    pub fn from_path(path: &str) -> Option<Language> {
        let file_name = path.rsplit(['/', '\\']).next().unwrap_or(path);
        let extension = file_name.rsplit_once('.')?.1.to_ascii_lowercase();
        let language = match extension.as_str() {
            "rs" => Language::Rust,
            "py" | "pyi" | "pyw" => Language::Python,
            "js" | "mjs" | "cjs" | "jsx" => Language::JavaScript,
            "ts" | "mts" | "cts" => Language::TypeScript,
            "tsx" => Language::Tsx,
            "go" => Language::Go,
            "c" | "h" => Language::C,
            "cc" | "cpp" | "cxx" | "c++" | "hpp" | "hh" | "hxx" | "h++" | "cu" | "cuh" | "ipp" => {
                Language::Cpp
            }
            "java" => Language::Java,
            "lua" => Language::Lua,
            _ => return None,
        };
        Some(language)
    }

    /// Picks the language from the `languageId` first and falls back to the path's extension,
    /// because clients send ids like `plaintext` for files whose extension is telling.
    pub fn detect(language_id: &str, path: &str) -> Option<Language> {
        Language::from_language_id(language_id).or_else(|| Language::from_path(path))
    }

    /// The directory name under `grammars/queries/`.
    pub fn name(self) -> &'static str {
        match self {
            Language::Rust => "rust",
            Language::Python => "python",
            Language::JavaScript => "javascript",
            Language::TypeScript => "typescript",
            Language::Tsx => "tsx",
            Language::Go => "go",
            Language::C => "c",
            Language::Cpp => "cpp",
            Language::Java => "java",
            Language::Lua => "lua",
        }
    }

    pub fn grammar(self) -> tree_sitter::Language {
        match self {
            Language::Rust => tree_sitter_rust::LANGUAGE.into(),
            Language::Python => tree_sitter_python::LANGUAGE.into(),
            Language::JavaScript => tree_sitter_javascript::LANGUAGE.into(),
            Language::TypeScript => tree_sitter_typescript::LANGUAGE_TYPESCRIPT.into(),
            Language::Tsx => tree_sitter_typescript::LANGUAGE_TSX.into(),
            Language::Go => tree_sitter_go::LANGUAGE.into(),
            Language::C => tree_sitter_c::LANGUAGE.into(),
            Language::Cpp => tree_sitter_cpp::LANGUAGE.into(),
            Language::Java => tree_sitter_java::LANGUAGE.into(),
            Language::Lua => tree_sitter_lua::LANGUAGE.into(),
        }
    }

    /// A parser set up for this language.
    pub fn parser(self) -> Parser {
        let mut parser = Parser::new();
        parser
            .set_language(&self.grammar())
            .expect("bundled grammars are built against a compatible tree-sitter ABI");
        parser
    }
}

/// Parses `rope` by feeding the parser the rope's chunks, never a joined copy of the text.
///
/// `old_tree` must already have been `edit()`ed to match `rope`; tree-sitter then reuses every
/// subtree the edits did not touch. With a `deadline`, the parse gives up (returning `None` and
/// leaving the parser reset) once the deadline passes, so a caller on the typing path can finish
/// the work elsewhere.
pub fn parse_rope(
    parser: &mut Parser,
    rope: &Rope,
    old_tree: Option<&Tree>,
    deadline: Option<Instant>,
) -> Option<Tree> {
    let len_bytes = rope.len_bytes();
    let mut read_chunk = |byte_idx: usize, _point| -> &[u8] {
        if byte_idx >= len_bytes {
            return &[];
        }
        let (chunk, chunk_byte_idx, _, _) = rope.chunk_at_byte(byte_idx);
        &chunk.as_bytes()[byte_idx - chunk_byte_idx..]
    };
    let tree = match deadline {
        None => parser.parse_with_options(&mut read_chunk, old_tree, None),
        Some(deadline) => {
            let mut past_deadline = |_: &tree_sitter::ParseState| Instant::now() >= deadline;
            let options = ParseOptions::new().progress_callback(&mut past_deadline);
            parser.parse_with_options(&mut read_chunk, old_tree, Some(options))
        }
    };
    if tree.is_none() {
        // A cancelled parse would otherwise resume on the next call, whatever text it is given.
        parser.reset();
    }
    tree
}

/// Every node of `tree` in document order, one line each, indented by depth: its kind (quoted
/// when anonymous), the field it fills, its byte range and its start and end points (row:column).
/// Two trees print the same only if they have the same nodes at the same places, so tests compare
/// trees this way; `to_sexp` shows named nodes' kinds and fields only.
pub fn node_listing(tree: &Tree) -> String {
    use std::fmt::Write;
    let mut listing = String::new();
    let mut cursor = tree.walk();
    let mut depth = 0usize;
    loop {
        let node = cursor.node();
        let kind = if node.is_named() {
            node.kind().to_owned()
        } else {
            format!("{:?}", node.kind())
        };
        let field = cursor
            .field_name()
            .map(|name| format!(" {name}:"))
            .unwrap_or_default();
        let (start, end) = (node.start_position(), node.end_position());
        let missing = if node.is_missing() { " missing" } else { "" };
        let _ = writeln!(
            listing,
            "{:indent$}{kind}{field} {}..{} {}:{}-{}:{}{missing}",
            "",
            node.start_byte(),
            node.end_byte(),
            start.row,
            start.column,
            end.row,
            end.column,
            indent = depth * 2,
        );
        if cursor.goto_first_child() {
            depth += 1;
            continue;
        }
        while !cursor.goto_next_sibling() {
            if !cursor.goto_parent() {
                return listing;
            }
            depth -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_language_parses_a_trivial_file() {
        let samples = [
            (Language::Rust, "fn main() {}\n"),
            (Language::Python, "def f():\n    return 1\n"),
            (Language::JavaScript, "function f() { return 1; }\n"),
            (
                Language::TypeScript,
                "function f(x: number): number { return x; }\n",
            ),
            (Language::Tsx, "const a = <div>{1}</div>;\n"),
            (Language::Go, "package main\nfunc main() {}\n"),
            (Language::C, "int main(void) { return 0; }\n"),
            (Language::Cpp, "int main() { return 0; }\n"),
            (Language::Java, "class A { void f() {} }\n"),
            (Language::Lua, "local function f() return 1 end\n"),
        ];
        for (language, text) in samples {
            let rope = Rope::from_str(text);
            let tree = parse_rope(&mut language.parser(), &rope, None, None).expect("parse");
            assert!(
                !tree.root_node().has_error(),
                "{language:?}: {}",
                tree.root_node().to_sexp()
            );
        }
    }

    #[test]
    fn the_node_listing_tells_trees_apart_that_the_s_expression_does_not() {
        let parse = |text: &str| {
            let rope = Rope::from_str(text);
            parse_rope(&mut Language::Rust.parser(), &rope, None, None).expect("parse")
        };
        let (one, other) = (parse("fn a() {}\n"), parse("fn  a() {}\n"));
        assert_eq!(one.root_node().to_sexp(), other.root_node().to_sexp());
        assert_ne!(node_listing(&one), node_listing(&other));
        assert_eq!(
            node_listing(&one),
            "source_file 0..10 0:0-1:0\n\
             \x20 function_item 0..9 0:0-0:9\n\
             \x20   \"fn\" 0..2 0:0-0:2\n\
             \x20   identifier name: 3..4 0:3-0:4\n\
             \x20   parameters parameters: 4..6 0:4-0:6\n\
             \x20     \"(\" 4..5 0:4-0:5\n\
             \x20     \")\" 5..6 0:5-0:6\n\
             \x20   block body: 7..9 0:7-0:9\n\
             \x20     \"{\" 7..8 0:7-0:8\n\
             \x20     \"}\" 8..9 0:8-0:9\n"
        );
    }

    #[test]
    fn detection_prefers_language_id_then_extension() {
        assert_eq!(Language::detect("rust", "a.txt"), Some(Language::Rust));
        assert_eq!(
            Language::detect("plaintext", "src/a.tsx"),
            Some(Language::Tsx)
        );
        assert_eq!(Language::detect("plaintext", "README"), None);
        assert_eq!(Language::from_path("x/y/Z.HPP"), Some(Language::Cpp));
    }
}
