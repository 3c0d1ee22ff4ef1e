//! Position conversion (`server/src/lsp/convert.rs`) in UTF-8, UTF-16 and UTF-32, against the
//! client-side arithmetic in `wellspring_fuzz::client_text`, on text full of line-break and
//! encoding edge cases.

use proptest::prelude::*;
use ropey::Rope;
use tower_lsp_server::ls_types::{Position, PositionEncodingKind, Range};
use wellspring::lsp::convert::{self, Leniency, PositionEncoding, PositionError};
use wellspring_fuzz::client_text::{self, Invalid};
use wellspring_fuzz::{fuzz, gen, Limits};

const ENCODINGS: [PositionEncoding; 3] = [
    PositionEncoding::Utf8,
    PositionEncoding::Utf16,
    PositionEncoding::Utf32,
];

fn encoding() -> BoxedStrategy<PositionEncoding> {
    prop::sample::select(ENCODINGS.to_vec()).boxed()
}

/// A line or column: near the text most of the time, at the edges of `u32` sometimes.
fn coordinate() -> BoxedStrategy<u32> {
    prop_oneof![
        12 => 0..24_u32,
        1 => prop::sample::select(vec![u32::MAX, u32::MAX - 1, i32::MAX as u32, 1 << 31]),
        1 => any::<u32>(),
    ]
    .boxed()
}

fn position() -> BoxedStrategy<Position> {
    (coordinate(), coordinate())
        .prop_map(|(line, character)| Position::new(line, character))
        .boxed()
}

fn same_error(got: &PositionError, expected: Invalid) -> bool {
    matches!(
        (got, expected),
        (
            PositionError::LineOutOfRange { .. },
            Invalid::LineOutOfRange
        ) | (
            PositionError::InsideCharacter { .. },
            Invalid::InsideCharacter
        )
    )
}

#[test]
fn positions_match_the_clients_arithmetic() {
    let strategy = (
        gen::text(24),
        encoding(),
        proptest::collection::vec(position(), 1..8),
    );
    fuzz("convert_positions", Limits::FAST, strategy, |_| {
        |(text, encoding, positions): (String, PositionEncoding, Vec<Position>)| {
            let rope = Rope::from_str(&text);
            // Every character boundary that does not split a CRLF has one position, and it leads
            // back to the same byte.
            for byte_idx in (0..=text.len()).filter(|&byte_idx| text.is_char_boundary(byte_idx)) {
                let got = convert::position(&rope, byte_idx, encoding);
                if client_text::splits_crlf(&text, byte_idx) {
                    // A byte between CR and LF has no position of its own; it reads as the end
                    // of the line's content.
                    let back = convert::byte_offset(&rope, got, encoding, Leniency::Strict);
                    prop_assert_eq!(back, Ok(byte_idx - 1), "{:?} byte {}", text, byte_idx);
                    continue;
                }
                let (line, character) = client_text::position(&text, byte_idx, encoding);
                prop_assert_eq!(
                    got,
                    Position::new(line, character),
                    "{:?} byte {}",
                    text,
                    byte_idx
                );
                let back = convert::byte_offset(&rope, got, encoding, Leniency::Strict);
                prop_assert_eq!(back, Ok(byte_idx), "{:?} at {:?}", text, got);
            }
            // Any position: the strict answer agrees with the client's, the clamped one too.
            for position in positions {
                let (line, character) = (position.line, position.character);
                let strict = convert::byte_offset(&rope, position, encoding, Leniency::Strict);
                match client_text::byte_offset(&text, line, character, encoding) {
                    Ok(expected) => {
                        prop_assert_eq!(&strict, &Ok(expected), "{:?} {:?}", text, position)
                    }
                    Err(expected) => prop_assert!(
                        strict
                            .as_ref()
                            .is_err_and(|error| same_error(error, expected)),
                        "{:?} {:?}: got {:?}, expected {:?}",
                        text,
                        position,
                        strict,
                        expected
                    ),
                }
                let clamped = convert::byte_offset(&rope, position, encoding, Leniency::Clamp);
                let expected = client_text::byte_offset_clamped(&text, line, character, encoding);
                prop_assert_eq!(clamped, Ok(expected), "clamped {:?} {:?}", text, position);
            }
            Ok(())
        }
    });
}

#[test]
fn ranges_are_ordered_or_refused() {
    let strategy = (gen::text(16), encoding(), position(), position());
    fuzz("convert_ranges", Limits::FAST, strategy, |_| {
        |(text, encoding, start, end): (String, PositionEncoding, Position, Position)| {
            let rope = Rope::from_str(&text);
            let range = Range::new(start, end);
            let start_byte = client_text::byte_offset(&text, start.line, start.character, encoding);
            let end_byte = client_text::byte_offset(&text, end.line, end.character, encoding);
            let strict = convert::byte_range(&rope, range, encoding, Leniency::Strict);
            match (start_byte, end_byte) {
                (Ok(start_byte), Ok(end_byte)) if start_byte <= end_byte => {
                    prop_assert_eq!(strict, Ok(start_byte..end_byte));
                }
                (Ok(_), Ok(_)) => prop_assert!(
                    matches!(strict, Err(PositionError::Reversed { .. })),
                    "{:?}",
                    strict
                ),
                _ => prop_assert!(strict.is_err()),
            }
            let clamped = convert::byte_range(&rope, range, encoding, Leniency::Clamp)
                .map_err(|error| TestCaseError::fail(format!("clamping failed: {error}")))?;
            prop_assert!(clamped.start <= clamped.end && clamped.end <= text.len());
            prop_assert!(
                text.is_char_boundary(clamped.start) && text.is_char_boundary(clamped.end)
            );
            prop_assert!(!client_text::splits_crlf(&text, clamped.start));
            prop_assert!(!client_text::splits_crlf(&text, clamped.end));
            // Any byte at all, even past the end or inside a character, has a position.
            for byte_idx in [clamped.start, clamped.end, text.len() + 3, text.len() / 2] {
                let _ = convert::range(&rope, byte_idx.min(text.len())..byte_idx, encoding);
            }
            Ok(())
        }
    });
}

#[test]
fn negotiation_picks_an_offered_encoding() {
    let kind = prop::sample::select(vec![
        "utf-8", "utf-16", "utf-32", "UTF-8", "utf8", "", "latin1",
    ]);
    let strategy = prop::option::of(proptest::collection::vec(kind, 0..4));
    fuzz("convert_negotiation", Limits::FAST, strategy, |_| {
        |offered: Option<Vec<&'static str>>| {
            let kinds: Option<Vec<PositionEncodingKind>> = offered.as_ref().map(|offered| {
                offered
                    .iter()
                    .map(|kind| PositionEncodingKind::new(kind))
                    .collect()
            });
            let chosen = PositionEncoding::negotiate(kinds.as_deref());
            let names = offered.unwrap_or_default();
            let expected = if names.contains(&"utf-8") {
                PositionEncoding::Utf8
            } else if names.contains(&"utf-32") {
                PositionEncoding::Utf32
            } else {
                PositionEncoding::Utf16
            };
            prop_assert_eq!(chosen, expected);
            prop_assert_eq!(
                PositionEncoding::negotiate(Some(&[chosen.to_kind()])),
                chosen
            );
            Ok(())
        }
    });
}
