//! Cleaning a completion before it is shown: cut a multi-line suggestion where the block it
//! opened closes (or where it would leave the cursor's block), drop what repeats the text after
//! the cursor, match the document's indentation, refuse blank suggestions, and never turn a
//! document that parses cleanly into one with syntax errors when a shorter suggestion would not.
//!
//! Pure, like the rest of `context/`: the document snapshot and the completion in, text out.

use std::sync::{Arc, OnceLock};

use ropey::Rope;
use tree_sitter::{InputEdit, Point, Tree};

use crate::docs::Document;
use crate::syntax::{self, Language};

/// Returns the suggestion to show for `completion` inserted at `cursor_byte`, or `None` when
/// nothing useful is left.
pub fn postprocess(document: &Document, cursor_byte: usize, completion: &str) -> Option<String> {
    if completion.trim().is_empty() {
        return None;
    }
    let context = Context::at(document, cursor_byte);
    let rest_of_line = &context.rest_of_line;

    let mut text = completion.replace("\r\n", "\n");
    if !rest_of_line.trim().is_empty() {
        // Text after the cursor on its line: only a single-line insertion makes sense.
        if let Some(newline) = text.find('\n') {
            text.truncate(newline);
        }
    }
    text = fix_indentation(&context, &text);
    text = cut_at_repeated_suffix_line(&context, &text);
    text = cut_where_cursor_block_ends(&context.line_head, &text);
    if let Some(parsing) = Parsing::new(document) {
        text = cut_after_opened_block(&parsing, &context, &text);
        text = drop_repeated_rest_of_line(&parsing, &context, &text);
        text = shortest_clean_parse(&parsing, &context, &text);
    } else if let Some(stripped) = text.strip_suffix(rest_of_line.trim_end()) {
        if !rest_of_line.trim().is_empty() {
            text = stripped.to_owned();
        }
    }
    let text = text.trim_end_matches([' ', '\t', '\n', '\r']).to_owned();
    if text.trim().is_empty() {
        return None;
    }
    Some(text)
}

/// A check of what the model has written so far at `cursor_byte`: whether it already holds the
/// whole suggestion, because `postprocess` cuts it at a line that more text cannot change (a line
/// repeating the one below the cursor, a line leaving the cursor's block, the end of a block the
/// suggestion opened), so every token after this one would be thrown away. Asked as tokens
/// arrive, so decoding stops at the token that completes the suggestion.
///
/// Only lines the model has finished count, and the line it is writing once its indentation is
/// known (it has a character that is not a space). A reparse happens only when that line is back
/// at the cursor line's indentation, where a block opened on the cursor's line can have closed.
/// The cursor's line is measured on the first check and the document's text copied for parsing on
/// the first check that needs it, once each: the check runs between decode steps, and a request
/// answered without reaching a line end (most keystrokes) pays nothing.
pub fn done_check(
    document: Arc<Document>,
    cursor_byte: usize,
) -> impl Fn(&str) -> bool + Send + Sync + 'static {
    let context = OnceLock::new();
    let parsing = OnceLock::new();
    move |text| {
        let context = context.get_or_init(|| Context::at(&document, cursor_byte));
        let parsing = || parsing.get_or_init(|| Parsing::new(&document)).as_ref();
        suggestion_is_done(context, parsing, text)
    }
}

fn suggestion_is_done<'p>(
    context: &Context,
    parsing: impl FnOnce() -> Option<&'p Parsing>,
    text: &str,
) -> bool {
    let Some(last_newline) = text.rfind('\n') else {
        return false;
    };
    if !context.rest_of_line.trim().is_empty() {
        // Only the first line is ever kept.
        return true;
    }
    // Finished lines, and the line being written once its indentation is known.
    let finished = fix_indentation(context, &text[..=last_newline].replace("\r\n", "\n"));
    let partial = &text[last_newline + 1..];
    let settled = if partial.trim().is_empty() {
        finished.clone()
    } else {
        fix_indentation(context, &text.replace("\r\n", "\n"))
    };
    // A line equal to the one below the cursor may still go on (`}` becoming `});`).
    if cut_at_repeated_suffix_line(context, &finished).len() < finished.len()
        || cut_where_cursor_block_ends(&context.line_head, &settled).len() < settled.len()
    {
        return true;
    }
    // A block the suggestion opened on the cursor's line closes at a line back at the cursor
    // line's indentation, but only the next line shows that nothing continues it (`}` then
    // `else {` or `;`): the line after must have begun, at that indentation or less.
    let n_cursor_indent = leading_whitespace(&context.line_head).len();
    let next_line_begun = settled.len() > finished.len()
        && leading_whitespace(settled.rsplit('\n').next().unwrap_or("")).len() <= n_cursor_indent;
    if !next_line_begun {
        return false;
    }
    parsing().is_some_and(|parsing| {
        cut_after_opened_block(parsing, context, &settled).len() < finished.len()
    })
}

/// The cursor's line and what post-processing needs to know of the document around it, measured
/// once per suggestion.
struct Context {
    cursor_byte: usize,
    line_head: String,
    rest_of_line: String,
    /// Whether the document indents with tabs, and one level's width in spaces otherwise.
    uses_tabs: bool,
    indent_width: usize,
    /// The cursor sits in its line's leading whitespace, at least as deep as the line above:
    /// the suggestion's own first-line indentation would double it.
    drop_first_line_indent: bool,
    /// The first non-blank line below the cursor's, without its line ending.
    next_line: Option<String>,
}

impl Context {
    fn at(document: &Document, cursor_byte: usize) -> Context {
        let rope = &document.rope;
        let cursor_byte = rope.char_to_byte(rope.byte_to_char(cursor_byte.min(rope.len_bytes())));
        let cursor_line = rope.byte_to_line(cursor_byte);
        let line_start = rope.line_to_byte(cursor_line);
        let line_end = line_content_end(rope, cursor_line);
        let line_head = slice(rope, line_start, cursor_byte);
        let drop_first_line_indent = !line_head.is_empty() && line_head.trim().is_empty() && {
            let previous_indent = (0..cursor_line)
                .rev()
                .map(|line_idx| rope.line(line_idx).to_string())
                .find(|line| !line.trim().is_empty())
                .map(|line| leading_whitespace(&line).len())
                .unwrap_or(0);
            line_head.len() >= previous_indent
        };
        let next_line = (cursor_line + 1..rope.len_lines())
            .map(|line_idx| rope.line(line_idx).to_string())
            .find(|line| !line.trim().is_empty())
            .map(|line| line.trim_end().to_owned());
        let (uses_tabs, indent_width) = indent_style(rope);
        Context {
            cursor_byte,
            rest_of_line: slice(rope, cursor_byte, line_end),
            line_head,
            uses_tabs,
            indent_width,
            drop_first_line_indent,
            next_line,
        }
    }
}

fn slice(rope: &Rope, start_byte: usize, end_byte: usize) -> String {
    rope.byte_slice(start_byte..end_byte.max(start_byte))
        .to_string()
}

/// The byte where the line's content ends (before `\n` or `\r\n`).
fn line_content_end(rope: &Rope, line_idx: usize) -> usize {
    let line = rope.line(line_idx);
    let mut n_bytes = line.len_bytes();
    let text = line.to_string();
    if text.ends_with("\r\n") {
        n_bytes -= 2;
    } else if text.ends_with('\n') {
        n_bytes -= 1;
    }
    rope.line_to_byte(line_idx) + n_bytes
}

fn leading_whitespace(line: &str) -> &str {
    &line[..line.len() - line.trim_start_matches([' ', '\t']).len()]
}

/// Whether the document indents with tabs, and how many spaces one level is otherwise.
fn indent_style(rope: &Rope) -> (bool, usize) {
    let mut n_tab_lines = 0;
    let mut n_space_lines = 0;
    let mut smallest_space_indent = usize::MAX;
    for line in rope.lines().take(500) {
        let Some(first) = line.chars().next() else {
            continue;
        };
        match first {
            '\t' => n_tab_lines += 1,
            ' ' => {
                let n_spaces = line.chars().take_while(|ch| *ch == ' ').count();
                if line
                    .chars()
                    .nth(n_spaces)
                    .is_some_and(|ch| !ch.is_whitespace())
                {
                    n_space_lines += 1;
                    smallest_space_indent = smallest_space_indent.min(n_spaces);
                }
            }
            _ => {}
        }
    }
    let width = if smallest_space_indent == usize::MAX {
        4
    } else {
        smallest_space_indent.clamp(2, 8)
    };
    (n_tab_lines > n_space_lines, width)
}

/// Matches the suggestion's indentation to the document: no doubled indentation when the cursor
/// already sits in the line's leading whitespace, and tabs or spaces as the document uses them.
fn fix_indentation(context: &Context, text: &str) -> String {
    let (uses_tabs, width) = (context.uses_tabs, context.indent_width);
    let mut lines: Vec<String> = text.split('\n').map(str::to_owned).collect();
    if context.drop_first_line_indent {
        lines[0] = lines[0].trim_start_matches([' ', '\t']).to_owned();
    }
    for line in lines.iter_mut().skip(1) {
        let indent = leading_whitespace(line).to_owned();
        let fixed = if uses_tabs && indent.starts_with(' ') {
            let n_columns = indent
                .chars()
                .map(|ch| if ch == '\t' { width } else { 1 })
                .sum::<usize>();
            format!(
                "{}{}",
                "\t".repeat(n_columns / width),
                " ".repeat(n_columns % width)
            )
        } else if !uses_tabs && indent.contains('\t') {
            indent.replace('\t', &" ".repeat(width))
        } else {
            continue;
        };
        *line = format!("{fixed}{}", &line[indent.len()..]);
    }
    lines.join("\n")
}

/// Cuts a multi-line suggestion at the first of its lines (after the first) that repeats the next
/// non-blank line below the cursor, indentation included: the model is re-typing what is there.
fn cut_at_repeated_suffix_line(context: &Context, text: &str) -> String {
    let Some(next_line) = context.next_line.as_deref() else {
        return text.to_owned();
    };
    // Indentation counts: a `}` closing the suggestion's own block is not the `}` below.
    let mut kept = Vec::new();
    for (line_idx, line) in text.split('\n').enumerate() {
        if line_idx > 0 && line.trim_end() == next_line {
            break;
        }
        kept.push(line);
    }
    kept.join("\n")
}

/// Cuts before the first suggestion line indented less than the cursor's line: that line would
/// belong to an outer block, which the suggestion was not asked to write.
fn cut_where_cursor_block_ends(line_head: &str, text: &str) -> String {
    let n_cursor_indent = leading_whitespace(line_head).len();
    let mut kept = Vec::new();
    for (line_idx, line) in text.split('\n').enumerate() {
        if line_idx > 0
            && !line.trim().is_empty()
            && leading_whitespace(line).len() < n_cursor_indent
        {
            break;
        }
        kept.push(line);
    }
    kept.join("\n")
}

/// The document's tree and what it takes to reparse it with a suggestion inserted.
struct Parsing {
    language: Language,
    /// A copy of the document's tree (trees are reference-counted, so copying is cheap).
    tree: Tree,
    text: String,
}

impl Parsing {
    fn new(document: &Document) -> Option<Parsing> {
        let language = document.language?;
        if !document.wants_tree() {
            return None;
        }
        let text = document.rope.to_string();
        let tree = match document.tree.as_ref() {
            Some(tree) => tree.clone(),
            None => language.parser().parse(&text, None)?,
        };
        Some(Parsing {
            language,
            tree,
            text,
        })
    }

    /// The tree of the document with `inserted` at `cursor_byte`, reparsed incrementally.
    fn with_insertion(&self, cursor_byte: usize, inserted: &str) -> Option<(Tree, String)> {
        let mut new_text = String::with_capacity(self.text.len() + inserted.len());
        new_text.push_str(&self.text[..cursor_byte]);
        new_text.push_str(inserted);
        new_text.push_str(&self.text[cursor_byte..]);
        let mut old_tree = self.tree.clone();
        let start_position = point_of(&self.text, cursor_byte);
        old_tree.edit(&InputEdit {
            start_byte: cursor_byte,
            old_end_byte: cursor_byte,
            new_end_byte: cursor_byte + inserted.len(),
            start_position,
            old_end_position: start_position,
            new_end_position: point_of(&new_text, cursor_byte + inserted.len()),
        });
        let mut parser = self.language.parser();
        let rope = Rope::from_str(&new_text);
        let tree = syntax::parse_rope(&mut parser, &rope, Some(&old_tree), None)?;
        Some((tree, new_text))
    }

    fn has_errors_with(&self, cursor_byte: usize, inserted: &str) -> bool {
        self.with_insertion(cursor_byte, inserted)
            .is_none_or(|(tree, _)| tree.root_node().has_error())
    }
}

fn point_of(text: &str, byte_idx: usize) -> Point {
    let before = &text[..byte_idx];
    let row = before.matches('\n').count();
    let column = byte_idx - before.rfind('\n').map_or(0, |idx| idx + 1);
    Point { row, column }
}

/// When the suggestion opens a block on the cursor's line (`if x {`, `def f():`), stops at the
/// end of the line where that block closes.
fn cut_after_opened_block(parsing: &Parsing, context: &Context, text: &str) -> String {
    if !text.contains('\n') {
        return text.to_owned();
    }
    let Some((tree, _)) = parsing.with_insertion(context.cursor_byte, text) else {
        return text.to_owned();
    };
    let line_start = context.cursor_byte - context.line_head.len();
    let inserted_end = context.cursor_byte + text.len();
    let Some(mut node) = tree
        .root_node()
        .descendant_for_byte_range(context.cursor_byte, context.cursor_byte)
    else {
        return text.to_owned();
    };
    // The largest node that starts on the cursor's line and ends inside the suggestion.
    let mut statement = None;
    loop {
        if node.start_byte() >= line_start
            && node.end_byte() <= inserted_end
            && node.end_byte() > context.cursor_byte
        {
            statement = Some(node);
        }
        match node.parent() {
            Some(parent) if parent.start_byte() >= line_start => node = parent,
            _ => break,
        }
    }
    let Some(statement) = statement else {
        return text.to_owned();
    };
    if statement.start_position().row == statement.end_position().row || statement.has_error() {
        return text.to_owned();
    }
    let statement_end = statement.end_byte() - context.cursor_byte;
    match text[statement_end..].find('\n') {
        Some(newline) => text[..statement_end + newline].to_owned(),
        None => text.to_owned(),
    }
}

/// Drops the end of a single-line suggestion that repeats the rest of the cursor's line (`)` or
/// `);` the editor already has), when doing so parses at least as cleanly.
fn drop_repeated_rest_of_line(parsing: &Parsing, context: &Context, text: &str) -> String {
    let rest = context.rest_of_line.trim_end();
    if rest.trim().is_empty() || text.contains('\n') {
        return text.to_owned();
    }
    let rest_head = rest.trim_start();
    // The longest prefix of the rest of the line that the suggestion ends with.
    let overlap = (1..=rest_head.len())
        .rev()
        .filter(|n_bytes| rest_head.is_char_boundary(*n_bytes))
        .find(|n_bytes| text.ends_with(&rest_head[..*n_bytes]));
    let Some(n_overlap) = overlap else {
        return text.to_owned();
    };
    let stripped = &text[..text.len() - n_overlap];
    if stripped.trim().is_empty() {
        return text.to_owned();
    }
    let full_clean = !parsing.has_errors_with(context.cursor_byte, text);
    let stripped_clean = !parsing.has_errors_with(context.cursor_byte, stripped);
    match (full_clean, stripped_clean) {
        (false, true) => stripped.to_owned(),
        (true, false) => text.to_owned(),
        // Neither parse decides: strip only an exact repeat of the whole rest of the line.
        _ if n_overlap == rest_head.len() => stripped.to_owned(),
        _ => text.to_owned(),
    }
}

/// If the document parses without errors but would not with the suggestion, returns the longest
/// line-prefix of the suggestion that keeps it clean (or the suggestion when none does).
fn shortest_clean_parse(parsing: &Parsing, context: &Context, text: &str) -> String {
    if parsing.tree.root_node().has_error() || !parsing.has_errors_with(context.cursor_byte, text) {
        return text.to_owned();
    }
    let line_ends: Vec<usize> = text.match_indices('\n').map(|(idx, _)| idx).collect();
    for end in line_ends.into_iter().rev() {
        let candidate = &text[..end];
        if candidate.trim().is_empty() {
            continue;
        }
        if !parsing.has_errors_with(context.cursor_byte, candidate) {
            return candidate.to_owned();
        }
    }
    text.to_owned()
}
