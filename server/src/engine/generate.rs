//! One generation as a step machine: prefill the prompt a batch at a time, then sample and
//! evaluate one token per step. Each step is one `evaluate` call at most, which is what lets the
//! scheduler cancel, preempt and interleave between steps.
//!
//! Speculative decoding: when the sampler is greedy, a step that evaluates the last sampled token
//! may append a draft (`lookup`'s, else the draft model's, `draft`) and keep every position's
//! logits. The model's choice after each
//! position is compared with the draft's next token; the agreeing prefix stays in the cache, the
//! rest is trimmed, and the verified tokens plus the model's own next one are handed out one per
//! step without evaluating anything, so callers see the same tokens in the same order as without
//! a draft.
//!
//! Stop rules that depend on the request (end of line, stop strings, token and time budgets)
//! belong to the caller; this module stops only on end-of-generation and a full sequence.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::backend::{Backend, Input, Token};
use super::detok::Detokenizer;
use super::draft::Drafting;
use super::lookup::{self, Draft, DraftTuner, Source};
use super::session::{Placement, Sessions};
use super::{millis, Error, GenerationFigures, StopReason};

/// What one step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    /// A chunk of the prompt was evaluated.
    Prefilled,
    /// A token was sampled; its complete characters (possibly none yet).
    Text(String),
    End(StopReason),
}

pub(crate) struct Generation<S> {
    pub slot_idx: usize,
    prompt: Vec<Token>,
    sampler: S,
    detok: Detokenizer,
    /// The last sampled token, evaluated at the start of the next step (so a caller that stops
    /// on it never pays for its evaluation).
    pending: Option<Token>,
    prefilled: bool,
    /// Token healing: text the next tokens must start with and which the output leaves out (it
    /// is already in the document), until it has all been produced.
    healing: Vec<u8>,
    /// Tokens a speculative step verified, handed out one a step before anything is evaluated
    /// again: drafted tokens the cache already holds, then (last) the model's own next token,
    /// which becomes `pending` when handed out.
    verified: VecDeque<Token>,
    pub n_prompt: u32,
    pub n_reused: u32,
    /// Prompt tokens evaluated (the prefill); generated tokens are counted in `n_generated`.
    pub n_evaluated: u32,
    pub n_generated: u32,
    /// Drafted tokens the model checked, and those it agreed with.
    pub n_drafted: u32,
    pub n_accepted: u32,
    pub t_prefill: Duration,
    pub t_decode: Duration,
}

impl<S> Generation<S> {
    /// Starts generating after `prompt` (non-empty) in the slot `placement` prepared.
    pub(crate) fn new(placement: Placement, prompt: Vec<Token>, sampler: S) -> Generation<S> {
        Generation {
            slot_idx: placement.slot_idx,
            n_prompt: prompt.len() as u32,
            n_reused: placement.n_past,
            prompt,
            sampler,
            detok: Detokenizer::default(),
            pending: None,
            prefilled: false,
            healing: Vec::new(),
            verified: VecDeque::new(),
            n_evaluated: 0,
            n_generated: 0,
            n_drafted: 0,
            n_accepted: 0,
            t_prefill: Duration::ZERO,
            t_decode: Duration::ZERO,
        }
    }

    /// Makes the first generated tokens start with `healed`, the text of a prompt token taken
    /// back (see `render::take_back_line_head_tokens`), and leaves it out of the output.
    pub(crate) fn with_healing(mut self, healed: Vec<u8>) -> Generation<S> {
        self.healing = healed;
        self
    }

    /// What the generation has cost so far.
    pub(crate) fn figures(&self) -> GenerationFigures {
        GenerationFigures {
            n_prompt: self.n_prompt,
            n_reused: self.n_reused,
            n_evaluated: self.n_evaluated,
            n_generated: self.n_generated,
            n_drafted: self.n_drafted,
            n_accepted: self.n_accepted,
            t_prefill_ms: millis(self.t_prefill),
            t_decode_ms: millis(self.t_decode),
        }
    }

    /// Whether the whole prompt has been evaluated.
    pub(crate) fn is_prefilled(&self) -> bool {
        self.prefilled
    }

    /// Bytes of an unfinished character that the output will not include.
    pub(crate) fn n_dropped_bytes(&self) -> usize {
        self.detok.n_pending_bytes()
    }

    /// Runs one step: a chunk of the prompt (at most the batch size and `max_chunk` tokens) or
    /// one token. On error the slot has been reset (its cache contents are unknown).
    pub(crate) fn step<B: Backend<Sampler = S>>(
        &mut self,
        backend: &mut B,
        (sessions, drafting): (&mut Sessions, &mut Drafting<'_, B>),
        max_chunk: usize,
    ) -> Result<Event, Error> {
        let started = Instant::now();
        let result = self.step_inner(backend, sessions, drafting, max_chunk);
        if self.prefilled && !matches!(result, Ok(Event::Prefilled)) {
            self.t_decode += started.elapsed();
        } else {
            self.t_prefill += started.elapsed();
        }
        if result.is_err() {
            sessions.reset(backend, self.slot_idx);
        }
        result
    }

    fn step_inner<B: Backend<Sampler = S>>(
        &mut self,
        backend: &mut B,
        sessions: &mut Sessions,
        drafting: &mut Drafting<'_, B>,
        max_chunk: usize,
    ) -> Result<Event, Error> {
        if !self.verified.is_empty() {
            return Ok(self.sample(backend));
        }
        let input = match self.next_input(backend, sessions, max_chunk) {
            Err(stop) => return Ok(Event::End(stop)),
            Ok(input) => input,
        };
        if let Some(input) = input {
            if self.prefilled {
                let draft = self.draft(backend, sessions, drafting);
                if !draft.tokens.is_empty() {
                    return self.verify(backend, sessions, &mut drafting.tuner, &draft);
                }
            }
            let started = Instant::now();
            backend.evaluate(input.seq, input.n_past, input.tokens)?;
            if self.prefilled {
                drafting
                    .tuner
                    .record_plain(started.elapsed().as_secs_f64() * 1000.0);
            }
            let n_tokens = input.tokens.len();
            if !self.evaluated(sessions, n_tokens) {
                return Ok(Event::Prefilled);
            }
        }
        Ok(self.sample(backend))
    }

    /// A draft to check after the pending token, as long as `drafting`'s tuner finds worth
    /// checking: empty unless the sampler is greedy and token healing is done. Prompt lookup's
    /// comes first (it costs nothing to find); without one, the draft model's. It fits the
    /// sequence and one batch, and stops before an end-of-generation or control token (the
    /// prompt's own markers), which only the model itself may choose.
    fn draft<B: Backend<Sampler = S>>(
        &self,
        backend: &B,
        sessions: &Sessions,
        drafting: &mut Drafting<'_, B>,
    ) -> Draft {
        let Some(pending) = self.pending else {
            return Draft::default();
        };
        if !self.healing.is_empty() || !backend.is_greedy(&self.sampler) {
            return Draft::default();
        }
        let slot = &sessions.slots[self.slot_idx];
        let held = &slot.tokens;
        let room = (backend.n_ctx_per_seq() as usize)
            .saturating_sub(held.len() + 1)
            .min((backend.n_batch() as usize).saturating_sub(1));
        let mut draft = lookup::draft(held, pending, backend.max_draft().min(room));
        draft.tokens.truncate(n_with_text(backend, &draft.tokens));
        draft.tokens.truncate(drafting.tuner.choose(&draft));
        if !draft.tokens.is_empty() {
            return draft;
        }
        let max = backend.max_model_draft().min(room);
        if max == 0 {
            return Draft::default();
        }
        let Some(model) = drafting.model.get(backend.n_seq()) else {
            return Draft::default();
        };
        let n_wanted = drafting.tuner.choose_model(max);
        if n_wanted == 0 {
            return Draft::default();
        }
        let started = Instant::now();
        let mut tokens = model.propose(slot.seq, (held, pending), n_wanted, drafting.max_lag);
        drafting
            .tuner
            .record_model(tokens.len(), started.elapsed().as_secs_f64() * 1000.0);
        // Ids the draft model has past the end of this vocabulary have no text here.
        tokens.truncate(n_with_text(backend, &tokens));
        Draft {
            tokens,
            source: Source::Model,
        }
    }

    /// Evaluates the pending token and `draft` in one batch, keeps the part of the draft the
    /// model agrees with, and hands out the first verified token.
    fn verify<B: Backend<Sampler = S>>(
        &mut self,
        backend: &mut B,
        sessions: &mut Sessions,
        tuner: &mut DraftTuner,
        Draft {
            tokens: draft,
            source,
        }: &Draft,
    ) -> Result<Event, Error> {
        let started = Instant::now();
        let pending = self
            .pending
            .take()
            .expect("a draft follows the pending token");
        let slot = &mut sessions.slots[self.slot_idx];
        let (seq, n_past) = (slot.seq, slot.tokens.len() as u32);
        let mut tokens = Vec::with_capacity(draft.len() + 1);
        tokens.push(pending);
        tokens.extend_from_slice(draft);
        backend.evaluate_each(seq, n_past, &tokens)?;
        let mut n_accepted = 0;
        let next = loop {
            backend.select_output(n_accepted);
            let token = backend.sample(&mut self.sampler);
            match draft.get(n_accepted) {
                Some(&drafted) if drafted == token => n_accepted += 1,
                _ => break token,
            }
        };
        let n_kept = 1 + n_accepted;
        if n_kept < tokens.len() && !backend.trim(seq, n_past + n_kept as u32) {
            return Err(Error::Backend(
                "the model's cache cannot take back a rejected draft".to_owned(),
            ));
        }
        slot.tokens.extend_from_slice(&tokens[..n_kept]);
        tuner.record_check(
            *source,
            draft.len(),
            n_accepted,
            started.elapsed().as_secs_f64() * 1000.0,
        );
        self.n_drafted += draft.len() as u32;
        self.n_accepted += n_accepted as u32;
        self.verified.extend(&draft[..n_accepted]);
        self.verified.push_back(next);
        Ok(self.sample(backend))
    }

    /// What the next step evaluates: a chunk of the prompt (at most the batch size and
    /// `max_chunk` tokens), the token sampled last, or nothing when the prompt was just prefilled
    /// and the next token comes from its logits. `Err` when the sequence is full.
    pub(crate) fn next_input<B: Backend<Sampler = S>>(
        &self,
        backend: &B,
        sessions: &Sessions,
        max_chunk: usize,
    ) -> Result<Option<Input<'_>>, StopReason> {
        let slot = &sessions.slots[self.slot_idx];
        if !self.prefilled {
            let n_done = slot.tokens.len();
            let chunk = (backend.n_batch() as usize).min(max_chunk).max(1);
            let chunk_end = self.prompt.len().min(n_done + chunk);
            return Ok(Some(Input {
                seq: slot.seq,
                n_past: n_done as u32,
                tokens: &self.prompt[n_done..chunk_end],
            }));
        }
        match &self.pending {
            Some(_) if slot.tokens.len() >= backend.n_ctx_per_seq() as usize => {
                Err(StopReason::ContextFull)
            }
            Some(token) => Ok(Some(Input {
                seq: slot.seq,
                n_past: slot.tokens.len() as u32,
                tokens: std::slice::from_ref(token),
            })),
            None => Ok(None),
        }
    }

    /// Prompt tokens still to evaluate.
    pub(crate) fn n_prompt_left(&self, sessions: &Sessions) -> usize {
        if self.prefilled {
            return 0;
        }
        let n_done = sessions.slots[self.slot_idx].tokens.len();
        self.prompt.len().saturating_sub(n_done)
    }

    /// Records that the `n_tokens` of `next_input`'s input were evaluated. Returns whether a
    /// token is to be sampled from their logits now: false while the prompt is being prefilled.
    pub(crate) fn evaluated(&mut self, sessions: &mut Sessions, n_tokens: usize) -> bool {
        let slot = &mut sessions.slots[self.slot_idx];
        if self.prefilled {
            slot.tokens.extend(self.pending.take());
            return true;
        }
        let n_done = slot.tokens.len();
        slot.tokens
            .extend_from_slice(&self.prompt[n_done..n_done + n_tokens]);
        self.n_evaluated += n_tokens as u32;
        self.prefilled = slot.tokens.len() == self.prompt.len();
        false
    }

    /// Whether the prompt is evaluated and the next token is to come from the logits already
    /// there or from the verified tokens (no input to evaluate first).
    pub(crate) fn samples_next(&self) -> bool {
        self.prefilled && self.pending.is_none()
    }

    /// Hands out the next verified token, or picks the next token from the backend's selected
    /// logits.
    pub(crate) fn sample<B: Backend<Sampler = S>>(&mut self, backend: &mut B) -> Event {
        if let Some(token) = self.verified.pop_front() {
            // All but the last verified token are drafted ones the cache already holds.
            let cached = !self.verified.is_empty();
            return self.emit(backend, token, cached);
        }
        let token = if self.healing.is_empty() {
            backend.sample(&mut self.sampler)
        } else {
            backend.sample_with_prefix(&mut self.sampler, &self.healing)
        };
        self.emit(backend, token, false)
    }

    /// The event for a generated token; unless the cache already holds it (`cached`), the next
    /// step evaluates it.
    fn emit<B: Backend<Sampler = S>>(&mut self, backend: &B, token: Token, cached: bool) -> Event {
        if backend.is_eog(token) {
            return Event::End(StopReason::EndOfGeneration);
        }
        self.n_generated += 1;
        if !cached {
            self.pending = Some(token);
        }
        let mut piece = backend.piece(token);
        if !self.healing.is_empty() {
            let n_healed = piece.len().min(self.healing.len());
            if piece[..n_healed] == self.healing[..n_healed] {
                self.healing.drain(..n_healed);
                piece.drain(..n_healed);
            } else {
                // The backend found no token that fits; the document already has the healed
                // text, so stop requiring it and show what the model wrote after it.
                self.healing.clear();
            }
        }
        Event::Text(self.detok.push(&piece))
    }

    /// Adds time spent on this generation's behalf in a batch step.
    pub(crate) fn add_time(&mut self, elapsed: Duration, decoding: bool) {
        if decoding {
            self.t_decode += elapsed;
        } else {
            self.t_prefill += elapsed;
        }
    }
}

/// How many of `tokens` come before the first without text (an end of generation, a control
/// token, an id the vocabulary lacks).
fn n_with_text<B: Backend>(backend: &B, tokens: &[Token]) -> usize {
    tokens
        .iter()
        .position(|&token| !backend.has_text(token))
        .unwrap_or(tokens.len())
}
