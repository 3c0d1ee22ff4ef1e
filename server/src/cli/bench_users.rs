//! `wellspring bench users`: how many people one engine serves. Simulated typists, each on a
//! document of its own, type lines of a real file back one character per request, all at once,
//! against one engine (in this process, or a shared engine process reached through its socket as
//! editor windows reach it). For each number of typists it prints keystroke latency (p50, p95),
//! tokens generated per second over all typists, and how full the batches were; with `--p95-ms`
//! it says how many typists fit under that latency. With `--vs-llama-server URL` the same typists
//! type the same lines into llama-server's `/infill` (as llama.vim sends it) right after each
//! Wellspring run, so both tables come from one run. Nothing here is asserted.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use super::bench::{
    bench_request, choose_lines, infill_request, infill_sample, keystroke_prompts, percentile,
    post_json, prompt_budget, TracedLine,
};
use crate::config::{Config, ModelConfig};
use crate::engine::service::{self, Endpoint};
use crate::engine::{Engine, EngineStats};
use crate::model;

#[derive(clap::Args, Debug, Clone)]
pub struct UsersArgs {
    /// The source file every typist types through.
    #[arg(long)]
    pub file: PathBuf,
    /// Numbers of simultaneous typists to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    pub users: Vec<usize>,
    /// Lines each typist retypes.
    #[arg(long, default_value_t = 2)]
    pub lines: usize,
    /// Tokens generated per keystroke.
    #[arg(long, default_value_t = 16)]
    pub n_predict: u32,
    /// A typist's pause after each answer before the next key.
    #[arg(long, default_value_t = 0)]
    pub pause_ms: u64,
    /// Say how many typists fit with a keystroke p95 under this many milliseconds.
    #[arg(long, value_name = "MS")]
    pub p95_ms: Option<f64>,
    /// Run the engine as a shared engine process and connect each typist through its socket,
    /// as each editor window's language server does.
    #[arg(long)]
    pub shared: bool,
    /// Also run the typists against a running llama-server (started with `-np` at least the
    /// largest typist count, so each typist has a slot), e.g. http://127.0.0.1:8012.
    #[arg(long, value_name = "URL")]
    pub vs_llama_server: Option<String>,
}

/// What one run with `n_users` typists measured.
#[derive(Debug, Clone, PartialEq)]
pub struct UsersRow {
    pub n_users: usize,
    pub n_keystrokes: usize,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub tokens_per_s: f64,
    /// Sequences per batched step (1.0 when nothing was batched); unknown for llama-server.
    pub mean_batch: Option<f64>,
    pub n_busy: Option<u64>,
}

impl UsersRow {
    /// The row for typists that each reported their keystroke latencies and tokens generated,
    /// all typing for `elapsed` seconds; batch figures unknown.
    fn from_typists(n_users: usize, typists: Vec<(Vec<f64>, u64)>, elapsed: f64) -> UsersRow {
        let n_generated: u64 = typists.iter().map(|(_, generated)| generated).sum();
        let mut latencies: Vec<f64> = typists
            .into_iter()
            .flat_map(|(latencies, _)| latencies)
            .collect();
        latencies.sort_by(f64::total_cmp);
        UsersRow {
            n_users,
            n_keystrokes: latencies.len(),
            p50_ms: percentile(&latencies, 0.5),
            p95_ms: percentile(&latencies, 0.95),
            tokens_per_s: n_generated as f64 / elapsed.max(1e-9),
            mean_batch: None,
            n_busy: None,
        }
    }
}

pub async fn run_users(config: &Config, args: &UsersArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let Some(&max_users) = args.users.iter().max() else {
        bail!("--users names no typist count");
    };
    if args.users.contains(&0) {
        bail!("--users: a run needs at least one typist");
    }
    let trace = choose_lines(&text, args.lines * max_users);
    if trace.len() < args.lines {
        bail!("{} has too few lines to type", args.file.display());
    }
    // A slot per typist, each as large as the configured slots.
    let n_ctx_per_slot = config.model.n_ctx / config.model.n_slots.max(1);
    let model_config = ModelConfig {
        n_slots: config.model.n_slots.max(max_users as u32),
        n_ctx: n_ctx_per_slot * config.model.n_slots.max(max_users as u32),
        ..config.model.clone()
    };
    let spec = config.model.path.clone();
    let model_path = tokio::task::spawn_blocking(move || {
        model::resolve(
            &spec,
            &model::ResolveOptions {
                progress_bar: true,
                allow_download: true,
                ..model::ResolveOptions::default()
            },
        )
    })
    .await??
    .path;
    let mut rows = Vec::new();
    let mut server_rows = Vec::new();
    for &n_users in &args.users {
        let row = if args.shared {
            run_shared(
                &model_config,
                &model_path,
                config,
                args,
                &text,
                &trace,
                n_users,
            )
            .await?
        } else {
            let engine_config = model_config.clone();
            let path = model_path.clone();
            let engine =
                tokio::task::spawn_blocking(move || Engine::start(&engine_config, &path)).await??;
            let handles = vec![engine; n_users];
            run_typists(&handles, config, args, &text, &trace).await?
        };
        eprintln!(
            "{n_users} typist(s): p50 {:.1} ms, p95 {:.1} ms",
            row.p50_ms, row.p95_ms
        );
        rows.push(row);
        if let Some(url) = &args.vs_llama_server {
            let row = run_server_typists(url, args, &text, &trace, n_users).await?;
            eprintln!(
                "{n_users} typist(s) on llama-server: p50 {:.1} ms, p95 {:.1} ms",
                row.p50_ms, row.p95_ms
            );
            server_rows.push(row);
        }
    }
    println!(
        "{}",
        users_table(
            &rows,
            args.p95_ms,
            if args.shared {
                "shared engine process"
            } else {
                "engine in process"
            }
        )
    );
    if args.vs_llama_server.is_some() {
        println!(
            "{}",
            users_table(&server_rows, args.p95_ms, "llama-server (/infill)")
        );
    }
    Ok(())
}

/// Typist `idx`'s lines: every `n_users`-th line of the trace from line `idx`, `lines` of them,
/// so that no two typists type the same line.
fn typist_lines(trace: &[TracedLine], idx: usize, n_users: usize, lines: usize) -> Vec<TracedLine> {
    trace
        .iter()
        .skip(idx)
        .step_by(n_users)
        .take(lines)
        .cloned()
        .collect()
}

/// The typists of [`run_typists`] against llama-server's `/infill`: each first sends its first
/// keystroke alone (untimed, so the table measures typing and not first prefills), then all type
/// at once, each request waiting for the previous answer as an editor's does.
async fn run_server_typists(
    url: &str,
    args: &UsersArgs,
    text: &str,
    trace: &[TracedLine],
    n_users: usize,
) -> anyhow::Result<UsersRow> {
    let endpoint = format!("{}/infill", url.trim_end_matches('/'));
    let assignments: Vec<Vec<TracedLine>> = (0..n_users)
        .map(|idx| typist_lines(trace, idx, n_users, args.lines))
        .collect();
    let type_into = |lines: Vec<TracedLine>, first_key_only: bool| {
        let endpoint = endpoint.clone();
        let text = text.to_owned();
        let n_predict = args.n_predict;
        let pause = Duration::from_millis(args.pause_ms);
        tokio::task::spawn_blocking(move || -> anyhow::Result<(Vec<f64>, u64)> {
            let mut latencies = Vec::new();
            let mut n_generated = 0u64;
            for line in &lines {
                let mut typed = String::new();
                for typed_char in line.content.chars() {
                    typed.push(typed_char);
                    let body = infill_request(&text, line, &typed, n_predict);
                    let (response, latency_ms) = post_json(&endpoint, &body)?;
                    let sample = infill_sample(&response, latency_ms)?;
                    latencies.push(sample.latency_ms);
                    n_generated += u64::from(sample.n_generated);
                    if first_key_only {
                        return Ok((latencies, n_generated));
                    }
                    if !pause.is_zero() {
                        std::thread::sleep(pause);
                    }
                }
            }
            Ok((latencies, n_generated))
        })
    };
    for lines in &assignments {
        type_into(lines.clone(), true).await??;
    }
    let started = Instant::now();
    let typists = assignments.into_iter().map(|lines| type_into(lines, false));
    let results = futures::future::join_all(typists).await;
    let elapsed = started.elapsed().as_secs_f64();
    let typists = results
        .into_iter()
        .map(|result| result?)
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(UsersRow::from_typists(n_users, typists, elapsed))
}

/// Starts a shared engine process on a socket of its own, connects a handle per typist and runs
/// them.
async fn run_shared(
    model_config: &ModelConfig,
    model_path: &std::path::Path,
    config: &Config,
    args: &UsersArgs,
    text: &str,
    trace: &[TracedLine],
    n_users: usize,
) -> anyhow::Result<UsersRow> {
    let process = EngineProcess::start(model_config, model_path).await?;
    let mut handles = Vec::new();
    for _ in 0..n_users {
        handles.push(process.connect().await?);
    }
    run_typists(&handles, config, args, text, trace).await
}

/// A shared engine process of a benchmark's own, on a socket in a temporary directory; it exits
/// when the value is dropped (its socket is removed with the directory).
pub(crate) struct EngineProcess {
    dir: PathBuf,
    socket: PathBuf,
    _child: std::process::Child,
}

impl EngineProcess {
    pub(crate) async fn start(
        model_config: &ModelConfig,
        model_path: &std::path::Path,
    ) -> anyhow::Result<EngineProcess> {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("wellspring-bench-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let socket = dir.join("engine.sock");
        let log = dir.join("engine.log");
        let mut child = service::start_engine(model_config, model_path, &socket, 2, &log)?;
        service::wait_until_listening(&socket, &mut child, &log).await?;
        Ok(EngineProcess {
            dir,
            socket,
            _child: child,
        })
    }

    /// A handle through the socket, as an editor window's language server has.
    pub(crate) async fn connect(&self) -> anyhow::Result<Engine> {
        Ok(Engine::connect(&Endpoint::Unix(self.socket.clone())).await?)
    }
}

impl Drop for EngineProcess {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Typist `idx` types its share of the trace into a document of its own through `engines[idx]`;
/// all type at once.
async fn run_typists(
    engines: &[Engine],
    config: &Config,
    args: &UsersArgs,
    text: &str,
    trace: &[TracedLine],
) -> anyhow::Result<UsersRow> {
    let n_users = engines.len();
    // Each typist its own lines (the trace has enough for the most typists) and document.
    let assignments: Vec<(Vec<TracedLine>, String)> = (0..n_users)
        .map(|idx| {
            (
                typist_lines(trace, idx, n_users, args.lines),
                format!("user-{idx}/{}", args.file.display()),
            )
        })
        .collect();
    // Untimed: each typist's file is opened and its prompt evaluated (as warming does in an
    // editor), one after the other, so the table measures typing and not first prefills.
    for (engine, (lines, document)) in engines.iter().zip(&assignments) {
        let first = lines.iter().take(1).cloned().collect();
        // The same prompt budget (it depends on `n_predict`) as the timed keystrokes.
        let opening = UsersArgs {
            pause_ms: 0,
            ..args.clone()
        };
        type_lines(
            engine,
            config,
            &opening,
            text,
            first,
            document.clone(),
            true,
        )
        .await?;
    }
    let stats_before = engines[0].stats().await;
    let started = Instant::now();
    let typists = engines
        .iter()
        .zip(assignments)
        .map(|(engine, (lines, document))| {
            type_lines(engine, config, args, text, lines, document, false)
        });
    let results = futures::future::join_all(typists).await;
    let elapsed = started.elapsed().as_secs_f64();
    let stats_after = engines[0].stats().await;
    let typists = results.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    let batched = |stats: &EngineStats| (stats.n_batches, stats.n_batched_sequences);
    let (batches_before, sequences_before) = batched(&stats_before);
    let (batches_after, sequences_after) = batched(&stats_after);
    let n_batches = batches_after - batches_before;
    Ok(UsersRow {
        mean_batch: Some(if n_batches == 0 {
            1.0
        } else {
            (sequences_after - sequences_before) as f64 / n_batches as f64
        }),
        n_busy: Some(stats_after.n_busy - stats_before.n_busy),
        ..UsersRow::from_typists(n_users, typists, elapsed)
    })
}

/// One typist: the keystroke latencies and the tokens generated.
async fn type_lines(
    engine: &Engine,
    config: &Config,
    args: &UsersArgs,
    text: &str,
    lines: Vec<TracedLine>,
    document: String,
    first_key_only: bool,
) -> anyhow::Result<(Vec<f64>, u64)> {
    let budget = prompt_budget(config, engine, args.n_predict);
    let counter = engine.token_counter();
    let mut latencies = Vec::new();
    let mut n_generated = 0u64;
    for line in lines {
        for prompt in keystroke_prompts(text, &line, &document, budget, counter.as_ref())? {
            let request = bench_request(document.clone(), prompt, args.n_predict);
            let keystroke = Instant::now();
            match engine.complete(request).await {
                Ok(completion) => {
                    n_generated += u64::from(completion.figures.generation.n_generated)
                }
                Err(crate::engine::Error::Busy) => {}
                Err(error) => return Err(error.into()),
            }
            latencies.push(keystroke.elapsed().as_secs_f64() * 1000.0);
            if first_key_only {
                return Ok((latencies, n_generated));
            }
            if args.pause_ms > 0 {
                tokio::time::sleep(Duration::from_millis(args.pause_ms)).await;
            }
        }
    }
    Ok((latencies, n_generated))
}

/// The table: one row per typist count, then how many fit under the p95 asked for.
pub fn users_table(rows: &[UsersRow], p95_limit: Option<f64>, engine: &str) -> String {
    let mut out = format!(
        "typists at once against one {engine}\n| typists | keystrokes | p50 ms | p95 ms | p50 vs 1 typist | tokens/s (all) | sequences per batch | busy |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    );
    let single = rows
        .iter()
        .find(|row| row.n_users == 1)
        .map(|row| row.p50_ms);
    for row in rows {
        let ratio = single.map_or("".to_owned(), |single| {
            format!("{:.2}x", row.p50_ms / single)
        });
        out += &format!(
            "| {} | {} | {:.1} | {:.1} | {ratio} | {:.1} | {} | {} |\n",
            row.n_users,
            row.n_keystrokes,
            row.p50_ms,
            row.p95_ms,
            row.tokens_per_s,
            row.mean_batch
                .map_or("n/a".to_owned(), |mean| format!("{mean:.2}")),
            row.n_busy.map_or("n/a".to_owned(), |n| n.to_string()),
        );
    }
    if let Some(limit) = p95_limit {
        let fitting = rows
            .iter()
            .filter(|row| row.p95_ms <= limit)
            .map(|row| row.n_users)
            .max();
        out += &match fitting {
            Some(n_users) => format!(
                "\n{n_users} typist(s) fit with a keystroke p95 under {limit:.0} ms (of the counts measured).\n"
            ),
            None => format!("\nno typist count measured stays under a keystroke p95 of {limit:.0} ms.\n"),
        };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_compares_with_one_typist_and_says_how_many_fit() {
        let row = |n_users, p50_ms, p95_ms| UsersRow {
            n_users,
            n_keystrokes: 10,
            p50_ms,
            p95_ms,
            tokens_per_s: 100.0,
            mean_batch: Some(1.5),
            n_busy: Some(0),
        };
        let table = users_table(
            &[row(1, 10.0, 12.0), row(4, 14.0, 20.0), row(8, 30.0, 45.0)],
            Some(25.0),
            "engine in process",
        );
        assert!(
            table.contains("| 4 | 10 | 14.0 | 20.0 | 1.40x |"),
            "{table}"
        );
        assert!(
            table.contains("4 typist(s) fit with a keystroke p95 under 25 ms"),
            "{table}"
        );
        let none = users_table(&[row(1, 10.0, 12.0)], Some(5.0), "engine in process");
        assert!(none.contains("no typist count measured"), "{none}");
        let server = users_table(
            &[UsersRow {
                mean_batch: None,
                n_busy: None,
                ..row(2, 20.0, 30.0)
            }],
            None,
            "llama-server (/infill)",
        );
        assert!(
            server.contains("against one llama-server (/infill)")
                && server.contains("| 2 | 10 | 20.0 | 30.0 |  | 100.0 | n/a | n/a |"),
            "{server}"
        );
    }
}
