//! The text around the cursor, cut to a token budget at syntax boundaries: the prefix starts and
//! the suffix ends on a line where no syntax node is split, except the scopes around the cursor,
//! whose headers are put back above the prefix (`context::build` does that).
//!
//! Invariant: the token counts that decide the cuts never include the cursor's line before the
//! cursor, so typing on that line moves a cut only when the tree's shape around it changes.

use std::ops::Range;

use ropey::Rope;
use std::cell::RefCell;
use std::collections::HashMap;

use tree_sitter::{Node, Tree};

use crate::engine::TokenCounter;
use crate::text;

/// Where the prefix and suffix were cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbourhood {
    /// Bytes of the prefix: from the first kept line to the start of the cursor's line.
    pub prefix: Range<usize>,
    /// Bytes of the suffix: from the cursor to the end of the last kept line.
    pub suffix: Range<usize>,
    pub prefix_lines: Range<usize>,
    pub suffix_lines: Range<usize>,
    pub n_prefix_tokens: usize,
    pub n_suffix_tokens: usize,
}

/// Per-line token counts and what a cut at each line start would split, each measured once per
/// prompt however often the cuts ask (a prompt cuts three times over mostly the same lines).
pub(crate) struct LineCosts<'a> {
    rope: &'a Rope,
    tree: Option<&'a Tree>,
    tokens: &'a dyn TokenCounter,
    measured: RefCell<HashMap<usize, usize>>,
    /// Cut byte → the smallest node spanning it, if any.
    spanning: RefCell<HashMap<usize, Option<Spanning>>>,
}

/// The smallest node spanning a cut, as much of it as the cut decisions read.
#[derive(Debug, Clone, Copy)]
struct Spanning {
    start_byte: usize,
    end_byte: usize,
    is_token: bool,
}

impl<'a> LineCosts<'a> {
    /// `tree` must be the tree of `rope`, or `None` when the document has none.
    pub(crate) fn new(
        rope: &'a Rope,
        tree: Option<&'a Tree>,
        tokens: &'a dyn TokenCounter,
    ) -> LineCosts<'a> {
        LineCosts {
            rope,
            tree,
            tokens,
            measured: RefCell::new(HashMap::new()),
            spanning: RefCell::new(HashMap::new()),
        }
    }

    /// The smallest node spanning `cut_byte`, remembered.
    fn spanning(&self, cut_byte: usize) -> Option<Spanning> {
        if let Some(spanning) = self.spanning.borrow().get(&cut_byte) {
            return *spanning;
        }
        let spanning = smallest_spanning(self.tree, cut_byte).map(|node| Spanning {
            start_byte: node.start_byte(),
            end_byte: node.end_byte(),
            is_token: is_token_like(node),
        });
        self.spanning.borrow_mut().insert(cut_byte, spanning);
        spanning
    }

    /// [`is_clean_cut`] over this document's tree, remembered.
    fn is_clean_cut(&self, cut_byte: usize, cursor_byte: usize) -> bool {
        self.spanning(cut_byte)
            .is_none_or(|node| node.start_byte < cursor_byte && cursor_byte < node.end_byte)
    }

    /// [`splits_token`] over this document's tree, remembered.
    fn splits_token(&self, cut_byte: usize) -> bool {
        self.spanning(cut_byte).is_some_and(|node| node.is_token)
    }

    pub(crate) fn line(&self, line_idx: usize) -> usize {
        if let Some(n_tokens) = self.measured.borrow().get(&line_idx) {
            return *n_tokens;
        }
        let n_tokens = count_line(self.rope, self.tokens, line_idx);
        self.measured.borrow_mut().insert(line_idx, n_tokens);
        n_tokens
    }

    pub(crate) fn tokens(&self) -> &'a dyn TokenCounter {
        self.tokens
    }
}

/// The tokens of line `line_idx` (with its line break), as every cut measures it.
fn count_line(rope: &Rope, tokens: &dyn TokenCounter, line_idx: usize) -> usize {
    let line = rope.line(line_idx);
    match line.as_str() {
        Some(text) => tokens.count_tokens(text),
        None => tokens.count_tokens(&line.to_string()),
    }
}

/// How many lines of a just-opened file are counted ahead of its first prompt: a file this long
/// takes some tens of milliseconds, in the background; the cache keeps 65,536 texts.
pub const MAX_WARM_LINES: usize = 8000;

/// Counts the first `max_lines` lines of `rope` the way the cuts measure them, so that a counter
/// that remembers counts (`engine::CachedTokenCounter`) already has them when the first prompt in
/// a just-opened file asks: tokenizing its lines is most of what a first build costs. Returns how
/// many lines it counted.
pub fn warm_line_counts(rope: &Rope, tokens: &dyn TokenCounter, max_lines: usize) -> usize {
    let n_lines = rope.len_lines().min(max_lines);
    for line_idx in 0..n_lines {
        count_line(rope, tokens, line_idx);
    }
    n_lines
}

/// Whether cutting the file at line start `cut_byte` splits nothing but the scopes that contain
/// the cursor. A node that starts or ends exactly at the cut is not split.
///
/// The cuts use the remembered form on [`LineCosts`]; tests check prompts against this one.
#[cfg(test)]
pub(crate) fn is_clean_cut(tree: Option<&Tree>, cut_byte: usize, cursor_byte: usize) -> bool {
    match smallest_spanning(tree, cut_byte) {
        // Every larger node contains this one, so the cut is clean exactly when this one is a
        // scope of the cursor.
        Some(node) => node.start_byte() < cursor_byte && cursor_byte < node.end_byte(),
        None => true,
    }
}

/// The smallest node with `start < cut_byte < end`, found top-down (a parent walk costs a
/// descent from the root per step in tree-sitter).
fn smallest_spanning(tree: Option<&Tree>, cut_byte: usize) -> Option<Node<'_>> {
    let mut node = tree?.root_node();
    if !(node.start_byte() < cut_byte && cut_byte < node.end_byte()) {
        return None;
    }
    let mut cursor = node.walk();
    loop {
        let mut spanning_child = None;
        // The first child ending after the cut spans it when it also starts before it.
        if cursor.goto_first_child_for_byte(cut_byte).is_some() {
            loop {
                let child = cursor.node();
                if child.start_byte() >= cut_byte {
                    break;
                }
                if child.end_byte() > cut_byte {
                    spanning_child = Some(child);
                    break;
                }
                if !cursor.goto_next_sibling() {
                    break;
                }
            }
        }
        match spanning_child {
            Some(child) => node = child,
            None => return Some(node),
        }
    }
}

/// Whether cutting at `cut_byte` would split a token (a multi-line string or comment): such cuts
/// are never used, even when no clean cut fits the budget.
#[cfg(test)]
pub(crate) fn splits_token(tree: Option<&Tree>, cut_byte: usize) -> bool {
    smallest_spanning(tree, cut_byte).is_some_and(is_token_like)
}

/// Leaves, strings, comments and heredocs: nodes a cut must never go through.
fn is_token_like(node: Node<'_>) -> bool {
    let kind = node.kind();
    node.child_count() == 0
        || kind.contains("string")
        || kind.contains("comment")
        || kind.contains("heredoc")
}

/// Chooses the prefix and suffix for a cursor at `cursor_byte`: the prefix takes up to
/// `n_prefix_budget` tokens of whole lines above the cursor's line, the suffix the rest of the
/// cursor's line and up to `n_suffix_budget` tokens of lines below.
pub(crate) fn cut(
    rope: &Rope,
    cursor_byte: usize,
    n_prefix_budget: usize,
    n_suffix_budget: usize,
    costs: &LineCosts<'_>,
) -> Neighbourhood {
    let tokens = costs.tokens();
    let cursor_line = rope.byte_to_line(cursor_byte);
    let n_lines = rope.len_lines();

    // Prefix: walk upwards, remembering the highest clean cut that fits, and failing that the
    // highest cut that splits no token.
    let mut n_used = 0;
    let mut best_clean: Option<(usize, usize)> = None;
    let mut best_any = (cursor_line, 0);
    let mut line_idx = cursor_line;
    while line_idx > 0 {
        let n_line = costs.line(line_idx - 1);
        if n_used + n_line > n_prefix_budget {
            break;
        }
        n_used += n_line;
        line_idx -= 1;
        let cut_byte = text::line_start_byte(rope, line_idx);
        if !costs.splits_token(cut_byte) {
            best_any = (line_idx, n_used);
        }
        if costs.is_clean_cut(cut_byte, cursor_byte) {
            best_clean = Some((line_idx, n_used));
        }
    }
    let (prefix_first_line, n_prefix_tokens) = best_clean.unwrap_or(best_any);

    // Suffix: the rest of the cursor's line always, then whole lines while they fit.
    let cursor_line_end = text::line_end_byte(rope, cursor_line);
    let rest_of_line = text::slice(rope, cursor_byte..cursor_line_end);
    let mut n_used = tokens.count_tokens(&rest_of_line);
    let mut best_clean: Option<(usize, usize)> = None;
    let mut best_any = (cursor_line + 1, n_used);
    if costs.is_clean_cut(cursor_line_end, cursor_byte) {
        best_clean = Some(best_any);
    }
    let mut line_idx = cursor_line + 1;
    while line_idx < n_lines {
        let n_line = costs.line(line_idx);
        if n_used + n_line > n_suffix_budget {
            break;
        }
        n_used += n_line;
        line_idx += 1;
        let cut_byte = text::line_start_byte(rope, line_idx);
        if !costs.splits_token(cut_byte) {
            best_any = (line_idx, n_used);
        }
        if costs.is_clean_cut(cut_byte, cursor_byte) {
            best_clean = Some((line_idx, n_used));
        }
    }
    let (suffix_end_line, n_suffix_tokens) = best_clean.unwrap_or(best_any);

    Neighbourhood {
        prefix: text::line_start_byte(rope, prefix_first_line)
            ..text::line_start_byte(rope, cursor_line),
        suffix: cursor_byte..text::line_start_byte(rope, suffix_end_line).max(cursor_byte),
        prefix_lines: prefix_first_line..cursor_line,
        suffix_lines: cursor_line..suffix_end_line.min(n_lines).max(cursor_line + 1),
        n_prefix_tokens,
        n_suffix_tokens,
    }
}
