//! The fuzz harness: runs a proptest strategy against a property for a time budget and a case cap.
//!
//! A nightly toolchain (and so cargo-fuzz) is not something every contributor or CI runner has, so
//! the targets are ordinary integration tests driven by proptest's generators and shrinking. This
//! module owns the budget, the seeds and the report; the targets themselves live in `tests/fuzz/`
//! and own their strategies and properties.
//!
//! Settings, all read from the environment:
//! - `WELLSPRING_FUZZ_SECS`: seconds each target runs (default 4, so `cargo test` stays quick).
//! - `WELLSPRING_FUZZ_CASES`: the most cases each target runs, whatever time is left.
//! - `WELLSPRING_FUZZ_SEED`: the seed (decimal or `0x` hex); a fresh one is drawn when unset.
//! - `WELLSPRING_FUZZ_BATCH`: the batch to start at, to replay a failure without the batches
//!   before it.
//! - `WELLSPRING_FUZZ_REPORT`: a file that gets one JSON line per finished target.
//!
//! Cases run in batches. Each batch gets its own generator, derived from the seed, the target's
//! name and the batch's number, and stateful targets start each batch afresh (a new server process,
//! say). So a failure replays from the seed and batch printed with it, however long the run was.

use std::hash::{BuildHasher, Hasher};
use std::io::Write;
use std::time::{Duration, Instant};

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseResult, TestError, TestRng, TestRunner};

pub mod client_text;
pub mod gen;

/// How long a target runs when `WELLSPRING_FUZZ_SECS` is unset.
const DEFAULT_SECS: f64 = 4.0;

/// The limits of one target.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Cases per batch: a fresh generator (and, for stateful targets, fresh state) each time.
    pub batch_cases: u32,
    /// The most cases when `WELLSPRING_FUZZ_CASES` is unset.
    pub default_max_cases: u64,
    /// How long shrinking a failure may take before the smallest input found so far is reported.
    pub max_shrink: Duration,
}

impl Limits {
    /// Limits for targets that run in-process and take microseconds a case.
    pub const FAST: Limits = Limits {
        batch_cases: 256,
        default_max_cases: 1_000_000,
        max_shrink: Duration::from_secs(30),
    };

    /// Limits for targets that talk to a server process and take milliseconds a case.
    pub const SERVER: Limits = Limits {
        batch_cases: 16,
        default_max_cases: 100_000,
        max_shrink: Duration::from_secs(90),
    };
}

/// What a finished target did.
#[derive(Debug, Clone)]
pub struct Report {
    pub target: String,
    pub seed: u64,
    pub cases: u64,
    pub batches: u64,
    pub seconds: f64,
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .filter(|value| !value.trim().is_empty())
}

fn parse_u64(name: &str, value: &str) -> u64 {
    let value = value.trim();
    let parsed = match value.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => value.parse(),
    };
    parsed.unwrap_or_else(|_| panic!("{name} must be an integer, got {value:?}"))
}

/// The run's seed: `WELLSPRING_FUZZ_SEED`, or one drawn from the process's hash keys and the clock.
pub fn seed() -> u64 {
    if let Some(value) = env_var("WELLSPRING_FUZZ_SEED") {
        return parse_u64("WELLSPRING_FUZZ_SEED", &value);
    }
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|since| since.as_nanos())
        .unwrap_or_default();
    hasher.write_u128(nanos);
    hasher.finish()
}

/// Seconds each target runs.
pub fn budget() -> Duration {
    let seconds = match env_var("WELLSPRING_FUZZ_SECS") {
        Some(value) => value.trim().parse::<f64>().unwrap_or_else(|_| {
            panic!("WELLSPRING_FUZZ_SECS must be a number of seconds, got {value:?}")
        }),
        None => DEFAULT_SECS,
    };
    Duration::from_secs_f64(seconds.max(0.0))
}

/// SplitMix64: a well-mixed, stable step, so seeds derive the same way on every toolchain.
fn mix(mut state: u64) -> u64 {
    state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    state = (state ^ (state >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    state = (state ^ (state >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    state ^ (state >> 31)
}

/// The 32-byte ChaCha seed of one batch of one target.
fn batch_seed(seed: u64, target: &str, batch_idx: u64) -> [u8; 32] {
    let mut state = mix(seed);
    for byte in target.bytes() {
        state = mix(state ^ u64::from(byte));
    }
    state = mix(state ^ batch_idx);
    let mut bytes = [0; 32];
    for chunk in bytes.chunks_mut(8) {
        state = mix(state);
        chunk.copy_from_slice(&state.to_le_bytes());
    }
    bytes
}

/// Runs `target` until its time budget or case cap is spent, and panics with a replayable report
/// at the first failure (after shrinking it).
///
/// `new_batch` makes the property for the batch with the number it is given; stateful targets set
/// up fresh state in it, and may vary it by the number (which a replay keeps).
pub fn fuzz<S, F>(
    target: &str,
    limits: Limits,
    strategy: S,
    mut new_batch: impl FnMut(u64) -> F,
) -> Report
where
    S: Strategy,
    F: Fn(S::Value) -> TestCaseResult,
{
    let seed = seed();
    let budget = budget();
    let max_cases = env_var("WELLSPRING_FUZZ_CASES")
        .map(|value| parse_u64("WELLSPRING_FUZZ_CASES", &value))
        .unwrap_or(limits.default_max_cases);
    let first_batch = env_var("WELLSPRING_FUZZ_BATCH")
        .map(|value| parse_u64("WELLSPRING_FUZZ_BATCH", &value))
        .unwrap_or(0);
    let started = Instant::now();
    let mut cases = 0;
    let mut batch_idx = first_batch;
    // At least one batch runs, so even a zero budget checks something.
    while cases == 0 || (cases < max_cases && started.elapsed() < budget) {
        let batch_cases = u64::from(limits.batch_cases).min(max_cases.saturating_sub(cases).max(1));
        let config = Config {
            cases: batch_cases as u32,
            failure_persistence: None,
            max_shrink_time: limits.max_shrink.as_millis() as u32,
            max_shrink_iters: 4096,
            ..Config::default()
        };
        let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &batch_seed(seed, target, batch_idx));
        let mut runner = TestRunner::new_with_rng(config, rng);
        let property = new_batch(batch_idx);
        match runner.run(&strategy, property) {
            Ok(()) => {}
            Err(TestError::Fail(reason, minimal)) => panic!(
                "fuzz target {target} failed after {cases} passing cases in {:.1}s: {reason}\n\
                 minimal input: {minimal:#?}\n\
                 replay: WELLSPRING_FUZZ_SEED={seed:#x} WELLSPRING_FUZZ_BATCH={batch_idx} \
                 cargo test -p wellspring-fuzz --test fuzz -- --exact {}",
                started.elapsed().as_secs_f64(),
                test_name(target)
            ),
            Err(TestError::Abort(reason)) => {
                panic!("fuzz target {target} gave up: {reason} (seed {seed:#x}, batch {batch_idx})")
            }
        }
        cases += batch_cases;
        batch_idx += 1;
    }
    let report = Report {
        target: target.to_owned(),
        seed,
        cases,
        batches: batch_idx - first_batch,
        seconds: started.elapsed().as_secs_f64(),
    };
    println!(
        "fuzz target {}: {} cases in {} batches, {:.1}s, seed {:#x}, no findings",
        report.target, report.cases, report.batches, report.seconds, report.seed
    );
    if let Some(path) = env_var("WELLSPRING_FUZZ_REPORT") {
        append_report(&path, &report);
    }
    report
}

/// The name libtest gave the running test (it names each test's thread after it), for the
/// replay command; the target's name when there is none.
fn test_name(target: &str) -> String {
    std::thread::current()
        .name()
        .filter(|name| *name != "main")
        .unwrap_or(target)
        .to_owned()
}

fn append_report(path: &str, report: &Report) {
    let line = serde_json::json!({
        "target": report.target,
        "seed": format!("{:#x}", report.seed),
        "cases": report.cases,
        "batches": report.batches,
        "seconds": (report.seconds * 10.0).round() / 10.0,
        "findings": 0,
    });
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|error| panic!("cannot open WELLSPRING_FUZZ_REPORT {path}: {error}"));
    writeln!(file, "{line}").expect("write the fuzz report");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_seeds_differ_by_target_and_batch_and_repeat_exactly() {
        assert_eq!(batch_seed(7, "a", 0), batch_seed(7, "a", 0));
        assert_ne!(batch_seed(7, "a", 0), batch_seed(7, "a", 1));
        assert_ne!(batch_seed(7, "a", 0), batch_seed(7, "b", 0));
        assert_ne!(batch_seed(7, "a", 0), batch_seed(8, "a", 0));
    }

    #[test]
    fn a_failure_reports_the_minimal_input_and_how_to_replay_it() {
        let limits = Limits {
            batch_cases: 64,
            default_max_cases: 64,
            max_shrink: Duration::from_secs(10),
        };
        let failed = std::panic::catch_unwind(|| {
            fuzz("harness_self_test", limits, 0..100_000_u32, |_| {
                |n: u32| {
                    proptest::prop_assert!(n < 1000);
                    Ok(())
                }
            })
        });
        let panic = failed.expect_err("the property fails for most inputs");
        let message = panic
            .downcast_ref::<String>()
            .expect("the harness panics with a formatted message");
        assert!(message.contains("minimal input: 1000"), "{message}");
        assert!(message.contains("WELLSPRING_FUZZ_SEED=0x"), "{message}");
        assert!(message.contains("WELLSPRING_FUZZ_BATCH="), "{message}");
    }

    #[test]
    fn seeds_parse_in_decimal_and_hex() {
        assert_eq!(parse_u64("X", "42"), 42);
        assert_eq!(parse_u64("X", " 0x2a "), 42);
    }
}
