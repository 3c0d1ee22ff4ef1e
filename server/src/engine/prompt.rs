//! The engine's input for one fill-in-the-middle completion, and what the engine tells prompt
//! builders about the model. These types are the contract between `context/` (which fills them)
//! and the engine (which tokenizes and evaluates them); neither side reaches past them.

/// A piece of context from elsewhere (another file, a definition, a recent edit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextChunk {
    /// Where the text comes from, relative to the workspace root when it has one.
    pub path: String,
    /// Why it is in the prompt (`definition`, `import`, `recent-edit`, `open-file`, …); shown by
    /// `wellspring prompt`, never sent to the model.
    pub label: String,
    pub text: String,
}

/// One FIM request, laid out so that typing on the cursor's line only changes the prompt's tail.
///
/// Rendered for models with repo-level FIM tokens as
/// `<|repo_name|>{repo_name}\n` (when set), then `<|file_sep|>{path}\n{text}` for each extra chunk,
/// then `<|file_sep|>{path}\n<|fim_prefix|>{prefix}<|fim_suffix|>{suffix}<|fim_middle|>{line_head}`.
/// The line being typed (`line_head`) comes last, after the middle token, so a keystroke on it
/// appends to the prompt instead of invalidating the KV cache of everything after the prefix.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FimPrompt {
    pub repo_name: Option<String>,
    /// Most stable first: chunks early in the list should change least between requests.
    pub extra: Vec<ContextChunk>,
    /// The current file's path, relative to the workspace root when it has one.
    pub path: String,
    /// The current file's text before the cursor's line (cut to the budget at syntax boundaries).
    pub prefix: String,
    /// The text after the cursor: the rest of the cursor's line, then the lines below.
    pub suffix: String,
    /// The cursor's line up to the cursor.
    pub line_head: String,
}

/// What prompt builders need to know about the loaded model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelCaps {
    /// The model has FIM prefix/suffix/middle tokens; without them prompts are prefix-only.
    pub has_fim: bool,
    /// The model has a file-separator token (repo-level FIM with paths).
    pub has_file_sep: bool,
    /// The model has a repo-name token.
    pub has_repo_name: bool,
    /// Tokens one completion prompt may use, including the room left for generation.
    pub n_ctx_per_slot: u32,
}

/// Counts tokens the way the model will. Implemented by the engine with the model's own
/// vocabulary, and by tests with simple stand-ins.
pub trait TokenCounter: Send + Sync {
    fn count_tokens(&self, text: &str) -> usize;
}
