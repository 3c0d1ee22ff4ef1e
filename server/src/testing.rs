//! The model files tests run on, found one way for the unit tests and the end-to-end tests (which
//! include this file by path): an environment variable, else a file under `<repo root>/models/`.

use std::path::PathBuf;

/// The tiny random-weight Qwen2.5-Coder-shaped model: `$WELLSPRING_TEST_MODEL`, else
/// `<repo root>/models/tiny.gguf`.
pub fn tiny_model() -> PathBuf {
    model_file("WELLSPRING_TEST_MODEL", "tiny.gguf")
}

/// The real Qwen2.5-Coder 0.5B: `$WELLSPRING_REAL_MODEL`, else
/// `<repo root>/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf`.
#[allow(dead_code)] // The unit tests run on the tiny model only.
pub fn real_model() -> PathBuf {
    model_file(
        "WELLSPRING_REAL_MODEL",
        "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    )
}

/// The model named by `env_var`, else `file` under `<repo root>/models/`, which must exist.
fn model_file(env_var: &str, file: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(env_var) {
        return PathBuf::from(path);
    }
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../models")
        .join(file);
    assert!(
        path.exists(),
        "test model {} is missing: run scripts/test-models.sh (or set {env_var})",
        path.display()
    );
    path
}

/// llama.cpp's `llama-server`, for the tests against a real inference server:
/// `$WELLSPRING_LLAMA_SERVER`, else `<repo root>/target/llama-server/llama-server`, which
/// `scripts/build-llama-server.sh` builds.
#[allow(dead_code)] // The unit tests use stand-in servers only.
pub fn llama_server() -> PathBuf {
    if let Some(path) = std::env::var_os("WELLSPRING_LLAMA_SERVER") {
        return PathBuf::from(path);
    }
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/llama-server/llama-server");
    assert!(
        path.exists(),
        "{} is missing: run scripts/build-llama-server.sh (or set WELLSPRING_LLAMA_SERVER)",
        path.display()
    );
    path
}
