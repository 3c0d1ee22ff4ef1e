//! Drafts from a draft model (`model.draft_path`): a smaller model of the same family and
//! vocabulary (Qwen2.5-Coder 0.5B for 1.5B or 7B) proposes the next few tokens, one cheap step
//! each, and `generate` has the main model check them in one batch, as it checks prompt lookup's.
//!
//! The draft model has a context of its own, with as many sequences as the main context, and
//! follows each main sequence lazily: it compares what its sequence holds with what the main one
//! holds, cuts back to where they part and evaluates the difference. A prompt it has not seen
//! (a file just opened) costs it a prefill of its own, so a completion never waits for that:
//! completions draft only when the draft model lags by a keystroke's few tokens
//! (`MAX_LAG_WHILE_TYPING`), and the scheduler catches it up with a slot's prompt (not the
//! answer after it, which the next keystroke drops) a batch at a time while the engine has
//! nothing else to do (`catch_up`), as typing pauses. Chats, long and not waited on token by
//! token, catch it up a batch a step as they go.

use super::backend::{Backend, Token};
use super::lookup::DraftTuner;
use super::SamplingConfig;

/// How many tokens a completion's step evaluates on the draft model to bring it level before
/// drafting: the keystroke's token or two and the end of the last suggestion. A draft model
/// further behind waits for idle time.
pub(crate) const MAX_LAG_WHILE_TYPING: usize = 16;

/// A draft model's context and what each of its sequences holds.
pub(crate) struct DraftModel<B: Backend> {
    backend: B,
    /// Per sequence: the main sequence's tokens it has evaluated, then the drafted ones it has
    /// evaluated since.
    held: Vec<Vec<Token>>,
    /// Set when its context failed: it drafts no more (logged once).
    failed: bool,
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
            failed: false,
        })
    }

    /// How many of `tokens` (what main sequence `seq` holds) the draft model has yet to
    /// evaluate; 0 once it has failed.
    pub(crate) fn lag(&self, seq: u32, tokens: &[Token]) -> usize {
        match self.held.get(seq as usize) {
            Some(evaluated) if !self.failed => tokens.len() - common_len(evaluated, tokens),
            _ => 0,
        }
    }

    /// Evaluates the next batch of `tokens` that sequence `seq` lags behind, after cutting it
    /// back to where the two part.
    pub(crate) fn catch_up(&mut self, seq: u32, tokens: &[Token]) {
        let n_common = self.cut_back(seq, tokens, tokens.len());
        let end = tokens.len().min(n_common + self.backend.n_batch() as usize);
        if n_common < end {
            self.evaluate(seq, &tokens[n_common..end]);
        }
    }

    /// Up to `max` tokens the draft model picks greedily after `held` followed by `last`, the
    /// contents of main sequence `seq`, when it lags behind them by at most `max_lag` tokens
    /// (evaluated first, at most a batch of them: the rest waits for the next call). Empty while
    /// it lags, when it would first pick an end of generation or a control token (which only the
    /// main model may choose), and once its context has failed.
    pub(crate) fn propose(
        &mut self,
        seq: u32,
        (held, last): (&[Token], Token),
        max: usize,
        max_lag: usize,
    ) -> Vec<Token> {
        if self.failed || seq as usize >= self.held.len() {
            return Vec::new();
        }
        let n_target = held.len() + 1;
        // The logits after `last` are needed, so `last` is evaluated again even when held.
        let n_common = common_len(&self.held[seq as usize], held);
        if n_target - n_common > max_lag {
            return Vec::new();
        }
        let max = max.min((self.backend.n_ctx_per_seq() as usize).saturating_sub(n_target));
        if max == 0 {
            return Vec::new();
        }
        let n_common = self.cut_back(seq, held, n_common);
        let chunk_end = n_target.min(n_common + self.backend.n_batch() as usize);
        let at = |idx: usize| if idx < held.len() { held[idx] } else { last };
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

    /// Cuts sequence `seq` back to what it shares with `tokens`, and to at most `n_keep`
    /// tokens; returns how many it keeps.
    fn cut_back(&mut self, seq: u32, tokens: &[Token], n_keep: usize) -> usize {
        let evaluated = &mut self.held[seq as usize];
        let mut n_common = common_len(evaluated, tokens).min(n_keep);
        if n_common < evaluated.len() {
            if !self.backend.trim(seq, n_common as u32) {
                self.backend.clear(seq);
                n_common = 0;
            }
            evaluated.truncate(n_common);
        }
        n_common
    }

    /// Evaluates `tokens` after what sequence `seq` holds. A failure turns the draft model off.
    fn evaluate(&mut self, seq: u32, tokens: &[Token]) -> bool {
        let evaluated = &mut self.held[seq as usize];
        match self.backend.evaluate(seq, evaluated.len() as u32, tokens) {
            Ok(()) => {
                evaluated.extend_from_slice(tokens);
                true
            }
            Err(error) => {
                tracing::error!(%error, "the draft model failed: speculative decoding goes on without it");
                self.backend.clear(seq);
                evaluated.clear();
                self.failed = true;
                false
            }
        }
    }

    /// Lets the draft model's context look at the machine's load while idle.
    pub(crate) fn watch_load(&mut self) -> bool {
        self.backend.watch_load()
    }
}

/// How many leading tokens `ours` and `theirs` share.
fn common_len(ours: &[Token], theirs: &[Token]) -> usize {
    ours.iter()
        .zip(theirs)
        .take_while(|(ours, theirs)| ours == theirs)
        .count()
}

/// Creates the draft model's context: `Ok(None)` while its model is still being fetched or
/// loaded (asked again at the next draft, never waited for), an error when it cannot be had.
pub(crate) type MakeDraftBackend<'m, B> = Box<dyn FnMut() -> Result<Option<B>, String> + 'm>;

/// The draft model of one context, from configured to ready.
pub(crate) enum DraftSource<'m, B: Backend> {
    /// None configured, or it could not be had (logged once).
    Off,
    /// Being fetched or loaded; the generations that will draft with it ("completions",
    /// "chats"), for the log.
    Pending(MakeDraftBackend<'m, B>, &'static str),
    Ready(DraftModel<B>),
}

impl<'m, B: Backend> DraftSource<'m, B> {
    /// The draft model, once it is there, for a context of `n_seq` sequences.
    pub(crate) fn get(&mut self, n_seq: u32) -> Option<&mut DraftModel<B>> {
        if let DraftSource::Pending(make, generations) = self {
            match make().and_then(|made| {
                made.map(|backend| DraftModel::new(backend, n_seq))
                    .transpose()
            }) {
                Ok(None) => return None,
                Ok(Some(model)) => {
                    tracing::info!("the draft model is ready: {generations} draft with it");
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

/// What speculative decoding keeps for one context: how much of a draft is worth checking, the
/// draft model, and how far it may lag for a step to catch it up before drafting.
pub(crate) struct Drafting<'m, B: Backend> {
    pub tuner: DraftTuner,
    pub model: DraftSource<'m, B>,
    pub max_lag: usize,
}

impl<'m, B: Backend> Drafting<'m, B> {
    /// Drafting for `backend`'s context (its `generations`: "completions" or "chats"), with the
    /// draft model `make_draft` brings, if any, caught up by a step when it lags by at most
    /// `max_lag` tokens.
    pub(crate) fn new(
        backend: &B,
        make_draft: Option<MakeDraftBackend<'m, B>>,
        generations: &'static str,
        max_lag: usize,
    ) -> Drafting<'m, B> {
        Drafting {
            tuner: DraftTuner::new(backend.tunes_by_step_times()),
            model: make_draft.map_or(DraftSource::Off, |make| {
                DraftSource::Pending(make, generations)
            }),
            max_lag,
        }
    }
}
