//! The tree-sitter queries Wellspring ships (`grammars/queries/<lang>/*.scm`), compiled once per
//! language and kept for the life of the process.
//!
//! This module owns loading and compiling the query files and running them over a rope. What the
//! captures mean for a prompt is decided by `context/`; the capture names are documented in
//! `grammars/queries/README.md`.

use std::ops::Range;
use std::sync::OnceLock;

use ropey::Rope;
use tree_sitter::{Node, Query, QueryCursor, StreamingIterator};

use super::Language;

/// The four queries of one language.
pub struct LanguageQueries {
    pub definitions: Query,
    pub references: Query,
    pub imports: Query,
    pub scopes: Query,
}

macro_rules! query_sources {
    ($dir:literal) => {
        [
            include_str!(concat!(
                "../../../grammars/queries/",
                $dir,
                "/definitions.scm"
            )),
            include_str!(concat!(
                "../../../grammars/queries/",
                $dir,
                "/references.scm"
            )),
            include_str!(concat!("../../../grammars/queries/", $dir, "/imports.scm")),
            include_str!(concat!("../../../grammars/queries/", $dir, "/scopes.scm")),
        ]
    };
}

/// The four files of one folder under `grammars/queries/`, as shipped.
fn folder_files(folder: &str) -> Option<[&'static str; 4]> {
    Some(match folder {
        "rust" => query_sources!("rust"),
        "python" => query_sources!("python"),
        "javascript" => query_sources!("javascript"),
        "typescript" => query_sources!("typescript"),
        "tsx" => query_sources!("tsx"),
        "go" => query_sources!("go"),
        "c" => query_sources!("c"),
        "cpp" => query_sources!("cpp"),
        "java" => query_sources!("java"),
        "lua" => query_sources!("lua"),
        _ => return None,
    })
}

/// A file whose first line is `; inherits: <folder>` is that folder's file of the same kind
/// followed by its own lines (TypeScript builds on JavaScript, TSX on TypeScript).
fn with_inherited(folder: &str, kind_idx: usize) -> String {
    let files = folder_files(folder)
        .unwrap_or_else(|| panic!("no bundled query folder {folder}: a build defect"));
    let own = files[kind_idx];
    match own
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("; inherits:"))
    {
        Some(base) => format!("{}\n{own}", with_inherited(base.trim(), kind_idx)),
        None => own.to_owned(),
    }
}

/// The source text of `language`'s queries: definitions, references, imports, scopes.
pub fn query_sources(language: Language) -> [String; 4] {
    std::array::from_fn(|kind_idx| with_inherited(language.name(), kind_idx))
}

fn compile(language: Language) -> LanguageQueries {
    let grammar = language.grammar();
    let [definitions, references, imports, scopes] = query_sources(language).map(|source| {
        Query::new(&grammar, &source).unwrap_or_else(|error| {
            // The queries are part of the binary and covered by a test for every language, so a
            // failure here is a build defect, not something a user can cause.
            panic!(
                "bundled {} query does not compile: {error}",
                language.name()
            )
        })
    });
    LanguageQueries {
        definitions,
        references,
        imports,
        scopes,
    }
}

/// The compiled queries of `language`, compiled on first use.
pub fn queries(language: Language) -> &'static LanguageQueries {
    static CACHE: [OnceLock<LanguageQueries>; Language::ALL.len()] =
        [const { OnceLock::new() }; Language::ALL.len()];
    let language_idx = Language::ALL
        .iter()
        .position(|it| *it == language)
        .expect("Language::ALL lists every language");
    CACHE[language_idx].get_or_init(|| compile(language))
}

/// One match of a query: each capture's index into the query's capture names, and its node.
pub struct QueryMatch<'tree> {
    pub pattern_idx: usize,
    pub captures: Vec<(u32, Node<'tree>)>,
}

/// Runs `query` over `node` (restricted to `byte_range` when given), reading text for predicates
/// from `rope`, and collects the matches in document order.
pub fn run_query<'tree>(
    query: &Query,
    node: Node<'tree>,
    rope: &Rope,
    byte_range: Option<Range<usize>>,
) -> Vec<QueryMatch<'tree>> {
    let mut cursor = QueryCursor::new();
    if let Some(byte_range) = byte_range {
        cursor.set_byte_range(byte_range);
    }
    let text_provider = |node: Node<'_>| {
        let range = node.byte_range();
        let end = range.end.min(rope.len_bytes());
        let start = range.start.min(end);
        rope.byte_slice(start..end)
            .chunks()
            .map(str::as_bytes)
            .collect::<Vec<_>>()
            .into_iter()
    };
    let mut matches = cursor.matches(query, node, text_provider);
    let mut collected = Vec::new();
    while let Some(found) = matches.next() {
        collected.push(QueryMatch {
            pattern_idx: found.pattern_index,
            captures: found
                .captures
                .iter()
                .map(|capture| (capture.index, capture.node))
                .collect(),
        });
    }
    collected
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inherited_queries_come_first_then_the_folders_own() {
        let [tsx_definitions, _, tsx_imports, _] = query_sources(Language::Tsx);
        let javascript_at = tsx_definitions.find("(function_declaration").unwrap();
        let typescript_at = tsx_definitions.find("(interface_declaration").unwrap();
        assert!(javascript_at < typescript_at, "{tsx_definitions}");
        assert!(tsx_imports.contains("(import_statement) @import"));
    }

    #[test]
    fn every_bundled_query_compiles() {
        let mut errors = Vec::new();
        for language in Language::ALL {
            for source in query_sources(language) {
                if let Err(error) = Query::new(&language.grammar(), &source) {
                    errors.push(format!("{}: {error}", language.name()));
                }
            }
        }
        assert!(errors.is_empty(), "{}", errors.join("\n"));
        for language in Language::ALL {
            let compiled = queries(language);
            for capture in compiled.definitions.capture_names() {
                assert!(
                    capture.starts_with("definition.")
                        || ["name", "body", "container"].contains(capture),
                    "{language:?} definitions: unexpected capture @{capture}"
                );
            }
            for capture in compiled.references.capture_names() {
                assert!(
                    ["call", "type", "qualifier"].contains(capture) || capture.starts_with('_'),
                    "{language:?} references: unexpected capture @{capture}"
                );
            }
            for capture in compiled.scopes.capture_names() {
                assert!(
                    ["scope.function", "scope.class", "body", "name"].contains(capture),
                    "{language:?} scopes: unexpected capture @{capture}"
                );
            }
        }
    }

    #[test]
    fn manifest_matches_cargo_lock() {
        let manifest: toml::Value =
            toml::from_str(include_str!("../../../grammars/manifest.toml")).expect("manifest");
        let lock = include_str!("../../../Cargo.lock");
        let locked_version = |crate_name: &str| {
            let marker = format!("name = \"{crate_name}\"\nversion = \"");
            let start = lock.find(&marker).map(|idx| idx + marker.len())?;
            let end = lock[start..].find('"')? + start;
            Some(lock[start..end].to_owned())
        };
        let languages = manifest["languages"].as_table().expect("languages table");
        for language in Language::ALL {
            let entry = &languages[language.name()];
            let crate_name = entry["crate"].as_str().expect("crate");
            assert_eq!(
                locked_version(crate_name).as_deref(),
                entry["version"].as_str(),
                "{crate_name}"
            );
        }
        assert_eq!(
            locked_version("tree-sitter").as_deref(),
            manifest["tree_sitter"].as_str()
        );
    }
}
