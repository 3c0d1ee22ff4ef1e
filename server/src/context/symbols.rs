//! Which names the code near the cursor uses, and which definitions of them a prompt should
//! show: found with the references query (calls and types) plus a plain identifier scan, ranked
//! by kind and distance, and resolved against the current file, the open documents and the
//! workspace index.
//!
//! Invariant: on the cursor's line only names that are complete (not touching the cursor) count,
//! so the chosen definitions change when a new name is finished, not on every keystroke.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use ropey::Rope;
use tree_sitter::Tree;

use crate::syntax::outline::{self, Definition};
use crate::syntax::{self, Language};
use crate::text;

/// Lines above and below the cursor whose names count as "used near the cursor".
const WINDOW_LINES_ABOVE: usize = 40;
const WINDOW_LINES_BELOW: usize = 15;
/// Names with more definitions than this and nothing to prefer one are skipped as ambiguous.
const MAX_UNPREFERRED_CANDIDATES: usize = 6;

/// A name used near the cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UsedName {
    pub name: String,
    /// The last segment of what it is reached through (`Foo` in `Foo::new`), if anything.
    pub qualifier: Option<String>,
    pub is_call: bool,
    pub is_type: bool,
    /// Higher is more relevant; integer so that ordering is exact.
    pub score: u64,
}

fn is_identifier_start(ch: char) -> bool {
    ch.is_alphabetic() || ch == '_' || ch == '$'
}

fn is_identifier_char(ch: char) -> bool {
    ch.is_alphanumeric() || ch == '_' || ch == '$'
}

/// Identifiers in `text`, with their byte offsets in it.
pub(crate) fn identifiers(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut chars = text.char_indices().peekable();
    std::iter::from_fn(move || {
        while let Some((start, ch)) = chars.next() {
            if !is_identifier_start(ch) {
                if ch.is_ascii_digit() {
                    // Skip the rest of a number so `0x1f` does not yield `x1f`.
                    while chars
                        .next_if(|(_, next)| is_identifier_char(*next))
                        .is_some()
                    {}
                }
                continue;
            }
            let mut end = start + ch.len_utf8();
            while let Some((idx, next)) = chars.next_if(|(_, next)| is_identifier_char(*next)) {
                end = idx + next.len_utf8();
            }
            return Some((start, &text[start..end]));
        }
        None
    })
}

/// Proximity weight: 1000 on the cursor's line, falling off with distance.
fn proximity(line_idx: usize, cursor_line: usize) -> u64 {
    let distance = line_idx.abs_diff(cursor_line) as u64;
    1000 * 8 / (8 + distance)
}

/// Names used in the lines around the cursor, most relevant first.
pub(crate) fn used_names(
    language: Option<Language>,
    rope: &Rope,
    tree: Option<&Tree>,
    cursor_byte: usize,
) -> Vec<UsedName> {
    let cursor_line = rope.byte_to_line(cursor_byte);
    let first_line = cursor_line.saturating_sub(WINDOW_LINES_ABOVE);
    let end_line = (cursor_line + WINDOW_LINES_BELOW + 1).min(rope.len_lines());
    let window_start = rope.line_to_byte(first_line);
    let window_end = if end_line >= rope.len_lines() {
        rope.len_bytes()
    } else {
        rope.line_to_byte(end_line)
    };
    // A name on the cursor's line counts when it ends before the character just before the
    // cursor (it is finished) or starts after the cursor.
    let is_stable = |start_byte: usize, end_byte: usize| {
        let line_idx = rope.byte_to_line(start_byte);
        line_idx != cursor_line || end_byte < cursor_byte || start_byte >= cursor_byte
    };

    let mut names: BTreeMap<String, UsedName> = BTreeMap::new();
    let mut add =
        |name: &str, qualifier: Option<String>, line_idx: usize, weight: u64, is_call, is_type| {
            let entry = names.entry(name.to_owned()).or_insert_with(|| UsedName {
                name: name.to_owned(),
                qualifier: None,
                is_call: false,
                is_type: false,
                score: 0,
            });
            // The call being written (`foo(` just before the cursor) matters most of all.
            let on_cursor_line = if line_idx == cursor_line { 3 } else { 1 };
            let score = weight * on_cursor_line * proximity(line_idx, cursor_line);
            if qualifier.is_some() && (entry.qualifier.is_none() || score > entry.score) {
                entry.qualifier = qualifier;
            }
            entry.score += score;
            entry.is_call |= is_call;
            entry.is_type |= is_type;
        };

    if let (Some(language), Some(tree)) = (language, tree) {
        let query = &syntax::queries(language).references;
        let capture_names = query.capture_names();
        let matches = syntax::run_query(
            query,
            tree.root_node(),
            rope,
            Some(window_start..window_end),
        );
        for found in matches {
            let mut name_node = None;
            let mut qualifier = None;
            let mut is_call = false;
            for (capture_idx, node) in &found.captures {
                match capture_names[*capture_idx as usize] {
                    "call" => {
                        name_node = Some(*node);
                        is_call = true;
                    }
                    "type" => name_node = Some(*node),
                    "qualifier" => {
                        qualifier =
                            Some(outline::last_path_segment(&outline::node_text(rope, *node)))
                    }
                    _ => {}
                }
            }
            let Some(node) = name_node else { continue };
            if node.start_byte() < window_start || node.end_byte() > window_end {
                continue;
            }
            if !is_stable(node.start_byte(), node.end_byte()) {
                continue;
            }
            let name = outline::node_text(rope, node);
            add(
                &name,
                qualifier,
                node.start_position().row,
                3,
                is_call,
                !is_call,
            );
        }
    }

    // Plain identifiers catch what the parse of half-typed code misses, at a lower weight.
    let window_text = text::slice(rope, window_start..window_end);
    for (offset, name) in identifiers(&window_text) {
        let start_byte = window_start + offset;
        if name.len() < 2 || !is_stable(start_byte, start_byte + name.len()) {
            continue;
        }
        add(name, None, rope.byte_to_line(start_byte), 1, false, false);
    }

    let mut ranked: Vec<UsedName> = names.into_values().collect();
    ranked.sort_by(|a, b| b.score.cmp(&a.score).then_with(|| a.name.cmp(&b.name)));
    ranked
}

/// Words of the file's import statements (module path segments and imported names), used to
/// prefer definitions from files the current file imports.
pub(crate) fn import_words(rope: &Rope, imports: &[std::ops::Range<usize>]) -> WordSet {
    let mut words = WordSet::default();
    for range in imports {
        let text = text::slice(rope, range.clone());
        for (_, word) in identifiers(&text) {
            words.insert(word);
        }
    }
    words
}

/// Bits in a [`WordSet`]'s quick test.
const WORD_SET_BITS: usize = 4096;

/// A set of words with a quick first test, because it is asked about every file that defines a
/// common name (`new` has thousands): a word whose length, first and last byte match no member's
/// is ruled out by one bit, and only the rest pay for hashing. Answers exactly as a `HashSet`.
#[derive(Debug, Clone)]
pub(crate) struct WordSet {
    words: HashSet<String>,
    bits: Box<[u64; WORD_SET_BITS / 64]>,
}

impl Default for WordSet {
    fn default() -> Self {
        WordSet {
            words: HashSet::new(),
            bits: Box::new([0; WORD_SET_BITS / 64]),
        }
    }
}

impl WordSet {
    fn bit(word: &str) -> usize {
        let bytes = word.as_bytes();
        let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
            return 0;
        };
        let mixed = bytes.len().wrapping_mul(0x9e37) ^ (*first as usize) << 5 ^ (*last as usize);
        mixed.wrapping_mul(0x2545) % WORD_SET_BITS
    }

    pub(crate) fn insert(&mut self, word: &str) {
        let bit = WordSet::bit(word);
        self.bits[bit / 64] |= 1 << (bit % 64);
        if !self.words.contains(word) {
            self.words.insert(word.to_owned());
        }
    }

    pub(crate) fn contains(&self, word: &str) -> bool {
        let bit = WordSet::bit(word);
        self.bits[bit / 64] & (1 << (bit % 64)) != 0 && self.words.contains(word)
    }
}

/// A definition that might be the one a name refers to.
#[derive(Debug, Clone)]
pub(crate) struct Candidate {
    pub path: Arc<str>,
    pub definition: Arc<Definition>,
    pub is_current_file: bool,
}

/// Where the current file is, for path-based preferences.
pub(crate) struct Origin<'a> {
    pub path: &'a str,
    pub import_words: &'a WordSet,
    /// The innermost class-like scope around the cursor, standing in for `self`/`this`.
    pub enclosing_class: Option<&'a str>,
}

fn directory(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(dir, _)| dir)
}

fn file_stem(path: &str) -> &str {
    let file_name = path.rsplit('/').next().unwrap_or(path);
    file_name.split('.').next().unwrap_or(file_name)
}

/// Whether anything but the name points at `path`: the qualifier names it, an import mentions
/// it, or it sits in the current file's folder.
pub(crate) fn path_is_plausible(used: &UsedName, path: &str, origin: &Origin<'_>) -> bool {
    let stem = file_stem(path);
    let dir = directory(path);
    let dir_name = dir.rsplit('/').next().unwrap_or("");
    let qualifier_matches = used
        .qualifier
        .as_deref()
        .is_some_and(|qualifier| stem == qualifier || dir_name == qualifier);
    qualifier_matches
        || origin.import_words.contains(stem)
        || (!dir_name.is_empty() && origin.import_words.contains(dir_name))
        || dir == directory(origin.path)
}

/// Scores how likely `candidate` is the definition `used` refers to; `None` rules it out.
fn preference(used: &UsedName, candidate: &Candidate, origin: &Origin<'_>) -> u64 {
    let mut score = 0;
    let qualifier = match used.qualifier.as_deref() {
        Some("self" | "this" | "Self" | "cls") => origin.enclosing_class,
        other => other,
    };
    if let (Some(qualifier), Some(container)) =
        (qualifier, candidate.definition.container.as_deref())
    {
        if qualifier == container {
            score += 40;
        }
    }
    if let Some(qualifier) = qualifier {
        // `utils.helper()` in Python, `pkg.Func()` in Go: the qualifier names the module.
        if file_stem(&candidate.path) == qualifier
            || directory(&candidate.path).ends_with(qualifier)
        {
            score += 30;
        }
    }
    if candidate.is_current_file {
        score += 30;
    }
    let stem = file_stem(&candidate.path);
    let dir_name = directory(&candidate.path).rsplit('/').next().unwrap_or("");
    if origin.import_words.contains(stem)
        || (!dir_name.is_empty() && origin.import_words.contains(dir_name))
    {
        score += 25;
    }
    if directory(&candidate.path) == directory(origin.path) {
        score += 15;
    }
    let kind = candidate.definition.kind;
    if used.is_call && !kind.is_type_like() || used.is_type && kind.is_type_like() {
        score += 10;
    }
    let shared_components = candidate
        .path
        .split('/')
        .zip(origin.path.split('/'))
        .take_while(|(a, b)| a == b)
        .count() as u64;
    score + shared_components.min(5)
}

/// The definitions worth showing for `used`, best first (at most two).
pub(crate) fn choose(
    used: &UsedName,
    candidates: Vec<Candidate>,
    origin: &Origin<'_>,
) -> Vec<Candidate> {
    let mut scored: Vec<(u64, Candidate)> = candidates
        .into_iter()
        .map(|candidate| (preference(used, &candidate, origin), candidate))
        .collect();
    scored.sort_by(|(a_score, a), (b_score, b)| {
        b_score
            .cmp(a_score)
            .then_with(|| a.path.cmp(&b.path))
            .then_with(|| a.definition.start_line.cmp(&b.definition.start_line))
    });
    let Some((best_score, _)) = scored.first() else {
        return Vec::new();
    };
    // Scores under 15 mean nothing but kind and path depth speaks for the candidate.
    if scored.len() > MAX_UNPREFERRED_CANDIDATES && *best_score < 15 {
        return Vec::new();
    }
    let take = if scored.len() > 2 { 1 } else { 2 };
    let best_score = *best_score;
    scored
        .into_iter()
        .take(take)
        .filter(|(score, _)| *score + 20 >= best_score)
        .map(|(_, candidate)| candidate)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_sets_answer_as_hash_sets() {
        let mut words = WordSet::default();
        for word in ["std", "sync", "Arc", "größe", "a"] {
            words.insert(word);
        }
        for word in ["std", "sync", "Arc", "größe", "a"] {
            assert!(words.contains(word), "{word}");
        }
        for word in ["", "st", "syncs", "arc", "b", "Arcs", "größer"] {
            assert!(!words.contains(word), "{word}");
        }
        assert!(!WordSet::default().contains("std"));
    }

    #[test]
    fn identifiers_skip_numbers_and_keep_unicode() {
        let found: Vec<&str> = identifiers("let x1 = 0x1f + größe_2(a.b);")
            .map(|(_, it)| it)
            .collect();
        assert_eq!(found, ["let", "x1", "größe_2", "a", "b"]);
    }
}
