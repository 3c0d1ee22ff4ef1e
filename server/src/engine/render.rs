//! Turns a `FimPrompt` into the token sequence the model evaluates, in the layout documented on
//! `FimPrompt`, cut to fit a token budget. Each piece is tokenized on its own and tokenizations
//! of unchanged pieces come from a small cache, so a keystroke costs one short tokenization.
//!
//! What goes into the prompt is `context/`'s decision; this module only lays it out and, as a
//! safety net, cuts it when it does not fit.

use std::collections::VecDeque;
use std::sync::Arc;

use super::backend::{Backend, Token};
use super::FimPrompt;

/// Remembers the tokenizations of recently seen pieces of text.
#[derive(Debug)]
pub(crate) struct TokenCache {
    entries: VecDeque<(String, Arc<[Token]>)>,
    capacity: usize,
    pub n_hits: u64,
    pub n_misses: u64,
}

impl Default for TokenCache {
    fn default() -> Self {
        TokenCache {
            entries: VecDeque::new(),
            capacity: 64,
            n_hits: 0,
            n_misses: 0,
        }
    }
}

impl TokenCache {
    pub(crate) fn tokenize<B: Backend>(&mut self, backend: &B, text: &str) -> Arc<[Token]> {
        if text.is_empty() {
            return Arc::from(Vec::new());
        }
        if let Some(entry_idx) = self.entries.iter().position(|(cached, _)| cached == text) {
            self.n_hits += 1;
            let entry = self
                .entries
                .remove(entry_idx)
                .expect("index from position()");
            let tokens = entry.1.clone();
            self.entries.push_front(entry);
            return tokens;
        }
        self.n_misses += 1;
        let tokens: Arc<[Token]> = Arc::from(backend.tokenize(text, false));
        self.entries.push_front((text.to_owned(), tokens.clone()));
        self.entries.truncate(self.capacity);
        tokens
    }
}

/// A prompt ready to evaluate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rendered {
    pub tokens: Vec<Token>,
    /// Something was left out or cut to fit the budget.
    pub truncated: bool,
    /// How many of the last tokens are the line head's.
    pub n_line_head: usize,
}

/// Lays out `prompt` for a model with `special` tokens in at most `budget` tokens.
///
/// Cutting order when it does not fit: extra chunks from the last one back (the first ones are
/// the most stable, so keeping them keeps the KV cache reusable), then the suffix and prefix
/// together (the prefix keeps its tail and gets up to three quarters of the room; the suffix
/// keeps its head), and in the extreme the line head keeps its tail.
pub(crate) fn render<B: Backend>(
    backend: &B,
    cache: &mut TokenCache,
    prompt: &FimPrompt,
    budget: usize,
) -> Rendered {
    let special = backend.special_tokens();
    let mut head: Vec<Token> = special.bos.into_iter().collect();
    let mut truncated = false;

    let Some((fim_prefix, fim_suffix, fim_middle)) = special.fim() else {
        // Prefix-only prompt: the text before the cursor and nothing else.
        truncated |= !prompt.extra.is_empty() || !prompt.suffix.is_empty();
        let prefix = cache.tokenize(backend, &prompt.prefix);
        let line_head = cache.tokenize(backend, &prompt.line_head);
        let room = budget.saturating_sub(head.len());
        let line_head = keep_tail(&line_head, room, &mut truncated);
        let prefix = keep_tail(&prefix, room - line_head.len(), &mut truncated);
        head.extend_from_slice(prefix);
        head.extend_from_slice(line_head);
        return Rendered {
            tokens: head,
            truncated,
            n_line_head: line_head.len(),
        };
    };

    let mut chunks: Vec<Vec<Token>> = Vec::new();
    let mut file_header = Vec::new();
    if let Some(file_sep) = special.file_sep {
        if let (Some(repo_token), Some(repo_name)) = (special.repo_name, &prompt.repo_name) {
            let mut chunk = vec![repo_token];
            chunk.extend_from_slice(&cache.tokenize(backend, &format!("{repo_name}\n")));
            chunks.push(chunk);
        }
        for extra in &prompt.extra {
            let newline = if extra.text.ends_with('\n') { "" } else { "\n" };
            let mut chunk = vec![file_sep];
            let text = format!("{}\n{}{newline}", extra.path, extra.text);
            chunk.extend_from_slice(&cache.tokenize(backend, &text));
            chunks.push(chunk);
        }
        if !prompt.path.is_empty() {
            file_header.push(file_sep);
            file_header.extend_from_slice(&cache.tokenize(backend, &format!("{}\n", prompt.path)));
        }
    } else {
        truncated |= !prompt.extra.is_empty();
    }

    let prefix = cache.tokenize(backend, &prompt.prefix);
    let suffix = cache.tokenize(backend, &prompt.suffix);
    let line_head = cache.tokenize(backend, &prompt.line_head);

    let fixed = head.len() + file_header.len() + 3;
    let room = budget.saturating_sub(fixed);
    let line_head = keep_tail(&line_head, room / 2, &mut truncated);
    let room = room - line_head.len();
    let n_text = prefix.len() + suffix.len();
    let mut n_chunks = chunks.iter().map(Vec::len).sum::<usize>();
    while n_text + n_chunks > room {
        match chunks.pop() {
            Some(chunk) => {
                n_chunks -= chunk.len();
                truncated = true;
            }
            None => break,
        }
    }
    let room = room - n_chunks.min(room);
    let (n_prefix, n_suffix) = if n_text <= room {
        (prefix.len(), suffix.len())
    } else {
        truncated = true;
        let n_suffix = suffix
            .len()
            .min((room / 4).max(room.saturating_sub(prefix.len())));
        (prefix.len().min(room - n_suffix), n_suffix)
    };

    for chunk in &chunks {
        head.extend_from_slice(chunk);
    }
    head.extend_from_slice(&file_header);
    head.push(fim_prefix);
    head.extend_from_slice(&prefix[prefix.len() - n_prefix..]);
    head.push(fim_suffix);
    head.extend_from_slice(&suffix[..n_suffix]);
    head.push(fim_middle);
    head.extend_from_slice(line_head);
    Rendered {
        tokens: head,
        truncated,
        n_line_head: line_head.len(),
    }
}

/// Most line-head tokens token healing takes back.
const MAX_HEALED_TOKENS: usize = 3;

/// Token healing: removes the line head's last token from `rendered`, and the ones before it
/// while together they start a longer token, and returns their text, which generation then has
/// to produce again (and leaves out of the answer). A line head cut anywhere (the user stopped
/// typing in the middle of a word) tokenizes differently from the same text inside a longer
/// word: `ui` alone is not the start of `uint8_t`'s tokens, and `        asser` ends in ` as` +
/// `ser` where `assert_eq!(` is ` assert` + `_eq`. The model, seeing a token boundary it never
/// saw in training, tends to skip or repeat characters; choosing the taken-back text again lets
/// it pick one token that continues the word. At least one token always remains.
pub(crate) fn take_back_line_head_tokens<B: Backend>(
    backend: &B,
    rendered: &mut Rendered,
) -> Vec<u8> {
    let mut taken = Vec::new();
    let mut n_taken = 0;
    while rendered.n_line_head > 0 && rendered.tokens.len() >= 2 {
        let last = *rendered.tokens.last().expect("at least two tokens");
        let piece = backend.piece(last);
        if piece.is_empty() {
            break;
        }
        let mut candidate = piece;
        candidate.extend_from_slice(&taken);
        // The last token is always taken back; earlier ones only when a longer token starts
        // with the text taken so far, since otherwise the model can only spell them again.
        if n_taken > 0
            && (n_taken >= MAX_HEALED_TOKENS || !backend.extends_to_a_longer_token(&candidate))
        {
            break;
        }
        rendered.tokens.pop();
        rendered.n_line_head -= 1;
        n_taken += 1;
        taken = candidate;
    }
    taken
}

fn keep_tail<'a>(tokens: &'a [Token], max_len: usize, truncated: &mut bool) -> &'a [Token] {
    if tokens.len() > max_len {
        *truncated = true;
        &tokens[tokens.len() - max_len..]
    } else {
        tokens
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::backend::fake::{
        tokens, Fake, FakeOptions, FILE_SEP, FIM_MIDDLE, FIM_PREFIX, FIM_SUFFIX, REPO_NAME,
    };
    use crate::engine::ContextChunk;

    /// Renders `prompt` on the fake backend (one token per byte) and spells the result with
    /// the special tokens as `<P>`, `<S>`, `<M>`, `<F>`, `<R>`.
    fn check(prompt: &FimPrompt, has_fim: bool, budget: usize, expect: &str, expect_cut: bool) {
        let fake = Fake::new(FakeOptions {
            has_fim,
            ..FakeOptions::default()
        });
        let rendered = render(&fake, &mut TokenCache::default(), prompt, budget);
        let spelled: String = rendered
            .tokens
            .iter()
            .map(|&token| match token {
                FIM_PREFIX => "<P>".to_owned(),
                FIM_SUFFIX => "<S>".to_owned(),
                FIM_MIDDLE => "<M>".to_owned(),
                FILE_SEP => "<F>".to_owned(),
                REPO_NAME => "<R>".to_owned(),
                byte => String::from_utf8(fake.piece(byte)).unwrap(),
            })
            .collect();
        assert_eq!(spelled, expect);
        assert_eq!(rendered.truncated, expect_cut);
        assert!(rendered.tokens.len() <= budget);
    }

    fn prompt() -> FimPrompt {
        FimPrompt {
            repo_name: Some("ws".into()),
            extra: vec![
                ContextChunk {
                    path: "a.rs".into(),
                    label: "definition".into(),
                    text: "fn a()".into(),
                },
                ContextChunk {
                    path: "b.rs".into(),
                    label: "open-file".into(),
                    text: "fn b()\n".into(),
                },
            ],
            path: "m.rs".into(),
            prefix: "fn main() {\n".into(),
            suffix: "\n}\n".into(),
            line_head: "    let".into(),
        }
    }

    #[test]
    fn full_layout_with_repo_and_files() {
        check(
            &prompt(),
            true,
            1000,
            "<R>ws\n<F>a.rs\nfn a()\n<F>b.rs\nfn b()\n<F>m.rs\n<P>fn main() {\n<S>\n}\n<M>    let",
            false,
        );
    }

    #[test]
    fn extras_are_dropped_from_the_end_first() {
        // 61 tokens in all; the chunk for b.rs is 13 of them.
        check(
            &prompt(),
            true,
            50,
            "<R>ws\n<F>a.rs\nfn a()\n<F>m.rs\n<P>fn main() {\n<S>\n}\n<M>    let",
            true,
        );
    }

    #[test]
    fn prefix_keeps_its_tail_and_suffix_its_head() {
        let prompt = FimPrompt {
            prefix: "0123456789abcdefghij".into(),
            suffix: "ABCDEFGHIJ".into(),
            line_head: "x".into(),
            ..FimPrompt::default()
        };
        // 3 FIM tokens + 1 line head token leave 16: the suffix keeps 4, the prefix 12.
        check(&prompt, true, 20, "<P>89abcdefghij<S>ABCD<M>x", true);
    }

    #[test]
    fn short_prefix_leaves_the_room_to_the_suffix() {
        let prompt = FimPrompt {
            prefix: "ab".into(),
            suffix: "ABCDEFGHIJKLMNOP".into(),
            line_head: "x".into(),
            ..FimPrompt::default()
        };
        check(&prompt, true, 12, "<P>ab<S>ABCDEF<M>x", true);
    }

    #[test]
    fn models_without_fim_tokens_get_prefix_only_prompts() {
        check(&prompt(), false, 1000, "fn main() {\n    let", true);
        let plain = FimPrompt {
            prefix: "abc\n".into(),
            line_head: "de".into(),
            ..FimPrompt::default()
        };
        check(&plain, false, 4, "c\nde", true);
    }

    #[test]
    fn unchanged_pieces_come_from_the_cache() {
        let fake = Fake::new(FakeOptions::default());
        let mut cache = TokenCache::default();
        let mut prompt = prompt();
        render(&fake, &mut cache, &prompt, 1000);
        let misses_first = cache.n_misses;
        prompt.line_head.push('x');
        let rendered = render(&fake, &mut cache, &prompt, 1000);
        // Only the line head is tokenized again.
        assert_eq!(cache.n_misses, misses_first + 1);
        assert!(rendered.tokens.ends_with(&tokens("    letx")));
    }
}
