//! Prompt lookup: drafts for speculative decoding taken from the tokens a sequence already holds.
//!
//! Code repeats itself: a call made a few lines up, the other arm of a match, a field list written
//! again. So the tokens that followed the latest earlier occurrence of the last few tokens are a
//! good guess at what comes next, and `generate` has the model check the guess in one batch: every
//! drafted token the model would have picked itself costs a position in that batch instead of a
//! step of its own.

use super::backend::Token;

/// The n-grams matched, longest first: a single token matches too often to predict anything.
const NGRAMS: std::ops::RangeInclusive<usize> = 2..=4;

/// A draft and where it came from: each source is agreed with at its own rate (longer n-gram
/// matches more often than shorter ones).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Draft {
    pub tokens: Vec<Token>,
    pub source: Source,
}

/// Where a draft came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Source {
    /// Prompt lookup, by an n-gram of this length (in `NGRAMS`).
    Lookup(usize),
    /// The draft model (`draft`).
    #[default]
    Model,
}

/// Up to `max` tokens that followed the latest earlier occurrence of the last n tokens of `held`
/// followed by `last`, for the longest n in `NGRAMS` that occurs earlier; empty when none does.
pub(crate) fn draft(held: &[Token], last: Token, max: usize) -> Draft {
    let len = held.len() + 1;
    let at = |idx: usize| if idx < held.len() { held[idx] } else { last };
    if max == 0 {
        return Draft::default();
    }
    for n in NGRAMS.rev() {
        if len <= n {
            continue;
        }
        let key = len - n;
        // Latest first; the occurrence at `key` itself has nothing after it.
        let found = (0..key).rev().find(|&start| {
            held[start] == at(key) && (1..n).all(|offset| at(start + offset) == at(key + offset))
        });
        if let Some(start) = found {
            let from = start + n;
            return Draft {
                tokens: (from..len.min(from + max)).map(at).collect(),
                source: Source::Lookup(n),
            };
        }
    }
    Draft::default()
}

/// How much older observations count against a new one.
const DECAY: f64 = 0.95;
/// A draft is tried after this many steps that declined one, so that the estimates follow the
/// text (some stretches are copied wholesale) and the machine's load.
const EXPLORE_EVERY: u32 = 32;

/// Chooses how many of a draft's tokens to check, from what checking has cost on this context and
/// how often the model agreed. Checking `d` tokens yields the `1 + p + … + p^d` tokens expected
/// when each is agreed with at rate `p` (its n-gram length's), for a step that costs
/// `step + d × per_draft`; the best `d` is taken when it beats a plain step's one token per
/// `step`. On a GPU a draft adds almost nothing to a step, so whole drafts are checked; on a CPU
/// each drafted token costs a good part of a step, so only likely ones are. A draft model's
/// tokens cost their own steps on the draft model too, so how many to ask it for is chosen the
/// same way before it drafts (`choose_model`).
#[derive(Debug, Clone)]
pub(crate) struct DraftTuner {
    adaptive: bool,
    /// Milliseconds of a step that evaluates one token.
    step_ms: Option<f64>,
    /// Milliseconds each checked draft token adds to a step.
    per_draft_ms: Option<f64>,
    /// Milliseconds the draft model takes per token it drafts.
    model_ms: Option<f64>,
    /// Per source (each n-gram length in `NGRAMS`, then the draft model): drafted tokens agreed
    /// with, and disagreements (decayed).
    agreed: [f64; N_SOURCES],
    disagreed: [f64; N_SOURCES],
    /// Steps since the last check that declined a draft on offer.
    n_declined: u32,
}

impl DraftTuner {
    /// `adaptive: false` checks every draft whole, whatever it costs (the fake backend's steps
    /// take no time worth measuring).
    pub(crate) fn new(adaptive: bool) -> DraftTuner {
        DraftTuner {
            adaptive,
            step_ms: None,
            per_draft_ms: None,
            model_ms: None,
            agreed: [0.0; N_SOURCES],
            disagreed: [0.0; N_SOURCES],
            n_declined: 0,
        }
    }

    /// How many tokens of `draft` to check now; 0 for a plain step.
    pub(crate) fn choose(&mut self, draft: &Draft) -> usize {
        self.best_length(draft.tokens.len(), draft.source, 0.0)
    }

    /// How many tokens to ask the draft model for, at most `max`; 0 for a plain step. Until its
    /// cost per token is known it is asked for all of them.
    pub(crate) fn choose_model(&mut self, max: usize) -> usize {
        match self.model_ms {
            Some(model_ms) => self.best_length(max, Source::Model, model_ms),
            None => max,
        }
    }

    /// The draft length, at most `available`, that yields the most tokens per millisecond when
    /// each drafted token costs `extra_ms` besides checking it.
    fn best_length(&mut self, available: usize, source: Source, extra_ms: f64) -> usize {
        if !self.adaptive || available == 0 {
            return available;
        }
        let (Some(step_ms), Some(per_draft_ms)) = (self.step_ms, self.per_draft_ms) else {
            // Nothing measured yet: check it, and learn what it costs.
            return available;
        };
        let p = self.agreement(source);
        let mut expected = 1.0;
        let mut best = (0, 1.0 / step_ms.max(1e-6));
        let mut p_run = 1.0;
        for d in 1..=available {
            p_run *= p;
            expected += p_run;
            let rate = expected / (step_ms + (per_draft_ms + extra_ms) * d as f64).max(1e-6);
            if rate > best.1 {
                best = (d, rate);
            }
        }
        if best.0 > 0 {
            self.n_declined = 0;
            return best.0;
        }
        self.n_declined += 1;
        if self.n_declined >= EXPLORE_EVERY {
            self.n_declined = 0;
            return available.min(2);
        }
        0
    }

    /// The rate at which drafts from `source` are agreed with, token by token; one half before
    /// anything is known.
    pub(crate) fn agreement(&self, source: Source) -> f64 {
        let idx = source_idx(source);
        (self.agreed[idx] + 1.0) / (self.agreed[idx] + self.disagreed[idx] + 2.0)
    }

    /// A plain decode step of one token took `ms`.
    pub(crate) fn record_plain(&mut self, ms: f64) {
        self.step_ms = Some(blend(self.step_ms, ms, BLEND));
    }

    /// The draft model drafted `n_drafted` tokens in `ms`.
    pub(crate) fn record_model(&mut self, n_drafted: usize, ms: f64) {
        if n_drafted > 0 {
            self.model_ms = Some(blend(self.model_ms, ms / n_drafted as f64, BLEND));
        }
    }

    /// A step checked `n_drafted` tokens from `source`, the model agreed with `n_accepted` of
    /// them, and it took `ms`.
    pub(crate) fn record_check(
        &mut self,
        source: Source,
        n_drafted: usize,
        n_accepted: usize,
        ms: f64,
    ) {
        if n_drafted == 0 {
            return;
        }
        if let Some(step_ms) = self.step_ms {
            let per_draft = ((ms - step_ms) / n_drafted as f64).max(0.0);
            self.per_draft_ms = Some(blend(self.per_draft_ms, per_draft, BLEND));
        }
        let idx = source_idx(source);
        self.agreed[idx] = self.agreed[idx] * DECAY + n_accepted as f64;
        self.disagreed[idx] =
            self.disagreed[idx] * DECAY + f64::from(u8::from(n_accepted < n_drafted));
    }
}

/// Each n-gram length in `NGRAMS`, and the draft model.
const N_SOURCES: usize = 4;

/// Where a source's record is kept.
fn source_idx(source: Source) -> usize {
    match source {
        Source::Lookup(ngram) => ngram.clamp(*NGRAMS.start(), *NGRAMS.end()) - NGRAMS.start(),
        Source::Model => N_SOURCES - 1,
    }
}

/// How far the draft tuner's estimates move towards each new measurement.
const BLEND: f64 = 0.1;

/// The running estimate after `sample`: `weight` of the way towards it (the first sample is
/// taken as it is).
pub(crate) fn blend(estimate: Option<f64>, sample: f64, weight: f64) -> f64 {
    match estimate {
        None => sample,
        Some(estimate) => estimate + (sample - estimate) * weight,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_ngram_that_occurred_before_picks_the_draft() {
        // "a b c d" occurred, then "x b c" and "a b c" again: the 3-gram "a b c" matches at 0
        // (the 4-gram "d? a b c" does not occur), so "d e" follows, cut at `max`.
        let held = [1, 2, 3, 4, 5, 9, 2, 3, 6, 1, 2];
        assert_eq!(draft(&held, 3, 2).tokens, vec![4, 5]);
        assert_eq!(draft(&held, 3, 2).source, Source::Lookup(3));
        assert_eq!(draft(&held, 3, 8).tokens, vec![4, 5, 9, 2, 3, 6, 1, 2]);
    }

    #[test]
    fn the_latest_occurrence_wins_and_the_draft_may_run_into_the_last_token() {
        // "2 3" occurs at 1 and at 4; the latest (4) is followed by "7 2 3".
        let held = [1, 2, 3, 5, 2, 3, 7, 2];
        assert_eq!(draft(&held, 3, 8).tokens, vec![7, 2, 3]);
    }

    #[test]
    fn no_draft_without_an_earlier_bigram() {
        assert_eq!(draft(&[1, 2, 3, 4], 5, 8), Draft::default());
        // A single repeated token is not enough.
        assert_eq!(draft(&[7, 1, 2], 7, 8), Draft::default());
        assert_eq!(draft(&[], 7, 8), Draft::default());
        assert_eq!(draft(&[1, 2, 1], 2, 0), Draft::default());
    }

    fn offer(n_tokens: usize, ngram: usize) -> Draft {
        Draft {
            tokens: vec![1; n_tokens],
            source: Source::Lookup(ngram),
        }
    }

    #[test]
    fn drafts_are_checked_whole_until_their_cost_is_known() {
        let mut tuner = DraftTuner::new(true);
        assert_eq!(tuner.choose(&offer(8, 2)), 8);
        tuner.record_plain(10.0);
        assert_eq!(tuner.choose(&offer(8, 2)), 8);
        assert_eq!(DraftTuner::new(false).choose(&offer(5, 2)), 5);
        assert_eq!(tuner.choose(&offer(0, 2)), 0);
    }

    #[test]
    fn cheap_drafts_are_checked_whole_and_dear_ones_only_when_likely() {
        // A GPU: one token 10 ms, eight drafted tokens on top cost 0.8 ms; half agreed with.
        let mut gpu = DraftTuner::new(true);
        gpu.record_plain(10.0);
        gpu.record_check(Source::Lookup(2), 8, 4, 10.8);
        assert_eq!(gpu.choose(&offer(8, 2)), 8);

        // A CPU: each drafted token costs 4 ms on a 10 ms step. Agreement 5/7 (4 of 8, then a
        // disagreement, with the prior of one each) pays for two tokens, not eight: expected
        // 1 + 0.71 + 0.51 = 2.22 tokens in 18 ms beats one in 10 and 2.59 in 22.
        let mut cpu = DraftTuner::new(true);
        cpu.record_plain(10.0);
        cpu.record_check(Source::Lookup(2), 8, 4, 42.0);
        assert!((cpu.agreement(Source::Lookup(2)) - 5.0 / 7.0).abs() < 1e-9);
        assert_eq!(cpu.choose(&offer(8, 2)), 2);
        // Drafts found by longer n-grams have their own record: nothing yet, so one half, which
        // pays for one token (1.5 expected in 14 ms), not two (1.75 in 18).
        assert_eq!(cpu.choose(&offer(8, 4)), 1);
    }

    #[test]
    fn a_declined_draft_is_tried_again_now_and_then() {
        let mut tuner = DraftTuner::new(true);
        tuner.record_plain(10.0);
        tuner.record_check(Source::Lookup(3), 8, 0, 90.0);
        let choices: Vec<usize> = (0..EXPLORE_EVERY)
            .map(|_| tuner.choose(&offer(8, 3)))
            .collect();
        assert!(choices[..EXPLORE_EVERY as usize - 1]
            .iter()
            .all(|&n| n == 0));
        assert_eq!(choices[EXPLORE_EVERY as usize - 1], 2);
    }

    #[test]
    fn a_draft_model_is_asked_for_what_its_own_steps_leave_worth_checking() {
        let mut tuner = DraftTuner::new(true);
        // Until anything is measured, the whole draft.
        assert_eq!(tuner.choose_model(8), 8);
        // A GPU: a 10 ms step, 0.1 ms per checked token; the draft model takes 0.2 ms a token and
        // is agreed with 7 times in 8 (prior included: 6 agreed, 1 disagreement, over 9 + 2).
        tuner.record_plain(10.0);
        tuner.record_check(Source::Model, 8, 6, 10.8);
        tuner.record_model(8, 1.6);
        assert!((tuner.agreement(Source::Model) - 7.0 / 9.0).abs() < 1e-9);
        assert_eq!(tuner.choose_model(8), 8);
        // Its record is its own: prompt lookup's 2-grams know nothing yet.
        assert!((tuner.agreement(Source::Lookup(2)) - 0.5).abs() < 1e-9);
        // A draft model as slow as the model itself is never worth asking.
        let mut slow = DraftTuner::new(true);
        slow.record_plain(10.0);
        slow.record_check(Source::Model, 8, 6, 10.8);
        slow.record_model(4, 40.0);
        assert_eq!(slow.choose_model(8), 0);
        // Without adapting (the fake backend), the whole draft.
        assert_eq!(DraftTuner::new(false).choose_model(5), 5);
    }
}
