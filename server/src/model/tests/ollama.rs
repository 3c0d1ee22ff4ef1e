//! `ollama:` specs against a fake store laid out like Ollama's.

use std::path::Path;

use super::{options, GgufBuilder};
use crate::model::{resolve, ModelSource, ResolveOptions};

const MODEL_DIGEST: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const TEMPLATE_DIGEST: &str = "2222222222222222222222222222222222222222222222222222222222222222";

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().expect("has parent")).expect("mkdir");
    std::fs::write(path, bytes).expect("write");
}

/// A store with `library/coder:1.5b` and `me/coder:latest`, both pointing at one GGUF blob.
fn store() -> (tempfile::TempDir, ResolveOptions) {
    let store = tempfile::tempdir().expect("temp dir");
    let manifest = format!(
        r#"{{"schemaVersion":2,"layers":[
            {{"mediaType":"application/vnd.ollama.image.template","digest":"sha256:{TEMPLATE_DIGEST}","size":10}},
            {{"mediaType":"application/vnd.ollama.image.model","digest":"sha256:{MODEL_DIGEST}","size":100}}
        ]}}"#
    );
    let manifests = store.path().join("manifests/registry.ollama.ai");
    write(&manifests.join("library/coder/1.5b"), manifest.as_bytes());
    write(&manifests.join("me/coder/latest"), manifest.as_bytes());
    write(
        &manifests.join("library/broken/latest"),
        br#"{"layers":[{"mediaType":"application/vnd.ollama.image.license","digest":"sha256:00"}]}"#,
    );
    write(
        &manifests.join("library/gone/latest"),
        format!(r#"{{"layers":[{{"mediaType":"application/vnd.ollama.image.model","digest":"sha256:{TEMPLATE_DIGEST}"}}]}}"#)
            .as_bytes(),
    );
    write(
        &store.path().join(format!("blobs/sha256-{MODEL_DIGEST}")),
        &GgufBuilder::model(100).build(),
    );
    write(
        &store
            .path()
            .join(format!("blobs/sha256-{TEMPLATE_DIGEST}.partial")),
        b"not the blob",
    );
    let options = ResolveOptions {
        ollama_models: Some(store.path().to_path_buf()),
        ..options(store.path())
    };
    (store, options)
}

fn check_error(spec: &str, expected: &str) {
    let (store, options) = store();
    let message = resolve(spec, &options)
        .expect_err("should fail")
        .to_string()
        .replace(&store.path().display().to_string(), "$STORE");
    assert_eq!(message, expected);
}

#[test]
fn resolves_to_the_model_blob() {
    let (store, options) = store();
    let blob = store.path().join(format!("blobs/sha256-{MODEL_DIGEST}"));
    for spec in [
        "ollama:coder:1.5b",
        "ollama:me/coder",
        "ollama:me/coder:latest",
    ] {
        let resolved = resolve(spec, &options).unwrap_or_else(|error| panic!("{spec}: {error}"));
        assert_eq!(resolved.path, blob, "{spec}");
        assert!(resolved.summary.has_fim());
        assert!(matches!(resolved.source, ModelSource::Ollama { .. }));
    }
}

#[test]
fn clear_errors() {
    check_error(
        "ollama:coder:7b",
        "ollama model coder:7b is not pulled (no manifest at $STORE/manifests/registry.ollama.ai/library/coder/7b): run `ollama pull coder:7b`",
    );
    check_error(
        "ollama:other",
        "ollama model other:latest is not pulled (no manifest at $STORE/manifests/registry.ollama.ai/library/other/latest): run `ollama pull other:latest`",
    );
    check_error(
        "ollama:broken",
        "cannot use ollama manifest $STORE/manifests/registry.ollama.ai/library/broken/latest: no layer of type application/vnd.ollama.image.model",
    );
    check_error(
        "ollama:gone",
        &format!("ollama model gone:latest is incomplete (blob $STORE/blobs/sha256-{TEMPLATE_DIGEST} is missing): run `ollama pull gone:latest`"),
    );
    check_error(
        "ollama:a/b/c/d",
        "invalid model spec `ollama:a/b/c/d`: expected ollama:NAME[:TAG] or ollama:NAMESPACE/NAME[:TAG]",
    );
}
