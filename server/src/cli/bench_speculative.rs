//! `wellspring bench quality --vs-plain-decoding`: speculative decoding (prompt lookup, a draft
//! model, or both) against plain decoding, on the quality set's cases.
//!
//! Two engines load the same model, one with `model.lookup_draft` and `model.draft_path` as
//! configured and one with both off, and answer every case in turn (which one goes first alternates, since the machine's load
//! drifts). Suggestions run past the first line as in an editor, so a draft has room to pay off.
//! With a draft model, each case is typed rather than opened: both engines first complete at the
//! start of the case's line, and the case waits until the draft model has caught up with that
//! (as it does in a typing pause), so the measured completion is a keystroke's a few characters
//! later. (One character later, the suggestion typed ahead would often answer without the model.)
//! Greedy decoding makes both answers the same text; the table says how many were, and each
//! side's decode speed (tokens generated over decode time), tokens drafted and accepted.
//! Numbers go to stdout; nothing is asserted.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::bench_quality::{wellspring_case, Answer, Case, QualityBenchArgs};
use super::complete::start_engine;
use crate::config::Config;
use crate::engine::{DraftModelState, Engine};
use crate::index::WorkspaceIndex;

/// One side's sums over the answered cases.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DecodeSums {
    pub n_answers: usize,
    pub n_failed: usize,
    pub n_generated: u64,
    pub t_decode_ms: f64,
    pub n_drafted: u64,
    pub n_accepted: u64,
}

impl DecodeSums {
    pub fn add(&mut self, answer: &Answer) {
        let Some(figures) = answer.figures.as_ref().filter(|_| answer.error.is_none()) else {
            self.n_failed += 1;
            return;
        };
        self.n_answers += 1;
        self.n_generated += u64::from(figures.generation.n_generated);
        self.t_decode_ms += figures.generation.t_decode_ms;
        self.n_drafted += u64::from(figures.generation.n_drafted);
        self.n_accepted += u64::from(figures.generation.n_accepted);
    }

    pub fn tokens_per_s(&self) -> f64 {
        if self.t_decode_ms > 0.0 {
            self.n_generated as f64 * 1000.0 / self.t_decode_ms
        } else {
            0.0
        }
    }
}

pub async fn run(config: &Config, args: &QualityBenchArgs, cases: &[Case]) -> anyhow::Result<()> {
    let label = label(config.model.lookup_draft, &config.model.draft_path).ok_or_else(|| {
        anyhow::anyhow!(
            "model.lookup_draft is 0 and there is no draft model, so there is no speculative decoding to compare: set lookup_draft (e.g. --config with lookup_draft = 8) or --draft-model"
        )
    })?;
    let mut plain_config = config.clone();
    plain_config.model.lookup_draft = 0;
    plain_config.model.draft_path.clear();
    let speculative = start_engine(config).await?;
    wait_for_the_draft_model(&speculative).await?;
    let plain = start_engine(&plain_config).await?;

    let mut indexes: BTreeMap<String, Arc<WorkspaceIndex>> = BTreeMap::new();
    let mut pairs: Vec<(Answer, Answer)> = Vec::with_capacity(cases.len());
    let typed = !config.model.draft_path.trim().is_empty();
    for (case_idx, case) in cases.iter().enumerate() {
        let ours = (&speculative, config);
        let theirs = (&plain, &plain_config);
        if typed {
            type_up_to(ours, args, case, &mut indexes).await;
            type_up_to(theirs, args, case, &mut indexes).await;
            wait_for_the_draft_model_to_catch_up(&speculative).await;
        }
        let pair = if case_idx % 2 == 0 {
            let ours = answer(ours, args, case, &mut indexes).await;
            (ours, answer(theirs, args, case, &mut indexes).await)
        } else {
            let theirs = answer(theirs, args, case, &mut indexes).await;
            (answer(ours, args, case, &mut indexes).await, theirs)
        };
        eprint!(
            "\rspeculative vs plain: {}/{} cases",
            case_idx + 1,
            cases.len()
        );
        for (side, answer) in [("speculative", &pair.0), ("plain", &pair.1)] {
            if let Some(error) = &answer.error {
                eprintln!("\n{side}: case {} failed: {error}", case_idx + 1);
            }
        }
        pairs.push(pair);
    }
    eprintln!();
    print!("{}", table(&label, cases, &pairs));
    Ok(())
}

/// What the speculative side does, for the table; `None` when it does nothing speculative.
fn label(lookup_draft: u32, draft_path: &str) -> Option<String> {
    let draft_path = draft_path.trim();
    match (lookup_draft, draft_path.is_empty()) {
        (0, true) => None,
        (lookup_draft, true) => Some(format!("prompt lookup, draft {lookup_draft}")),
        (0, false) => Some(format!("draft model {draft_path}")),
        (lookup_draft, false) => Some(format!(
            "prompt lookup, draft {lookup_draft}, and draft model {draft_path}"
        )),
    }
}

/// Waits until the engine's draft model, if any, is loaded (it loads beside the model, and
/// completions would draft without it meanwhile); an error when it cannot be had.
async fn wait_for_the_draft_model(engine: &Engine) -> anyhow::Result<()> {
    loop {
        match engine.stats().await.draft_model {
            DraftModelState::None | DraftModelState::Ready => return Ok(()),
            DraftModelState::Loading => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            DraftModelState::Unavailable(reason) => {
                anyhow::bail!("the draft model cannot be had: {reason}")
            }
        }
    }
}

/// Completes at the start of `case`'s line, as the keystrokes before the case's cursor would.
async fn type_up_to(
    side: (&Engine, &Config),
    args: &QualityBenchArgs,
    case: &Case,
    indexes: &mut BTreeMap<String, Arc<WorkspaceIndex>>,
) {
    if case.column > 1 {
        let before = Case {
            column: 1,
            ..case.clone()
        };
        answer(side, args, &before, indexes).await;
    }
}

/// Waits until the draft model has caught up with the completion slots (the engine does that
/// while idle), at most a minute.
async fn wait_for_the_draft_model_to_catch_up(engine: &Engine) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while engine.stats().await.n_draft_lag > 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// One case's answer from one engine; an error becomes a failed answer.
async fn answer(
    (engine, config): (&Engine, &Config),
    args: &QualityBenchArgs,
    case: &Case,
    indexes: &mut BTreeMap<String, Arc<WorkspaceIndex>>,
) -> Answer {
    wellspring_case(config, engine, &args.corpus, case, indexes)
        .await
        .unwrap_or_else(|error| Answer::failed(format!("{error:#}")))
}

/// The comparison table, the identical-answer count and the speed-up, with the cases whose
/// answers differed listed by file and line.
pub fn table(label: &str, cases: &[Case], pairs: &[(Answer, Answer)]) -> String {
    let mut speculative = DecodeSums::default();
    let mut plain = DecodeSums::default();
    let mut differing = Vec::new();
    let mut n_compared = 0;
    for (case, (ours, theirs)) in cases.iter().zip(pairs) {
        speculative.add(ours);
        plain.add(theirs);
        if ours.error.is_none() && theirs.error.is_none() {
            n_compared += 1;
            if ours.text != theirs.text {
                differing.push(format!("{}/{}:{}", case.repo, case.file, case.line));
            }
        }
    }
    let mut out = String::from(
        "| decoding | answers | failed | generated | decode s | tokens/s | drafted | accepted | acceptance |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for (name, sums) in [
        (label.to_owned(), &speculative),
        ("plain".to_owned(), &plain),
    ] {
        let acceptance = if sums.n_drafted > 0 {
            format!(
                "{:.1}%",
                100.0 * sums.n_accepted as f64 / sums.n_drafted as f64
            )
        } else {
            "-".to_owned()
        };
        out += &format!(
            "| {name} | {} | {} | {} | {:.2} | {:.1} | {} | {} | {acceptance} |\n",
            sums.n_answers,
            sums.n_failed,
            sums.n_generated,
            sums.t_decode_ms / 1000.0,
            sums.tokens_per_s(),
            sums.n_drafted,
            sums.n_accepted,
        );
    }
    let speed_up = if plain.tokens_per_s() > 0.0 {
        speculative.tokens_per_s() / plain.tokens_per_s()
    } else {
        0.0
    };
    out += &format!(
        "\nIdentical answers: {} of {n_compared}. Decode speed-up: {speed_up:.2}x.\n",
        n_compared - differing.len()
    );
    if !differing.is_empty() {
        out += &format!("Differing: {}\n", differing.join(", "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{CompletionFigures, StopReason};

    fn answer(text: &str, n_generated: u32, t_decode_ms: f64, drafted: (u32, u32)) -> Answer {
        let mut figures = CompletionFigures::without_inference(0.0, StopReason::MaxTokens);
        figures.generation.n_generated = n_generated;
        figures.generation.t_decode_ms = t_decode_ms;
        (figures.generation.n_drafted, figures.generation.n_accepted) = drafted;
        Answer {
            first_line: text.lines().next().unwrap_or("").to_owned(),
            latency_ms: 0.0,
            error: None,
            tokens: None,
            text: text.to_owned(),
            figures: Some(figures),
        }
    }

    fn case(line: usize) -> Case {
        Case {
            repo: "r".into(),
            language: "rust".into(),
            file: "f.rs".into(),
            line,
            column: 1,
            expected: String::new(),
        }
    }

    #[test]
    fn the_table_sums_each_side_and_names_the_cases_that_differ() {
        let pairs = vec![
            (
                answer("a\nb", 10, 100.0, (8, 6)),
                answer("a\nb", 10, 250.0, (0, 0)),
            ),
            (
                answer("x", 10, 100.0, (4, 0)),
                answer("y", 10, 150.0, (0, 0)),
            ),
            (Answer::failed("no such file"), answer("z", 5, 50.0, (0, 0))),
        ];
        let table = table(&label(8, "").unwrap(), &[case(1), case(2), case(3)], &pairs);
        assert!(
            table.contains(
                "| prompt lookup, draft 8 | 2 | 1 | 20 | 0.20 | 100.0 | 12 | 6 | 50.0% |"
            ),
            "{table}"
        );
        assert!(
            table.contains("| plain | 3 | 0 | 25 | 0.45 | 55.6 | 0 | 0 | - |"),
            "{table}"
        );
        assert!(
            table.contains("Identical answers: 1 of 2. Decode speed-up: 1.80x."),
            "{table}"
        );
        assert!(table.contains("Differing: r/f.rs:2"), "{table}");
    }

    #[test]
    fn the_speculative_side_is_named_by_what_it_does() {
        assert_eq!(label(0, " "), None);
        assert_eq!(label(8, "").as_deref(), Some("prompt lookup, draft 8"));
        assert_eq!(
            label(0, "models/0.5b.gguf").as_deref(),
            Some("draft model models/0.5b.gguf")
        );
        assert_eq!(
            label(4, "qwen").as_deref(),
            Some("prompt lookup, draft 4, and draft model qwen")
        );
    }
}
