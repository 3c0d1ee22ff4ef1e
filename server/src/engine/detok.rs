//! UTF-8-safe streaming of token pieces: a token's bytes may end in the middle of a multibyte
//! character, so bytes are held back until the character is complete.
//!
//! What a token's bytes are is the backend's business; this module only turns a stream of byte
//! pieces into a stream of whole `char`s.

/// Turns byte pieces into text, holding back an incomplete trailing character.
#[derive(Debug, Default)]
pub(crate) struct Detokenizer {
    pending: Vec<u8>,
}

impl Detokenizer {
    /// Appends `piece` and returns the text that is now complete. Bytes that can never become
    /// valid UTF-8 come out as U+FFFD, so the stream never stalls on a broken piece.
    pub(crate) fn push(&mut self, piece: &[u8]) -> String {
        self.pending.extend_from_slice(piece);
        let mut text = String::new();
        let mut start = 0;
        loop {
            match std::str::from_utf8(&self.pending[start..]) {
                Ok(valid) => {
                    text.push_str(valid);
                    start = self.pending.len();
                    break;
                }
                Err(error) => {
                    let valid_len = error.valid_up_to();
                    let valid = std::str::from_utf8(&self.pending[start..start + valid_len])
                        .expect("from_utf8 reported these bytes as valid");
                    text.push_str(valid);
                    start += valid_len;
                    match error.error_len() {
                        Some(invalid_len) => {
                            text.push(char::REPLACEMENT_CHARACTER);
                            start += invalid_len;
                        }
                        // An incomplete character at the end: wait for the next piece.
                        None => break,
                    }
                }
            }
        }
        self.pending.drain(..start);
        text
    }

    /// Bytes held back because they do not yet form a whole character. A stream that ends with
    /// some drops them: half a character is never worth inserting into a document.
    pub(crate) fn n_pending_bytes(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(pieces: &[&[u8]], expect: &[&str], expect_n_pending: usize) {
        let mut detok = Detokenizer::default();
        let outputs: Vec<String> = pieces.iter().map(|piece| detok.push(piece)).collect();
        assert_eq!(outputs, expect);
        assert_eq!(detok.n_pending_bytes(), expect_n_pending);
    }

    #[test]
    fn ascii_passes_through() {
        check(&[b"fn ", b"main"], &["fn ", "main"], 0);
    }

    #[test]
    fn multibyte_char_split_across_pieces_is_held_back() {
        // "é" is C3 A9; "€" is E2 82 AC.
        check(
            &[b"caf\xC3", b"\xA9 ", b"\xE2", b"\x82", b"\xAC!"],
            &["caf", "é ", "", "", "€!"],
            0,
        );
    }

    #[test]
    fn four_byte_emoji_split_in_every_place() {
        let bytes = "a🦀b".as_bytes();
        for split in 1..bytes.len() {
            let mut detok = Detokenizer::default();
            let mut text = detok.push(&bytes[..split]);
            text += &detok.push(&bytes[split..]);
            assert_eq!(detok.n_pending_bytes(), 0);
            assert_eq!(text, "a🦀b", "split at {split}");
        }
    }

    #[test]
    fn invalid_bytes_become_replacement_chars_without_stalling() {
        check(&[b"a\xFFb", b"\x80c"], &["a\u{FFFD}b", "\u{FFFD}c"], 0);
    }

    #[test]
    fn incomplete_tail_stays_held_back() {
        check(&[b"x\xE2\x82"], &["x"], 2);
    }
}
