//! The engine's input for one fill-in-the-middle completion, and what the engine tells prompt
//! builders about the model. These types are the contract between `context/` (which fills them)
//! and the engine (which tokenizes and evaluates them); neither side reaches past them.

/// A piece of context from elsewhere (another file, a definition, a recent edit).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ContextChunk {
    /// Where the text comes from, relative to the workspace root when it has one.
    pub path: String,
    /// Why it is in the prompt (`definition`, `import`, `recent-edit`, `open-file`, …); shown by
    /// `wellspring prompt`, never sent to the model.
    pub label: String,
    pub text: String,
}

/// One FIM request, laid out so that typing on the cursor's line only changes the prompt's tail.
///
/// Rendered for models with repo-level FIM tokens as
/// `<|repo_name|>{repo_name}\n` (when set), then `<|file_sep|>{path}\n{text}` for each extra chunk,
/// then `<|file_sep|>{path}\n<|fim_prefix|>{prefix}<|fim_suffix|>{suffix}<|fim_middle|>{line_head}`.
/// The line being typed (`line_head`) comes last, after the middle token, so a keystroke on it
/// appends to the prompt instead of invalidating the KV cache of everything after the prefix.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct FimPrompt {
    pub repo_name: Option<String>,
    /// Most stable first: chunks early in the list should change least between requests.
    pub extra: Vec<ContextChunk>,
    /// The current file's path, relative to the workspace root when it has one.
    pub path: String,
    /// The current file's text before the cursor's line (cut to the budget at syntax boundaries).
    pub prefix: String,
    /// The text after the cursor: the rest of the cursor's line, then the lines below.
    pub suffix: String,
    /// The cursor's line up to the cursor.
    pub line_head: String,
}

impl FimPrompt {
    /// The prompt as one text with the model's FIM tokens written out, in the layout documented
    /// above (the one `render` lays out in tokens): what `wellspring prompt` prints and what an
    /// inference server is sent. Prefix-only without FIM tokens.
    pub fn render_text(&self, fim: &FimTokenTexts) -> String {
        use std::fmt::Write as _;
        let (Some(prefix_token), Some(suffix_token), Some(middle_token)) =
            (&fim.prefix, &fim.suffix, &fim.middle)
        else {
            // Without FIM tokens the model continues the text before the cursor.
            return format!("{}{}", self.prefix, self.line_head);
        };
        let n_extra: usize = self
            .extra
            .iter()
            .map(|chunk| chunk.path.len() + chunk.text.len() + 32)
            .sum();
        let mut text = String::with_capacity(
            n_extra + self.prefix.len() + self.suffix.len() + self.line_head.len() + 128,
        );
        if let Some(file_sep) = &fim.file_sep {
            if let (Some(repo_token), Some(repo_name)) = (&fim.repo_name, &self.repo_name) {
                let _ = writeln!(text, "{repo_token}{repo_name}");
            }
            for chunk in &self.extra {
                let newline = if chunk.text.ends_with('\n') { "" } else { "\n" };
                let _ = write!(text, "{file_sep}{}\n{}{newline}", chunk.path, chunk.text);
            }
            if !self.path.is_empty() {
                let _ = writeln!(text, "{file_sep}{}", self.path);
            }
        }
        for piece in [
            prefix_token,
            &self.prefix,
            suffix_token,
            &self.suffix,
            middle_token,
            &self.line_head,
        ] {
            text.push_str(piece);
        }
        text
    }
}

/// The text of the model's FIM tokens, as the engine writes them into a prompt.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FimTokenTexts {
    pub prefix: Option<String>,
    pub suffix: Option<String>,
    pub middle: Option<String>,
    pub file_sep: Option<String>,
    pub repo_name: Option<String>,
}

impl FimTokenTexts {
    /// What the prompt builder may assume about a model with these tokens.
    pub fn caps(&self, n_ctx_per_slot: u32) -> ModelCaps {
        ModelCaps {
            has_fim: self.prefix.is_some() && self.suffix.is_some() && self.middle.is_some(),
            has_file_sep: self.file_sep.is_some(),
            has_repo_name: self.repo_name.is_some(),
            n_ctx_per_slot,
        }
    }
}

/// What prompt builders need to know about the loaded model.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ModelCaps {
    /// The model has FIM prefix/suffix/middle tokens; without them prompts are prefix-only.
    pub has_fim: bool,
    /// The model has a file-separator token (repo-level FIM with paths).
    pub has_file_sep: bool,
    /// The model has a repo-name token.
    pub has_repo_name: bool,
    /// Tokens one completion prompt may use, including the room left for generation.
    pub n_ctx_per_slot: u32,
}

/// Counts tokens the way the model will. Implemented by the engine with the model's own
/// vocabulary, and by tests with simple stand-ins.
pub trait TokenCounter: Send + Sync {
    fn count_tokens(&self, text: &str) -> usize;
}

impl<C: TokenCounter + ?Sized> TokenCounter for std::sync::Arc<C> {
    fn count_tokens(&self, text: &str) -> usize {
        (**self).count_tokens(text)
    }
}

/// Texts one generation of a [`CachedTokenCounter`] holds before it becomes the old one.
const MAX_GENERATION_TEXTS: usize = 1 << 15;
/// Longer texts are counted every time: they rarely repeat and would crowd the cache.
const MAX_CACHED_TEXT_BYTES: usize = 16 * 1024;
/// Bytes of text one generation holds at most before it becomes the old one.
const MAX_GENERATION_BYTES: usize = 2 * 1024 * 1024;

/// A [`TokenCounter`] that remembers the count of every text it was asked about, keyed by the
/// text itself (not a hash, so a count can never belong to another text).
///
/// Prompt builds for successive keystrokes count mostly the same lines and definition summaries;
/// tokenizing them again dominated the build time. Counting is a pure function of the text and
/// the vocabulary, so a cached count is exactly the count, and prompts do not depend on what the
/// cache holds. One cache belongs to one vocabulary: a new model gets a new counter.
///
/// Two generations bound it: new counts go into the current one, a count found in the old one
/// moves to the current one, and when the current one is full (32,768 texts or 2 MiB of text)
/// it becomes the old one and the old one is dropped. What prompts keep asking for stays; the
/// lines of an edit long past (each keystroke makes a new one) leave within two generations, so
/// a long session's memory levels off instead of growing to a cap.
pub struct CachedTokenCounter<C> {
    inner: C,
    generations: std::sync::Mutex<Generations>,
}

#[derive(Default)]
struct Generations {
    current: std::collections::HashMap<Box<str>, u32>,
    current_bytes: usize,
    old: std::collections::HashMap<Box<str>, u32>,
}

impl Generations {
    fn insert(&mut self, text: Box<str>, n_tokens: u32) {
        if self.current.len() >= MAX_GENERATION_TEXTS
            || self.current_bytes + text.len() > MAX_GENERATION_BYTES
        {
            self.old = std::mem::take(&mut self.current);
            self.current_bytes = 0;
        }
        self.current_bytes += text.len();
        self.current.insert(text, n_tokens);
    }
}

impl<C: TokenCounter> CachedTokenCounter<C> {
    pub fn new(inner: C) -> CachedTokenCounter<C> {
        CachedTokenCounter {
            inner,
            generations: std::sync::Mutex::default(),
        }
    }

    /// How many texts the cache holds now, in both generations.
    pub fn len_cached(&self) -> usize {
        let generations = super::lock(&self.generations);
        generations.current.len() + generations.old.len()
    }
}

impl<C: TokenCounter> TokenCounter for CachedTokenCounter<C> {
    fn count_tokens(&self, text: &str) -> usize {
        {
            let mut generations = super::lock(&self.generations);
            if let Some(&n_tokens) = generations.current.get(text) {
                return n_tokens as usize;
            }
            if let Some((text, n_tokens)) = generations.old.remove_entry(text) {
                generations.insert(text, n_tokens);
                return n_tokens as usize;
            }
        }
        // Counted outside the lock: other threads' lookups need not wait for the tokenizer.
        let n_tokens = self.inner.count_tokens(text);
        if text.len() <= MAX_CACHED_TEXT_BYTES {
            let n_stored = u32::try_from(n_tokens).unwrap_or(u32::MAX);
            super::lock(&self.generations).insert(text.into(), n_stored);
        }
        n_tokens
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Counts bytes and how often it was asked.
    #[derive(Default)]
    struct CountingCounter {
        n_calls: AtomicUsize,
    }

    impl TokenCounter for CountingCounter {
        fn count_tokens(&self, text: &str) -> usize {
            self.n_calls.fetch_add(1, Ordering::Relaxed);
            text.len()
        }
    }

    #[test]
    fn cached_counts_equal_the_inner_counts_and_are_computed_once() {
        let cached = CachedTokenCounter::new(CountingCounter::default());
        assert_eq!(cached.count_tokens("fn main() {}"), 12);
        assert_eq!(cached.count_tokens("fn main() {}"), 12);
        assert_eq!(cached.count_tokens("fn main() { }"), 13);
        assert_eq!(cached.inner.n_calls.load(Ordering::Relaxed), 2);
        assert_eq!(cached.len_cached(), 2);
    }

    #[test]
    fn long_texts_are_not_cached_and_a_full_generation_becomes_the_old_one() {
        let cached = CachedTokenCounter::new(CountingCounter::default());
        let long = "x".repeat(MAX_CACHED_TEXT_BYTES + 1);
        assert_eq!(cached.count_tokens(&long), long.len());
        assert_eq!(cached.len_cached(), 0);
        for n in 0..MAX_GENERATION_TEXTS {
            cached.count_tokens(&n.to_string());
        }
        assert_eq!(cached.len_cached(), MAX_GENERATION_TEXTS);
        // The next text starts a new generation; the full one is kept as the old one.
        assert_eq!(cached.count_tokens("one more"), 8);
        assert_eq!(cached.len_cached(), MAX_GENERATION_TEXTS + 1);
        let n_calls = cached.inner.n_calls.load(Ordering::Relaxed);
        // A text of the old generation is still a hit, and moves to the current one.
        assert_eq!(cached.count_tokens("7"), 1);
        assert_eq!(cached.count_tokens("one more"), 8);
        assert_eq!(cached.inner.n_calls.load(Ordering::Relaxed), n_calls);
        // Filling the current generation drops the old one, except what moved out of it.
        for n in 0..MAX_GENERATION_TEXTS {
            cached.count_tokens(&format!("new {n}"));
        }
        assert_eq!(cached.len_cached(), MAX_GENERATION_TEXTS + 2);
        assert_eq!(cached.count_tokens("7"), 1);
        assert_eq!(cached.count_tokens("8"), 1);
        assert_eq!(
            cached.inner.n_calls.load(Ordering::Relaxed),
            n_calls + MAX_GENERATION_TEXTS + 1
        );
    }

    #[test]
    fn a_generation_holding_too_many_bytes_becomes_the_old_one() {
        let cached = CachedTokenCounter::new(CountingCounter::default());
        let n_texts = MAX_GENERATION_BYTES / MAX_CACHED_TEXT_BYTES;
        for n in 0..n_texts {
            let text = format!("{n:0width$}", width = MAX_CACHED_TEXT_BYTES);
            cached.count_tokens(&text);
        }
        assert_eq!(cached.len_cached(), n_texts);
        cached.count_tokens("x");
        assert_eq!(cached.len_cached(), n_texts + 1);
        let n_calls = cached.inner.n_calls.load(Ordering::Relaxed);
        cached.count_tokens("y");
        for n in 0..n_texts {
            let text = format!("{n:0width$}", width = MAX_CACHED_TEXT_BYTES);
            cached.count_tokens(&text);
        }
        // The old generation's texts are hits as they move back to the current one.
        assert_eq!(cached.inner.n_calls.load(Ordering::Relaxed), n_calls + 1);
    }
}
