//! `wellspring bench context` measures the prompt builder on real code: for call sites whose callee is
//! defined in another file of the same repository (cases made by `bench/context/make-cases.py`
//! from the corpus `bench/context/corpus.sh` lays out), the share of prompts that contain the
//! callee's definition at several budgets; the time to index a large workspace and to build a
//! prompt in it; and how many tokens a keystroke leaves to evaluate when the prompt is rendered.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context as _};
use cpu_time::ThreadTime;
use serde::Deserialize;

use super::prompt::{cursor_byte, PromptSession};
use crate::config::Config;
use crate::context;
use crate::docs::Document;

#[derive(clap::Args, Debug, Clone)]
pub struct ContextBenchArgs {
    /// Cases, one JSON object a line (see bench/context/make-cases.py).
    #[arg(long, default_value = "bench/context/cases.jsonl")]
    pub cases: PathBuf,
    /// The corpus folder laid out by bench/context/corpus.sh.
    #[arg(long)]
    pub corpus: PathBuf,
    /// Prompt budgets in tokens.
    #[arg(long, value_delimiter = ',', default_value = "1024,2048,4096")]
    pub budgets: Vec<usize>,
    /// The corpus entry indexed whole for the timing rows (the Rust cases are timed inside it).
    #[arg(long, default_value = "cargo-registry")]
    pub large: String,
    /// Only the large-workspace timing rows (skips the per-repository recall tables).
    #[arg(long)]
    pub timing_only: bool,
    /// Count each file's lines when it is opened, before its first prompt, as the server does
    /// on `didOpen` (off the typing path); without it the first build tokenizes them itself.
    #[arg(long)]
    pub warm_at_open: bool,
}

#[derive(Debug, Clone, Deserialize)]
struct Case {
    repo: String,
    language: String,
    file: String,
    line: usize,
    column: usize,
    call_column: usize,
    def_key: String,
}

fn normalized(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn percentile(sorted: &[f64], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() - 1) as f64 * fraction).round() as usize;
    sorted[idx]
}

/// The file's text with the cursor's line cut at `column` (1-based characters), and the cursor
/// there: the user is about to type the call.
fn blind_variant(text: &str, line: usize, column: usize) -> (String, usize, usize) {
    let mut out = String::with_capacity(text.len());
    for (line_idx, line_text) in text.split_inclusive('\n').enumerate() {
        if line_idx + 1 == line {
            let kept: String = line_text.chars().take(column - 1).collect();
            out.push_str(&kept);
            out.push('\n');
        } else {
            out.push_str(line_text);
        }
    }
    (out, line, column)
}

struct Hits {
    n_cases: usize,
    n_hits: Vec<usize>,
}

pub fn run_context(
    args: &ContextBenchArgs,
    model: Option<&str>,
    config: &Config,
) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.cases)
        .with_context(|| format!("cannot read cases {}", args.cases.display()))?;
    let mut cases: Vec<Case> = Vec::new();
    for (line_idx, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        cases.push(
            serde_json::from_str(line).with_context(|| {
                format!("{}:{}: invalid case", args.cases.display(), line_idx + 1)
            })?,
        );
    }
    if args.budgets.is_empty() {
        bail!("--budgets needs at least one budget");
    }
    if args.timing_only {
        return run_timing(args, model, config, &cases);
    }
    let mut by_repo: BTreeMap<&str, Vec<&Case>> = BTreeMap::new();
    for case in &cases {
        by_repo.entry(&case.repo).or_default().push(case);
    }

    // conditions × language → hits per budget
    let mut results: BTreeMap<(&str, String), Hits> = BTreeMap::new();
    let mut n_skipped = 0;
    let mut repo_rows = Vec::new();
    for (repo, repo_cases) in &by_repo {
        let root = args.corpus.join(repo);
        let Ok(root) = std::fs::canonicalize(&root) else {
            eprintln!("skipping {repo}: {} not found", root.display());
            n_skipped += repo_cases.len();
            continue;
        };
        let session = PromptSession::new(model, &root, config)?;
        repo_rows.push((
            repo.to_string(),
            session.n_indexed_files,
            session.n_index_ms,
        ));
        for case in repo_cases {
            let path = root.join(&case.file);
            let Ok(source) = std::fs::read_to_string(&path) else {
                n_skipped += 1;
                continue;
            };
            let key = normalized(&case.def_key);
            for condition in ["after-call", "blind"] {
                let (text, line, column) = match condition {
                    "after-call" => (source.clone(), case.line, case.column),
                    _ => blind_variant(&source, case.line, case.call_column),
                };
                let document = session.open(&path, &text);
                let Ok(cursor) = cursor_byte(&document, line, column) else {
                    n_skipped += 1;
                    continue;
                };
                let entry = results
                    .entry((condition, case.language.clone()))
                    .or_insert_with(|| Hits {
                        n_cases: 0,
                        n_hits: vec![0; args.budgets.len()],
                    });
                entry.n_cases += 1;
                for (budget_idx, n_budget) in args.budgets.iter().enumerate() {
                    let built = session.build(Arc::clone(&document), cursor, *n_budget, u32::MAX);
                    let rendered = built.prompt.render_text(session.vocab.fim_texts());
                    if normalized(&rendered).contains(&key) {
                        entry.n_hits[budget_idx] += 1;
                    }
                }
            }
        }
    }

    let budget_header: Vec<String> = args.budgets.iter().map(|it| format!("{it}")).collect();
    println!("### Callee definition in the prompt\n");
    println!(
        "| condition | language | cases | {} |",
        budget_header.join(" | ")
    );
    println!("|---|---|---:|{}", "---:|".repeat(args.budgets.len()));
    let mut totals: BTreeMap<&str, (usize, Vec<usize>)> = BTreeMap::new();
    for ((condition, language), hits) in &results {
        let cells: Vec<String> = hits
            .n_hits
            .iter()
            .map(|n_hit| format!("{:.0}%", 100.0 * *n_hit as f64 / hits.n_cases.max(1) as f64))
            .collect();
        println!(
            "| {condition} | {language} | {} | {} |",
            hits.n_cases,
            cells.join(" | ")
        );
        let total = totals
            .entry(condition)
            .or_insert_with(|| (0, vec![0; args.budgets.len()]));
        total.0 += hits.n_cases;
        for (budget_idx, n_hit) in hits.n_hits.iter().enumerate() {
            total.1[budget_idx] += n_hit;
        }
    }
    for (condition, (n_cases, n_hits)) in &totals {
        let cells: Vec<String> = n_hits
            .iter()
            .map(|n_hit| {
                format!(
                    "**{:.0}%**",
                    100.0 * *n_hit as f64 / (*n_cases).max(1) as f64
                )
            })
            .collect();
        println!("| {condition} | all | {n_cases} | {} |", cells.join(" | "));
    }
    if n_skipped > 0 {
        println!(
            "\n{n_skipped} cases skipped (corpus entry or file missing, or position out of range)."
        );
    }
    println!("\n### Index build per repository\n");
    println!("| repository | files | index ms |");
    println!("|---|---:|---:|");
    for (repo, n_files, n_ms) in &repo_rows {
        println!("| {repo} | {n_files} | {n_ms:.0} |");
    }

    run_timing(args, model, config, &cases)
}

/// Indexes the large workspace, then times prompt builds at the Rust cases' call sites inside it
/// and measures the tokens a keystroke leaves to evaluate.
fn run_timing(
    args: &ContextBenchArgs,
    model: Option<&str>,
    config: &Config,
    cases: &[Case],
) -> anyhow::Result<()> {
    let Ok(root) = std::fs::canonicalize(args.corpus.join(&args.large)) else {
        println!("\nNo `{}` in the corpus: timing rows skipped.", args.large);
        return Ok(());
    };
    let session = PromptSession::new(model, &root, config)?;
    let n_budget = config.context.budget_tokens as usize;
    let mut first_builds = BuildTimes::default();
    let mut keystroke_builds = BuildTimes::default();
    let mut keystroke_tokens = Vec::new();
    for case in cases.iter().filter(|case| case.language == "rust") {
        // Crates sit under the registry folder by their `name-version`, as in the corpus.
        let path = root.join(&case.repo).join(&case.file);
        let Ok(source) = std::fs::read_to_string(&path) else {
            continue;
        };
        let document = session.open(&path, &source);
        let Ok(cursor) = cursor_byte(&document, case.line, case.column) else {
            continue;
        };
        if args.warm_at_open {
            context::warm_line_counts(&document.rope, &session.tokens, context::MAX_WARM_LINES);
        }
        let built = first_builds
            .time(|| session.build(Arc::clone(&document), cursor, n_budget, u32::MAX))?;
        std::hint::black_box(&built);

        // Typing the call's line character by character, from the callee's first letter.
        let mut previous: Option<Vec<i32>> = None;
        let line_chars: Vec<char> = source
            .lines()
            .nth(case.line - 1)
            .unwrap_or("")
            .chars()
            .collect();
        for column in case.call_column..=line_chars.len().min(case.column + 8) {
            let (text, line, column) = blind_variant(&source, case.line, column);
            let typed: Arc<Document> = session.open(&path, &text);
            let Ok(cursor) = cursor_byte(&typed, line, column) else {
                continue;
            };
            let built =
                keystroke_builds.time(|| session.build(typed, cursor, n_budget, u32::MAX))?;
            let tokens = session
                .vocab
                .tokens(&built.prompt.render_text(session.vocab.fim_texts()));
            if let Some(previous) = &previous {
                let n_common = previous
                    .iter()
                    .zip(&tokens)
                    .take_while(|(a, b)| a == b)
                    .count();
                keystroke_tokens.push((tokens.len() - n_common) as f64);
            }
            previous = Some(tokens);
        }
    }
    first_builds.sort();
    keystroke_builds.sort();
    keystroke_tokens.sort_by(f64::total_cmp);
    println!("\n### Large workspace (`{}`)\n", args.large);
    println!("| measure | value |");
    println!("|---|---:|");
    println!("| files indexed | {} |", session.n_indexed_files);
    println!("| index build | {:.0} ms |", session.n_index_ms);
    println!("| names in index | {} |", session.index.len_names());
    println!(
        "| prompts built at call sites (budget {n_budget}) | {} |",
        first_builds.wall_ms.len()
    );
    first_builds.print_rows("build");
    println!(
        "| prompts rebuilt while typing | {} |",
        keystroke_builds.wall_ms.len()
    );
    keystroke_builds.print_rows("rebuild");
    println!("| keystrokes simulated | {} |", keystroke_tokens.len());
    println!(
        "| tokens to evaluate per keystroke, median | {:.0} |",
        percentile(&keystroke_tokens, 0.5)
    );
    println!(
        "| tokens to evaluate per keystroke, p90 | {:.0} |",
        percentile(&keystroke_tokens, 0.9)
    );
    Ok(())
}

/// Wall-clock and thread CPU time of prompt builds, in milliseconds. CPU time is what the build
/// itself costs; on a shared machine wall time also counts the waits for a core.
#[derive(Default)]
struct BuildTimes {
    wall_ms: Vec<f64>,
    cpu_ms: Vec<f64>,
}

impl BuildTimes {
    fn time<T>(&mut self, build: impl FnOnce() -> T) -> anyhow::Result<T> {
        let cpu_started = ThreadTime::try_now().context("cannot read the thread's CPU time")?;
        let wall_started = Instant::now();
        let built = build();
        self.wall_ms
            .push(wall_started.elapsed().as_secs_f64() * 1000.0);
        let cpu = cpu_started
            .try_elapsed()
            .context("cannot read the thread's CPU time")?;
        self.cpu_ms.push(cpu.as_secs_f64() * 1000.0);
        Ok(built)
    }

    fn sort(&mut self) {
        self.wall_ms.sort_by(f64::total_cmp);
        self.cpu_ms.sort_by(f64::total_cmp);
    }

    fn print_rows(&self, what: &str) {
        for (label, fraction) in [("p50", 0.5), ("p90", 0.9), ("max", 1.0)] {
            println!(
                "| {what} {label}, wall / thread CPU | {:.2} / {:.2} ms |",
                percentile(&self.wall_ms, fraction),
                percentile(&self.cpu_ms, fraction)
            );
        }
    }
}
