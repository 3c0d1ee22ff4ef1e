//! One generation as a step machine: prefill the prompt a batch at a time, then sample and
//! evaluate one token per step. Each step is one `evaluate` call at most, which is what lets the
//! scheduler cancel, preempt and interleave between steps.
//!
//! Stop rules that depend on the request (end of line, stop strings, token and time budgets)
//! belong to the caller; this module stops only on end-of-generation and a full sequence.

use std::time::{Duration, Instant};

use super::backend::{Backend, Input, Token};
use super::detok::Detokenizer;
use super::session::{Placement, Sessions};
use super::{Error, StopReason};

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
    pub n_prompt: u32,
    pub n_reused: u32,
    /// Prompt tokens evaluated (the prefill); generated tokens are counted in `n_generated`.
    pub n_evaluated: u32,
    pub n_generated: u32,
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
            n_evaluated: 0,
            n_generated: 0,
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
        sessions: &mut Sessions,
        max_chunk: usize,
    ) -> Result<Event, Error> {
        let started = Instant::now();
        let result = self.step_inner(backend, sessions, max_chunk);
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
        max_chunk: usize,
    ) -> Result<Event, Error> {
        let input = match self.next_input(backend, sessions, max_chunk) {
            Err(stop) => return Ok(Event::End(stop)),
            Ok(input) => input,
        };
        if let Some(input) = input {
            backend.evaluate(input.seq, input.n_past, input.tokens)?;
            let n_tokens = input.tokens.len();
            if !self.evaluated(sessions, n_tokens) {
                return Ok(Event::Prefilled);
            }
        }
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
    /// there (no input to evaluate first).
    pub(crate) fn samples_next(&self) -> bool {
        self.prefilled && self.pending.is_none()
    }

    /// Picks the next token from the backend's selected logits.
    pub(crate) fn sample<B: Backend<Sampler = S>>(&mut self, backend: &mut B) -> Event {
        let token = if self.healing.is_empty() {
            backend.sample(&mut self.sampler)
        } else {
            backend.sample_with_prefix(&mut self.sampler, &self.healing)
        };
        if backend.is_eog(token) {
            return Event::End(StopReason::EndOfGeneration);
        }
        self.n_generated += 1;
        self.pending = Some(token);
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
