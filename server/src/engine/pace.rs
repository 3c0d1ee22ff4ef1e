//! How many prompt tokens go into one step while something else may need the engine: as many as
//! the measured pace of evaluation fits into `STEP_BUDGET_MS`.
//!
//! A step cannot be interrupted, so whoever needs the engine next (another window's keystroke,
//! the sequences decoding beside a prompt) waits for the step under way. A fixed chunk size is
//! wrong on one machine or the other: on 2 CPU cores the 0.5B model evaluates about 160 prompt
//! tokens a second, so a whole batch of 512 held everyone for 2.6 s, while a GPU evaluates the
//! same 512 in tens of milliseconds and pays a step's fixed cost again for each small chunk. So
//! the engine measures its own steps (milliseconds per token evaluated) and sizes chunks by time.

use super::lookup::blend;

/// What a step with a prompt chunk in it may take when something else waits for the engine (or
/// may arrive at any moment): a keystroke then waits about this long at most for the step under
/// way. Shorter steps evaluate prompts less efficiently on a CPU: with 100 ms (16 tokens of the
/// 0.5B model on 2 cores) a 1,900-token prompt took twice as long beside another typist as in
/// whole batches (docs/benchmarks.md).
pub(crate) const STEP_BUDGET_MS: f64 = 250.0;
/// The smallest chunk the pace asks for: on a slow machine, smaller steps evaluate prompts
/// markedly slower per token (`llama-bench` on 2 cores, the 0.5B Q4_K_M model: 99 tokens/s in
/// steps of 8, 131 in steps of 16, about 160 from 64 on; docs/benchmarks.md).
pub(crate) const MIN_CHUNK: usize = 16;
/// Steps of fewer tokens say more about a step's fixed cost than about each token's, so they are
/// not measured.
const MIN_MEASURED: usize = 16;
/// How far the estimate moves towards each new measurement.
const BLEND: f64 = 0.2;

/// Milliseconds per evaluated token, as measured on this context's steps.
#[derive(Debug, Default)]
pub(crate) struct PromptPace {
    ms_per_token: Option<f64>,
}

impl PromptPace {
    /// A step evaluated `n_tokens` tokens (prompt chunks and decoding tokens alike) in `ms`.
    pub(crate) fn record(&mut self, n_tokens: usize, ms: f64) {
        if n_tokens < MIN_MEASURED || !ms.is_finite() || ms <= 0.0 {
            return;
        }
        let sample = ms / n_tokens as f64;
        self.ms_per_token = Some(blend(self.ms_per_token, sample, BLEND));
    }

    /// The prompt tokens a step may take while something else needs the engine: what fits into
    /// `STEP_BUDGET_MS` at the measured pace, between `MIN_CHUNK` and `n_batch`; `unmeasured`
    /// until a step has been measured.
    pub(crate) fn chunk(&self, n_batch: usize, unmeasured: usize) -> usize {
        let chunk = match self.ms_per_token {
            None => unmeasured,
            // A step's fixed cost is in each measured per-token figure, which makes the first
            // chunks smaller than the budget allows; as chunks grow, the figure falls towards
            // the per-token cost and the chunks grow to fill the budget.
            Some(ms) => (STEP_BUDGET_MS / ms).floor() as usize,
        };
        chunk.max(MIN_CHUNK).min(n_batch.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_fill_the_step_budget_at_the_measured_pace() {
        let mut pace = PromptPace::default();
        assert_eq!(pace.chunk(512, 32), 32);
        // The 0.5B model on 2 CPU cores: 32 tokens in 200 ms.
        pace.record(32, 200.0);
        assert_eq!(pace.chunk(512, 32), 40);
        // Faster: 32 tokens in 60 ms, a fifth of the way at a time.
        pace.record(32, 60.0);
        assert_eq!(pace.chunk(512, 32), 46);
        for _ in 0..40 {
            pace.record(32, 60.0);
        }
        assert_eq!(pace.chunk(512, 32), 133);
        // Never below the floor, never past the batch.
        pace.record(16, 4000.0);
        assert_eq!(pace.chunk(512, 32), MIN_CHUNK);
        assert_eq!(pace.chunk(8, 32), 8);
    }

    #[test]
    fn a_gpu_grows_its_chunks_to_the_whole_batch() {
        let mut pace = PromptPace::default();
        // A step costs 6 ms whatever its size up to a few hundred tokens, plus 0.05 ms a token.
        let step_ms = |n: usize| 6.0 + 0.05 * n as f64;
        let mut chunk = pace.chunk(512, 32);
        for _ in 0..20 {
            pace.record(chunk, step_ms(chunk));
            chunk = pace.chunk(512, 32);
        }
        assert_eq!(chunk, 512);
    }

    #[test]
    fn small_and_unmeasurable_steps_are_left_out() {
        let mut pace = PromptPace::default();
        // One decoding token: mostly the step's fixed cost.
        pace.record(1, 30.0);
        pace.record(15, 30.0);
        pace.record(64, f64::NAN);
        pace.record(64, 0.0);
        assert_eq!(pace.chunk(512, 64), 64);
    }
}
