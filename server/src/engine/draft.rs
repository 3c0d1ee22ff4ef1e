//! Drafts from a draft model (`model.draft_path`): a smaller model of the same family and
//! vocabulary (Qwen2.5-Coder 0.5B for 1.5B or 7B) proposes the next few tokens, one cheap step
//! each, and `generate` has the main model check them in one batch, as it checks prompt lookup's.
//!
//! The draft model has a context of its own, with as many sequences as the main context, and
//! follows each main sequence lazily: when asked for a draft it compares what its sequence holds
//! with what the main one holds, cuts back to where they part and evaluates the difference. While
//! typing, that is the keystroke's own token or two; a prompt it has never seen (a file just
//! opened) is caught up a batch per step, the main model decoding plainly meanwhile, so a step
//! never waits for a whole prompt on the draft model.

use super::backend::{Backend, Token};
use super::lookup::DraftTuner;
use super::SamplingConfig;

/// A draft model's context and what each of its sequences holds.
pub(crate) struct DraftModel<B: Backend> {
    backend: B,
    /// Per sequence: the main sequence's tokens it has evaluated, then the drafted ones it has
    /// evaluated since.
    held: Vec<Vec<Token>>,
    /// Tokens evaluated on the draft model, catching up included.
    pub n_evaluated: u64,
}

impl<B: Backend> DraftModel<B> {
    /// A draft model over `backend`, which needs a sequence for each of the main context's
    /// `n_seq`.
    pub(crate) fn new(backend: B, n_seq: u32) -> Result<DraftModel<B>, String> {
        if backend.n_seq() < n_seq {
            return Err(format!(
                "its context has {} sequences, the model's {n_seq}",
                backend.n_seq()
            ));
        }
        Ok(DraftModel {
            held: vec![Vec::new(); backend.n_seq() as usize],
            backend,
            n_evaluated: 0,
        })
    }

    /// Up to `max` tokens the draft model picks greedily after `held` followed by `last`, the
    /// contents of main sequence `seq`. Empty while it is still catching up with a long prompt,
    /// when it would first pick an end of generation or a control token (which only the main
    /// model may choose), and when its context fails (the sequence starts over next time).
    pub(crate) fn propose(
        &mut self,
        seq: u32,
        held: &[Token],
        last: Token,
        max: usize,
    ) -> Vec<Token> {
        let Some(evaluated) = self.held.get_mut(seq as usize) else {
            return Vec::new();
        };
        let n_target = held.len() + 1;
        let at = |idx: usize| if idx < held.len() { held[idx] } else { last };
        // The logits after `last` are needed, so at least `last` is evaluated again.
        let mut n_common = evaluated
            .iter()
            .zip(held.iter().chain(std::iter::once(&last)))
            .take_while(|(ours, theirs)| ours == theirs)
            .count()
            .min(n_target - 1);
        if n_common < evaluated.len() {
            if !self.backend.trim(seq, n_common as u32) {
                self.backend.clear(seq);
                n_common = 0;
            }
            evaluated.truncate(n_common);
        }
        let max = max.min((self.backend.n_ctx_per_seq() as usize).saturating_sub(n_target));
        if max == 0 {
            return Vec::new();
        }
        let chunk_end = n_target.min(n_common + self.backend.n_batch() as usize);
        let chunk: Vec<Token> = (n_common..chunk_end).map(at).collect();
        if !self.evaluate(seq, &chunk) || chunk_end < n_target {
            return Vec::new();
        }
        let sampling = SamplingConfig {
            temperature: 0.0,
            ..SamplingConfig::default()
        };
        let Ok(mut sampler) = self.backend.new_sampler(&sampling, None) else {
            return Vec::new();
        };
        let mut draft = Vec::with_capacity(max);
        loop {
            let token = self.backend.sample(&mut sampler);
            if !self.backend.has_text(token) {
                break;
            }
            draft.push(token);
            // The last drafted token is not evaluated here: nothing is drafted after it.
            if draft.len() == max || !self.evaluate(seq, &[token]) {
                break;
            }
        }
        draft
    }

    /// Evaluates `tokens` after what sequence `seq` holds; on failure the sequence is cleared.
    fn evaluate(&mut self, seq: u32, tokens: &[Token]) -> bool {
        let evaluated = &mut self.held[seq as usize];
        match self.backend.evaluate(seq, evaluated.len() as u32, tokens) {
            Ok(()) => {
                evaluated.extend_from_slice(tokens);
                self.n_evaluated += tokens.len() as u64;
                true
            }
            Err(error) => {
                tracing::warn!(%error, "the draft model failed; its sequence starts over");
                self.backend.clear(seq);
                evaluated.clear();
                false
            }
        }
    }

    /// Lets the draft model's context look at the machine's load while idle.
    pub(crate) fn watch_load(&mut self) -> bool {
        self.backend.watch_load()
    }
}

/// Creates the draft model's context: `Ok(None)` while its model is still being fetched or
/// loaded (asked again at the next draft, never waited for), an error when it cannot be had.
pub(crate) type MakeDraftBackend<'m, B> = Box<dyn FnMut() -> Result<Option<B>, String> + 'm>;

/// The draft model of one context, from configured to ready.
pub(crate) enum DraftSource<'m, B: Backend> {
    /// None configured, or it could not be had (logged once).
    Off,
    Pending(MakeDraftBackend<'m, B>),
    Ready(DraftModel<B>),
}

impl<'m, B: Backend> DraftSource<'m, B> {
    /// The draft model, once it is there, for a context of `n_seq` sequences.
    pub(crate) fn get(&mut self, n_seq: u32) -> Option<&mut DraftModel<B>> {
        if let DraftSource::Pending(make) = self {
            match make().and_then(|made| {
                made.map(|backend| DraftModel::new(backend, n_seq))
                    .transpose()
            }) {
                Ok(None) => return None,
                Ok(Some(model)) => {
                    tracing::info!("the draft model is ready: completions draft with it");
                    *self = DraftSource::Ready(model);
                }
                Err(reason) => {
                    tracing::error!(
                        "speculative decoding goes on without the draft model: {reason}"
                    );
                    *self = DraftSource::Off;
                }
            }
        }
        match self {
            DraftSource::Ready(model) => Some(model),
            _ => None,
        }
    }

    /// While idle: lets a ready draft model's context look at the machine's load.
    pub(crate) fn watch_load(&mut self) -> bool {
        match self {
            DraftSource::Ready(model) => model.watch_load(),
            _ => false,
        }
    }
}

/// What speculative decoding keeps for one context: how much of a draft is worth checking, and
/// the draft model.
pub(crate) struct Drafting<'m, B: Backend> {
    pub tuner: DraftTuner,
    pub model: DraftSource<'m, B>,
}

impl<'m, B: Backend> Drafting<'m, B> {
    /// Drafting for `backend`'s context, with the draft model `make_draft` brings, if any.
    pub(crate) fn new(backend: &B, make_draft: Option<MakeDraftBackend<'m, B>>) -> Drafting<'m, B> {
        Drafting {
            tuner: DraftTuner::new(backend.tunes_drafts()),
            model: make_draft.map_or(DraftSource::Off, DraftSource::Pending),
        }
    }
}
