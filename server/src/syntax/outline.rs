//! What a file declares, as prompt-ready text: definitions with their signatures, doc comments and
//! container headers (bodies elided), the import lines, and the headers of the scopes around a
//! position. Everything here is computed from a rope and its tree with the bundled queries.
//!
//! The workspace index stores these summaries per file; the prompt builder computes them for the
//! current document. Neither decides here what goes into a prompt.

use std::collections::HashSet;
use std::ops::Range;

use ropey::Rope;
use tree_sitter::{Node, Tree};

use crate::syntax::{self, Language};
use crate::text;

/// Longest summary of a class-like definition, in lines; longer ones end in an elision line.
const MAX_CLASS_SUMMARY_LINES: usize = 40;
/// Longest summary of a definition without a body (a prototype, a constant).
const MAX_PLAIN_SUMMARY_LINES: usize = 12;
/// Most doc-comment lines kept above a definition.
const MAX_DOC_LINES: usize = 4;
/// Most lines of a scope header (a long signature wraps over several).
const MAX_HEADER_LINES: usize = 12;
/// Up to this many definitions are summarised with one ranged scopes query each; more share one
/// query over the whole file.
const MAX_RANGED_SCOPE_LOOKUPS: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DefinitionKind {
    Function,
    Method,
    Class,
    Struct,
    Enum,
    Trait,
    Interface,
    Type,
    Constant,
    Module,
    Macro,
}

impl DefinitionKind {
    fn from_capture(capture_name: &str) -> Option<DefinitionKind> {
        let kind = match capture_name.strip_prefix("definition.")? {
            "function" => DefinitionKind::Function,
            "method" => DefinitionKind::Method,
            "class" => DefinitionKind::Class,
            "struct" => DefinitionKind::Struct,
            "enum" => DefinitionKind::Enum,
            "trait" => DefinitionKind::Trait,
            "interface" => DefinitionKind::Interface,
            "type" => DefinitionKind::Type,
            "constant" => DefinitionKind::Constant,
            "module" => DefinitionKind::Module,
            "macro" => DefinitionKind::Macro,
            _ => return None,
        };
        Some(kind)
    }

    /// Types are shown whole (fields matter); functions are shown as signatures.
    pub fn is_type_like(self) -> bool {
        matches!(
            self,
            DefinitionKind::Class
                | DefinitionKind::Struct
                | DefinitionKind::Enum
                | DefinitionKind::Trait
                | DefinitionKind::Interface
                | DefinitionKind::Type
                | DefinitionKind::Module
        )
    }
}

/// One definition in a file, summarised for a prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Definition {
    pub name: String,
    pub kind: DefinitionKind,
    /// The type or module the definition belongs to (`Foo` for `impl Foo { fn new() }`).
    pub container: Option<String>,
    /// The definition with its doc comments and attributes, as bytes of the file.
    pub byte_range: Range<usize>,
    /// First and last line of `byte_range` (0-based, inclusive).
    pub start_line: usize,
    pub end_line: usize,
    /// Container headers, doc comments and the signature, with bodies elided; dedented.
    pub summary: String,
    /// How many of the summary's first lines are container headers (`impl Foo {`).
    pub n_container_lines: usize,
}

/// A scope around a position whose header stays in the prompt when its body is cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub is_class: bool,
    pub name: Option<String>,
    pub byte_range: Range<usize>,
    /// The header's lines (0-based, end exclusive): from the scope's first line up to the line
    /// where the body starts (included when the body opens on it, as in `fn f() {`).
    pub header_lines: Range<usize>,
}

pub(crate) fn node_text(rope: &Rope, node: Node<'_>) -> String {
    text::slice(rope, node.byte_range())
}

/// Wrappers that belong to a definition: `export`, decorators, templates, and one-spec groups
/// such as Go's `type X struct` or a `const x = …` declaration.
///
/// `Node::parent` descends from the root on every call, which is quadratic over a file with
/// thousands of top-level definitions; so the parent is only asked for when the text says a
/// wrapper is possible (something before the node on its line, or a decorator or template line
/// above it).
fn outer_node<'tree>(rope: &Rope, node: Node<'tree>) -> Node<'tree> {
    let row = node.start_position().row;
    let line_head = text::slice(rope, rope.line_to_byte(row)..node.start_byte());
    let previous_line = if row > 0 {
        text::lines(rope, row - 1..row)
    } else {
        String::new()
    };
    let previous = previous_line.trim_start();
    let may_be_wrapped = !line_head.trim().is_empty()
        || previous.starts_with('@')
        || previous.starts_with("template")
        || previous.starts_with("export");
    if !may_be_wrapped {
        return node;
    }
    let mut outer = node;
    while let Some(parent) = outer.parent() {
        let wraps = match parent.kind() {
            "decorated_definition" | "export_statement" | "template_declaration" => true,
            "type_declaration" | "const_declaration" | "var_declaration" => {
                let mut cursor = parent.walk();
                parent
                    .named_children(&mut cursor)
                    .filter(|child| !child.kind().contains("comment"))
                    .count()
                    == 1
            }
            _ => false,
        };
        if !wraps {
            break;
        }
        outer = parent;
    }
    outer
}

/// The first line of the doc comments and attributes directly above line `row`, read from the
/// text (asking the tree for previous siblings is linear in the number of siblings).
fn doc_start_line(rope: &Rope, row: usize) -> usize {
    let mut start_line = row;
    while start_line > 0 {
        let line = text::lines(rope, start_line - 1..start_line);
        let line = line.trim();
        let is_doc = ["//", "#", "--", "/*", "*", "@"]
            .iter()
            .any(|marker| line.starts_with(marker))
            && !line.starts_with("#include")
            && !line.starts_with("#define")
            && !line.starts_with("#if")
            && !line.starts_with("#endif")
            && !line.starts_with("#else");
        if !is_doc {
            break;
        }
        start_line -= 1;
    }
    start_line
}

fn indentation_width(line: &str) -> usize {
    line.len() - line.trim_start_matches([' ', '\t']).len()
}

/// Removes the common indentation of the non-blank lines.
pub(crate) fn dedent(text: &str) -> String {
    let common = text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(indentation_width)
        .min()
        .unwrap_or(0);
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        out.push_str(line.get(common..).unwrap_or(line.trim_start()));
        out.push('\n');
    }
    out
}

/// What replaces an elided body, by language.
fn elided_body(language: Language) -> &'static str {
    match language {
        Language::Python => "...",
        Language::Lua => "...",
        _ => "{ ... }",
    }
}

struct RawDefinition<'tree> {
    kind: DefinitionKind,
    node: Node<'tree>,
    name: Node<'tree>,
    body: Option<Node<'tree>>,
    container: Option<Node<'tree>>,
}

fn raw_definitions<'tree>(
    language: Language,
    rope: &Rope,
    root: Node<'tree>,
) -> Vec<RawDefinition<'tree>> {
    let query = &syntax::queries(language).definitions;
    raw_from_matches(query, syntax::run_query(query, root, rope, None))
}

/// The definitions among `matches` of `query` (the definitions query, or the patterns of the
/// outline query after its imports), in match order.
fn raw_from_matches<'tree>(
    query: &tree_sitter::Query,
    matches: impl IntoIterator<Item = syntax::QueryMatch<'tree>>,
) -> Vec<RawDefinition<'tree>> {
    let names = query.capture_names();
    let mut raw: Vec<RawDefinition<'tree>> = Vec::new();
    let mut seen = HashSet::new();
    for found in matches {
        let mut definition = None;
        let mut name = None;
        let mut body = None;
        let mut container = None;
        for (capture_idx, node) in &found.captures {
            match names[*capture_idx as usize] {
                "name" => name = Some(*node),
                "body" => body = Some(*node),
                "container" => container = Some(*node),
                other => {
                    if let Some(kind) = DefinitionKind::from_capture(other) {
                        definition = Some((kind, *node));
                    }
                }
            }
        }
        let (Some((kind, node)), Some(name)) = (definition, name) else {
            continue;
        };
        // Several patterns can match one node (a `const` holding an arrow function is both a
        // constant and a function); the first pattern in the file is the more specific one.
        if !seen.insert(node.id()) {
            continue;
        }
        raw.push(RawDefinition {
            kind,
            node,
            name,
            body,
            container,
        });
    }
    raw
}

/// Every definition the bundled query finds in the file, in document order.
pub fn definitions(language: Language, rope: &Rope, tree: &Tree) -> Vec<Definition> {
    definitions_matching(language, rope, tree, |_| true)
}

/// The imports and the (not yet summarised) definitions of one file, read in one walk over its
/// tree: what a prompt needs from the whole current file.
pub(crate) struct FileOutline<'tree> {
    /// As [`imports`] gives them.
    pub imports: Vec<Range<usize>>,
    raw: Vec<RawDefinition<'tree>>,
}

/// Reads `tree`'s imports and definitions with the joined outline query.
pub(crate) fn file_outline<'tree>(
    language: Language,
    rope: &Rope,
    tree: &'tree Tree,
) -> FileOutline<'tree> {
    let queries = syntax::queries(language);
    let query = &queries.outline;
    let names = query.capture_names();
    let (import_matches, definition_matches): (Vec<_>, Vec<_>) =
        syntax::run_query(query, tree.root_node(), rope, None)
            .into_iter()
            .partition(|found| found.pattern_idx < queries.n_outline_import_patterns);
    let mut imports = Vec::new();
    for found in import_matches {
        for (capture_idx, node) in &found.captures {
            if names[*capture_idx as usize] == "import" {
                imports.push(node.byte_range());
            }
        }
    }
    imports.sort_by_key(|range| range.start);
    imports.dedup();
    FileOutline {
        imports,
        raw: raw_from_matches(query, definition_matches),
    }
}

/// [`definitions_matching`] over a file already read with [`file_outline`].
pub(crate) fn outline_definitions_matching(
    language: Language,
    rope: &Rope,
    tree: &Tree,
    outline: &FileOutline<'_>,
    wanted: impl Fn(&str) -> bool,
) -> Vec<Definition> {
    summarize_matching(language, rope, tree, &outline.raw, wanted)
}

/// The definitions whose name `wanted` accepts; only those are summarised, which is what makes
/// looking up a few names in a large current file cheap.
pub fn definitions_matching(
    language: Language,
    rope: &Rope,
    tree: &Tree,
    wanted: impl Fn(&str) -> bool,
) -> Vec<Definition> {
    let raw = raw_definitions(language, rope, tree.root_node());
    summarize_matching(language, rope, tree, &raw, wanted)
}

fn summarize_matching(
    language: Language,
    rope: &Rope,
    tree: &Tree,
    raw: &[RawDefinition<'_>],
    wanted: impl Fn(&str) -> bool,
) -> Vec<Definition> {
    let chosen: Vec<&RawDefinition<'_>> = raw
        .iter()
        .filter(|it| wanted(&node_text(rope, it.name)))
        .collect();
    if chosen.is_empty() {
        return Vec::new();
    }
    let function_bodies: Vec<Range<usize>> = raw
        .iter()
        .filter(|it| !it.kind.is_type_like())
        .filter_map(|it| it.body.map(|body| body.byte_range()))
        .collect();
    // A few definitions (the names a prompt looks up) ask for the classes around each of them,
    // which reads a few paths of the tree; a whole outline (the index) reads every scope once.
    if chosen.len() <= MAX_RANGED_SCOPE_LOOKUPS {
        return chosen
            .into_iter()
            .map(|it| {
                let class_scopes = class_scopes_around(language, rope, tree, it.node.start_byte());
                summarize(language, rope, it, &class_scopes, &function_bodies)
            })
            .collect();
    }
    let class_scopes: Vec<Scope> = scopes(language, rope, tree, None)
        .into_iter()
        .filter(|scope| scope.is_class)
        .collect();
    chosen
        .into_iter()
        .map(|it| summarize(language, rope, it, &class_scopes, &function_bodies))
        .collect()
}

fn summarize(
    language: Language,
    rope: &Rope,
    raw: &RawDefinition<'_>,
    class_scopes: &[Scope],
    function_bodies: &[Range<usize>],
) -> Definition {
    let outer = outer_node(rope, raw.node);
    let start_line = doc_start_line(rope, outer.start_position().row);
    let end_line = outer.end_position().row;
    let node_range = raw.node.byte_range();
    let enclosing: Vec<&Scope> = class_scopes
        .iter()
        .filter(|scope| {
            scope.byte_range.start < node_range.start && node_range.end <= scope.byte_range.end
        })
        .filter(|scope| scope.header_lines.end <= start_line)
        .collect();

    let mut text = String::new();
    for scope in &enclosing {
        text.push_str(&text::lines(rope, scope.header_lines.clone()));
    }
    let n_container_lines = text.lines().count();
    // A long doc comment keeps its first lines, which are the summary.
    let outer_row = outer.start_position().row;
    text.push_str(&text::lines(
        rope,
        start_line..(start_line + MAX_DOC_LINES).min(outer_row),
    ));
    let own_start_byte = rope.line_to_byte(outer_row);
    if raw.kind.is_type_like() {
        let nested: Vec<Range<usize>> = function_bodies
            .iter()
            .filter(|body| node_range.start <= body.start && body.end <= node_range.end)
            .cloned()
            .collect();
        let own = elide_ranges(
            rope,
            own_start_byte..text::line_end_byte(rope, end_line),
            &nested,
            elided_body(language),
        );
        text.push_str(&truncate_lines(&own, MAX_CLASS_SUMMARY_LINES));
    } else if let Some(body) = raw.body {
        text.push_str(&function_signature(language, rope, own_start_byte, body));
    } else {
        let own = text::slice(rope, own_start_byte..text::line_end_byte(rope, end_line));
        text.push_str(&truncate_lines(&own, MAX_PLAIN_SUMMARY_LINES));
    }
    let container = raw
        .container
        .map(|node| last_path_segment(&node_text(rope, node)))
        .or_else(|| enclosing.last().and_then(|scope| scope.name.clone()));
    Definition {
        name: node_text(rope, raw.name),
        kind: raw.kind,
        container,
        byte_range: rope.line_to_byte(start_line)..outer.end_byte(),
        start_line,
        end_line,
        summary: dedent(&text),
        n_container_lines,
    }
}

/// `a::b::Foo` → `Foo`, `pkg.Foo` → `Foo`, `*Foo` → `Foo`.
pub(crate) fn last_path_segment(text: &str) -> String {
    let segment = text
        .rsplit([':', '.', '*', '&', ' ', '<'])
        .find(|segment| !segment.is_empty())
        .unwrap_or(text);
    segment.trim_end_matches('>').to_owned()
}

/// The text from `start_byte` up to the body, with the body replaced; Python keeps a docstring.
fn function_signature(
    language: Language,
    rope: &Rope,
    start_byte: usize,
    body: Node<'_>,
) -> String {
    let header = text::slice(rope, start_byte..body.start_byte());
    let header = header.trim_end();
    let mut text = String::from(header);
    if language == Language::Python {
        let docstring = body
            .named_child(0)
            .filter(|first| first.kind() == "expression_statement")
            .filter(|first| first.named_child(0).is_some_and(|it| it.kind() == "string"));
        if let Some(docstring) = docstring {
            let indent = " ".repeat(docstring.start_position().column);
            let doc = node_text(rope, docstring);
            text.push('\n');
            text.push_str(&indent);
            text.push_str(truncate_lines(&doc, MAX_DOC_LINES).trim_end_matches('\n'));
            text.push('\n');
            text.push_str(&indent);
            text.push_str("...\n");
            return text;
        }
    }
    text.push(' ');
    text.push_str(elided_body(language));
    if language == Language::Lua {
        text.push_str(" end");
    }
    text.push('\n');
    text
}

/// `range` of the rope with each of `elided` (sorted, disjoint or nested) replaced by `placeholder`.
fn elide_ranges(
    rope: &Rope,
    range: Range<usize>,
    elided: &[Range<usize>],
    placeholder: &str,
) -> String {
    let mut out = String::new();
    let mut position = range.start;
    for body in elided {
        if body.start < position || body.end > range.end {
            continue;
        }
        out.push_str(&text::slice(rope, position..body.start));
        out.push_str(placeholder);
        position = body.end;
    }
    out.push_str(&text::slice(rope, position..range.end));
    out
}

fn truncate_lines(text: &str, max_lines: usize) -> String {
    let mut out = String::new();
    for (line_idx, line) in text.lines().enumerate() {
        if line_idx == max_lines {
            let indent = &line[..indentation_width(line)];
            out.push_str(indent);
            out.push_str("...\n");
            break;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Byte ranges of the file's import statements, in document order.
pub fn imports(language: Language, rope: &Rope, tree: &Tree) -> Vec<Range<usize>> {
    let query = &syntax::queries(language).imports;
    let names = query.capture_names();
    let mut ranges = Vec::new();
    for found in syntax::run_query(query, tree.root_node(), rope, None) {
        for (capture_idx, node) in &found.captures {
            if names[*capture_idx as usize] == "import" {
                ranges.push(node.byte_range());
            }
        }
    }
    ranges.sort_by_key(|range| range.start);
    ranges.dedup();
    ranges
}

/// Scopes (functions, classes, impls, modules) of the file, or only those containing
/// `around_byte`, outermost first.
pub fn scopes(
    language: Language,
    rope: &Rope,
    tree: &Tree,
    around_byte: Option<usize>,
) -> Vec<Scope> {
    let query_range = around_byte.map(|byte_idx| byte_idx..byte_idx + 1);
    scopes_matching(language, rope, tree, query_range, |body| {
        around_byte.is_none_or(|byte_idx| body_contains(body, byte_idx))
    })
}

/// The scopes whose node touches `byte_idx` (starts at or before it and ends at or after it,
/// headers included), outermost first: the same as filtering the whole file's [`scopes`], read
/// only from the nodes around `byte_idx`.
pub fn scopes_touching(
    language: Language,
    rope: &Rope,
    tree: &Tree,
    byte_idx: usize,
) -> Vec<Scope> {
    // A node that ends at `byte_idx` does not reach into `byte_idx..`, so the query starts a byte
    // earlier.
    let query_range = byte_idx.saturating_sub(1)..byte_idx + 1;
    scopes_matching(language, rope, tree, Some(query_range), |_| true)
        .into_iter()
        .filter(|scope| scope.byte_range.start <= byte_idx && byte_idx <= scope.byte_range.end)
        .collect()
}

/// The class-like scopes whose node contains `byte_idx`, outermost first: the same scopes, in the
/// same order, as filtering the whole file's [`scopes`], read from the paths through `byte_idx`.
fn class_scopes_around(
    language: Language,
    rope: &Rope,
    tree: &Tree,
    byte_idx: usize,
) -> Vec<Scope> {
    scopes_matching(language, rope, tree, Some(byte_idx..byte_idx + 1), |_| true)
        .into_iter()
        .filter(|scope| scope.is_class)
        .filter(|scope| scope.byte_range.start <= byte_idx && byte_idx < scope.byte_range.end)
        .collect()
}

/// Scopes whose body `keep` accepts, from the whole file or from the nodes in `byte_range`.
fn scopes_matching(
    language: Language,
    rope: &Rope,
    tree: &Tree,
    byte_range: Option<Range<usize>>,
    keep: impl Fn(Node<'_>) -> bool,
) -> Vec<Scope> {
    let query = &syntax::queries(language).scopes;
    let names = query.capture_names();
    let mut found_scopes: Vec<Scope> = Vec::new();
    let mut seen_bodies = HashSet::new();
    for found in syntax::run_query(query, tree.root_node(), rope, byte_range) {
        let mut scope = None;
        let mut body = None;
        let mut name = None;
        for (capture_idx, node) in &found.captures {
            match names[*capture_idx as usize] {
                "scope.function" => scope = Some((false, *node)),
                "scope.class" => scope = Some((true, *node)),
                "body" => body = Some(*node),
                "name" => name = Some(node_text(rope, *node)),
                _ => {}
            }
        }
        let (Some((is_class, node)), Some(body)) = (scope, body) else {
            continue;
        };
        if !keep(body) {
            continue;
        }
        if !seen_bodies.insert(body.id()) {
            continue;
        }
        let first_line = outer_node(rope, node).start_position().row;
        let body_start = body.start_position();
        let body_opens_on_its_line = {
            let line_start = rope.line_to_byte(body_start.row);
            !text::slice(rope, line_start..body.start_byte())
                .trim()
                .is_empty()
        };
        let header_end = if body_opens_on_its_line {
            body_start.row + 1
        } else {
            body_start.row
        };
        let header_end = header_end
            .max(first_line + 1)
            .min(first_line + MAX_HEADER_LINES);
        found_scopes.push(Scope {
            is_class,
            name,
            byte_range: node.byte_range(),
            header_lines: first_line..header_end,
        });
    }
    found_scopes.sort_by_key(|scope| {
        (
            scope.byte_range.start,
            std::cmp::Reverse(scope.byte_range.end),
        )
    });
    found_scopes
}

/// Whether `byte_idx` lies inside `body` (on its header the scope is not "around" yet).
/// Indentation-delimited bodies (Python blocks) have no closing token, so their end is inside.
fn body_contains(body: Node<'_>, byte_idx: usize) -> bool {
    let closes_with_token = body.kind() != "block"
        || body.child_count() > 0 && {
            let last = body.child(body.child_count() - 1).expect("child_count > 0");
            !last.is_named() && matches!(last.kind(), "}" | "end")
        };
    if closes_with_token {
        body.start_byte() < byte_idx && byte_idx < body.end_byte()
    } else {
        body.start_byte() <= byte_idx && byte_idx <= body.end_byte()
    }
}
