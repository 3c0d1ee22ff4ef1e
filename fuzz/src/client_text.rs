//! The client's side of position arithmetic, written from the LSP specification on a plain
//! `String`, so the targets can check the server's `lsp/convert.rs` (built on a rope) against it.
//!
//! LSP lines end at `\n`, `\r\n` or a lone `\r`; nothing else ends a line (not U+2028, not NEL,
//! not a form feed). A column counts code units of the negotiated encoding. Positions the
//! specification calls invalid are resolved the way the server documents for edits: a column past
//! the end of its line means the end of the line, a line past the end means the end of the text,
//! and a column inside a character means the start of that character.

use wellspring::lsp::convert::PositionEncoding;

/// Why a position is invalid, in the terms of `lsp/convert.rs`'s `PositionError`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    LineOutOfRange,
    InsideCharacter,
}

/// Each line's start byte and the byte where its content ends (before its terminator).
pub fn lines(text: &str) -> Vec<(usize, usize)> {
    let bytes = text.as_bytes();
    let mut lines = Vec::new();
    let mut line_start = 0;
    let mut byte_idx = 0;
    while byte_idx < bytes.len() {
        match bytes[byte_idx] {
            b'\n' => {
                lines.push((line_start, byte_idx));
                line_start = byte_idx + 1;
            }
            b'\r' if bytes.get(byte_idx + 1) == Some(&b'\n') => {
                lines.push((line_start, byte_idx));
                byte_idx += 1;
                line_start = byte_idx + 1;
            }
            b'\r' => {
                lines.push((line_start, byte_idx));
                line_start = byte_idx + 1;
            }
            _ => {}
        }
        byte_idx += 1;
    }
    lines.push((line_start, bytes.len()));
    lines
}

pub fn units(character: char, encoding: PositionEncoding) -> usize {
    match encoding {
        PositionEncoding::Utf8 => character.len_utf8(),
        PositionEncoding::Utf16 => character.len_utf16(),
        PositionEncoding::Utf32 => 1,
    }
}

/// The byte a position stands for, or why it is invalid.
pub fn byte_offset(
    text: &str,
    line: u32,
    character: u32,
    encoding: PositionEncoding,
) -> Result<usize, Invalid> {
    let lines = lines(text);
    let Some(&(line_start, content_end)) = lines.get(line as usize) else {
        return Err(Invalid::LineOutOfRange);
    };
    let mut column = 0_usize;
    for (byte_idx, character_here) in text[line_start..content_end].char_indices() {
        if column == character as usize {
            return Ok(line_start + byte_idx);
        }
        column += units(character_here, encoding);
        if column > character as usize {
            return Err(Invalid::InsideCharacter);
        }
    }
    Ok(content_end)
}

/// The byte an edit at this position applies to, with invalid positions resolved as the module
/// comment says.
pub fn byte_offset_clamped(
    text: &str,
    line: u32,
    character: u32,
    encoding: PositionEncoding,
) -> usize {
    let lines = lines(text);
    let Some(&(line_start, content_end)) = lines.get(line as usize) else {
        return text.len();
    };
    let mut column = 0_usize;
    for (byte_idx, character_here) in text[line_start..content_end].char_indices() {
        column += units(character_here, encoding);
        if column > character as usize {
            return line_start + byte_idx;
        }
    }
    content_end
}

/// The position of a byte on a character boundary that does not split a `\r\n`.
pub fn position(text: &str, byte_idx: usize, encoding: PositionEncoding) -> (u32, u32) {
    let lines = lines(text);
    let line = lines
        .iter()
        .rposition(|&(line_start, _)| line_start <= byte_idx)
        .expect("the first line starts at 0");
    let character: usize = text[lines[line].0..byte_idx]
        .chars()
        .map(|character| units(character, encoding))
        .sum();
    (line as u32, character as u32)
}

/// Whether `byte_idx` falls between the `\r` and the `\n` of a line break.
pub fn splits_crlf(text: &str, byte_idx: usize) -> bool {
    byte_idx > 0
        && text.as_bytes().get(byte_idx - 1) == Some(&b'\r')
        && text.as_bytes().get(byte_idx) == Some(&b'\n')
}

/// The `pick`-th (modulo their number) character boundary of `text` that does not split a CRLF,
/// the way a client addresses bytes.
pub fn client_byte(text: &str, pick: usize) -> usize {
    let boundaries: Vec<usize> = (0..=text.len())
        .filter(|&byte_idx| text.is_char_boundary(byte_idx) && !splits_crlf(text, byte_idx))
        .collect();
    boundaries[pick % boundaries.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_end_at_lf_crlf_and_lone_cr_only() {
        assert_eq!(
            lines("a\nb\r\nc\rd\u{2028}e\u{85}"),
            vec![(0, 1), (2, 3), (5, 6), (7, 14)]
        );
        assert_eq!(lines(""), vec![(0, 0)]);
        assert_eq!(lines("\r\r\n"), vec![(0, 0), (1, 1), (3, 3)]);
    }

    #[test]
    fn positions_count_the_encodings_units() {
        let text = "a😀b\r\nλ";
        assert_eq!(byte_offset(text, 0, 3, PositionEncoding::Utf16), Ok(5));
        assert_eq!(
            byte_offset(text, 0, 2, PositionEncoding::Utf16),
            Err(Invalid::InsideCharacter)
        );
        assert_eq!(byte_offset_clamped(text, 0, 2, PositionEncoding::Utf16), 1);
        assert_eq!(byte_offset(text, 0, 9, PositionEncoding::Utf32), Ok(6));
        assert_eq!(
            byte_offset(text, 2, 0, PositionEncoding::Utf8),
            Err(Invalid::LineOutOfRange)
        );
        assert_eq!(position(text, 8, PositionEncoding::Utf8), (1, 0));
        assert_eq!(position(text, 10, PositionEncoding::Utf16), (1, 1));
    }
}
