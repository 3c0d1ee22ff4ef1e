//! Configuration: one `Config` value merged from defaults, the TOML file, CLI flags, the client's
//! `initializationOptions` and `workspace/didChangeConfiguration`, later layers winning.
//!
//! Layers are merged as JSON values (objects merge key by key, everything else replaces), then
//! deserialised once, so a layer only needs to name what it changes. This module knows nothing of
//! where a layer came from; `main.rs` and `lsp/` hand them in.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {source}")]
    Toml {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields, rename_all = "snake_case")]
pub struct Config {
    pub model: ModelConfig,
    pub completion: CompletionConfig,
    pub context: ContextConfig,
    pub chat: ChatConfig,
    pub engine: EngineConfig,
    pub log: LogConfig,
}

/// Where the engine (the model, its KV cache and the scheduler) runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EngineMode {
    /// One engine process per user and model configuration, shared by every editor window
    /// through a Unix socket; the first window starts it and it exits when idle.
    Shared,
    /// Inside this language server process, for this window alone.
    InProcess,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    pub mode: EngineMode,
    /// A shared engine exits this long after its last client left.
    pub idle_exit_seconds: u64,
    /// Where shared engines put their sockets and logs; empty: `$XDG_RUNTIME_DIR/wellspring`,
    /// else `/tmp/wellspring-$UID`.
    pub socket_dir: String,
    /// A team's engine, `tcp:HOST:PORT`, used instead of one on this machine; empty: none.
    pub remote: String,
    /// A file holding the remote engine's token (`WELLSPRING_ENGINE_TOKEN` overrides it).
    pub token_file: String,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            mode: EngineMode::Shared,
            idle_exit_seconds: 300,
            socket_dir: String::new(),
            remote: String::new(),
            token_file: String::new(),
        }
    }
}

/// Code actions and chat.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChatConfig {
    /// Most tokens in one chat answer.
    pub max_tokens: u32,
    /// Most tokens in one code action's rewrite.
    pub max_edit_tokens: u32,
    /// How long `codeAction/resolve` waits for the model before it answers with a command that
    /// applies the edit when the model is done; 0 waits as long as the model takes.
    pub resolve_timeout_ms: u64,
}

impl Default for ChatConfig {
    fn default() -> Self {
        ChatConfig {
            max_tokens: 512,
            max_edit_tokens: 768,
            resolve_timeout_ms: 1500,
        }
    }
}

/// How the KV cache stores keys and values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KvCacheType {
    F16,
    Q8_0,
    Q4_0,
    /// The engine's memory plan picks: F16 when the configured context fits on the device, else
    /// Q8_0, else Q4_0, then fewer slots and less context (see `engine/plan.rs`).
    Auto,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FlashAttention {
    Auto,
    On,
    Off,
}

/// Which model to load and how to run it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// A GGUF path, `hf:OWNER/REPO/FILE.gguf`, `ollama:NAME[:TAG]`, a built-in name, or an
    /// inference server: `llama-server+http://HOST:PORT`, `openai+https://HOST/v1#MODEL`,
    /// `ollama+http://HOST:11434#MODEL` (docs/teams.md).
    pub path: String,
    /// A separate model for code actions and chat, in any form `path` takes; empty: `path`.
    pub chat_path: String,
    /// Layers offloaded to the GPU, counted as llama.cpp does (the output layer is one more, and
    /// goes first); -1 offloads as many as fit, all of them when they do.
    pub n_gpu_layers: i32,
    /// Context size in tokens, shared by all slots.
    pub n_ctx: u32,
    pub n_batch: u32,
    /// CPU threads generating tokens (one token a step); 0 picks the number of physical cores.
    pub n_threads: u32,
    /// CPU threads evaluating prompts (many tokens a step); 0 takes `n_threads`'s value.
    pub n_threads_batch: u32,
    /// Use fewer of those threads while other programs keep cores busy (the share of cores
    /// they leave free, read from the kernel's counters every quarter second while evaluating).
    pub adapt_threads: bool,
    /// Parallel sequences (one per recently active document).
    pub n_slots: u32,
    /// Context size in tokens for chat and code actions, which get a context of their own so
    /// they never evict completion slots.
    pub chat_n_ctx: u32,
    pub flash_attention: FlashAttention,
    pub kv_cache_type: KvCacheType,
    /// Map the model file into memory instead of reading it. Mapped pages are shared with other
    /// processes using the same file, but truncating the file while it is loaded makes the next
    /// access to a page past the new end kill the process (SIGBUS); read weights cannot be hurt
    /// by any change to the file.
    pub mmap: bool,
    /// Speculative decoding by prompt lookup: most tokens drafted from what the prompt and the
    /// answer so far already hold (the tokens that followed the latest earlier occurrence of the
    /// last few), checked by the model in one batch; greedy output stays the same. 0 turns it
    /// off.
    pub lookup_draft: u32,
    /// A draft model for speculative decoding, in any form `path` takes: a smaller model of the
    /// same family and vocabulary (Qwen2.5-Coder 0.5B for 1.5B or 7B) that proposes the next
    /// tokens for the model to check in one batch; greedy output stays the same. Empty: none.
    pub draft_path: String,
    /// A file holding the bearer token for an inference server (`WELLSPRING_API_TOKEN`
    /// overrides it); never logged.
    pub api_token_file: String,
    /// The FIM markers of a model on an inference server: `auto` (llama-server's vocabulary
    /// tells; elsewhere the model's name, else Qwen2.5-Coder's), `qwen`, `starcoder`,
    /// `deepseek`, `codellama`, or `none` (prefix-only prompts).
    pub remote_fim: String,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            path: crate::model::DEFAULT_MODEL.to_owned(),
            chat_path: String::new(),
            n_gpu_layers: -1,
            n_ctx: 8192,
            n_batch: 512,
            n_threads: 0,
            n_threads_batch: 0,
            adapt_threads: true,
            n_slots: 4,
            chat_n_ctx: 4096,
            flash_attention: FlashAttention::Auto,
            kv_cache_type: KvCacheType::F16,
            mmap: false,
            lookup_draft: 8,
            draft_path: String::new(),
            api_token_file: String::new(),
            remote_fim: "auto".to_owned(),
        }
    }
}

/// How completions are produced and shaped.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CompletionConfig {
    pub enabled: bool,
    /// Most tokens generated for one suggestion.
    pub max_tokens: u32,
    /// Wall-clock budget for one suggestion, prompt evaluation included.
    pub time_budget_ms: u64,
    /// Wait this long after a keystroke before starting inference (0 = none).
    pub debounce_ms: u64,
    /// 0 = greedy decoding.
    pub temperature: f32,
    pub top_k: i32,
    pub top_p: f32,
    /// Extra stop strings.
    pub stop: Vec<String>,
    /// Language ids for which completions are off.
    pub disabled_languages: Vec<String>,
}

impl Default for CompletionConfig {
    fn default() -> Self {
        CompletionConfig {
            enabled: true,
            max_tokens: 64,
            time_budget_ms: 3000,
            debounce_ms: 0,
            temperature: 0.0,
            top_k: 40,
            top_p: 0.95,
            stop: Vec::new(),
            disabled_languages: Vec::new(),
        }
    }
}

/// What goes into a prompt, measured in model tokens.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ContextConfig {
    /// Total prompt budget in tokens.
    pub budget_tokens: u32,
    /// Index the workspace for cross-file definitions.
    pub index_workspace: bool,
    /// Most files the workspace index reads.
    pub max_indexed_files: u32,
}

impl Default for ContextConfig {
    fn default() -> Self {
        ContextConfig {
            budget_tokens: 2048,
            index_workspace: true,
            max_indexed_files: 20_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A `tracing` filter such as `info` or `wellspring=debug`; `WELLSPRING_LOG` overrides it.
    pub level: String,
    /// Log to this file instead of stderr.
    pub file: Option<PathBuf>,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".to_owned(),
            file: None,
        }
    }
}

/// The ordered layers a `Config` is built from. Keeping the layers (rather than only the merged
/// result) lets a later `didChangeConfiguration` replace its own layer without losing the others.
#[derive(Debug, Clone, Default)]
pub struct Layers {
    pub file: Option<Value>,
    pub cli: Option<Value>,
    pub initialization_options: Option<Value>,
    pub did_change_configuration: Option<Value>,
}

impl Layers {
    pub fn resolve(&self) -> Result<Config, Error> {
        let mut merged = Value::Object(Default::default());
        for layer in [
            &self.file,
            &self.cli,
            &self.initialization_options,
            &self.did_change_configuration,
        ]
        .into_iter()
        .flatten()
        {
            merge(&mut merged, normalize_client_layer(layer));
        }
        serde_json::from_value(merged).map_err(|error| Error::Invalid(error.to_string()))
    }
}

/// Clients send settings either bare or wrapped in `{ "wellspring": { … } }` (VS Code's section
/// name); both are accepted. A wrapper may hold other servers' sections beside ours (Emacs' eglot
/// sends its whole workspace configuration to every server): only ours is read. `null` means
/// "no settings".
fn normalize_client_layer(layer: &Value) -> Value {
    match layer {
        Value::Object(map) if map.contains_key("wellspring") => map["wellspring"].clone(),
        Value::Null => Value::Object(Default::default()),
        other => other.clone(),
    }
}

fn merge(base: &mut Value, layer: Value) {
    match (base, layer) {
        (Value::Object(base_map), Value::Object(layer_map)) => {
            for (key, value) in layer_map {
                if value.is_null() {
                    continue;
                }
                merge(base_map.entry(key).or_insert(Value::Null), value);
            }
        }
        (base, layer) => *base = layer,
    }
}

/// `$XDG_CONFIG_HOME/wellspring/config.toml` (or the platform's equivalent).
pub fn default_config_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|path| path.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))?;
    Some(base.join("wellspring").join("config.toml"))
}

/// Reads a TOML config file into a layer.
pub fn read_file_layer(path: &Path) -> Result<Value, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    let table: toml::Value = toml::from_str(&text).map_err(|source| Error::Toml {
        path: path.to_owned(),
        source: Box::new(source),
    })?;
    let layer = serde_json::to_value(table).map_err(|error| Error::Invalid(error.to_string()))?;
    // Validate the file on its own, so a mistake is reported against the file that has it.
    Layers {
        file: Some(layer.clone()),
        ..Layers::default()
    }
    .resolve()
    .map_err(|error| Error::Invalid(format!("{}: {error}", path.display())))?;
    Ok(layer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn later_layers_win_and_objects_merge() {
        let layers = Layers {
            file: Some(
                json!({"model": {"path": "a.gguf", "n_ctx": 1024}, "log": {"level": "debug"}}),
            ),
            cli: Some(json!({"model": {"path": "b.gguf"}})),
            initialization_options: Some(json!({"wellspring": {"completion": {"max_tokens": 8}}})),
            did_change_configuration: Some(json!({"completion": {"enabled": false}})),
        };
        let config = layers.resolve().unwrap();
        assert_eq!(config.model.path, "b.gguf");
        assert_eq!(config.model.n_ctx, 1024);
        assert_eq!(config.log.level, "debug");
        assert_eq!(config.completion.max_tokens, 8);
        assert!(!config.completion.enabled);
    }

    #[test]
    fn a_wrapper_with_other_servers_sections_gives_only_ours() {
        let layers = Layers {
            did_change_configuration: Some(json!({
                "wellspring": {"completion": {"max_tokens": 9}},
                "pylsp": {"plugins": {"ruff": {"enabled": true}}},
            })),
            ..Layers::default()
        };
        assert_eq!(layers.resolve().unwrap().completion.max_tokens, 9);
    }

    #[test]
    fn unknown_keys_are_errors_with_the_key_named() {
        let layers = Layers {
            cli: Some(json!({"model": {"n_ctxx": 5}})),
            ..Layers::default()
        };
        let message = layers.resolve().unwrap_err().to_string();
        assert!(message.contains("n_ctxx"), "{message}");
    }

    #[test]
    fn toml_file_is_read_and_validated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(
            &path,
            "[model]\nkv_cache_type = \"q8_0\"\nn_threads = 1\nn_threads_batch = 2\n",
        )
        .unwrap();
        let layer = read_file_layer(&path).unwrap();
        let config = Layers {
            file: Some(layer),
            ..Layers::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(config.model.kv_cache_type, KvCacheType::Q8_0);
        assert_eq!(
            (config.model.n_threads, config.model.n_threads_batch),
            (1, 2)
        );
        std::fs::write(&path, "[model]\nkv_cache_type = \"q9\"\n").unwrap();
        assert!(read_file_layer(&path).is_err());
        std::fs::write(&path, "[model]\nkv_cache_type = \"auto\"\n").unwrap();
        let config = Layers {
            file: Some(read_file_layer(&path).unwrap()),
            ..Layers::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(config.model.kv_cache_type, KvCacheType::Auto);
        assert_eq!(ModelConfig::default().kv_cache_type, KvCacheType::F16);
    }
}
