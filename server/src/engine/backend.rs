//! The seam between engine logic and inference: `trait Backend` is one model context with
//! several KV-cache sequences. The `llama` implementation runs llama.cpp; the `fake` one (tests
//! only) replays scripted tokens and records every evaluate/trim call so session reuse and
//! scheduling are checked as exact numbers.
//!
//! Backends are used from the engine thread only; they know nothing of requests, documents or
//! slots, which belong to `session` and `scheduler`.

#[cfg(test)]
pub(crate) mod fake;
pub(crate) mod llama;

use super::{ChatMessage, Error, SamplingConfig};

/// A token id in the model's vocabulary.
pub(crate) type Token = i32;

/// The model's special tokens that prompts are built from; `None` where the vocabulary lacks one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SpecialTokens {
    /// Set only when the vocabulary asks for a BOS token at the start of every prompt.
    pub bos: Option<Token>,
    pub fim_prefix: Option<Token>,
    pub fim_suffix: Option<Token>,
    pub fim_middle: Option<Token>,
    pub file_sep: Option<Token>,
    pub repo_name: Option<Token>,
}

impl SpecialTokens {
    /// The three tokens a fill-in-the-middle prompt needs, when the model has all of them.
    pub(crate) fn fim(&self) -> Option<(Token, Token, Token)> {
        Some((self.fim_prefix?, self.fim_suffix?, self.fim_middle?))
    }
}

/// Tokens for one sequence in a batch: `tokens` evaluated at positions `n_past..` of `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Input<'t> {
    pub seq: u32,
    pub n_past: u32,
    pub tokens: &'t [Token],
}

/// One model context. Positions are per sequence; `evaluate` appends tokens to a sequence's KV
/// cache and leaves the logits of the last one ready for `sample`.
pub(crate) trait Backend {
    type Sampler;

    fn special_tokens(&self) -> SpecialTokens;
    /// Tokenizes text without adding BOS/EOS. `parse_special` turns `<|im_start|>`-like text into
    /// control tokens (chat templates need it; code must never get it).
    fn tokenize(&self, text: &str, parse_special: bool) -> Vec<Token>;
    /// The bytes a token stands for; control tokens give none.
    fn piece(&self, token: Token) -> Vec<u8>;
    /// End of generation (end of text, end of turn, and the FIM tokens models stop with).
    fn is_eog(&self, token: Token) -> bool;
    /// Whether the token stands for text: not an end-of-generation or control token (such as a
    /// prompt's FIM markers). Asked on every decode step, so it must not allocate.
    fn has_text(&self, token: Token) -> bool;
    /// Sequences (slots) this context holds.
    fn n_seq(&self) -> u32;
    /// Positions available to each sequence.
    fn n_ctx_per_seq(&self) -> u32;
    /// Most tokens one `evaluate` call may take.
    fn n_batch(&self) -> u32;

    /// Evaluates `tokens` at positions `n_past..` of sequence `seq`. On error the sequence's
    /// cache contents past `n_past` are unknown and the caller clears it.
    fn evaluate(&mut self, seq: u32, n_past: u32, tokens: &[Token]) -> Result<(), Error>;
    /// Evaluates every input (each on its own sequence, at most `n_batch` tokens together) in one
    /// pass over the weights: continuous batching. Afterwards `select_output(i)` makes `sample`
    /// read the logits of input `i`'s last token. On error every input's sequence is unknown.
    fn evaluate_batch(&mut self, inputs: &[Input<'_>]) -> Result<(), Error>;
    /// Which logits `sample` reads after `evaluate_batch`: those of input `input_idx`'s last
    /// token (after `evaluate_each`, those of token `input_idx`). `evaluate` selects its own last
    /// token again.
    fn select_output(&mut self, input_idx: usize);
    /// Like `evaluate`, keeping the logits of every token: `select_output(i)` then makes `sample`
    /// read those of token `i`. Speculative decoding checks a draft with it.
    fn evaluate_each(&mut self, seq: u32, n_past: u32, tokens: &[Token]) -> Result<(), Error>;
    /// Most tokens a prompt-lookup draft may propose (`model.lookup_draft`); 0 when this
    /// context cannot take back the rejected part of a draft (a recurrent model).
    fn max_draft(&self) -> usize;
    /// Most tokens a draft model's draft may have (`model.draft_path`); 0 without a draft model,
    /// or when this context cannot take back a rejected draft.
    fn max_model_draft(&self) -> usize {
        0
    }
    /// Whether choices follow measured step times: how many drafted tokens to check
    /// (`lookup::DraftTuner`), and whether decoding sequences go into one step together or take
    /// turns (`batching::BatchTuner`). The fake backend's steps take no time worth measuring, so
    /// it checks whole drafts and batches every sequence.
    fn tunes_by_step_times(&self) -> bool {
        true
    }
    /// Called while the engine is idle: looks at the machine's load, so that the next step starts
    /// with thread counts that fit it (`cpu_share`). True while it wants to be called again
    /// (`cpu_share::INTERVAL` later): for a while after the last step, not for an engine left
    /// idle.
    fn watch_load(&mut self) -> bool {
        false
    }
    /// Drops positions `n_keep..` of `seq`; false when the model cannot cut a sequence partway.
    fn trim(&mut self, seq: u32, n_keep: u32) -> bool;
    /// Drops the whole sequence.
    fn clear(&mut self, seq: u32);

    fn new_sampler(
        &self,
        sampling: &SamplingConfig,
        grammar: Option<&str>,
    ) -> Result<Self::Sampler, Error>;
    /// Picks the next token from the logits of the last `evaluate` (and feeds it to the
    /// sampler's state, e.g. a grammar).
    fn sample(&mut self, sampler: &mut Self::Sampler) -> Token;
    /// Whether `sampler` takes the most likely token and keeps no state, so that a draft can be
    /// checked against it position by position.
    fn is_greedy(&self, sampler: &Self::Sampler) -> bool;
    /// Like `sample`, among only the tokens whose text starts with `prefix` or is a non-empty
    /// start of it. This is token healing: the prompt's last token is taken back and the model
    /// picks it again, free to choose a longer token that merges it with what follows.
    fn sample_with_prefix(&mut self, sampler: &mut Self::Sampler, prefix: &[u8]) -> Token;
    /// Whether completions take the line head's last token back and let the model choose it
    /// again (token healing). A backend whose tokens are single bytes has no merged tokens to
    /// heal.
    fn heals_last_token(&self) -> bool;
    /// Whether some token's text starts with `text` and goes on past it: taking back the tokens
    /// that spell `text` would let the model choose that longer token.
    fn extends_to_a_longer_token(&self, text: &[u8]) -> bool;

    /// Renders a conversation with the model's own chat template, ending with the assistant's
    /// turn opened.
    fn apply_chat_template(&self, messages: &[ChatMessage]) -> Result<String, Error>;
}
