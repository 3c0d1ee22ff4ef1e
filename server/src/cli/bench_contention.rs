//! `wellspring bench contention`: decoding while other programs hold cores.
//!
//! Two engines load the same model, one with `model.adapt_threads` off (the configured thread
//! counts always) and one with it on, and each generates the same answer from a fresh prompt
//! with the machine idle and with `--busy` other processes spinning (`yes`, as a build or an
//! indexer would hold a core). Each round runs every engine under both loads, the busy phase
//! first, and which engine goes first alternates from round to round, since the machine's load
//! drifts. The table gives prefill and decode milliseconds per token for each engine and load,
//! and decode under load against idle. Numbers go to stdout; nothing is asserted.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context as _};

use super::bench::bench_request;
use super::complete::{simple_fim_prompt, start_engine};
use crate::config::Config;
use crate::engine::{Engine, FimPrompt, GenerationFigures};

#[derive(clap::Args, Debug)]
pub struct ContentionArgs {
    /// The source file whose first half is the prompt (the model writes on from its middle,
    /// with nothing after the cursor, so answers run long).
    #[arg(long)]
    pub file: PathBuf,
    /// Prompt tokens (the lines just above the cursor).
    #[arg(long, default_value_t = 256)]
    pub prompt_tokens: usize,
    /// Tokens generated per answer.
    #[arg(long, default_value_t = 64)]
    pub n_predict: u32,
    /// Rounds; each runs both engines, idle and loaded.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Processes that spin on a core each during the loaded phase.
    #[arg(long, default_value_t = 1)]
    pub busy: usize,
}

/// One engine's sums under one load.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PhaseSums {
    pub n_answers: usize,
    pub n_evaluated: u64,
    pub t_prefill_ms: f64,
    pub n_generated: u64,
    pub t_decode_ms: f64,
}

impl PhaseSums {
    pub fn add(&mut self, figures: &GenerationFigures) {
        self.n_answers += 1;
        self.n_evaluated += u64::from(figures.n_evaluated);
        self.t_prefill_ms += figures.t_prefill_ms;
        self.n_generated += u64::from(figures.n_generated);
        self.t_decode_ms += figures.t_decode_ms;
    }

    pub fn prefill_ms_per_token(&self) -> f64 {
        per(self.t_prefill_ms, self.n_evaluated)
    }

    pub fn decode_ms_per_token(&self) -> f64 {
        per(self.t_decode_ms, self.n_generated)
    }
}

fn per(ms: f64, n: u64) -> f64 {
    if n == 0 {
        0.0
    } else {
        ms / n as f64
    }
}

/// One engine's rows: idle and loaded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EngineSums {
    pub name: String,
    pub idle: PhaseSums,
    pub busy: PhaseSums,
}

/// Spinning processes, stopped when dropped.
struct Load(Vec<Child>);

impl Load {
    fn start(n: usize) -> anyhow::Result<Load> {
        let mut load = Load(Vec::with_capacity(n));
        for _ in 0..n {
            let child = Command::new("yes")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("cannot start `yes` to hold a core")?;
            load.0.push(child);
        }
        Ok(load)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// How long a change of load is left to settle before measuring: longer than the engine's
/// look at the load (`cpu_share::INTERVAL`), as a build starting some time before a request.
const SETTLE: Duration = Duration::from_secs(2);

pub async fn run(config: &Config, args: &ContentionArgs) -> anyhow::Result<()> {
    if args.rounds == 0 || args.n_predict == 0 {
        bail!("--rounds and --n-predict must be at least 1");
    }
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    // The first half of the file, then an empty line for the cursor.
    let line_idx = text.lines().count() / 2;
    let text: String = text
        .split_inclusive('\n')
        .take(line_idx)
        .chain(["\n"])
        .collect();
    if line_idx == 0 {
        bail!(
            "{} is too short to write on from its middle",
            args.file.display()
        );
    }
    let mut fixed_config = config.clone();
    fixed_config.model.adapt_threads = false;
    let mut adaptive_config = config.clone();
    adaptive_config.model.adapt_threads = true;
    let engines = [
        ("configured threads", start_engine(&fixed_config).await?),
        ("adapt_threads", start_engine(&adaptive_config).await?),
    ];
    let mut sums: Vec<EngineSums> = engines
        .iter()
        .map(|(name, _)| EngineSums {
            name: (*name).to_owned(),
            ..EngineSums::default()
        })
        .collect();
    let document = args.file.display().to_string();
    // Both engines load the same model, so one count of its tokens lays out the prompt for both.
    let prompt = simple_fim_prompt(
        &text,
        line_idx,
        0,
        &document,
        args.prompt_tokens,
        engines[0].1.token_counter().as_ref(),
    )?
    .prompt;
    let mut n_asked = 0;
    for round in 0..args.rounds {
        let order: Vec<usize> = if round % 2 == 0 {
            vec![0, 1]
        } else {
            vec![1, 0]
        };
        for busy in [true, false] {
            let load = if busy {
                Some(Load::start(args.busy)?)
            } else {
                None
            };
            tokio::time::sleep(SETTLE).await;
            for &engine_idx in &order {
                let engine = &engines[engine_idx].1;
                let figures = answer(engine, &prompt, &document, args.n_predict, n_asked).await?;
                n_asked += 1;
                let phase = &mut sums[engine_idx];
                if busy {
                    phase.busy.add(&figures);
                } else {
                    phase.idle.add(&figures);
                }
                eprint!(
                    "\rcontention: round {}/{}, {} answers",
                    round + 1,
                    args.rounds,
                    n_asked
                );
            }
            drop(load);
        }
    }
    eprintln!();
    let threads = match config.model.n_threads {
        0 => "physical cores".to_owned(),
        n => n.to_string(),
    };
    println!(
        "n_threads {threads}, n_threads_batch {}, {} busy process(es), {} rounds, {} tokens per answer",
        config.model.n_threads_batch, args.busy, args.rounds, args.n_predict
    );
    print!("{}", table(&sums));
    Ok(())
}

/// One answer from `prompt` headed by a line naming the request, so that no slot holds it and
/// it is evaluated under the load being measured too.
async fn answer(
    engine: &Engine,
    prompt: &FimPrompt,
    document: &str,
    n_predict: u32,
    n_asked: usize,
) -> anyhow::Result<GenerationFigures> {
    let prompt = FimPrompt {
        prefix: format!("// request {n_asked}\n{}", prompt.prefix),
        ..prompt.clone()
    };
    let request = bench_request(format!("{document}#{n_asked}"), prompt, n_predict);
    Ok(engine.complete(request).await?.figures.generation)
}

/// Prefill and decode per token for each engine and load, and decode loaded against idle
/// (each engine's own idle, and the fastest idle of all).
pub fn table(sums: &[EngineSums]) -> String {
    let best_idle = sums
        .iter()
        .map(|engine| engine.idle.decode_ms_per_token())
        .filter(|&ms| ms > 0.0)
        .fold(f64::INFINITY, f64::min);
    let mut out = String::from(
        "| threads | load | answers | prefill ms/token | decode ms/token | tokens | decode vs own idle | decode vs best idle |\n|---|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for engine in sums {
        let own_idle = engine.idle.decode_ms_per_token();
        for (load, phase) in [("idle", &engine.idle), ("busy", &engine.busy)] {
            let decode = phase.decode_ms_per_token();
            let ratio = |base: f64| {
                if base > 0.0 && base.is_finite() {
                    format!("{:.2}x", decode / base)
                } else {
                    "-".to_owned()
                }
            };
            out += &format!(
                "| {} | {load} | {} | {:.1} | {:.1} | {} | {} | {} |\n",
                engine.name,
                phase.n_answers,
                phase.prefill_ms_per_token(),
                decode,
                phase.n_generated,
                ratio(own_idle),
                ratio(best_idle),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(
        n_evaluated: u32,
        t_prefill_ms: f64,
        n_generated: u32,
        t_decode_ms: f64,
    ) -> GenerationFigures {
        GenerationFigures {
            n_evaluated,
            t_prefill_ms,
            n_generated,
            t_decode_ms,
            ..GenerationFigures::default()
        }
    }

    #[test]
    fn the_table_compares_each_load_with_its_own_idle_and_the_best_idle() {
        let mut fixed = EngineSums {
            name: "configured threads".into(),
            ..EngineSums::default()
        };
        fixed.idle.add(&figures(100, 200.0, 10, 250.0));
        fixed.busy.add(&figures(100, 500.0, 10, 780.0));
        let mut adaptive = EngineSums {
            name: "adapt_threads".into(),
            ..EngineSums::default()
        };
        adaptive.idle.add(&figures(100, 210.0, 10, 260.0));
        adaptive.idle.add(&figures(100, 190.0, 10, 240.0));
        adaptive.busy.add(&figures(100, 400.0, 10, 410.0));
        let table = table(&[fixed, adaptive]);
        assert!(
            table.contains("| configured threads | busy | 1 | 5.0 | 78.0 | 10 | 3.12x | 3.12x |"),
            "{table}"
        );
        assert!(
            table.contains("| adapt_threads | idle | 2 | 2.0 | 25.0 | 20 | 1.00x | 1.00x |"),
            "{table}"
        );
        assert!(
            table.contains("| adapt_threads | busy | 1 | 4.0 | 41.0 | 10 | 1.64x | 1.64x |"),
            "{table}"
        );
    }

    #[test]
    fn nothing_measured_reads_as_zero_without_a_ratio() {
        let empty = EngineSums {
            name: "x".into(),
            ..EngineSums::default()
        };
        let table = table(&[empty]);
        assert!(
            table.contains("| x | busy | 0 | 0.0 | 0.0 | 0 | - | - |"),
            "{table}"
        );
    }
}
