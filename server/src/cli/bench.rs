//! `wellspring bench keystrokes`: replays typing through a real source file and prints latency
//! and cache figures, optionally against llama-server's `/infill` on the same trace.
//!
//! For each chosen line the line is blanked after its indentation and typed back one character
//! per request, the way an editor asks for a completion on every keystroke. The llama-server
//! requests have llama.vim's shape (256 lines before, 64 after, the line head as `prompt`,
//! `cache_prompt`), made fixed-length so every request generates `n_predict` tokens.
//! Numbers go to stdout as a table; nothing here is asserted.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde_json::{json, Value};

use super::bench_users::EngineProcess;
use super::complete::{simple_fim_prompt, start_engine};
use crate::config::Config;
use crate::engine::{
    ChatMessage, ChatRequest, CompletionRequest, Engine, FimPrompt, SamplingConfig, TokenCounter,
};
use crate::model;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub command: BenchCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum BenchCommand {
    /// Type lines of a file back one character per request.
    Keystrokes(KeystrokeArgs),
    /// Cross-file context: is the callee's definition in the prompt, and how fast is building.
    Context(super::bench_context::ContextBenchArgs),
    /// Line completions cut from real files: exact matches and edit similarity.
    Quality(super::bench_quality::QualityBenchArgs),
    /// A long editing session against the server: memory over time, failures, text drift.
    Soak(super::bench_soak::SoakArgs),
    /// Simulated typists at once against one engine: latency and throughput per typist count.
    Users(super::bench_users::UsersArgs),
    /// Decoding while other programs hold cores: configured thread counts against adaptive ones.
    Contention(super::bench_contention::ContentionArgs),
}

#[derive(clap::Args, Debug)]
pub struct KeystrokeArgs {
    /// The source file to type through.
    #[arg(long)]
    pub file: PathBuf,
    /// How many lines to retype.
    #[arg(long, default_value_t = 2)]
    pub lines: usize,
    /// Tokens generated per request.
    #[arg(long, default_value_t = 16)]
    pub n_predict: u32,
    /// Also type the trace into a running llama-server (e.g. http://127.0.0.1:8012), line by line
    /// in turn with Wellspring.
    #[arg(long, value_name = "URL")]
    pub vs_llama_server: Option<String>,
    /// Replay the trace a second time, on a fresh engine, while chat answers are generated
    /// back to back, to see what a concurrent chat costs completions.
    #[arg(long)]
    pub with_chat: bool,
    /// Wait this long after each answer before the next keystroke (a typist's pause; the
    /// background chat gets the engine meanwhile).
    #[arg(long, default_value_t = 0)]
    pub pause_ms: u64,
    /// Run the engine as a shared engine process and reach it through its socket, as an editor
    /// window's language server does (the default editor setup), instead of in this process.
    #[arg(long)]
    pub shared: bool,
    /// Instead of typing whole lines, measure the first keystroke in a file just opened, once
    /// with the file's prompt warmed at opening (`wellspring/warm`) and once without, alternating.
    #[arg(long)]
    pub first_keystroke: bool,
}

pub async fn run(config: &Config, args: Args, model_given: bool) -> anyhow::Result<()> {
    match args.command {
        BenchCommand::Keystrokes(args) => keystrokes(config, args).await,
        BenchCommand::Context(args) => super::bench_context::run_context(
            &args,
            Some(config.model.path.as_str()).filter(|_| model_given),
            config,
        ),
        BenchCommand::Quality(args) => super::bench_quality::run_quality(config, &args).await,
        BenchCommand::Users(args) => super::bench_users::run_users(config, &args).await,
        BenchCommand::Contention(args) => super::bench_contention::run(config, &args).await,
        BenchCommand::Soak(args) => {
            let config = config.clone();
            tokio::task::spawn_blocking(move || super::bench_soak::run_soak(&config, &args))
                .await
                .context("the soak run stopped")?
        }
    }
}

/// One line to retype.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TracedLine {
    pub line_idx: usize,
    pub indent: String,
    pub content: String,
}

/// Picks `n_lines` lines spread over the file that are worth typing: 10 to 40 characters after
/// the indentation, with some text above them.
pub fn choose_lines(text: &str, n_lines: usize) -> Vec<TracedLine> {
    let lines: Vec<&str> = text.lines().collect();
    let candidates: Vec<TracedLine> = lines
        .iter()
        .enumerate()
        .filter(|(line_idx, _)| *line_idx >= lines.len().min(20))
        .filter_map(|(line_idx, line)| {
            let content = line.trim_start();
            let n_chars = content.chars().count();
            (10..=40).contains(&n_chars).then(|| TracedLine {
                line_idx,
                indent: line[..line.len() - content.len()].to_owned(),
                content: content.trim_end().to_owned(),
            })
        })
        .collect();
    if candidates.is_empty() || n_lines == 0 {
        return Vec::new();
    }
    let n_lines = n_lines.min(candidates.len());
    (0..n_lines)
        .map(|pick_idx| candidates[(2 * pick_idx + 1) * candidates.len() / (2 * n_lines)].clone())
        .collect()
}

/// The measurements of one keystroke.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub latency_ms: f64,
    pub n_evaluated: u32,
    pub n_generated: u32,
    pub served_without_inference: bool,
}

/// "device: cuda, NVIDIA H200, 28/28 layers, 1650 MiB of 143771 MiB taken by the engine".
pub(crate) fn describe_placement(placement: &crate::engine::Placement) -> String {
    let mib = |bytes: u64| bytes.div_ceil(1 << 20);
    let mut line = format!("device: {}", placement.backend);
    if !placement.device.is_empty() {
        line.push_str(&format!(", {}", placement.device));
    }
    line.push_str(&format!(
        ", {}/{} layers offloaded",
        placement.n_layers_offloaded, placement.n_layers
    ));
    if let (Some(used), Some(total)) = (placement.device_memory_used, placement.device_memory_total)
    {
        line.push_str(&format!(
            ", {} MiB of {} MiB taken by the engine",
            mib(used),
            mib(total)
        ));
    }
    if let Some(planned) = placement.device_memory_planned {
        line.push_str(&format!(" (planned: {} MiB)", mib(planned)));
    }
    line
}

async fn keystrokes(config: &Config, args: KeystrokeArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let trace = choose_lines(&text, args.lines);
    if trace.is_empty() {
        bail!("{} has no line worth typing", args.file.display());
    }
    let n_keystrokes: usize = trace.iter().map(|line| line.content.chars().count()).sum();
    println!(
        "trace: {} lines, {} keystrokes from {}, n_predict {}",
        trace.len(),
        n_keystrokes,
        args.file.display(),
        args.n_predict
    );
    // Held while the engine is used: dropping it stops the shared engine process.
    let mut _process = None;
    let engine = if args.shared {
        let spec = config.model.path.clone();
        let model_path = tokio::task::spawn_blocking(move || {
            let options = model::ResolveOptions {
                progress_bar: true,
                allow_download: true,
                ..model::ResolveOptions::default()
            };
            model::resolve(&spec, &options)
        })
        .await??
        .path;
        let process = EngineProcess::start(&config.model, &model_path).await?;
        let engine = process.connect().await?;
        _process = Some(process);
        engine
    } else {
        start_engine(config).await?
    };
    println!("{}", describe_placement(engine.placement()));
    if args.first_keystroke {
        let rows = first_keystrokes(config, &engine, &text, &args, &trace).await?;
        print!("{}", first_keystroke_table(&rows));
        return Ok(());
    }
    // Line by line, every system types the same line in turn, so a machine that gets busier or
    // quieter during the run affects all of them alike. With `--with-chat` a second engine types
    // under a chat load, so neither run's caches and suggestions help the other.
    let chat_engine = if args.with_chat {
        Some(start_engine(config).await?)
    } else {
        None
    };
    let mut ours = Vec::new();
    let mut with_chat = Vec::new();
    let mut theirs = Vec::new();
    let mut load = ChatLoad::default();
    let mut chat_secs = 0.0;
    for line in &trace {
        let line = std::slice::from_ref(line);
        ours.extend(run_wellspring(config, &engine, &text, &args, line).await?);
        if let Some(chat_engine) = &chat_engine {
            let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
            let chatting = tokio::spawn(chat_load(chat_engine.clone(), text.clone(), stop_rx));
            let replay_started = Instant::now();
            with_chat.extend(run_wellspring(config, chat_engine, &text, &args, line).await?);
            chat_secs += replay_started.elapsed().as_secs_f64();
            let _ = stop_tx.send(true);
            let line_load = chatting.await??;
            load.n_deltas += line_load.n_deltas;
            load.n_answers += line_load.n_answers;
        }
        if let Some(url) = &args.vs_llama_server {
            let (url, text, line) = (url.clone(), text.clone(), line.to_vec());
            let n_predict = args.n_predict;
            theirs.extend(
                tokio::task::spawn_blocking(move || {
                    run_llama_server(&url, &text, &line, n_predict)
                })
                .await??,
            );
        }
    }
    if chat_engine.is_some() {
        println!(
            "concurrent chat: {} pieces of answer streamed ({:.1}/s while typing), {} answers finished",
            load.n_deltas,
            f64::from(load.n_deltas) / chat_secs.max(1e-9),
            load.n_answers,
        );
    }
    let with_chat = chat_engine.is_some().then_some(with_chat);
    let theirs = args.vs_llama_server.is_some().then_some(theirs);
    print!("{}", table(&ours, with_chat.as_deref(), theirs.as_deref()));
    Ok(())
}

/// What the background chat got done while a line was typed.
#[derive(Debug, Default)]
struct ChatLoad {
    n_answers: u32,
    n_deltas: u32,
}

/// Asks the engine to explain the start of `text`, again and again, until told to stop; the
/// answer in flight is dropped then, which the engine sees as abandoned.
async fn chat_load(
    engine: Engine,
    text: String,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<ChatLoad> {
    let code: String = text.lines().take(60).collect::<Vec<_>>().join("\n");
    let request = ChatRequest {
        messages: vec![
            ChatMessage {
                role: "system".into(),
                content: "You are a helpful coding assistant.".into(),
            },
            ChatMessage {
                role: "user".into(),
                content: format!("Explain what this code does, step by step:\n\n```\n{code}\n```"),
            },
        ],
        max_tokens: 256,
        grammar: None,
        sampling: SamplingConfig::default(),
    };
    let mut load = ChatLoad::default();
    loop {
        let (deltas_tx, mut deltas) = tokio::sync::mpsc::unbounded_channel();
        let answer = engine.chat(request.clone(), deltas_tx);
        tokio::pin!(answer);
        loop {
            tokio::select! {
                _ = stop.changed() => return Ok(load),
                Some(_) = deltas.recv() => load.n_deltas += 1,
                outcome = &mut answer => {
                    outcome.context("the background chat failed")?;
                    while deltas.try_recv().is_ok() {
                        load.n_deltas += 1;
                    }
                    load.n_answers += 1;
                    break;
                }
            }
        }
    }
}

async fn run_wellspring(
    config: &Config,
    engine: &Engine,
    text: &str,
    args: &KeystrokeArgs,
    trace: &[TracedLine],
) -> anyhow::Result<Vec<Sample>> {
    let document = args.file.display().to_string();
    let budget = prompt_budget(config, engine, args.n_predict);
    let counter = engine.token_counter();
    let mut samples = Vec::new();
    for line in trace {
        for prompt in keystroke_prompts(text, line, &document, budget, counter.as_ref())? {
            let request = bench_request(document.clone(), prompt, args.n_predict);
            let started = Instant::now();
            let completion = engine.complete(request).await?;
            let figures = completion.figures;
            samples.push(Sample {
                latency_ms: started.elapsed().as_secs_f64() * 1000.0,
                n_evaluated: figures.generation.n_evaluated,
                n_generated: figures.generation.n_generated,
                served_without_inference: figures.served_without_inference,
            });
            progress("wellspring", samples.len());
            if args.pause_ms > 0 {
                tokio::time::sleep(Duration::from_millis(args.pause_ms)).await;
            }
        }
    }
    eprintln!();
    Ok(samples)
}

/// The prompts of typing `line` back into `text` one character at a time: the line blanked after
/// its indentation, then the line head growing by a character per keystroke.
pub(crate) fn keystroke_prompts(
    text: &str,
    line: &TracedLine,
    document: &str,
    budget: usize,
    counter: &dyn TokenCounter,
) -> anyhow::Result<Vec<FimPrompt>> {
    let blanked = with_line(text, line.line_idx, &line.indent);
    let base = simple_fim_prompt(
        &blanked,
        line.line_idx,
        line.indent.chars().count(),
        document,
        budget,
        counter,
    )?
    .prompt;
    let mut typed = String::new();
    Ok(line
        .content
        .chars()
        .map(|typed_char| {
            typed.push(typed_char);
            FimPrompt {
                line_head: format!("{}{typed}", line.indent),
                ..base.clone()
            }
        })
        .collect())
}

/// Prompt tokens the trace's prompts may take: the context budget, within the slot less the
/// tokens generated.
pub(crate) fn prompt_budget(config: &Config, engine: &Engine, n_predict: u32) -> usize {
    (config.context.budget_tokens as usize)
        .min((engine.caps().n_ctx_per_slot as usize).saturating_sub(n_predict as usize))
}

/// A keystroke's request: greedy, multi-line, exactly `n_predict` tokens unless the model ends,
/// no stop strings or done check, and no deadline that could cut a slow machine's answer.
pub(crate) fn bench_request(
    document: String,
    prompt: FimPrompt,
    n_predict: u32,
) -> CompletionRequest {
    CompletionRequest {
        document,
        prompt,
        max_tokens: n_predict,
        single_line: false,
        stop: Vec::new(),
        time_budget: Duration::from_secs(600),
        sampling: SamplingConfig::default(),
        client: 0,
        done_when: None,
    }
}

/// One opening of a file: the first keystroke's latency, cold and after warming.
#[derive(Debug, Clone, PartialEq)]
pub struct Opening {
    pub cold_ms: f64,
    pub cold_evaluated: u32,
    pub warmed_ms: f64,
    pub warmed_evaluated: u32,
    /// How long warming took after the file was opened.
    pub warming_ms: f64,
}

/// For each traced line: the file is "opened" with the cursor at the line's indentation and the
/// line's first character typed, once straight away (cold) and once after warming finished.
/// A first line unique to each opening keeps either from reusing the other's cache.
async fn first_keystrokes(
    config: &Config,
    engine: &Engine,
    text: &str,
    args: &KeystrokeArgs,
    trace: &[TracedLine],
) -> anyhow::Result<Vec<Opening>> {
    let budget = prompt_budget(config, engine, args.n_predict);
    let counter = engine.token_counter();
    let mut openings = Vec::new();
    let mut n_opened = 0;
    for line in trace {
        let first_char: String = line.content.chars().take(1).collect();
        let mut open = |warm: bool| -> anyhow::Result<CompletionRequest> {
            n_opened += 1;
            let blanked = with_line(text, line.line_idx, &line.indent);
            let opened = format!(
                "opened {n_opened} ({})\n{blanked}",
                if warm { "warmed" } else { "cold" }
            );
            let prompt = simple_fim_prompt(
                &opened,
                line.line_idx + 1,
                line.indent.chars().count(),
                &format!("{}#{n_opened}", args.file.display()),
                budget,
                counter.as_ref(),
            )?
            .prompt;
            Ok(bench_request(
                format!("{}#{n_opened}", args.file.display()),
                prompt,
                args.n_predict,
            ))
        };
        let keystroke = |mut request: CompletionRequest| {
            request.prompt.line_head = format!("{}{first_char}", line.indent);
            request
        };

        let cold = open(false)?;
        let started = Instant::now();
        let cold_figures = engine.complete(keystroke(cold)).await?.figures;
        let cold_ms = started.elapsed().as_secs_f64() * 1000.0;

        let warmed = open(true)?;
        let warm_started = Instant::now();
        let n_warmings_before = engine.stats().await.n_warmings;
        engine.warm(warmed.clone());
        wait_for_warming(engine, n_warmings_before).await;
        let warming_ms = warm_started.elapsed().as_secs_f64() * 1000.0;
        let started = Instant::now();
        let warmed_figures = engine.complete(keystroke(warmed)).await?.figures;
        openings.push(Opening {
            cold_ms,
            cold_evaluated: cold_figures.generation.n_evaluated,
            warmed_ms: started.elapsed().as_secs_f64() * 1000.0,
            warmed_evaluated: warmed_figures.generation.n_evaluated,
            warming_ms,
        });
        eprint!("\rfirst keystrokes: {} openings", openings.len());
        let _ = std::io::stderr().flush();
    }
    eprintln!();
    Ok(openings)
}

/// Waits until the engine has finished one more warming than `n_warmings_before` (or a minute
/// has passed).
async fn wait_for_warming(engine: &Engine, n_warmings_before: u64) {
    let started = Instant::now();
    while engine.stats().await.n_warmings == n_warmings_before
        && started.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The first-keystroke table: latency and tokens evaluated, cold and warmed.
pub fn first_keystroke_table(openings: &[Opening]) -> String {
    let sorted = |values: Vec<f64>| {
        let mut values = values;
        values.sort_by(f64::total_cmp);
        values
    };
    let mean = |values: &[f64]| values.iter().sum::<f64>() / values.len().max(1) as f64;
    let row = |name: &str, latencies: Vec<f64>, evaluated: Vec<f64>| {
        let latencies = sorted(latencies);
        format!(
            "| {name} | {:.1} | {:.1} | {:.1} | {:.0} |\n",
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.9),
            mean(&latencies),
            mean(&evaluated),
        )
    };
    let mut out = format!(
        "first keystroke after opening a file, {} openings each\n| first keystroke | p50 ms | p90 ms | mean ms | evaluated |\n|---|---:|---:|---:|---:|\n",
        openings.len()
    );
    out += &row(
        "cold",
        openings.iter().map(|opening| opening.cold_ms).collect(),
        openings
            .iter()
            .map(|opening| f64::from(opening.cold_evaluated))
            .collect(),
    );
    out += &row(
        "warmed on open",
        openings.iter().map(|opening| opening.warmed_ms).collect(),
        openings
            .iter()
            .map(|opening| f64::from(opening.warmed_evaluated))
            .collect(),
    );
    let warming = sorted(openings.iter().map(|opening| opening.warming_ms).collect());
    out += &format!(
        "\nwarming took {:.0} ms at the median after opening (the pause before the first key).\n",
        percentile(&warming, 0.5)
    );
    out
}

/// `text` with line `line_idx` replaced by `replacement`.
fn with_line(text: &str, line_idx: usize, replacement: &str) -> String {
    text.split_inclusive('\n')
        .enumerate()
        .map(|(idx, line)| {
            if idx == line_idx {
                let ending = &line[line.trim_end_matches(['\n', '\r']).len()..];
                format!("{replacement}{ending}")
            } else {
                line.to_owned()
            }
        })
        .collect()
}

fn progress(label: &str, n_done: usize) {
    eprint!("\r{label}: {n_done} keystrokes");
    let _ = std::io::stderr().flush();
}

/// llama.vim's `input_prefix` and `input_suffix` around line `line_idx` of `lines`: up to 256
/// lines before it, and a newline then up to 64 lines after it.
pub fn llama_vim_context(lines: &[&str], line_idx: usize) -> (String, String) {
    let line_idx = line_idx.min(lines.len());
    let before = &lines[line_idx.saturating_sub(256)..line_idx];
    let after_end = (line_idx + 1 + 64).min(lines.len());
    let after = &lines[(line_idx + 1).min(after_end)..after_end];
    let mut input_prefix = before.join("\n");
    input_prefix.push('\n');
    let mut input_suffix = String::from("\n");
    input_suffix.push_str(&after.join("\n"));
    input_suffix.push('\n');
    (input_prefix, input_suffix)
}

/// The `/infill` body llama.vim sends for the cursor after `typed` on line `line.line_idx`,
/// made fixed-length (`ignore_eos`, no "infill" sampler).
pub fn infill_request(text: &str, line: &TracedLine, typed: &str, n_predict: u32) -> Value {
    let lines: Vec<&str> = text.lines().collect();
    let (input_prefix, input_suffix) = llama_vim_context(&lines, line.line_idx);
    json!({
        "input_prefix": input_prefix,
        "input_suffix": input_suffix,
        "input_extra": [],
        "prompt": format!("{}{typed}", line.indent),
        "n_predict": n_predict,
        "ignore_eos": true,
        "top_k": 40,
        "top_p": 0.90,
        // llama.vim adds the "infill" sampler, which ends generation early whatever
        // `ignore_eos` says; without it every request generates exactly `n_predict` tokens.
        "samplers": ["top_k", "top_p"],
        "stream": false,
        "cache_prompt": true,
    })
}

fn run_llama_server(
    url: &str,
    text: &str,
    trace: &[TracedLine],
    n_predict: u32,
) -> anyhow::Result<Vec<Sample>> {
    let endpoint = format!("{}/infill", url.trim_end_matches('/'));
    let mut samples = Vec::new();
    for line in trace {
        let mut typed = String::new();
        for typed_char in line.content.chars() {
            typed.push(typed_char);
            let body = infill_request(text, line, &typed, n_predict);
            let (response, latency_ms) = post_json(&endpoint, &body)?;
            samples.push(infill_sample(&response, latency_ms)?);
            progress("llama-server", samples.len());
        }
    }
    eprintln!();
    Ok(samples)
}

/// POSTs `body` to llama-server's `endpoint`; the JSON answer and how long it took, in ms.
pub fn post_json(endpoint: &str, body: &Value) -> anyhow::Result<(Value, f64)> {
    let started = Instant::now();
    let mut response = ureq::post(endpoint)
        .send_json(body)
        .with_context(|| format!("llama-server request to {endpoint} failed"))?;
    let response: Value = response
        .body_mut()
        .read_json()
        .context("llama-server sent something that is not JSON")?;
    Ok((response, started.elapsed().as_secs_f64() * 1000.0))
}

/// Reads the figures out of an `/infill` response.
pub fn infill_sample(response: &Value, latency_ms: f64) -> anyhow::Result<Sample> {
    let timings = response
        .get("timings")
        .context("llama-server response has no timings")?;
    let number = |key: &str| timings.get(key).and_then(Value::as_u64).unwrap_or(0) as u32;
    Ok(Sample {
        latency_ms,
        n_evaluated: number("prompt_n"),
        n_generated: number("predicted_n"),
        served_without_inference: false,
    })
}

#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub mean_ms: f64,
    pub median_evaluated: f64,
    pub n_without_inference: usize,
    pub mean_generated: f64,
    pub n_samples: usize,
}

/// Nearest-rank percentile of sorted values.
pub(crate) fn percentile(sorted: &[f64], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (fraction * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn summarize(samples: &[Sample]) -> Summary {
    let mut latencies: Vec<f64> = samples.iter().map(|sample| sample.latency_ms).collect();
    latencies.sort_by(f64::total_cmp);
    let mut evaluated: Vec<f64> = samples.iter().map(|s| f64::from(s.n_evaluated)).collect();
    evaluated.sort_by(f64::total_cmp);
    let n_samples = samples.len();
    let mean = |sum: f64| {
        if n_samples == 0 {
            f64::NAN
        } else {
            sum / n_samples as f64
        }
    };
    Summary {
        p50_ms: percentile(&latencies, 0.5),
        p90_ms: percentile(&latencies, 0.9),
        p99_ms: percentile(&latencies, 0.99),
        mean_ms: mean(latencies.iter().sum()),
        median_evaluated: percentile(&evaluated, 0.5),
        n_without_inference: samples
            .iter()
            .filter(|s| s.served_without_inference)
            .count(),
        mean_generated: mean(samples.iter().map(|s| f64::from(s.n_generated)).sum()),
        n_samples,
    }
}

/// The results table: Wellspring alone, Wellspring while a chat generates (when measured), and
/// llama-server with a row of ratios (ours / theirs, both without chat).
pub fn table(ours: &[Sample], with_chat: Option<&[Sample]>, theirs: Option<&[Sample]>) -> String {
    let row = |name: &str, summary: &Summary| {
        format!(
            "| {name:<20} | {:>9.1} | {:>9.1} | {:>9.1} | {:>9.1} | {:>14.0} | {:>12} | {:>9.1} |\n",
            summary.p50_ms,
            summary.p90_ms,
            summary.p99_ms,
            summary.mean_ms,
            summary.median_evaluated,
            format!("{}/{}", summary.n_without_inference, summary.n_samples),
            summary.mean_generated,
        )
    };
    let mut out = String::new();
    out += "| engine               |    p50 ms |    p90 ms |    p99 ms |   mean ms | eval/keystroke | no inference | generated |\n";
    out += "|----------------------|-----------|-----------|-----------|-----------|----------------|--------------|-----------|\n";
    let our_summary = summarize(ours);
    out += &row("wellspring", &our_summary);
    if let Some(with_chat) = with_chat {
        out += &row("wellspring + chat", &summarize(with_chat));
    }
    if let Some(theirs) = theirs {
        let their_summary = summarize(theirs);
        out += &row("llama-server /infill", &their_summary);
        out += &format!(
            "| {:<20} | {:>9.3} | {:>9.3} | {:>9.3} | {:>9.3} | {:>14.3} | {:>12} | {:>9} |\n",
            "ratio (ws / server)",
            our_summary.p50_ms / their_summary.p50_ms,
            our_summary.p90_ms / their_summary.p90_ms,
            our_summary.p99_ms / their_summary.p99_ms,
            our_summary.mean_ms / their_summary.mean_ms,
            our_summary.median_evaluated / their_summary.median_evaluated.max(1.0),
            "",
            "",
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read};
    use std::net::TcpListener;

    fn source(n_lines: usize) -> String {
        (0..n_lines)
            .map(|idx| format!("    let value_{idx:03} = compute({idx});\n"))
            .collect()
    }

    #[test]
    fn lines_are_spread_over_the_file_after_some_context() {
        let trace = choose_lines(&source(100), 2);
        let picked: Vec<usize> = trace.iter().map(|line| line.line_idx).collect();
        assert_eq!(picked, vec![40, 80]);
        assert_eq!(trace[0].indent, "    ");
        assert_eq!(trace[0].content, "let value_040 = compute(40);");
        assert!(choose_lines("short\n", 3).is_empty());
    }

    #[test]
    fn blanked_line_keeps_its_ending() {
        assert_eq!(with_line("a\r\nbb\r\nc", 1, "  "), "a\r\n  \r\nc");
    }

    #[test]
    fn summary_uses_nearest_rank_percentiles() {
        let samples: Vec<Sample> = (1..=10)
            .map(|idx| Sample {
                latency_ms: f64::from(idx * 10),
                n_evaluated: idx,
                n_generated: 16,
                served_without_inference: idx == 3,
            })
            .collect();
        let summary = summarize(&samples);
        assert_eq!(
            (summary.p50_ms, summary.p90_ms, summary.p99_ms),
            (50.0, 90.0, 100.0)
        );
        assert_eq!(
            (summary.median_evaluated, summary.n_without_inference),
            (5.0, 1)
        );
        assert_eq!(summary.mean_ms, 55.0);
    }

    /// A one-request HTTP server on 127.0.0.1 standing in for llama-server: it checks the
    /// request's shape and answers with timings.
    #[test]
    fn llama_server_requests_have_llama_vim_shape() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            let mut content_len = 0;
            loop {
                let mut header = String::new();
                reader.read_line(&mut header).unwrap();
                if header == "\r\n" {
                    break;
                }
                if let Some(value) = header.to_ascii_lowercase().strip_prefix("content-length:") {
                    content_len = value.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; content_len];
            reader.read_exact(&mut body).unwrap();
            let answer = r#"{"content":"x","timings":{"prompt_n":512,"predicted_n":16}}"#;
            let mut stream = stream;
            write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            )
            .unwrap();
            (
                request_line,
                serde_json::from_slice::<Value>(&body).unwrap(),
            )
        });
        let text = source(300);
        let line = TracedLine {
            line_idx: 280,
            indent: "    ".into(),
            content: "l".into(),
        };
        let samples = run_llama_server(&url, &text, std::slice::from_ref(&line), 16).unwrap();
        let (request_line, body) = server.join().unwrap();
        assert!(request_line.starts_with("POST /infill "), "{request_line}");
        assert_eq!(body["prompt"], "    l");
        assert_eq!(body["n_predict"], 16);
        assert_eq!(body["cache_prompt"], true);
        let prefix = body["input_prefix"].as_str().unwrap();
        assert_eq!(prefix.lines().count(), 256);
        assert!(prefix.starts_with("    let value_024"));
        let suffix = body["input_suffix"].as_str().unwrap();
        assert_eq!(suffix.lines().count(), 20);
        assert_eq!((samples[0].n_evaluated, samples[0].n_generated), (512, 16));
    }
}
