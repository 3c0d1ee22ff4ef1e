//! Conversions between LSP positions (in the negotiated encoding) and byte offsets, and from the
//! engine's facts to the extension types.
//!
//! This is the only place that knows UTF-16 and UTF-32 columns. Everything inside the server
//! works in byte offsets into the document's rope.

use ropey::{Rope, RopeSlice};
use tower_lsp_server::ls_types::{Position, PositionEncodingKind, Range};

/// The column unit negotiated in `initialize`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PositionEncoding {
    Utf8,
    Utf16,
    Utf32,
}

impl PositionEncoding {
    /// Picks the cheapest encoding the client offers; UTF-16 when it offers none (the spec's default).
    pub fn negotiate(offered: Option<&[PositionEncodingKind]>) -> PositionEncoding {
        let offered = offered.unwrap_or_default();
        if offered.contains(&PositionEncodingKind::UTF8) {
            PositionEncoding::Utf8
        } else if offered.contains(&PositionEncodingKind::UTF32) {
            PositionEncoding::Utf32
        } else {
            PositionEncoding::Utf16
        }
    }

    pub fn to_kind(self) -> PositionEncodingKind {
        match self {
            PositionEncoding::Utf8 => PositionEncodingKind::UTF8,
            PositionEncoding::Utf16 => PositionEncodingKind::UTF16,
            PositionEncoding::Utf32 => PositionEncodingKind::UTF32,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PositionError {
    #[error("line {line} is past the end of the document ({n_lines} lines)")]
    LineOutOfRange { line: u32, n_lines: usize },
    #[error("position {line}:{character} falls inside a character (for example between the halves of a UTF-16 surrogate pair)")]
    InsideCharacter { line: u32, character: u32 },
    #[error("range end {end:?} is before its start {start:?}")]
    Reversed { start: Position, end: Position },
}

/// How to treat positions the spec calls invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leniency {
    /// Requests: report the error to the client.
    Strict,
    /// Edits: clamp to the document and snap to character boundaries, so the server's copy stays
    /// as close to the client's as the client's own mistake allows.
    Clamp,
}

/// The line's text without its line terminator.
fn line_content(line: RopeSlice<'_>) -> RopeSlice<'_> {
    let mut len_chars = line.len_chars();
    if len_chars > 0 && line.char(len_chars - 1) == '\n' {
        len_chars -= 1;
    }
    if len_chars > 0 && line.char(len_chars - 1) == '\r' {
        len_chars -= 1;
    }
    line.slice(..len_chars)
}

/// Converts an LSP position to a byte offset. A column past the end of its line means the end of
/// the line, as the spec says; the other cases follow `leniency`.
pub fn byte_offset(
    rope: &Rope,
    position: Position,
    encoding: PositionEncoding,
    leniency: Leniency,
) -> Result<usize, PositionError> {
    let line_idx = position.line as usize;
    if line_idx >= rope.len_lines() {
        return match leniency {
            Leniency::Strict => Err(PositionError::LineOutOfRange {
                line: position.line,
                n_lines: rope.len_lines(),
            }),
            Leniency::Clamp => Ok(rope.len_bytes()),
        };
    }
    let line_start_byte = rope.line_to_byte(line_idx);
    let content = line_content(rope.line(line_idx));
    let character = position.character as usize;
    let char_idx = match encoding {
        PositionEncoding::Utf8 => {
            let byte_idx = character.min(content.len_bytes());
            let char_idx = content.byte_to_char(byte_idx);
            if content.char_to_byte(char_idx) != byte_idx && leniency == Leniency::Strict {
                return Err(PositionError::InsideCharacter {
                    line: position.line,
                    character: position.character,
                });
            }
            char_idx
        }
        PositionEncoding::Utf16 => {
            let utf16_col = character.min(content.len_utf16_cu());
            let char_idx = content.utf16_cu_to_char(utf16_col);
            if content.char_to_utf16_cu(char_idx) != utf16_col && leniency == Leniency::Strict {
                return Err(PositionError::InsideCharacter {
                    line: position.line,
                    character: position.character,
                });
            }
            char_idx
        }
        PositionEncoding::Utf32 => character.min(content.len_chars()),
    };
    Ok(line_start_byte + content.char_to_byte(char_idx))
}

/// Converts an LSP range to a byte range.
pub fn byte_range(
    rope: &Rope,
    range: Range,
    encoding: PositionEncoding,
    leniency: Leniency,
) -> Result<std::ops::Range<usize>, PositionError> {
    let start_byte = byte_offset(rope, range.start, encoding, leniency)?;
    let end_byte = byte_offset(rope, range.end, encoding, leniency)?;
    if end_byte < start_byte {
        return match leniency {
            Leniency::Strict => Err(PositionError::Reversed {
                start: range.start,
                end: range.end,
            }),
            Leniency::Clamp => Ok(end_byte..start_byte),
        };
    }
    Ok(start_byte..end_byte)
}

/// Converts a byte offset (on a character boundary) to an LSP position.
pub fn position(rope: &Rope, byte_idx: usize, encoding: PositionEncoding) -> Position {
    let byte_idx = byte_idx.min(rope.len_bytes());
    let line_idx = rope.byte_to_line(byte_idx);
    let line_start_char = rope.line_to_char(line_idx);
    let char_idx = rope.byte_to_char(byte_idx);
    let character = match encoding {
        PositionEncoding::Utf8 => byte_idx - rope.line_to_byte(line_idx),
        PositionEncoding::Utf16 => {
            rope.char_to_utf16_cu(char_idx) - rope.char_to_utf16_cu(line_start_char)
        }
        PositionEncoding::Utf32 => char_idx - line_start_char,
    };
    Position::new(line_idx as u32, character as u32)
}

pub fn range(rope: &Rope, bytes: std::ops::Range<usize>, encoding: PositionEncoding) -> Range {
    Range::new(
        position(rope, bytes.start, encoding),
        position(rope, bytes.end, encoding),
    )
}

/// Why a completion stopped, as the wire names it.
pub(crate) fn stop(reason: crate::engine::StopReason) -> crate::lsp::ext::StopResult {
    use crate::engine::StopReason;
    use crate::lsp::ext::StopResult;
    match reason {
        StopReason::EndOfGeneration => StopResult::EndOfGeneration,
        StopReason::EndOfLine => StopResult::EndOfLine,
        StopReason::StopString => StopResult::StopString,
        StopReason::MaxTokens => StopResult::MaxTokens,
        StopReason::TimeBudget => StopResult::TimeBudget,
        StopReason::ContextFull => StopResult::ContextFull,
        StopReason::SuffixReached => StopResult::SuffixReached,
        StopReason::SuggestionComplete => StopResult::SuggestionComplete,
        StopReason::TypedAhead => StopResult::TypedAhead,
        StopReason::EmptyPrompt => StopResult::EmptyPrompt,
    }
}

/// Where the model runs, for `wellspring/serverInfo` and `wellspring/status`.
pub(crate) fn device(placement: &crate::engine::Placement) -> crate::lsp::ext::DeviceResult {
    crate::lsp::ext::DeviceResult {
        backend: placement.backend.clone(),
        name: placement.device.clone(),
        layers_offloaded: placement.n_layers_offloaded,
        layers: placement.n_layers,
        memory_used: placement.device_memory_used,
        memory_total: placement.device_memory_total,
        memory_planned: placement.device_memory_planned,
    }
}

/// "cpu", or "vulkan (llvmpipe (LLVM 15.0.6, 256 bits), 24/24 layers)" for status messages.
pub(crate) fn describe_placement(placement: &crate::engine::Placement) -> String {
    if let Some(endpoint) = &placement.endpoint {
        return format!("{} at {endpoint} ({})", placement.backend, placement.device);
    }
    if placement.n_layers_offloaded == 0 || placement.device.is_empty() {
        return placement.backend.clone();
    }
    format!(
        "{} ({}, {}/{} layers)",
        placement.backend, placement.device, placement.n_layers_offloaded, placement.n_layers
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(
        text: &str,
        line: u32,
        character: u32,
        encoding: PositionEncoding,
        expect: Result<usize, ()>,
    ) {
        let rope = Rope::from_str(text);
        let got = byte_offset(
            &rope,
            Position::new(line, character),
            encoding,
            Leniency::Strict,
        );
        assert_eq!(
            got.clone().map_err(|_| ()),
            expect,
            "{text:?} {line}:{character} {encoding:?}"
        );
        if let Ok(byte_idx) = got {
            // Round trip, except where the column was clamped to the end of the line.
            let back = position(&rope, byte_idx, encoding);
            assert_eq!(back.line, line);
        }
    }

    #[test]
    fn columns_in_each_encoding() {
        let text = "a😀b\r\nλx\n";
        check(text, 0, 1, PositionEncoding::Utf16, Ok(1));
        check(text, 0, 3, PositionEncoding::Utf16, Ok(5));
        check(text, 0, 2, PositionEncoding::Utf16, Err(()));
        check(text, 0, 2, PositionEncoding::Utf32, Ok(5));
        check(text, 0, 5, PositionEncoding::Utf8, Ok(5));
        check(text, 0, 3, PositionEncoding::Utf8, Err(()));
        // Past the end of the line clamps to before the CRLF.
        check(text, 0, 99, PositionEncoding::Utf16, Ok(6));
        check(text, 1, 1, PositionEncoding::Utf16, Ok(10));
        check(text, 2, 0, PositionEncoding::Utf16, Ok(text.len()));
        check(text, 3, 0, PositionEncoding::Utf16, Err(()));
    }

    #[test]
    fn negotiation_prefers_utf8_then_utf32() {
        let offered = [PositionEncodingKind::UTF16, PositionEncodingKind::UTF32];
        assert_eq!(
            PositionEncoding::negotiate(Some(&offered)),
            PositionEncoding::Utf32
        );
        let offered = [PositionEncodingKind::UTF32, PositionEncodingKind::UTF8];
        assert_eq!(
            PositionEncoding::negotiate(Some(&offered)),
            PositionEncoding::Utf8
        );
        assert_eq!(PositionEncoding::negotiate(None), PositionEncoding::Utf16);
    }

    #[test]
    fn positions_round_trip() {
        let rope = Rope::from_str("x = \"ü😀\"\n\tfoo\r\nbar");
        for encoding in [
            PositionEncoding::Utf8,
            PositionEncoding::Utf16,
            PositionEncoding::Utf32,
        ] {
            for char_idx in 0..=rope.len_chars() {
                let byte_idx = rope.char_to_byte(char_idx);
                let lsp_position = position(&rope, byte_idx, encoding);
                let back = byte_offset(&rope, lsp_position, encoding, Leniency::Strict).unwrap();
                // A position between '\r' and '\n' maps to the end of the line's content.
                let expected = if rope.get_char(char_idx.wrapping_sub(1)) == Some('\r') {
                    byte_idx - 1
                } else {
                    byte_idx
                };
                assert_eq!(back, expected, "{encoding:?} char {char_idx}");
            }
        }
    }
}
