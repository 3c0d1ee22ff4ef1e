//! `wellspring model …`: pull, locate, inspect and list models from the command line. A thin
//! layer over `crate::model`; all acquisition logic lives there.

use std::io::Write;

use crate::config::Config;
use crate::model::{self, GgufSummary, ModelSource, ResolveOptions, ResolvedModel};

#[derive(clap::Args, Debug)]
pub struct ModelArgs {
    #[command(subcommand)]
    pub command: ModelCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum ModelCommand {
    /// Download a model into the cache (or check a local/Ollama one) and print its path.
    Pull {
        /// A GGUF path, hf:OWNER/REPO/FILE.gguf[@REV], ollama:NAME[:TAG] or a built-in name;
        /// default: the configured model.
        spec: Option<String>,
    },
    /// Print the local path a spec resolves to; downloads only with --download.
    Path {
        spec: Option<String>,
        /// Download the model when it is not cached yet.
        #[arg(long)]
        download: bool,
    },
    /// Print what the GGUF header says (architecture, quantization, FIM tokens, …).
    Info {
        /// A spec or a path to a GGUF file; default: the configured model.
        spec: Option<String>,
    },
    /// List cached models and the built-in names.
    List,
}

pub fn run(args: ModelArgs, config: &Config) -> anyhow::Result<()> {
    let spec_or_configured =
        |spec: Option<String>| spec.unwrap_or_else(|| config.model.path.clone());
    let mut stdout = std::io::stdout().lock();
    match args.command {
        ModelCommand::Pull { spec } => {
            let spec = spec_or_configured(spec);
            let resolved = resolve(&spec, true)?;
            if let ModelSource::HuggingFace {
                downloaded: false, ..
            }
            | ModelSource::Builtin {
                downloaded: false, ..
            } = resolved.source
            {
                eprintln!("{spec} is already in the cache");
            }
            writeln!(stdout, "{}", resolved.path.display())?;
        }
        ModelCommand::Path { spec, download } => {
            let resolved = resolve(&spec_or_configured(spec), download)?;
            writeln!(stdout, "{}", resolved.path.display())?;
        }
        ModelCommand::Info { spec } => {
            let resolved = resolve(&spec_or_configured(spec), false)?;
            write!(stdout, "{}", describe(&resolved))?;
        }
        ModelCommand::List => {
            let options = ResolveOptions::default();
            let cache_dir = options.cache_dir()?;
            let cached = model::cached_models(&options)?;
            writeln!(stdout, "cache: {}", cache_dir.display())?;
            if cached.is_empty() {
                writeln!(stdout, "  (no models cached)")?;
            }
            for entry in &cached {
                let state = if entry.complete {
                    ""
                } else {
                    "  (partial download)"
                };
                writeln!(
                    stdout,
                    "  {}  {}  {}{state}",
                    entry.spec,
                    human_bytes(entry.file_bytes),
                    entry.path.display()
                )?;
            }
            writeln!(stdout, "built-in models (wellspring model pull NAME):")?;
            for builtin in model::BUILTIN_MODELS {
                let pulled = cached
                    .iter()
                    .any(|entry| entry.complete && entry.spec == builtin.name);
                writeln!(
                    stdout,
                    "  {}  {}, {}{}",
                    builtin.name,
                    builtin.description,
                    human_bytes(builtin.file_bytes),
                    if pulled { "  (cached)" } else { "" }
                )?;
            }
        }
    }
    Ok(())
}

fn resolve(spec: &str, allow_download: bool) -> anyhow::Result<ResolvedModel> {
    let options = ResolveOptions {
        allow_download,
        progress_bar: true,
        ..ResolveOptions::default()
    };
    Ok(model::resolve(spec, &options)?)
}

fn yes_no(value: bool) -> &'static str {
    if value {
        "yes"
    } else {
        "no"
    }
}

fn describe(resolved: &ResolvedModel) -> String {
    let summary: &GgufSummary = &resolved.summary;
    let unknown = || "unknown".to_owned();
    let source = match &resolved.source {
        ModelSource::Local => "local file".to_owned(),
        ModelSource::HuggingFace { spec, .. } => format!("{} (cached)", spec.to_spec_string()),
        ModelSource::Ollama { spec, .. } => format!("ollama {}", spec.pull_name()),
        ModelSource::Builtin { name, .. } => format!("built-in {name} (cached)"),
    };
    let tokens = &summary.special_tokens;
    let fim = match (tokens.fim_prefix, tokens.fim_suffix, tokens.fim_middle) {
        (Some(prefix), Some(suffix), Some(middle)) => {
            format!("yes (prefix {prefix}, suffix {suffix}, middle {middle})")
        }
        _ => "no".to_owned(),
    };
    let rows = [
        ("path", resolved.path.display().to_string()),
        ("source", source),
        (
            "architecture",
            summary.architecture.clone().unwrap_or_else(unknown),
        ),
        ("name", summary.name.clone().unwrap_or_else(unknown)),
        (
            "quantization",
            summary
                .file_type_name()
                .map(str::to_owned)
                .or(summary
                    .file_type
                    .map(|file_type| format!("type {file_type}")))
                .unwrap_or_else(unknown),
        ),
        (
            "context length",
            summary
                .n_ctx_train
                .map_or_else(unknown, |n_ctx| n_ctx.to_string()),
        ),
        (
            "parameters",
            format!(
                "{} ({} tensors)",
                human_count(summary.n_params),
                summary.n_tensors
            ),
        ),
        (
            "vocabulary",
            summary
                .n_vocab
                .map_or_else(unknown, |n_vocab| format!("{n_vocab} tokens")),
        ),
        ("fim tokens", fim),
        ("repo-level fim", yes_no(summary.has_repo_fim()).to_owned()),
        (
            "chat template",
            yes_no(summary.has_chat_template).to_owned(),
        ),
        ("file size", human_bytes(summary.file_bytes)),
        ("gguf version", summary.version.to_string()),
    ];
    let mut text = String::new();
    for (label, value) in rows {
        text.push_str(&format!("{:<15} {value}\n", format!("{label}:")));
    }
    text
}

fn human_bytes(n_bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KB", "MB", "GB", "TB"];
    if n_bytes < 1000 {
        return format!("{n_bytes} B");
    }
    let mut value = n_bytes as f64;
    let mut unit = UNITS[0];
    for candidate in UNITS {
        value /= 1000.0;
        unit = candidate;
        if value < 1000.0 {
            break;
        }
    }
    format!("{value:.1} {unit}")
}

fn human_count(count: u64) -> String {
    match count {
        0..=999_999 => count.to_string(),
        1_000_000..=999_999_999 => format!("{:.1}M", count as f64 / 1e6),
        _ => format!("{:.2}B", count as f64 / 1e9),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_units() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(491_400_064), "491.4 MB");
        assert_eq!(human_bytes(1_646_573_056), "1.6 GB");
        assert_eq!(human_count(494_032_768), "494.0M");
        assert_eq!(human_count(1_543_714_304), "1.54B");
    }
}
