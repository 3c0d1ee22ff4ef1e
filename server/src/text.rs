//! Rope and byte helpers: text cut from a rope by byte range or by line, with the ranges clamped
//! to the rope, and line bounds in bytes. Every module that reads a document's text uses these
//! instead of its own variant, so an out-of-range edge is handled the same way everywhere.

use std::ops::Range;

use ropey::Rope;

/// The text of `byte_range`, clamped to the rope (a range past the end yields what exists).
pub(crate) fn slice(rope: &Rope, byte_range: Range<usize>) -> String {
    let end_byte = byte_range.end.min(rope.len_bytes());
    let start_byte = byte_range.start.min(end_byte);
    rope.byte_slice(start_byte..end_byte).to_string()
}

/// The text of whole lines `line_range` (end exclusive), each ending in `\n`.
pub(crate) fn lines(rope: &Rope, line_range: Range<usize>) -> String {
    let end_line = line_range.end.min(rope.len_lines());
    if line_range.start >= end_line {
        return String::new();
    }
    let mut text = rope
        .slice(rope.line_to_char(line_range.start)..rope.line_to_char(end_line))
        .to_string();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

/// The first byte of line `line_idx`, or the rope's length past its last line.
pub(crate) fn line_start_byte(rope: &Rope, line_idx: usize) -> usize {
    if line_idx >= rope.len_lines() {
        rope.len_bytes()
    } else {
        rope.line_to_byte(line_idx)
    }
}

/// The byte after line `line_idx`, its line break included: the next line's first byte, or the
/// rope's length on the last line.
pub(crate) fn line_end_byte(rope: &Rope, line_idx: usize) -> usize {
    line_start_byte(rope, line_idx + 1)
}

/// The first byte of the line that holds `byte_idx`.
pub(crate) fn line_start_of(rope: &Rope, byte_idx: usize) -> usize {
    rope.line_to_byte(rope.byte_to_line(byte_idx.min(rope.len_bytes())))
}

/// The text of the line that holds `byte_idx`, up to `byte_idx`.
pub(crate) fn line_head(rope: &Rope, byte_idx: usize) -> String {
    slice(rope, line_start_of(rope, byte_idx)..byte_idx)
}

/// `byte_idx` clamped to the rope and moved back to the start of the character it falls in.
pub(crate) fn floor_char_boundary(rope: &Rope, byte_idx: usize) -> usize {
    let byte_idx = byte_idx.min(rope.len_bytes());
    rope.char_to_byte(rope.byte_to_char(byte_idx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_are_clamped_to_the_rope() {
        let rope = Rope::from_str("ab\ncd");
        assert_eq!(slice(&rope, 1..4), "b\nc");
        assert_eq!(slice(&rope, 3..99), "cd");
        assert_eq!(slice(&rope, 50..99), "");
    }

    #[test]
    fn whole_lines_each_end_in_a_line_break() {
        let rope = Rope::from_str("one\ntwo\nthree");
        assert_eq!(lines(&rope, 1..3), "two\nthree\n");
        assert_eq!(lines(&rope, 0..1), "one\n");
        assert_eq!(lines(&rope, 2..9), "three\n");
        assert_eq!(lines(&rope, 3..9), "");
    }

    #[test]
    fn line_bounds_are_bytes_and_stop_at_the_end() {
        let rope = Rope::from_str("é\nxy\n");
        assert_eq!(line_start_byte(&rope, 1), 3);
        assert_eq!(line_end_byte(&rope, 0), 3);
        assert_eq!(line_end_byte(&rope, 1), 6);
        assert_eq!(line_end_byte(&rope, 2), 6);
        assert_eq!(line_start_byte(&rope, 9), 6);
        assert_eq!(line_start_of(&rope, 5), 3);
        assert_eq!(line_start_of(&rope, 99), 6);
        assert_eq!(line_head(&rope, 5), "xy");
    }

    #[test]
    fn a_byte_inside_a_character_moves_to_its_start() {
        let rope = Rope::from_str("aé");
        assert_eq!(floor_char_boundary(&rope, 2), 1);
        assert_eq!(floor_char_boundary(&rope, 3), 3);
        assert_eq!(floor_char_boundary(&rope, 9), 3);
    }
}
