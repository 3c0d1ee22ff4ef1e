//! `wellspring prompt FILE:LINE:COL`: prints the exact prompt the server would send for a cursor
//! there (stdout), with each section labelled (stderr). Tokens are counted with the model's own
//! vocabulary (`--model PATH`, loaded vocab-only) or the bundled Qwen2.5-Coder vocabulary.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context as _};

use crate::config::Config;
use crate::context::{self, Budget, BuiltPrompt, ContextSnapshot, RecentChunks};
use crate::docs::{Document, DocumentStore};
use crate::engine::vocab::Vocab;
use crate::engine::CachedTokenCounter;
use crate::index::{ScanConfig, WorkspaceIndex};

#[derive(clap::Args, Debug, Clone)]
pub struct PromptArgs {
    /// The cursor: FILE:LINE:COL, 1-based, the column counted in characters.
    #[arg(value_name = "FILE:LINE:COL")]
    pub location: String,
    /// Workspace root to index (default: the nearest folder above FILE holding `.git`, else one
    /// holding a project file such as Cargo.toml or package.json, else FILE's folder).
    #[arg(long, value_name = "DIR")]
    pub workspace: Option<PathBuf>,
    /// Prompt budget in tokens (default: `context.budget_tokens` from the config).
    #[arg(long, value_name = "N")]
    pub budget: Option<usize>,
}

/// A cursor given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub path: PathBuf,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
}

/// Parses `FILE:LINE:COL` from the right, so paths may contain colons.
pub fn parse_location(text: &str) -> anyhow::Result<Location> {
    let mut parts = text.rsplitn(3, ':');
    let (Some(column), Some(line), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
        bail!("expected FILE:LINE:COL, got {text:?}");
    };
    let line: usize = line
        .parse()
        .with_context(|| format!("line {line:?} is not a number"))?;
    let column: usize = column
        .parse()
        .with_context(|| format!("column {column:?} is not a number"))?;
    if line == 0 || column == 0 {
        bail!("line and column are 1-based, got {line}:{column}");
    }
    if path.is_empty() {
        bail!("expected FILE:LINE:COL, got {text:?}");
    }
    Ok(Location {
        path: PathBuf::from(path),
        line,
        column,
    })
}

/// The byte offset of a 1-based line and character column in `document`.
/// `text` as the editor holds `path`: parsed, under its `file://` URI.
pub fn open_document(path: &Path, text: &str) -> Arc<Document> {
    let uri = format!("file://{}", path.display());
    let store = DocumentStore::new();
    store.open(&uri, "", 1, text);
    store.finish_parse(&uri, 1);
    store.get(&uri).expect("the document was just opened")
}

pub fn cursor_byte(document: &Document, line: usize, column: usize) -> anyhow::Result<usize> {
    let rope = &document.rope;
    let n_lines = rope.len_lines();
    if line > n_lines {
        bail!("line {line} is past the end of the file ({n_lines} lines)");
    }
    let line_slice = rope.line(line - 1);
    let n_columns = line_slice
        .chars()
        .take_while(|ch| *ch != '\n' && *ch != '\r')
        .count();
    if column > n_columns + 1 {
        bail!("column {column} is past the end of line {line} ({n_columns} characters)");
    }
    let char_idx = rope.line_to_char(line - 1) + column - 1;
    Ok(rope.char_to_byte(char_idx))
}

/// Files that mark a project's root, nearest first after `.git`.
const PROJECT_MARKERS: [&str; 9] = [
    "Cargo.toml",
    "package.json",
    "pyproject.toml",
    "setup.py",
    "go.mod",
    "pom.xml",
    "build.gradle",
    "CMakeLists.txt",
    "Makefile",
];

/// The nearest folder above `file` holding `.git`, else the nearest holding a project file, else
/// the file's own folder.
pub fn default_workspace(file: &Path) -> PathBuf {
    let folder = file.parent().unwrap_or(Path::new("/")).to_path_buf();
    let with_git = folder.ancestors().find(|dir| dir.join(".git").exists());
    let with_marker = || {
        folder.ancestors().find(|dir| {
            PROJECT_MARKERS
                .iter()
                .any(|marker| dir.join(marker).is_file())
        })
    };
    with_git
        .or_else(with_marker)
        .map(Path::to_path_buf)
        .unwrap_or(folder)
}

/// Everything the command prepares before building: shared with the context benchmark.
pub struct PromptSession {
    pub vocab: Arc<Vocab>,
    /// Counts with `vocab`, remembering counts across the prompts of one session as the
    /// server's engine does.
    pub tokens: CachedTokenCounter<Arc<Vocab>>,
    pub index: Arc<WorkspaceIndex>,
    pub n_index_ms: f64,
    pub n_indexed_files: usize,
}

impl PromptSession {
    pub fn new(
        model: Option<&str>,
        workspace: &Path,
        config: &Config,
    ) -> anyhow::Result<PromptSession> {
        let vocab = match model {
            Some(model) => {
                let path = Path::new(model);
                if !path.is_file() {
                    bail!(
                        "--model for `wellspring prompt` must be a GGUF file path, got {model:?}"
                    );
                }
                Vocab::load(path)?
            }
            None => Vocab::load_default()?,
        };
        let index = Arc::new(WorkspaceIndex::new(Some(workspace.to_path_buf())));
        let started = Instant::now();
        let stats = if config.context.index_workspace {
            index.scan(&ScanConfig {
                max_files: config.context.max_indexed_files as usize,
                ..ScanConfig::default()
            })?
        } else {
            Default::default()
        };
        let vocab = Arc::new(vocab);
        Ok(PromptSession {
            tokens: CachedTokenCounter::new(Arc::clone(&vocab)),
            vocab,
            index,
            n_index_ms: started.elapsed().as_secs_f64() * 1000.0,
            n_indexed_files: stats.n_files_indexed,
        })
    }

    /// Opens `path` as the editor would (parsed, under its workspace URI).
    pub fn open(&self, path: &Path, text: &str) -> Arc<Document> {
        open_document(path, text)
    }

    pub fn build(
        &self,
        document: Arc<Document>,
        cursor_byte: usize,
        n_budget: usize,
        n_ctx: u32,
    ) -> BuiltPrompt {
        let snapshot = ContextSnapshot {
            current: document,
            open: Vec::new(),
            index: Arc::clone(&self.index),
            recent: RecentChunks::default(),
        };
        let caps = self.vocab.caps(n_ctx);
        context::build(
            &snapshot,
            cursor_byte,
            &Budget {
                n_prompt_tokens: n_budget,
            },
            &caps,
            &self.tokens,
        )
    }
}

pub fn run(args: &PromptArgs, model: Option<&str>, config: &Config) -> anyhow::Result<()> {
    let location = parse_location(&args.location)?;
    let path = std::fs::canonicalize(&location.path)
        .with_context(|| format!("cannot open {}", location.path.display()))?;
    let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let text = String::from_utf8(bytes)
        .with_context(|| format!("{} is not UTF-8 text", path.display()))?;
    let workspace = match &args.workspace {
        Some(dir) => std::fs::canonicalize(dir)
            .with_context(|| format!("cannot open workspace {}", dir.display()))?,
        None => default_workspace(&path),
    };
    let n_budget = args.budget.unwrap_or(config.context.budget_tokens as usize);
    let session = PromptSession::new(model, &workspace, config)?;
    let document = session.open(&path, &text);
    if document.kind == crate::docs::DocumentKind::Binary {
        bail!("{} is a binary file", path.display());
    }
    let cursor_byte = cursor_byte(&document, location.line, location.column)?;
    let started = Instant::now();
    let built = session.build(document, cursor_byte, n_budget, config.model.n_ctx);
    let n_build_ms = started.elapsed().as_secs_f64() * 1000.0;
    let rendered = built.prompt.render_text(session.vocab.fim_texts());

    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(rendered.as_bytes())?;
    stdout.flush()?;
    let mut stderr = std::io::stderr().lock();
    writeln!(
        stderr,
        "{:<13} {:<40} {:>6}  detail",
        "section", "path", "tokens"
    )?;
    for section in &built.sections {
        writeln!(
            stderr,
            "{:<13} {:<40} {:>6}  {}",
            section.label, section.path, section.n_tokens, section.detail
        )?;
    }
    let n_total = crate::engine::TokenCounter::count_tokens(&session.vocab, &rendered);
    writeln!(
        stderr,
        "total {n_total} tokens as text (budget {n_budget}); indexed {} files in {:.0} ms; built in {:.2} ms",
        session.n_indexed_files, session.n_index_ms, n_build_ms
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_from_the_right() {
        assert_eq!(
            parse_location("C:/x/a.rs:3:7").expect("valid"),
            Location {
                path: PathBuf::from("C:/x/a.rs"),
                line: 3,
                column: 7
            }
        );
        for bad in ["a.rs", "a.rs:1", "a.rs:0:1", "a.rs:x:1", ":1:1"] {
            assert!(parse_location(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn columns_count_characters_and_are_checked() {
        let document = Document::new("file:///a.py", "python", 1, "é = 1\nx\n");
        assert_eq!(cursor_byte(&document, 1, 2).expect("valid"), 2);
        assert_eq!(cursor_byte(&document, 2, 2).expect("end of line"), 8);
        let error = cursor_byte(&document, 2, 3).expect_err("past the end");
        assert_eq!(
            error.to_string(),
            "column 3 is past the end of line 2 (1 characters)"
        );
        assert!(cursor_byte(&document, 9, 1).is_err());
    }
}
