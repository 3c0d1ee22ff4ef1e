//! Model registry: turns a model spec (path, `hf:`, `ollama:`, built-in name) into a local GGUF.

/// The model used when none is configured: Qwen2.5-Coder 1.5B (base, Q8_0), trained for
/// fill-in-the-middle and small enough to answer at typing speed on a laptop GPU.
pub const DEFAULT_MODEL: &str =
    "hf:ggml-org/Qwen2.5-Coder-1.5B-Q8_0-GGUF/qwen2.5-coder-1.5b-q8_0.gguf";
