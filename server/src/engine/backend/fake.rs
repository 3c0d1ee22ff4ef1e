//! A scripted backend for tests: one token per byte, replies popped from a script, and a log of
//! every evaluate/trim/clear call. It also keeps each sequence's contents and rejects any call
//! that a real KV cache would get wrong (a gap in positions, a sequence overflowing its share),
//! so engine bookkeeping bugs fail loudly.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use super::{Backend, SpecialTokens, Token};
use crate::engine::{ChatMessage, Error, SamplingConfig};

pub(crate) const EOG: Token = 0;
pub(crate) const FIM_PREFIX: Token = 1;
pub(crate) const FIM_SUFFIX: Token = 2;
pub(crate) const FIM_MIDDLE: Token = 3;
pub(crate) const FILE_SEP: Token = 4;
pub(crate) const REPO_NAME: Token = 5;
const BYTE_BASE: Token = 100;

/// One call the engine made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Call {
    Evaluate {
        seq: u32,
        n_past: u32,
        n_tokens: u32,
    },
    Trim {
        seq: u32,
        n_keep: u32,
    },
    Clear {
        seq: u32,
    },
    /// One `evaluate_each`: a token and the draft after it, every token's logits kept.
    EvaluateEach {
        seq: u32,
        n_past: u32,
        n_tokens: u32,
    },
    /// One `evaluate_batch`: each input's (seq, n_past, n_tokens).
    Batch {
        inputs: Vec<(u32, u32, u32)>,
    },
}

#[derive(Debug, Default)]
pub(crate) struct FakeState {
    pub calls: Vec<Call>,
    /// Replies handed to samplers in order; each is followed by end-of-generation. With none
    /// left, a sampler produces `x` forever.
    pub replies: VecDeque<Vec<Token>>,
    /// What each sequence's cache holds.
    pub contents: Vec<Vec<Token>>,
    /// `watch_load` calls so far, each also sent here when a test listens.
    pub n_load_watches: u32,
    pub load_watches: Option<tokio::sync::mpsc::UnboundedSender<u32>>,
}

#[derive(Debug, Clone)]
pub(crate) struct FakeOptions {
    pub n_seq: u32,
    pub n_ctx_per_seq: u32,
    pub n_batch: u32,
    pub has_fim: bool,
    /// Behave like a recurrent model: trimming a sequence partway fails.
    pub partial_trim_fails: bool,
    /// Heal the line head's last token, as the llama backend does; off by default because
    /// single-byte tokens need no healing, so only the tests of healing itself turn it on.
    pub token_healing: bool,
    /// Texts the vocabulary is taken to have as single tokens besides the bytes, for
    /// `extends_to_a_longer_token`: the healing tests say which merges exist.
    pub longer_tokens: Vec<String>,
    /// `Backend::max_draft`: 0 (no speculative decoding) unless a test is about it.
    pub max_draft: usize,
    /// `Backend::max_model_draft`: 0 unless a test gives the engine a draft model.
    pub max_model_draft: usize,
    /// How many `watch_load` calls after an evaluation ask to be called again.
    pub load_watches_after_step: u32,
}

impl Default for FakeOptions {
    fn default() -> Self {
        FakeOptions {
            n_seq: 2,
            n_ctx_per_seq: 256,
            n_batch: 64,
            has_fim: true,
            partial_trim_fails: false,
            token_healing: false,
            longer_tokens: Vec::new(),
            max_draft: 0,
            max_model_draft: 0,
            load_watches_after_step: 0,
        }
    }
}

pub(crate) struct Fake {
    options: FakeOptions,
    pub state: Arc<Mutex<FakeState>>,
    /// `watch_load` calls since the last evaluation, and the call log's length then.
    watched_since_step: u32,
    n_calls_seen: usize,
}

pub(crate) struct FakeSampler {
    reply: Option<VecDeque<Token>>,
    greedy: bool,
}

/// The fake's tokens for `text`: one per byte.
pub(crate) fn tokens(text: &str) -> Vec<Token> {
    text.bytes()
        .map(|byte| BYTE_BASE + Token::from(byte))
        .collect()
}

impl Fake {
    pub(crate) fn new(options: FakeOptions) -> Fake {
        let state = FakeState {
            contents: vec![Vec::new(); options.n_seq as usize],
            ..FakeState::default()
        };
        Fake {
            watched_since_step: options.load_watches_after_step,
            n_calls_seen: 0,
            options,
            state: Arc::new(Mutex::new(state)),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state
            .lock()
            .expect("fake state lock is never poisoned")
    }

    /// Appends `tokens` to sequence `seq` at `n_past`, refusing what a real KV cache would get
    /// wrong.
    fn append(&mut self, seq: u32, n_past: u32, tokens: &[Token]) -> Result<(), Error> {
        let n_ctx_per_seq = self.options.n_ctx_per_seq;
        let n_batch = self.options.n_batch;
        let mut state = self.state();
        let contents = &mut state.contents[seq as usize];
        if tokens.is_empty() || tokens.len() as u32 > n_batch {
            return Err(Error::Backend(format!(
                "bad batch of {} tokens",
                tokens.len()
            )));
        }
        if contents.len() as u32 != n_past {
            return Err(Error::Backend(format!(
                "gap: sequence {seq} holds {} tokens, evaluate at {n_past}",
                contents.len()
            )));
        }
        if n_past + tokens.len() as u32 > n_ctx_per_seq {
            return Err(Error::Backend(format!("sequence {seq} overflows")));
        }
        contents.extend_from_slice(tokens);
        Ok(())
    }
}

impl FakeState {
    pub(crate) fn push_reply(&mut self, text: &str) {
        self.replies.push_back(tokens(text));
    }

    /// Takes the calls logged so far.
    pub(crate) fn take_calls(&mut self) -> Vec<Call> {
        std::mem::take(&mut self.calls)
    }
}

impl Backend for Fake {
    type Sampler = FakeSampler;

    fn special_tokens(&self) -> SpecialTokens {
        if !self.options.has_fim {
            return SpecialTokens::default();
        }
        SpecialTokens {
            bos: None,
            fim_prefix: Some(FIM_PREFIX),
            fim_suffix: Some(FIM_SUFFIX),
            fim_middle: Some(FIM_MIDDLE),
            file_sep: Some(FILE_SEP),
            repo_name: Some(REPO_NAME),
        }
    }

    fn tokenize(&self, text: &str, _parse_special: bool) -> Vec<Token> {
        tokens(text)
    }

    fn piece(&self, token: Token) -> Vec<u8> {
        match u8::try_from(token - BYTE_BASE) {
            Ok(byte) if token >= BYTE_BASE => vec![byte],
            _ => Vec::new(),
        }
    }

    fn is_eog(&self, token: Token) -> bool {
        token == EOG
    }

    fn has_text(&self, token: Token) -> bool {
        (BYTE_BASE..BYTE_BASE + 256).contains(&token)
    }

    fn n_seq(&self) -> u32 {
        self.options.n_seq
    }

    fn n_ctx_per_seq(&self) -> u32 {
        self.options.n_ctx_per_seq
    }

    fn n_batch(&self) -> u32 {
        self.options.n_batch
    }

    fn evaluate(&mut self, seq: u32, n_past: u32, tokens: &[Token]) -> Result<(), Error> {
        self.state().calls.push(Call::Evaluate {
            seq,
            n_past,
            n_tokens: tokens.len() as u32,
        });
        self.append(seq, n_past, tokens)
    }

    fn evaluate_each(&mut self, seq: u32, n_past: u32, tokens: &[Token]) -> Result<(), Error> {
        self.state().calls.push(Call::EvaluateEach {
            seq,
            n_past,
            n_tokens: tokens.len() as u32,
        });
        self.append(seq, n_past, tokens)
    }

    fn max_draft(&self) -> usize {
        self.options.max_draft
    }

    fn max_model_draft(&self) -> usize {
        self.options.max_model_draft
    }

    fn watch_load(&mut self) -> bool {
        let n_calls = {
            let mut state = self.state();
            state.n_load_watches += 1;
            if let Some(listener) = &state.load_watches {
                let _ = listener.send(state.n_load_watches);
            }
            state.calls.len()
        };
        if n_calls != self.n_calls_seen {
            self.n_calls_seen = n_calls;
            self.watched_since_step = 0;
        }
        if self.watched_since_step < self.options.load_watches_after_step {
            self.watched_since_step += 1;
            true
        } else {
            false
        }
    }

    fn tunes_by_step_times(&self) -> bool {
        false
    }

    fn evaluate_batch(&mut self, inputs: &[super::Input<'_>]) -> Result<(), Error> {
        let n_ctx_per_seq = self.options.n_ctx_per_seq;
        let n_batch = self.options.n_batch;
        let mut state = self.state();
        state.calls.push(Call::Batch {
            inputs: inputs
                .iter()
                .map(|input| (input.seq, input.n_past, input.tokens.len() as u32))
                .collect(),
        });
        let n_tokens: usize = inputs.iter().map(|input| input.tokens.len()).sum();
        if n_tokens == 0 || n_tokens as u32 > n_batch {
            return Err(Error::Backend(format!("bad batch of {n_tokens} tokens")));
        }
        for input in inputs {
            let contents = &state.contents[input.seq as usize];
            if input.tokens.is_empty() || contents.len() as u32 != input.n_past {
                return Err(Error::Backend(format!(
                    "gap: sequence {} holds {} tokens, evaluate {} at {}",
                    input.seq,
                    contents.len(),
                    input.tokens.len(),
                    input.n_past
                )));
            }
            if input.n_past + input.tokens.len() as u32 > n_ctx_per_seq {
                return Err(Error::Backend(format!("sequence {} overflows", input.seq)));
            }
        }
        for input in inputs {
            state.contents[input.seq as usize].extend_from_slice(input.tokens);
        }
        Ok(())
    }

    /// Samples are scripted per sampler, so which logits are selected changes nothing here.
    fn select_output(&mut self, _input_idx: usize) {}

    fn trim(&mut self, seq: u32, n_keep: u32) -> bool {
        let partial_trim_fails = self.options.partial_trim_fails;
        let mut state = self.state();
        state.calls.push(Call::Trim { seq, n_keep });
        if partial_trim_fails && n_keep > 0 {
            return false;
        }
        state.contents[seq as usize].truncate(n_keep as usize);
        true
    }

    fn clear(&mut self, seq: u32) {
        let mut state = self.state();
        state.calls.push(Call::Clear { seq });
        state.contents[seq as usize].clear();
    }

    fn new_sampler(
        &self,
        sampling: &SamplingConfig,
        grammar: Option<&str>,
    ) -> Result<FakeSampler, Error> {
        if grammar.is_some_and(|grammar| !grammar.contains("root")) {
            return Err(Error::Grammar("grammar has no root rule".to_owned()));
        }
        Ok(FakeSampler {
            reply: self.state().replies.pop_front().map(VecDeque::from),
            greedy: grammar.is_none() && sampling.temperature <= 0.0,
        })
    }

    fn sample(&mut self, sampler: &mut FakeSampler) -> Token {
        match &mut sampler.reply {
            Some(reply) => reply.pop_front().unwrap_or(EOG),
            None => BYTE_BASE + Token::from(b'x'),
        }
    }

    fn is_greedy(&self, sampler: &FakeSampler) -> bool {
        sampler.greedy
    }

    fn heals_last_token(&self) -> bool {
        self.options.token_healing
    }

    /// Tokens are single bytes; `longer_tokens` stands in for a vocabulary's merged tokens.
    fn extends_to_a_longer_token(&self, text: &[u8]) -> bool {
        self.options
            .longer_tokens
            .iter()
            .any(|token| token.len() > text.len() && token.as_bytes().starts_with(text))
    }

    /// The scripted token when it fits `prefix`; otherwise the token of `prefix`'s first byte,
    /// leaving the script where it was (tokens are single bytes, so that is what the model
    /// would pick again).
    fn sample_with_prefix(&mut self, sampler: &mut FakeSampler, prefix: &[u8]) -> Token {
        let Some(&first) = prefix.first() else {
            return self.sample(sampler);
        };
        let scripted = sampler
            .reply
            .as_ref()
            .and_then(|reply| reply.front().copied());
        match scripted {
            Some(token) if self.piece(token).first() == Some(&first) => self.sample(sampler),
            _ => BYTE_BASE + Token::from(first),
        }
    }

    fn apply_chat_template(&self, messages: &[ChatMessage]) -> Result<String, Error> {
        let mut text = String::new();
        for message in messages {
            text += &format!("<{}>{}\n", message.role, message.content);
        }
        Ok(text + "<assistant>")
    }
}
