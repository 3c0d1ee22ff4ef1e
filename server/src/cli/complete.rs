//! `wellspring complete FILE:LINE:COL`: loads the model, prints one completion at that position
//! and what it cost. Useful to try a model or a config without an editor.
//!
//! The prompt comes from `simple_fim_prompt` below, a deliberately plain stand-in for the
//! context builder; the model spec must be a local GGUF path.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};

use crate::config::Config;
use crate::engine::{Completion, CompletionRequest, Engine, FimPrompt, TokenCounter};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Where to complete: FILE:LINE:COL, 1-based, COL counted in characters.
    #[arg(value_name = "FILE:LINE:COL")]
    pub position: String,
    /// Most tokens to generate (default: `completion.max_tokens`).
    #[arg(long)]
    pub max_tokens: Option<u32>,
    /// Ask this many times; later runs show what the KV cache saves.
    #[arg(long, default_value_t = 1)]
    pub repeat: u32,
}

pub async fn run(config: &Config, args: Args) -> anyhow::Result<()> {
    let (path, line_number, column) = parse_position(&args.position)?;
    let text = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let text = String::from_utf8(text)
        .map_err(|_| anyhow::anyhow!("{} is not UTF-8 text", path.display()))?;
    let engine = start_engine(config).await?;
    let max_tokens = args.max_tokens.unwrap_or(config.completion.max_tokens);
    let budget = (config.context.budget_tokens as usize)
        .min((engine.caps().n_ctx_per_slot as usize).saturating_sub(max_tokens as usize));
    let placed = simple_fim_prompt(
        &text,
        line_number - 1,
        column - 1,
        &path.display().to_string(),
        budget,
        engine.token_counter().as_ref(),
    )?;
    for _ in 0..args.repeat.max(1) {
        let mut request = CompletionRequest::new(
            path.display().to_string(),
            placed.prompt.clone(),
            placed.single_line,
            &config.completion,
        );
        request.max_tokens = max_tokens;
        let completion = engine.complete(request).await?;
        print_completion(&completion);
    }
    Ok(())
}

/// Loads the configured model (a local GGUF path) off the async runtime's threads.
pub async fn start_engine(config: &Config) -> anyhow::Result<Engine> {
    let model_path = PathBuf::from(&config.model.path);
    let model_config = config.model.clone();
    eprintln!("loading {}", model_path.display());
    let engine =
        tokio::task::spawn_blocking(move || Engine::start(&model_config, &model_path)).await??;
    eprintln!(
        "model ready on {} ({} tokens per slot)",
        engine.backend_name(),
        engine.caps().n_ctx_per_slot
    );
    Ok(engine)
}

fn print_completion(completion: &Completion) {
    let figures = &completion.figures;
    println!("{}", completion.text);
    println!(
        "--- n_prompt {} n_reused {} n_evaluated {} n_generated {} prefill {:.1} ms decode {:.1} ms total {:.1} ms stop {:?}{}{}",
        figures.n_prompt,
        figures.n_reused,
        figures.n_evaluated,
        figures.n_generated,
        figures.t_prefill_ms,
        figures.t_decode_ms,
        figures.t_total_ms,
        figures.stop,
        if figures.served_without_inference { " (no inference)" } else { "" },
        if figures.truncated { " (prompt cut)" } else { "" },
    );
}

/// Splits `FILE:LINE:COL` from the right, so paths may contain colons.
fn parse_position(position: &str) -> anyhow::Result<(PathBuf, usize, usize)> {
    let mut parts = position.rsplitn(3, ':');
    let (Some(column), Some(line), Some(file)) = (parts.next(), parts.next(), parts.next()) else {
        bail!("expected FILE:LINE:COL, got {position:?}");
    };
    let line: usize = line
        .parse()
        .with_context(|| format!("line {line:?} is not a number"))?;
    let column: usize = column
        .parse()
        .with_context(|| format!("column {column:?} is not a number"))?;
    if line == 0 || column == 0 {
        bail!("line and column are 1-based");
    }
    Ok((Path::new(file).to_owned(), line, column))
}

/// A FIM prompt and whether the completion should stay on the cursor's line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacedPrompt {
    pub prompt: FimPrompt,
    /// The cursor has text after it on its line.
    pub single_line: bool,
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

    let line_head_tokens = counter.count_tokens(line_head);
    let room = budget_tokens.saturating_sub(line_head_tokens);
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
        // 24 bytes of room: a quarter (6) for the suffix, the rest for the prefix.
        check(
            text,
            3,
            1,
            25,
            ("1111\n2222\n3333\n", "x", "\n4444\n", false),
        );
        // 12 bytes of room: the suffix gets 3 and keeps only its first line's end.
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
        assert_eq!(
            parse_position("C:/x.rs:3:4").unwrap(),
            (PathBuf::from("C:/x.rs"), 3, 4)
        );
        assert!(parse_position("x.rs:0:1").is_err());
    }
}
