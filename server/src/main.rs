//! The `wellspring` binary: CLI flags, logging setup and the stdio transport; nothing else.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use serde_json::json;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::EnvFilter;
use wellspring::config::{self, Config, Layers};
use wellspring::LlamaErrors;

#[derive(Parser)]
#[command(
    name = "wellspring",
    version,
    about = "A language server that keeps a coding model resident on your own GPU"
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Args, Clone)]
struct GlobalArgs {
    /// Config file (default: $XDG_CONFIG_HOME/wellspring/config.toml when it exists).
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Model: a GGUF path, hf:OWNER/REPO/FILE.gguf, ollama:NAME[:TAG], a built-in name, or an
    /// inference server (llama-server+http://HOST:PORT, openai+https://HOST/v1#MODEL,
    /// ollama+http://HOST:11434#MODEL).
    #[arg(long, global = true, value_name = "MODEL")]
    model: Option<String>,
    /// A separate model for code actions and chat, in the same forms as --model.
    #[arg(long, global = true, value_name = "MODEL")]
    chat_model: Option<String>,
    /// A draft model for speculative decoding (smaller, same vocabulary), in the same forms as
    /// --model.
    #[arg(long, global = true, value_name = "MODEL")]
    draft_model: Option<String>,
    /// Layers to offload to the GPU (-1 = all).
    #[arg(long, global = true, allow_hyphen_values = true)]
    n_gpu_layers: Option<i32>,
    /// Context size in tokens.
    #[arg(long, global = true)]
    n_ctx: Option<u32>,
    /// Log filter (e.g. info, debug, wellspring=trace); WELLSPRING_LOG overrides it.
    #[arg(long, global = true, value_name = "FILTER")]
    log_level: Option<String>,
    /// Accepted and ignored: stdio is the only transport, and some clients pass this flag.
    #[arg(long, global = true, hide = true)]
    stdio: bool,
    /// Write logs to this file instead of stderr.
    #[arg(long, global = true, value_name = "PATH")]
    log_file: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Speak LSP on stdin/stdout (the default).
    Serve,
    /// Download, locate and inspect models.
    Model(wellspring::cli::model::ModelArgs),
    /// Print the prompt that would be sent for a cursor at FILE:LINE:COL.
    Prompt(wellspring::cli::prompt::PromptArgs),
    /// Print one completion at FILE:LINE:COL and what it cost.
    Complete(wellspring::cli::complete::Args),
    /// Measure latency and cache reuse.
    Bench(wellspring::cli::bench::Args),
    /// Run the shared engine (the model, shared by every editor window) in the foreground.
    Engine(wellspring::cli::engine::Args),
    /// Print the devices, their free memory and the memory plan for the configured models.
    Doctor(wellspring::cli::doctor::Args),
}

impl GlobalArgs {
    /// The CLI's configuration layer: only the flags that were given.
    fn layer(&self) -> serde_json::Value {
        let mut model = serde_json::Map::new();
        if let Some(path) = &self.model {
            model.insert("path".into(), json!(path));
        }
        if let Some(chat_path) = &self.chat_model {
            model.insert("chat_path".into(), json!(chat_path));
        }
        if let Some(draft_path) = &self.draft_model {
            model.insert("draft_path".into(), json!(draft_path));
        }
        if let Some(n_gpu_layers) = self.n_gpu_layers {
            model.insert("n_gpu_layers".into(), json!(n_gpu_layers));
        }
        if let Some(n_ctx) = self.n_ctx {
            model.insert("n_ctx".into(), json!(n_ctx));
        }
        let mut log = serde_json::Map::new();
        if let Some(level) = &self.log_level {
            log.insert("level".into(), json!(level));
        }
        if let Some(file) = &self.log_file {
            log.insert("file".into(), json!(file));
        }
        json!({ "model": model, "log": log })
    }

    fn layers(&self) -> anyhow::Result<Layers> {
        let file = match &self.config {
            Some(path) => Some(config::read_file_layer(path)?),
            None => match config::default_config_path().filter(|path| path.exists()) {
                Some(path) => Some(config::read_file_layer(&path)?),
                None => None,
            },
        };
        let layers = Layers {
            file,
            cli: Some(self.layer()),
            ..Layers::default()
        };
        layers.resolve()?;
        Ok(layers)
    }
}

/// Logs go to stderr or a file, never stdout: stdout carries the protocol.
fn init_logging(log: &config::LogConfig) -> anyhow::Result<()> {
    let filter = match std::env::var("WELLSPRING_LOG") {
        Ok(filter) if !filter.is_empty() => EnvFilter::try_new(filter),
        // llama.cpp narrates every load at info level; keep that for an explicit request.
        _ if log.level.contains('=') => EnvFilter::try_new(&log.level),
        _ => EnvFilter::try_new(format!("{},llama-cpp-2=warn", log.level)),
    }
    .context("invalid log filter")?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false);
    match &log.file {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open log file {}", path.display()))?;
            builder
                .with_writer(std::sync::Mutex::new(file))
                .finish()
                .with(LlamaErrors)
                .init();
        }
        None => builder
            .with_writer(std::io::stderr)
            .finish()
            .with(LlamaErrors)
            .init(),
    }
    Ok(())
}

/// Rust's allocations go to mimalloc: its pages hold blocks of one size class and go back to the
/// system once empty, where glibc's arenas kept a language server's resident size creeping while
/// its live heap stayed flat (docs/reliability.md, the soak). llama.cpp's own allocations stay
/// with glibc's allocator, which `trim` looks after.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if matches!(cli.command, None | Some(Command::Serve)) {
        wellspring::trim::one_arena();
    }
    let layers = cli.global.layers()?;
    let config = layers.resolve()?;
    init_logging(&config.log)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = run(
        cli.command.unwrap_or(Command::Serve),
        &cli.global,
        layers,
        &config,
        &runtime,
    );
    // Tokio reads stdin on a blocking thread that cannot be interrupted; after `exit` the client
    // may keep stdin open, so do not wait for that thread. Dropping the runtime drops its tasks
    // and with them the last engine handles.
    runtime.shutdown_background();
    // Engine threads then end after the step under way; exit runs llama.cpp's static
    // destructors, which a thread still inside a step would crash on.
    if !wellspring::wait_for_llama_threads(EXIT_WAIT) {
        tracing::warn!("exiting while an engine thread still works ({EXIT_WAIT:?} waited)");
    }
    result
}

/// How long the process waits at exit for its engine threads to finish their steps: a step is
/// at most a batch of prompt tokens, seconds on a CPU.
const EXIT_WAIT: Duration = Duration::from_secs(10);

fn run(
    command: Command,
    global: &GlobalArgs,
    layers: Layers,
    config: &Config,
    runtime: &tokio::runtime::Runtime,
) -> anyhow::Result<()> {
    match command {
        Command::Serve => {
            wellspring::trim::release_freed_memory_periodically();
            tracing::info!(
                version = env!("CARGO_PKG_VERSION"),
                "wellspring serving LSP on stdio"
            );
            runtime.block_on(wellspring::lsp::serve_stdio(layers));
        }
        Command::Model(args) => wellspring::cli::model::run(args, config)?,
        Command::Prompt(args) => {
            wellspring::cli::prompt::run(&args, global.model.as_deref(), config)?
        }
        Command::Complete(args) => {
            runtime.block_on(wellspring::cli::complete::run(config, args))?
        }
        Command::Engine(args) => {
            wellspring::trim::release_freed_memory_periodically();
            runtime.block_on(wellspring::cli::engine::run(config, args))?
        }
        Command::Doctor(args) => wellspring::cli::doctor::run(config, args)?,
        Command::Bench(args) => runtime.block_on(wellspring::cli::bench::run(
            config,
            args,
            global.model.is_some(),
        ))?,
    }
    Ok(())
}
