//! Checks on the source tree itself, in rust-analyzer's habit: every Rust file says what it is
//! for in a `//!` opening, no test passes by panicking (the attribute that expects a panic
//! passes on any panic, the wrong one included), and docs/configuration.md lists every
//! configuration key with its default.

use std::path::{Path, PathBuf};

use wellspring::config::Config;

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("server/ has a parent")
        .to_path_buf()
}

/// The project's own Rust files: the server, its tests, the integration tests and the fuzz crate.
fn rust_files() -> Vec<PathBuf> {
    let root = repository_root();
    let mut pending: Vec<PathBuf> = ["server/src", "tests", "fuzz"]
        .iter()
        .map(|dir| root.join(dir))
        .collect();
    let mut files = Vec::new();
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("a readable directory").path();
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            if path.is_dir() {
                // Build outputs and fuzzing corpora are not sources.
                if !matches!(name.as_ref(), "target" | "corpus" | "artifacts") {
                    pending.push(path);
                }
            } else if name.ends_with(".rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    assert!(files.len() > 50, "found only {} Rust files", files.len());
    files
}

#[test]
fn every_rust_file_opens_with_what_it_is_for() {
    let missing: Vec<String> = rust_files()
        .into_iter()
        .filter(|path| {
            let text = std::fs::read_to_string(path).expect("a readable source file");
            !text.trim_start().starts_with("//!")
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "these files do not open with a `//!` comment: {missing:#?}"
    );
}

#[test]
fn no_test_passes_by_panicking() {
    let attribute = ["#[should", "_panic"].concat();
    let offenders: Vec<String> = rust_files()
        .into_iter()
        .filter(|path| {
            std::fs::read_to_string(path)
                .expect("a readable source file")
                .contains(&attribute)
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(
        offenders.is_empty(),
        "assert on the error instead of {attribute}]: {offenders:#?}"
    );
}

/// A default as docs/configuration.md writes it: the TOML literal.
fn toml_literal(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(text) => format!("{text:?}"),
        serde_json::Value::Array(items) => {
            let items: Vec<String> = items.iter().map(toml_literal).collect();
            format!("[{}]", items.join(", "))
        }
        other => other.to_string(),
    }
}

/// Keys whose default the table describes in words, and why.
const DESCRIBED_DEFAULTS: [(&str, &str); 1] = [(
    "model.path",
    "the default is a download the README introduces",
)];

#[test]
fn the_configuration_reference_lists_every_key_with_its_default() {
    let doc = std::fs::read_to_string(repository_root().join("docs/configuration.md"))
        .expect("docs/configuration.md");
    // Through the text, so that `f32` defaults read as written (0.95, not 0.949999988).
    let defaults: serde_json::Value =
        serde_json::from_str(&serde_json::to_string(&Config::default()).unwrap()).unwrap();
    let mut problems = Vec::new();
    for (section, keys) in defaults.as_object().expect("Config is a table of sections") {
        let heading = format!("## `[{section}]`");
        let Some(start) = doc.find(&heading) else {
            problems.push(format!("no `{heading}` section"));
            continue;
        };
        let body = &doc[start + heading.len()..];
        let body = &body[..body.find("\n## ").unwrap_or(body.len())];
        for (key, default) in keys.as_object().expect("each section is a table") {
            let name = format!("{section}.{key}");
            let row_start = format!("| `{key}` | ");
            let Some(row) = body.lines().find(|line| line.starts_with(&row_start)) else {
                problems.push(format!("{name} has no row in `{heading}`"));
                continue;
            };
            let cell = row[row_start.len()..].split(" | ").next().unwrap_or("");
            // TOML has no null: an unset default reads "none".
            let expected = if default.is_null() {
                "none".to_owned()
            } else {
                format!("`{}`", toml_literal(default))
            };
            if cell != expected && !DESCRIBED_DEFAULTS.iter().any(|(key, _)| *key == name) {
                problems.push(format!(
                    "{name}: the table says {cell}, the code {expected}"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "docs/configuration.md: {problems:#?}");
}
