//! How many of the sequences that are decoding go into one step: all of them (continuous
//! batching), or one at a time, whichever the measured step times say gives more tokens per
//! millisecond.
//!
//! A batched step reads the weights once for every sequence in it, which is why batching pays
//! where reading the weights is the cost (a GPU). On a CPU the matrix products of a small batch
//! can cost far more than the one-sequence kind: llama.cpp's own `llama-batched-bench` on 2 cores
//! decodes the real Qwen2.5-Coder 0.5B Q4_K_M at 19 ms a step for one sequence and 52 ms for two
//! (docs/benchmarks.md), so two sequences advance faster in turns than together. Which kernels
//! are slow depends on the build, the CPU and the model's types, so nothing is assumed: the
//! scheduler records what its decode-only steps take by the number of sequences in them, and
//! [`BatchTuner::sequences_per_step`] picks the faster of the two ways, trying the other now and
//! then to follow the machine.

use super::lookup::blend;

/// How far the step-time averages move towards each new measurement: a fifth. With the draft
/// tuner's tenth, two typists on the 0.5B shape stayed batched (1.94 sequences a step, against
/// 1.29 with a fifth; docs/benchmarks.md).
const BLEND: f64 = 0.2;
/// After this many steps decided the same way, the other way is tried once to measure it again.
const EXPLORE_EVERY: u32 = 64;
/// Taking turns must beat batching by this factor (and batching turns by it) to switch: step
/// times are noisy.
const MARGIN: f64 = 1.1;

/// Step times by the number of sequences in a decode-only step, and the choice they make.
#[derive(Debug, Default)]
pub(crate) struct BatchTuner {
    /// Milliseconds a step of `index` sequences took, one token each, as a running average.
    step_ms: Vec<Option<f64>>,
    /// Steps decided in a row without trying the other way.
    n_since_explored: u32,
    /// Whether the last choice was turns.
    taking_turns: bool,
}

impl BatchTuner {
    /// How many of the `n_decoding` sequences (one token each) to put into this step: all of
    /// them, or 1, each in turn. All of them until both ways are measured.
    pub(crate) fn sequences_per_step(&mut self, n_decoding: usize) -> usize {
        if n_decoding < 2 {
            return n_decoding;
        }
        let (Some(batched_ms), Some(single_ms)) = (self.ms(n_decoding), self.ms(1)) else {
            // Measure batching first (what a GPU wants), then one at a time.
            return if self.ms(n_decoding).is_none() {
                n_decoding
            } else {
                1
            };
        };
        // Tokens per millisecond: n in one step, or n in n steps of one.
        let batched_rate = n_decoding as f64 / batched_ms;
        let turns_rate = 1.0 / single_ms;
        // The way taken stays until the other beats it by the margin.
        let turns = if self.taking_turns {
            batched_rate <= turns_rate * MARGIN
        } else {
            turns_rate > batched_rate * MARGIN
        };
        self.taking_turns = turns;
        self.n_since_explored += 1;
        let explore = self.n_since_explored >= EXPLORE_EVERY;
        if explore {
            self.n_since_explored = 0;
        }
        if turns != explore {
            1
        } else {
            n_decoding
        }
    }

    /// A decode-only step of `n_sequences` sequences, one token each, took `ms`.
    pub(crate) fn record(&mut self, n_sequences: usize, ms: f64) {
        if n_sequences == 0 || !ms.is_finite() {
            return;
        }
        if self.step_ms.len() <= n_sequences {
            self.step_ms.resize(n_sequences + 1, None);
        }
        let average = &mut self.step_ms[n_sequences];
        *average = Some(blend(*average, ms, BLEND));
    }

    fn ms(&self, n_sequences: usize) -> Option<f64> {
        self.step_ms.get(n_sequences).copied().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The choices of `n` decisions for `n_decoding` sequences.
    fn choices(tuner: &mut BatchTuner, n_decoding: usize, n: usize) -> Vec<usize> {
        (0..n)
            .map(|_| tuner.sequences_per_step(n_decoding))
            .collect()
    }

    #[test]
    fn batches_until_both_ways_are_measured_then_takes_the_faster() {
        let mut tuner = BatchTuner::default();
        assert_eq!(tuner.sequences_per_step(1), 1);
        assert_eq!(tuner.sequences_per_step(0), 0);
        // Nothing known: the whole batch, to measure it.
        assert_eq!(tuner.sequences_per_step(2), 2);
        // Llama.cpp on 2 CPU cores, 0.5B Q4_K_M: 52 ms for two, 19 ms for one.
        tuner.record(2, 52.0);
        assert_eq!(tuner.sequences_per_step(2), 1);
        tuner.record(1, 19.0);
        assert_eq!(choices(&mut tuner, 2, 3), [1, 1, 1]);
        // Four together in 80 ms: 0.050 tokens/ms against 0.053 one at a time, within the
        // margin, so the turns already taken go on; in 50 ms batching wins by more than it.
        tuner.record(4, 80.0);
        assert_eq!(tuner.sequences_per_step(4), 1);
        tuner.step_ms[4] = Some(50.0);
        assert_eq!(tuner.sequences_per_step(4), 4);
        // A GPU: 9 ms for eight, 8 ms for one.
        let mut gpu = BatchTuner::default();
        gpu.record(8, 9.0);
        gpu.record(1, 8.0);
        assert_eq!(choices(&mut gpu, 8, 3), [8, 8, 8]);
    }

    #[test]
    fn the_other_way_is_tried_now_and_then_and_a_change_in_the_machine_is_followed() {
        let mut tuner = BatchTuner::default();
        tuner.record(2, 52.0);
        tuner.record(1, 19.0);
        let decided = choices(&mut tuner, 2, EXPLORE_EVERY as usize);
        assert_eq!(decided.iter().filter(|&&n| n == 2).count(), 1);
        assert_eq!(decided.last(), Some(&2));
        // The batched step got cheap (the other program is gone, another build): a few
        // measurements move the average past the margin, and batching comes back.
        for _ in 0..8 {
            tuner.record(2, 20.0);
        }
        assert_eq!(choices(&mut tuner, 2, 3), [2, 2, 2]);
    }
}
