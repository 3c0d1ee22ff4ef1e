//! Which source a spec string selects, and `~` expansion.

use std::path::PathBuf;

use crate::model::{expand_tilde, Error, ModelSpec, DEFAULT_MODEL};

/// Parses `spec` and describes the result in one line.
fn check(spec: &str, expected: &str) {
    let home = std::env::var("HOME").unwrap_or_default();
    let described = match ModelSpec::parse(spec) {
        Ok(ModelSpec::Local(path)) => format!("local {}", path.display()),
        Ok(ModelSpec::HuggingFace(hf)) => format!(
            "hf owner={} repo={} file={} revision={}",
            hf.owner, hf.repo, hf.file, hf.revision
        ),
        Ok(ModelSpec::Ollama(ollama)) => format!("ollama {}", ollama.pull_name()),
        Ok(ModelSpec::Builtin(model)) => format!("builtin {}", model.file_name),
        Err(error) => format!("error: {error}"),
    };
    let described = if home.is_empty() {
        described
    } else {
        described.replace(&home, "$HOME")
    };
    assert_eq!(described, expected, "{spec}");
}

#[test]
fn spec_kinds() {
    check(
        DEFAULT_MODEL,
        "hf owner=ggml-org repo=Qwen2.5-Coder-1.5B-Q8_0-GGUF file=qwen2.5-coder-1.5b-q8_0.gguf revision=main",
    );
    check("ollama:qwen2.5-coder:1.5b", "ollama qwen2.5-coder:1.5b");
    check(
        "qwen2.5-coder-0.5b",
        "builtin qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    );
    check(
        " qwen2.5-coder-1.5b ",
        "builtin qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    );
    check("./qwen2.5-coder-0.5b", "local ./qwen2.5-coder-0.5b");
    check("models/x.gguf", "local models/x.gguf");
    check("/abs/x.gguf", "local /abs/x.gguf");
    check(
        "",
        "error: no model configured: set `model.path` or pass --model",
    );
    check(
        "hf:just-a-repo",
        "error: invalid model spec `hf:just-a-repo`: expected hf:OWNER/REPO/FILE.gguf",
    );
}

#[test]
fn tilde_expansion() {
    let Some(home) = std::env::var_os("HOME").filter(|home| !home.is_empty()) else {
        // Without HOME there is nothing to expand to; the path must come back unchanged.
        assert_eq!(expand_tilde("~/m.gguf"), PathBuf::from("~/m.gguf"));
        return;
    };
    let home = PathBuf::from(home);
    assert_eq!(expand_tilde("~"), home);
    assert_eq!(expand_tilde("~/models/m.gguf"), home.join("models/m.gguf"));
    assert_eq!(expand_tilde("~user/m.gguf"), PathBuf::from("~user/m.gguf"));
    assert_eq!(expand_tilde("a/~/m.gguf"), PathBuf::from("a/~/m.gguf"));
    assert!(matches!(
        ModelSpec::parse("~/m.gguf"),
        Ok(ModelSpec::Local(path)) if path == home.join("m.gguf")
    ));
    assert!(matches!(ModelSpec::parse("   "), Err(Error::NoModel)));
}
