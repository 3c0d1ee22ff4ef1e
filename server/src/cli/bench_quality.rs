//! `wellspring bench quality` measures what the completions are worth on real code: for lines cut
//! from real open-source files (cases made by `bench/quality/make-cases.py` from the corpus
//! `bench/quality/corpus.sh` lays out), how often the first line of the first suggestion is
//! exactly the removed rest of the line, and how close it is by edit similarity; optionally the
//! same for llama-server's `/infill` with llama.vim's request shape, on the same cases.
//!
//! Both systems decode greedily and stop at the first newline: only the first line is scored,
//! and with greedy decoding the first line does not depend on where generation stops after it.
//! The two systems run one after the other, never at the same time, so their latencies are
//! comparable. Numbers go to stdout as a table; nothing here is asserted.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use serde::Deserialize;
use serde_json::{json, Value};

use super::complete::start_engine;
use super::prompt::{cursor_byte, open_document};
use crate::assist::completion::{suggest, Trigger};
use crate::config::Config;
use crate::context::{ContextSnapshot, RecentChunks};
use crate::engine::{CompletionFigures, Engine};
use crate::index::WorkspaceIndex;

#[derive(clap::Args, Debug, Clone)]
pub struct QualityBenchArgs {
    /// Cases, one JSON object a line (see bench/quality/make-cases.py).
    #[arg(long, default_value = "bench/quality/cases.jsonl")]
    pub cases: PathBuf,
    /// The corpus folder laid out by bench/quality/corpus.sh.
    #[arg(long)]
    pub corpus: PathBuf,
    /// Also ask a running llama-server (e.g. http://127.0.0.1:8013) through `/infill`.
    #[arg(long, value_name = "URL")]
    pub vs_llama_server: Option<String>,
    /// Skip Wellspring and measure only llama-server.
    #[arg(long, requires = "vs_llama_server")]
    pub only_llama_server: bool,
    /// Run only the first N cases.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Write every case's answers here, one JSON object a line, to study the misses.
    #[arg(long, value_name = "FILE")]
    pub details: Option<PathBuf>,
    /// Let Wellspring's suggestions run past the first line as they do in an editor, stopping
    /// where post-processing would cut them, and report the tokens generated and thrown away.
    /// The score is still the first line's, which greedy decoding makes the same either way.
    #[arg(long)]
    pub multi_line: bool,
    /// Speculative decoding against plain decoding: two engines on the model, one with
    /// `model.lookup_draft` and `model.draft_path` (--draft-model) as configured and one with
    /// both off, answer every case in turn with
    /// multi-line suggestions; the table says whether the answers were identical and each side's
    /// decode speed and acceptance.
    #[arg(long, conflicts_with_all = ["vs_llama_server", "only_llama_server"])]
    pub vs_plain_decoding: bool,
}

/// One line to complete: the cursor sits at `column` (1-based characters) of `line` (1-based),
/// everything after it on the line removed, and `expected` is what was removed.
#[derive(Debug, Clone, Deserialize)]
pub struct Case {
    pub repo: String,
    pub language: String,
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub expected: String,
}

/// One system's answer to one case.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The first line of the first suggestion; empty when there was none.
    pub first_line: String,
    pub latency_ms: f64,
    /// Why the case could not be run; it then counts as a miss.
    pub error: Option<String>,
    /// Tokens generated for the first suggestion, and how many of them post-processing cut off
    /// (Wellspring only).
    pub tokens: Option<(u32, u32)>,
    /// The whole first suggestion and its engine figures (Wellspring only).
    pub text: String,
    pub figures: Option<CompletionFigures>,
}

impl Answer {
    pub(crate) fn failed(error: impl std::fmt::Display) -> Answer {
        Answer {
            first_line: String::new(),
            latency_ms: 0.0,
            error: Some(error.to_string()),
            tokens: None,
            text: String::new(),
            figures: None,
        }
    }
}

/// The first line of `text`, trailing whitespace removed.
pub fn first_line(text: &str) -> &str {
    text.split('\n').next().unwrap_or("").trim_end()
}

/// Whether the answer is the expected rest of the line (trailing whitespace ignored).
pub fn is_exact(answer: &str, expected: &str) -> bool {
    first_line(answer) == expected.trim_end()
}

/// 1 - Levenshtein distance / the longer length, over characters; 1 for two empty strings.
pub fn similarity(answer: &str, expected: &str) -> f64 {
    strsim::normalized_levenshtein(first_line(answer), expected.trim_end())
}

/// `text` with line `line` (1-based) cut before `column` (1-based characters): what the editor
/// holds while the user is about to type the rest. The lines after it stay.
pub fn cut_line(text: &str, line: usize, column: usize) -> anyhow::Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut found = false;
    for (line_idx, line_text) in text.split_inclusive('\n').enumerate() {
        if line_idx + 1 != line {
            out.push_str(line_text);
            continue;
        }
        found = true;
        let body = line_text.trim_end_matches(['\n', '\r']);
        let n_chars = body.chars().count();
        if column > n_chars + 1 {
            anyhow::bail!("column {column} is past the end of line {line} ({n_chars} characters)");
        }
        out.extend(body.chars().take(column - 1));
        out.push_str(&line_text[body.len()..]);
    }
    if !found {
        anyhow::bail!("line {line} is past the end of the file");
    }
    Ok(out)
}

pub(crate) fn read_cases(path: &Path) -> anyhow::Result<Vec<Case>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read cases {}", path.display()))?;
    let mut cases = Vec::new();
    for (line_idx, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        cases.push(
            serde_json::from_str(line)
                .with_context(|| format!("{}:{}: invalid case", path.display(), line_idx + 1))?,
        );
    }
    Ok(cases)
}

pub async fn run_quality(config: &Config, args: &QualityBenchArgs) -> anyhow::Result<()> {
    let mut cases = read_cases(&args.cases)?;
    if let Some(limit) = args.limit {
        cases.truncate(limit);
    }
    let mut config = config.clone();
    // Greedy, one line, and no deadline: the benchmark grades text, a slow answer is still graded.
    config.completion.temperature = 0.0;
    config.completion.time_budget_ms = config.completion.time_budget_ms.max(600_000);
    if args.vs_plain_decoding {
        return super::bench_speculative::run(&config, args, &cases).await;
    }
    if !args.multi_line {
        config.completion.stop.push("\n".to_owned());
    }

    let ours = if args.only_llama_server {
        None
    } else {
        let engine = start_engine(&config).await?;
        let answers = run_wellspring(&config, &engine, &args.corpus, &cases).await;
        drop(engine);
        Some(answers)
    };
    let theirs = match &args.vs_llama_server {
        Some(url) => {
            let url = url.clone();
            let corpus = args.corpus.clone();
            let blocking_cases = cases.clone();
            Some(
                tokio::task::spawn_blocking(move || {
                    run_llama_server(&url, &corpus, &blocking_cases)
                })
                .await?,
            )
        }
        None => None,
    };
    if let Some(path) = &args.details {
        write_details(path, &cases, ours.as_deref(), theirs.as_deref())?;
    }
    print!("{}", table(&cases, ours.as_deref(), theirs.as_deref()));
    Ok(())
}

async fn run_wellspring(
    config: &Config,
    engine: &Engine,
    corpus: &Path,
    cases: &[Case],
) -> Vec<Answer> {
    let mut answers = Vec::with_capacity(cases.len());
    let mut indexes: BTreeMap<String, Arc<WorkspaceIndex>> = BTreeMap::new();
    for case in cases {
        let answer = match wellspring_case(config, engine, corpus, case, &mut indexes).await {
            Ok(answer) => answer,
            Err(error) => Answer::failed(format!("{error:#}")),
        };
        progress("wellspring", answers.len() + 1, cases.len(), &answer);
        answers.push(answer);
    }
    eprintln!();
    answers
}

/// The repository's index, scanned the first time one of its cases runs.
pub(crate) async fn index_for(
    config: &Config,
    root: &Path,
    repo: &str,
    indexes: &mut BTreeMap<String, Arc<WorkspaceIndex>>,
) -> anyhow::Result<Arc<WorkspaceIndex>> {
    if let Some(index) = indexes.get(repo) {
        return Ok(Arc::clone(index));
    }
    let index = super::complete::index_workspace(config, root.to_path_buf()).await?;
    indexes.insert(repo.to_owned(), Arc::clone(&index));
    Ok(index)
}

pub(crate) async fn wellspring_case(
    config: &Config,
    engine: &Engine,
    corpus: &Path,
    case: &Case,
    indexes: &mut BTreeMap<String, Arc<WorkspaceIndex>>,
) -> anyhow::Result<Answer> {
    let root = std::fs::canonicalize(corpus.join(&case.repo))
        .with_context(|| format!("corpus entry {} not found", case.repo))?;
    let path = root.join(&case.file);
    let original = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let text = cut_line(&original, case.line, case.column)?;
    let index = index_for(config, &root, &case.repo, indexes).await?;

    let document = open_document(&path, &text);
    let cursor = cursor_byte(&document, case.line, case.column)?;
    // The index read the file from disk, answer included; in an editor the line being typed is
    // not on disk yet, so the index sees the file as it is in the editor.
    if let (Some(language), Some(tree)) = (document.language, document.tree.as_ref()) {
        index.update_tree(&path, language, &document.rope, tree);
    }
    let snapshot = ContextSnapshot {
        current: document,
        open: Vec::new(),
        index: Arc::clone(&index),
        recent: RecentChunks::default(),
    };
    let started = Instant::now();
    let suggestions = suggest(engine, &snapshot, cursor, Trigger::Automatic, config).await;
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    index.update_file(&path, &original);
    let suggestions = suggestions?;
    Ok(Answer {
        first_line: suggestions
            .first()
            .map(|suggestion| first_line(&suggestion.text).to_owned())
            .unwrap_or_default(),
        latency_ms,
        error: None,
        tokens: suggestions.first().map(|suggestion| {
            (
                suggestion.figures.generation.n_generated,
                suggestion.n_discarded,
            )
        }),
        text: suggestions
            .first()
            .map(|suggestion| suggestion.text.clone())
            .unwrap_or_default(),
        figures: suggestions
            .first()
            .map(|suggestion| suggestion.figures.clone()),
    })
}

/// The `/infill` body llama.vim sends with the cursor at the case's cut: up to 256 lines before
/// the cursor's line as `input_prefix`, the (removed) rest of the line and up to 64 lines after
/// as `input_suffix`, the line up to the cursor as `prompt`; greedy, stopping at the first newline.
pub fn infill_request(text: &str, line: usize, column: usize) -> Value {
    let lines: Vec<&str> = text.split('\n').collect();
    let line_idx = (line - 1).min(lines.len().saturating_sub(1));
    let current = lines.get(line_idx).copied().unwrap_or("");
    let head: String = current.chars().take(column - 1).collect();
    let (input_prefix, input_suffix) = super::bench::llama_vim_context(&lines, line_idx);
    json!({
        "input_prefix": input_prefix,
        "input_suffix": input_suffix,
        "input_extra": [],
        "prompt": head,
        "n_predict": 64,
        "samplers": ["top_k"],
        "top_k": 1,
        "temperature": 0.0,
        "stop": ["\n"],
        "stream": false,
        "cache_prompt": true,
    })
}

fn run_llama_server(url: &str, corpus: &Path, cases: &[Case]) -> Vec<Answer> {
    let endpoint = format!("{}/infill", url.trim_end_matches('/'));
    let mut answers = Vec::with_capacity(cases.len());
    for case in cases {
        let answer = match llama_server_case(&endpoint, corpus, case) {
            Ok(answer) => answer,
            Err(error) => Answer::failed(format!("{error:#}")),
        };
        progress("llama-server", answers.len() + 1, cases.len(), &answer);
        answers.push(answer);
    }
    eprintln!();
    answers
}

fn llama_server_case(endpoint: &str, corpus: &Path, case: &Case) -> anyhow::Result<Answer> {
    let path = corpus.join(&case.repo).join(&case.file);
    let original = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let text = cut_line(&original, case.line, case.column)?;
    let body = infill_request(&text, case.line, case.column);
    let (response, latency_ms) = super::bench::post_json(endpoint, &body)?;
    let content = response
        .get("content")
        .and_then(Value::as_str)
        .context("llama-server response has no content")?;
    Ok(Answer {
        first_line: first_line(content).to_owned(),
        latency_ms,
        error: None,
        tokens: None,
        text: content.to_owned(),
        figures: None,
    })
}

fn progress(label: &str, n_done: usize, n_cases: usize, answer: &Answer) {
    eprint!("\r{label}: {n_done}/{n_cases} cases");
    if let Some(error) = &answer.error {
        eprintln!("\n{label}: case {n_done} failed (counted as a miss): {error}");
    }
    let _ = std::io::stderr().flush();
}

fn write_details(
    path: &Path,
    cases: &[Case],
    ours: Option<&[Answer]>,
    theirs: Option<&[Answer]>,
) -> anyhow::Result<()> {
    let answer_json = |answers: Option<&[Answer]>, case_idx: usize| {
        answers.map(|answers| {
            let answer = &answers[case_idx];
            json!({
                "first_line": answer.first_line,
                "exact": answer.error.is_none() && is_exact(&answer.first_line, &cases[case_idx].expected),
                "similarity": similarity(&answer.first_line, &cases[case_idx].expected),
                "latency_ms": answer.latency_ms,
                "error": answer.error,
            })
        })
    };
    let mut out = String::new();
    for (case_idx, case) in cases.iter().enumerate() {
        let row = json!({
            "repo": case.repo,
            "language": case.language,
            "file": case.file,
            "line": case.line,
            "column": case.column,
            "expected": case.expected,
            "wellspring": answer_json(ours, case_idx),
            "llama_server": answer_json(theirs, case_idx),
        });
        out.push_str(&row.to_string());
        out.push('\n');
    }
    std::fs::write(path, out).with_context(|| format!("cannot write {}", path.display()))
}

/// Exact matches, summed similarity, summed latency, failures, over some cases.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Score {
    pub n_cases: usize,
    pub n_exact: usize,
    pub similarity_sum: f64,
    pub latency_ms_sum: f64,
    pub n_failed: usize,
}

impl Score {
    pub fn add(&mut self, answer: &Answer, expected: &str) {
        self.n_cases += 1;
        if answer.error.is_some() {
            self.n_failed += 1;
            return;
        }
        self.n_exact += usize::from(is_exact(&answer.first_line, expected));
        self.similarity_sum += similarity(&answer.first_line, expected);
        self.latency_ms_sum += answer.latency_ms;
    }

    fn cells(&self) -> String {
        let n_cases = self.n_cases.max(1) as f64;
        let n_answered = (self.n_cases - self.n_failed).max(1) as f64;
        let failed = if self.n_failed > 0 {
            format!(" ({} failed)", self.n_failed)
        } else {
            String::new()
        };
        format!(
            "{:.1}%{failed} | {:.3} | {:.0}",
            100.0 * self.n_exact as f64 / n_cases,
            self.similarity_sum / n_cases,
            self.latency_ms_sum / n_answered
        )
    }
}

/// The results table: per language and overall, each system's exact-match share, mean edit
/// similarity and mean latency. Failed cases count as misses with similarity 0.
pub fn table(cases: &[Case], ours: Option<&[Answer]>, theirs: Option<&[Answer]>) -> String {
    let systems: Vec<(&str, &[Answer])> = [("wellspring", ours), ("llama-server /infill", theirs)]
        .into_iter()
        .filter_map(|(name, answers)| answers.map(|answers| (name, answers)))
        .collect();
    let mut by_language: BTreeMap<&str, Vec<Score>> = BTreeMap::new();
    let mut overall = vec![Score::default(); systems.len()];
    for (case_idx, case) in cases.iter().enumerate() {
        let scores = by_language
            .entry(&case.language)
            .or_insert_with(|| vec![Score::default(); systems.len()]);
        for (system_idx, (_, answers)) in systems.iter().enumerate() {
            scores[system_idx].add(&answers[case_idx], &case.expected);
            overall[system_idx].add(&answers[case_idx], &case.expected);
        }
    }
    let mut out = String::from("| language | cases |");
    let mut rule = String::from("|---|---:|");
    for (name, _) in &systems {
        out += &format!(" {name} exact | {name} similarity | {name} mean ms |");
        rule += "---:|---:|---:|";
    }
    out += "\n";
    out += &rule;
    out += "\n";
    for (language, scores) in &by_language {
        out += &format!("| {language} | {} |", scores[0].n_cases);
        for score in scores {
            out += &format!(" {} |", score.cells());
        }
        out += "\n";
    }
    out += &format!("| **all** | {} |", cases.len());
    for score in &overall {
        out += &format!(" {} |", score.cells());
    }
    out += "\n";
    if let Some(line) = ours.and_then(token_line) {
        out += &line;
    }
    out
}

/// Tokens per suggestion: generated, and thrown away by post-processing (median, mean).
fn token_line(answers: &[Answer]) -> Option<String> {
    let tokens: Vec<(u32, u32)> = answers.iter().filter_map(|answer| answer.tokens).collect();
    if tokens.is_empty() {
        return None;
    }
    let median = |mut values: Vec<u32>| {
        values.sort_unstable();
        values[values.len() / 2]
    };
    let mean =
        |values: &[u32]| values.iter().map(|&n| f64::from(n)).sum::<f64>() / values.len() as f64;
    let generated: Vec<u32> = tokens.iter().map(|&(n_generated, _)| n_generated).collect();
    let discarded: Vec<u32> = tokens.iter().map(|&(_, n_discarded)| n_discarded).collect();
    Some(format!(
        "\nWellspring tokens per suggestion ({} suggestions): generated median {}, mean {:.1}; thrown away median {}, mean {:.1}.\n",
        tokens.len(),
        median(generated.clone()),
        mean(&generated),
        median(discarded.clone()),
        mean(&discarded),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cut_line_keeps_its_ending_and_the_lines_after_it() {
        let text = "fn a() {\n    let x = 1;\r\n}\n";
        assert_eq!(cut_line(text, 2, 10).unwrap(), "fn a() {\n    let x\r\n}\n");
        assert_eq!(cut_line("é€x", 1, 2).unwrap(), "é");
        assert!(cut_line(text, 2, 30).is_err());
        assert!(cut_line(text, 9, 1).is_err());
    }

    #[test]
    fn only_the_first_line_is_scored() {
        assert!(is_exact("= 1;  \n    next();", "= 1;"));
        assert!(!is_exact(" = 1;", "= 1;"));
        assert!(!is_exact("", "= 1;"));
        assert_eq!(similarity("abcd\nzzzz", "abcd"), 1.0);
        assert_eq!(similarity("abcx", "abcd"), 0.75);
        assert_eq!(similarity("", "abcd"), 0.0);
        // Characters, not bytes.
        assert_eq!(similarity("é", "e"), 0.0);
        assert_eq!(similarity("éa", "éb"), 0.5);
    }

    #[test]
    fn infill_requests_have_llama_vim_shape() {
        let text: String = (0..400).map(|idx| format!("line {idx}\n")).collect();
        let text = cut_line(&text, 300, 4).unwrap();
        let body = infill_request(&text, 300, 4);
        assert_eq!(body["prompt"], "lin");
        let prefix = body["input_prefix"].as_str().unwrap();
        assert_eq!(prefix.lines().count(), 256);
        assert!(prefix.starts_with("line 43\n"));
        assert!(prefix.ends_with("line 298\n"));
        let suffix = body["input_suffix"].as_str().unwrap();
        assert!(suffix.starts_with("\nline 300\n"));
        assert_eq!(suffix.lines().count(), 65);
        assert_eq!(body["stop"], json!(["\n"]));
        assert_eq!(
            (body["top_k"].clone(), body["cache_prompt"].clone()),
            (json!(1), json!(true))
        );
    }

    fn case(language: &str, expected: &str) -> Case {
        Case {
            repo: "r".into(),
            language: language.into(),
            file: "f".into(),
            line: 1,
            column: 1,
            expected: expected.into(),
        }
    }

    fn answer(text: &str, latency_ms: f64) -> Answer {
        Answer {
            first_line: text.into(),
            latency_ms,
            error: None,
            tokens: None,
            text: text.into(),
            figures: None,
        }
    }

    #[test]
    fn the_table_counts_failures_as_misses() {
        let cases = vec![
            case("rust", "x();"),
            case("rust", "y();"),
            case("lua", "end"),
        ];
        let ours = vec![
            answer("x();", 10.0),
            Answer::failed("engine gone"),
            answer("en", 30.0),
        ];
        let theirs = vec![answer("x()", 1.0), answer("y();", 2.0), answer("end", 3.0)];
        expect_test::expect![[r#"
            | language | cases | wellspring exact | wellspring similarity | wellspring mean ms | llama-server /infill exact | llama-server /infill similarity | llama-server /infill mean ms |
            |---|---:|---:|---:|---:|---:|---:|---:|
            | lua | 1 | 0.0% | 0.667 | 30 | 100.0% | 1.000 | 3 |
            | rust | 2 | 50.0% (1 failed) | 0.500 | 10 | 50.0% | 0.875 | 2 |
            | **all** | 3 | 33.3% (1 failed) | 0.556 | 20 | 66.7% | 0.917 | 2 |
        "#]]
        .assert_eq(&table(&cases, Some(&ours), Some(&theirs)));
    }
}
