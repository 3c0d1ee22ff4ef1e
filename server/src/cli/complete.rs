//! `wellspring complete FILE:LINE:COL`: loads the model, prints one completion at that position
//! and what it cost. Useful to try a model or a config without an editor.
//!
//! The prompt comes from the context builder, exactly as in the editor. `simple_fim_prompt`
//! below is the plain lines-around-the-cursor layout the keystroke benchmark replays, so that
//! the benchmark measures the engine alone.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context as _};

use super::prompt::{cursor_byte, default_workspace, open_document, parse_location};
use crate::assist::completion::{suggest, Trigger};
use crate::config::Config;
use crate::context::{ContextSnapshot, RecentChunks};
use crate::engine::{http, CompletionFigures, Engine, FimPrompt, TokenCounter};
use crate::index::{ScanConfig, WorkspaceIndex};
use crate::model;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Where to complete: FILE:LINE:COL, 1-based, COL counted in characters.
    #[arg(value_name = "FILE:LINE:COL")]
    pub position: String,
    /// Workspace root to index for definitions in other files (default: the nearest folder above
    /// FILE holding `.git` or a project file).
    #[arg(long, value_name = "DIR")]
    pub workspace: Option<PathBuf>,
    /// Most tokens to generate (default: `completion.max_tokens`).
    #[arg(long)]
    pub max_tokens: Option<u32>,
    /// Ask this many times; later runs show what the KV cache saves.
    #[arg(long, default_value_t = 1)]
    pub repeat: u32,
}

pub async fn run(config: &Config, args: Args) -> anyhow::Result<()> {
    let location = parse_location(&args.position)?;
    let path = std::fs::canonicalize(&location.path)
        .with_context(|| format!("cannot open {}", location.path.display()))?;
    let text = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let text = String::from_utf8(text)
        .map_err(|_| anyhow::anyhow!("{} is not UTF-8 text", path.display()))?;
    let workspace = match &args.workspace {
        Some(dir) => std::fs::canonicalize(dir)
            .with_context(|| format!("cannot open workspace {}", dir.display()))?,
        None => default_workspace(&path),
    };
    // Cheap input first: a position outside the file is reported before the model loads.
    let document = open_document(&path, &text);
    let cursor_byte = cursor_byte(&document, location.line, location.column)?;
    let engine = start_engine(config).await?;
    let index = index_workspace(config, workspace).await?;
    let snapshot = ContextSnapshot {
        current: document,
        open: Vec::new(),
        index,
        recent: RecentChunks::default(),
    };
    let mut config = config.clone();
    // A one-shot command has no next keystroke to make way for: let the first (cold) prompt finish.
    config.completion.time_budget_ms = config.completion.time_budget_ms.max(300_000);
    if let Some(max_tokens) = args.max_tokens {
        config.completion.max_tokens = max_tokens;
    }
    for _ in 0..args.repeat.max(1) {
        let suggestions =
            suggest(&engine, &snapshot, cursor_byte, Trigger::Automatic, &config).await?;
        match suggestions.first() {
            Some(suggestion) => print_completion(&suggestion.text, &suggestion.figures),
            None => println!("(no suggestion: the model's answer was empty or repeated the code after the cursor)"),
        }
    }
    Ok(())
}

/// Resolves the configured model (path, `hf:`, `ollama:` or a built-in name; downloading it with
/// a progress bar when needed) and loads it off the async runtime's threads, or connects to the
/// inference server it names.
pub async fn start_engine(config: &Config) -> anyhow::Result<Engine> {
    let spec = config.model.path.clone();
    let model_config = config.model.clone();
    let engine = tokio::task::spawn_blocking(move || -> anyhow::Result<Engine> {
        if http::is_endpoint(&spec) {
            let (path, chat_path) = http::endpoints(&model_config).map_err(anyhow::Error::msg)?;
            eprintln!("connecting to {path}");
            let engine = Engine::connect_http(&model_config, path, chat_path)?;
            if let Some(counting) = engine.token_counting() {
                eprintln!("prompt tokens are counted with {counting}");
            }
            return Ok(engine);
        }
        let options = model::ResolveOptions {
            progress_bar: true,
            allow_download: true,
            ..model::ResolveOptions::default()
        };
        let resolved = model::resolve(&spec, &options)?;
        eprintln!("loading {}", resolved.path.display());
        Ok(Engine::start(&model_config, &resolved.path)?)
    })
    .await??;
    eprintln!(
        "model ready on {} ({} tokens per slot)",
        engine.backend_name(),
        engine.caps().n_ctx_per_slot
    );
    Ok(engine)
}

fn print_completion(text: &str, figures: &CompletionFigures) {
    println!("{text}");
    println!(
        "--- n_prompt {} n_reused {} n_evaluated {} n_generated {} prefill {:.1} ms decode {:.1} ms total {:.1} ms stop {:?}{}{}",
        figures.generation.n_prompt,
        figures.generation.n_reused,
        figures.generation.n_evaluated,
        figures.generation.n_generated,
        figures.generation.t_prefill_ms,
        figures.generation.t_decode_ms,
        figures.t_total_ms,
        figures.stop,
        if figures.served_without_inference { " (no inference)" } else { "" },
        if figures.truncated { " (prompt cut)" } else { "" },
    );
}

/// A FIM prompt and whether the completion should stay on the cursor's line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacedPrompt {
    pub prompt: FimPrompt,
    /// The cursor has text after it on its line.
    pub single_line: bool,
}

/// The workspace index for `root`, scanned to the end (unless `context.index_workspace` is
/// off, which leaves it empty), as the editor's would be once its background scan is done.
pub async fn index_workspace(
    config: &Config,
    root: PathBuf,
) -> anyhow::Result<Arc<WorkspaceIndex>> {
    let index = Arc::new(WorkspaceIndex::new(Some(root)));
    if config.context.index_workspace {
        let scan_config = ScanConfig {
            max_files: config.context.max_indexed_files as usize,
            ..ScanConfig::default()
        };
        let scan_index = Arc::clone(&index);
        tokio::task::spawn_blocking(move || scan_index.scan(&scan_config)).await??;
    }
    Ok(index)
}

/// The simple fallback prompt, used until `context/` provides the real one: the lines above the
/// cursor as prefix (as many as fit three quarters of `budget_tokens`), the rest of the line and
/// the lines below as suffix (as many as fit the remaining quarter), nothing from other files.
pub fn simple_fim_prompt(
    text: &str,
    line_idx: usize,
    char_idx: usize,
    path: &str,
    budget_tokens: usize,
    counter: &dyn TokenCounter,
) -> anyhow::Result<PlacedPrompt> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let n_lines = lines.len().max(1);
    if line_idx >= n_lines {
        bail!(
            "line {} is past the end of the file ({n_lines} lines)",
            line_idx + 1
        );
    }
    let line = lines.get(line_idx).copied().unwrap_or("");
    let line_body = line.strip_suffix('\n').unwrap_or(line);
    let line_body = line_body.strip_suffix('\r').unwrap_or(line_body);
    let n_chars = line_body.chars().count();
    if char_idx > n_chars {
        bail!(
            "column {} is past the end of line {} ({n_chars} characters)",
            char_idx + 1,
            line_idx + 1
        );
    }
    let byte_col = line_body
        .char_indices()
        .nth(char_idx)
        .map_or(line_body.len(), |(byte_idx, _)| byte_idx);
    let line_head = &line_body[..byte_col];
    let line_tail = &line[byte_col..];

    // Like the context builder, the line gets a fixed reserve (which also covers the few FIM
    // and path tokens), so typing on it neither overflows the budget nor moves the other cuts.
    let line_head_tokens = counter.count_tokens(line_head);
    let line_reserve = (budget_tokens / 8).min(128).max(line_head_tokens);
    let room = budget_tokens.saturating_sub(line_reserve);
    let mut suffix = line_tail.to_owned();
    let mut n_suffix_tokens = counter.count_tokens(&suffix);
    for below in &lines[line_idx + 1..] {
        let n_tokens = counter.count_tokens(below);
        if n_suffix_tokens + n_tokens > room / 4 {
            break;
        }
        suffix.push_str(below);
        n_suffix_tokens += n_tokens;
    }
    let mut prefix_start = line_idx;
    let mut n_prefix_tokens = 0;
    while prefix_start > 0 {
        let n_tokens = counter.count_tokens(lines[prefix_start - 1]);
        if n_prefix_tokens + n_tokens > room.saturating_sub(n_suffix_tokens) {
            break;
        }
        prefix_start -= 1;
        n_prefix_tokens += n_tokens;
    }
    Ok(PlacedPrompt {
        prompt: FimPrompt {
            repo_name: None,
            extra: Vec::new(),
            path: path.to_owned(),
            prefix: lines[prefix_start..line_idx.min(lines.len())].concat(),
            suffix,
            line_head: line_head.to_owned(),
        },
        single_line: !line_tail.trim().is_empty(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct ByteCounter;

    impl TokenCounter for ByteCounter {
        fn count_tokens(&self, text: &str) -> usize {
            text.len()
        }
    }

    fn check(
        text: &str,
        line_idx: usize,
        char_idx: usize,
        budget: usize,
        expect: (&str, &str, &str, bool),
    ) {
        let placed =
            simple_fim_prompt(text, line_idx, char_idx, "f.rs", budget, &ByteCounter).unwrap();
        let got = (
            placed.prompt.prefix.as_str(),
            placed.prompt.line_head.as_str(),
            placed.prompt.suffix.as_str(),
            placed.single_line,
        );
        assert_eq!(got, expect);
    }

    #[test]
    fn cursor_mid_line_is_single_line() {
        check(
            "a\nfoo(bar)\nb\n",
            1,
            4,
            100,
            ("a\n", "foo(", "bar)\nb\n", true),
        );
    }

    #[test]
    fn cursor_at_end_of_line_is_multi_line() {
        check(
            "a\n    let\nb\n",
            1,
            7,
            100,
            ("a\n", "    let", "\nb\n", false),
        );
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        check("é€x\n", 0, 2, 100, ("", "é€", "x\n", true));
    }

    #[test]
    fn lines_are_kept_to_the_budget() {
        let text = "1111\n2222\n3333\nx\n4444\n5555\n";
        // 28 bytes, 3 of them reserved for the line: a quarter of the other 25 (6) for the
        // suffix, the rest for the prefix.
        check(
            text,
            3,
            1,
            28,
            ("1111\n2222\n3333\n", "x", "\n4444\n", false),
        );
        // 13 bytes, 1 reserved for the line: the suffix gets 3 and keeps only its first line's end.
        check(text, 3, 1, 13, ("2222\n3333\n", "x", "\n", false));
    }

    #[test]
    fn positions_outside_the_file_are_errors() {
        let error = simple_fim_prompt("ab\n", 0, 5, "f", 10, &ByteCounter).unwrap_err();
        assert_eq!(
            error.to_string(),
            "column 6 is past the end of line 1 (2 characters)"
        );
        assert!(simple_fim_prompt("ab\n", 3, 0, "f", 10, &ByteCounter).is_err());
    }
}
