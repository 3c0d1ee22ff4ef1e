//! What each version of a document changed, as byte spans, so that an edit computed on an older
//! version can be moved onto the current text, or refused when the user changed the same code.
//!
//! Only positions are kept, never text: moving a range needs to know where bytes went, not what
//! they were. The log is a persistent list shared by every snapshot of the document, so recording
//! a keystroke costs one small allocation whatever the log's length.

use std::ops::Range;
use std::sync::Arc;

/// How many versions the log keeps at least. An edit computed on a version older than the log's
/// reach is refused: after this many changes the user has long moved on.
const KEPT_VERSIONS: usize = 512;

/// One replacement, in the coordinates of the text it was applied to: the bytes
/// `start_byte..old_end_byte` became `start_byte..new_end_byte`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start_byte: usize,
    pub old_end_byte: usize,
    pub new_end_byte: usize,
}

#[derive(Debug)]
struct Entry {
    /// The version these spans produced.
    version: i32,
    spans: Vec<Span>,
    previous: Option<Arc<Entry>>,
}

/// The changes made since a document was opened (or since the oldest version kept), newest first.
#[derive(Debug, Clone)]
pub struct EditLog {
    head: Option<Arc<Entry>>,
    n_entries: usize,
    /// The oldest version the log can move ranges from.
    base_version: i32,
    /// Spans applied to a private copy and not yet committed under a version.
    pending: Vec<Span>,
}

impl EditLog {
    pub fn new(version: i32) -> EditLog {
        EditLog {
            head: None,
            n_entries: 0,
            base_version: version,
            pending: Vec::new(),
        }
    }

    /// Notes one replacement applied to the text; see [`EditLog::commit`].
    pub fn record(&mut self, span: Span) {
        self.pending.push(span);
    }

    /// Files the replacements recorded since the last commit under `version`.
    pub fn commit(&mut self, version: i32) {
        let spans = std::mem::take(&mut self.pending);
        self.head = Some(Arc::new(Entry {
            version,
            spans,
            previous: self.head.take(),
        }));
        self.n_entries += 1;
        if self.n_entries > 2 * KEPT_VERSIONS {
            self.compact();
        }
    }

    /// Drops all but the newest [`KEPT_VERSIONS`] entries (a copy of those, once every
    /// `KEPT_VERSIONS` commits, so recording stays cheap on average).
    fn compact(&mut self) {
        let mut kept = Vec::with_capacity(KEPT_VERSIONS);
        let mut entry = self.head.as_ref();
        while let Some(current) = entry {
            if kept.len() == KEPT_VERSIONS {
                self.base_version = current.version;
                break;
            }
            kept.push((current.version, current.spans.clone()));
            entry = current.previous.as_ref();
        }
        let mut head = None;
        for (version, spans) in kept.into_iter().rev() {
            head = Some(Arc::new(Entry {
                version,
                spans,
                previous: head,
            }));
        }
        self.head = head;
        self.n_entries = KEPT_VERSIONS;
    }

    /// Every span applied after `version`, oldest first, or `None` when the log does not reach
    /// back that far.
    pub fn since(&self, version: i32) -> Option<Vec<Span>> {
        if version < self.base_version {
            return None;
        }
        let mut entries = Vec::new();
        let mut entry = self.head.as_ref();
        while let Some(current) = entry {
            if current.version <= version {
                break;
            }
            entries.push(current);
            entry = current.previous.as_ref();
        }
        Some(
            entries
                .into_iter()
                .rev()
                .flat_map(|entry| entry.spans.iter().copied())
                .collect(),
        )
    }
}

/// Moves `range` through `spans` (applied in order after the text `range` refers to). Returns
/// `None` when a span touches the range: it overlaps it or meets one of its ends, so the text the
/// range stood for may have changed. Also `None` for a reversed range, or one so far out that
/// moving it overflows: ranges come back from clients, which may have mangled them.
pub fn move_range(range: Range<usize>, spans: &[Span]) -> Option<Range<usize>> {
    if range.start > range.end {
        return None;
    }
    let mut range = range;
    for span in spans {
        if span.start_byte <= range.end && range.start <= span.old_end_byte {
            return None;
        }
        if span.old_end_byte < range.start {
            // Entirely before the range: shift it by the span's change in length.
            range = shift(range.start, span)?..shift(range.end, span)?;
        }
    }
    Some(range)
}

fn shift(byte_idx: usize, span: &Span) -> Option<usize> {
    byte_idx
        .checked_add(span.new_end_byte)?
        .checked_sub(span.old_end_byte)
}

/// The one replacement that turns `old` into `new`: their common prefix and suffix are kept.
/// Used for full-text changes, so a client that sends the whole document still tells which lines
/// it changed.
pub fn diff_span(old: &str, new: &str) -> Span {
    let mut prefix_len = old
        .bytes()
        .zip(new.bytes())
        .take_while(|(old_byte, new_byte)| old_byte == new_byte)
        .count();
    while !old.is_char_boundary(prefix_len) || !new.is_char_boundary(prefix_len) {
        prefix_len -= 1;
    }
    let max_suffix_len = (old.len() - prefix_len).min(new.len() - prefix_len);
    let mut suffix_len = old
        .bytes()
        .rev()
        .zip(new.bytes().rev())
        .take(max_suffix_len)
        .take_while(|(old_byte, new_byte)| old_byte == new_byte)
        .count();
    while !old.is_char_boundary(old.len() - suffix_len)
        || !new.is_char_boundary(new.len() - suffix_len)
    {
        suffix_len -= 1;
    }
    Span {
        start_byte: prefix_len,
        old_end_byte: old.len() - suffix_len,
        new_end_byte: new.len() - suffix_len,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(start_byte: usize, old_end_byte: usize, new_end_byte: usize) -> Span {
        Span {
            start_byte,
            old_end_byte,
            new_end_byte,
        }
    }

    /// Applies `(start, end, text)` replacements to `text`, recording them in a log.
    fn edit(text: &mut String, log: &mut EditLog, start_byte: usize, end_byte: usize, new: &str) {
        text.replace_range(start_byte..end_byte, new);
        log.record(span(start_byte, end_byte, start_byte + new.len()));
    }

    /// Found by the fuzz target `dispatch_engine_failed`: a code action's `byteRange` comes back
    /// from the client, and a reversed or huge one overflowed here and panicked the handler.
    #[test]
    fn reversed_and_huge_ranges_are_refused_rather_than_overflowing() {
        let spans = [span(0, 5, 0), span(0, 0, 3)];
        let reversed = Range { start: 9, end: 2 };
        assert_eq!(move_range(reversed.clone(), &spans), None);
        assert_eq!(move_range(reversed, &[]), None);
        assert_eq!(
            move_range(usize::MAX - 1..usize::MAX, &[span(0, 0, 3)]),
            None
        );
        assert_eq!(move_range(7..9, &spans), Some(5..7));
    }

    #[test]
    fn ranges_move_past_changes_before_them_and_stay_put_for_changes_after() {
        let original = "a = 1\nb = 2\nc = 3\n";
        let mut text = original.to_owned();
        let mut log = EditLog::new(1);
        let target = 6..11; // "b = 2"
        edit(&mut text, &mut log, 0, 0, "import os\n");
        log.commit(2);
        let end_byte = text.len();
        edit(&mut text, &mut log, end_byte, end_byte, "d = 4\n");
        edit(&mut text, &mut log, 0, 6, "");
        log.commit(5);
        let moved = move_range(target.clone(), &log.since(1).unwrap()).unwrap();
        assert_eq!(&text[moved.clone()], "b = 2");
        assert_eq!(moved, 10..15);
        // From version 2 on, only the last two edits apply.
        let from_two = move_range(16..21, &log.since(2).unwrap()).unwrap();
        assert_eq!(&text[from_two], "b = 2");
        assert_eq!(log.since(5).unwrap(), vec![]);
        assert_eq!(log.since(0), None, "older than the log");
    }

    #[test]
    fn changes_that_touch_the_range_refuse_it() {
        let cases = [
            (span(7, 8, 9), "inside"),
            (span(4, 7, 4), "overlapping its start"),
            (span(10, 14, 12), "overlapping its end"),
            (span(6, 6, 8), "inserted at its start"),
            (span(11, 11, 12), "inserted at its end"),
            (span(0, 20, 3), "around it"),
        ];
        for (change, what) in cases {
            assert_eq!(move_range(6..11, &[change]), None, "{what}");
        }
        assert_eq!(move_range(6..11, &[span(0, 5, 1)]), Some(2..7));
        assert_eq!(move_range(6..11, &[span(12, 15, 40)]), Some(6..11));
        // An empty range (an insertion point) is touched by a change at that point.
        assert_eq!(move_range(6..6, &[span(6, 6, 7)]), None);
        assert_eq!(move_range(6..6, &[span(2, 3, 3)]), Some(6..6));
    }

    #[test]
    fn the_log_keeps_a_bounded_number_of_versions() {
        let mut log = EditLog::new(0);
        for version in 1..=(3 * KEPT_VERSIONS as i32) {
            log.record(span(0, 0, 1));
            log.commit(version);
        }
        assert!(log.n_entries <= 2 * KEPT_VERSIONS);
        let newest = 3 * KEPT_VERSIONS as i32;
        let reach = newest - KEPT_VERSIONS as i32;
        assert_eq!(log.since(reach).unwrap().len(), KEPT_VERSIONS);
        assert_eq!(log.since(1), None);
        let shifted = 5 + KEPT_VERSIONS..6 + KEPT_VERSIONS;
        assert_eq!(move_range(5..6, &log.since(reach).unwrap()), Some(shifted));
    }

    #[test]
    fn full_text_changes_become_the_span_that_differs() {
        let cases = [
            ("abc", "abc", span(3, 3, 3)),
            ("abc", "abXc", span(2, 2, 3)),
            (
                "a = 1\nb = 2\n",
                "import os\na = 1\nb = 2\n",
                span(0, 0, 10),
            ),
            ("aaa", "aa", span(2, 3, 2)),
            ("héllo", "hèllo", span(1, 3, 3)),
            ("日本", "日本語", span(6, 6, 9)),
            ("", "x", span(0, 0, 1)),
        ];
        for (old, new, expected) in cases {
            let found = diff_span(old, new);
            assert_eq!(found, expected, "{old:?} -> {new:?}");
            let mut rebuilt = old.to_owned();
            rebuilt.replace_range(
                found.start_byte..found.old_end_byte,
                &new[found.start_byte..found.new_end_byte],
            );
            assert_eq!(rebuilt, new);
        }
    }
}
