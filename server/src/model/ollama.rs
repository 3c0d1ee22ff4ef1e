//! `ollama:NAME[:TAG]`: a model Ollama has already pulled, found in its store
//! (`$OLLAMA_MODELS`, else `~/.ollama/models`). We only read the store; pulling is Ollama's job.
//!
//! Layout: `manifests/HOST/NAMESPACE/NAME/TAG` is a JSON manifest whose layer with media type
//! `application/vnd.ollama.image.model` names the GGUF blob, stored as `blobs/sha256-HEX`.

use std::path::{Path, PathBuf};

use super::{cache, Error, ModelSource, ResolveOptions, ResolvedModel};

const DEFAULT_HOST: &str = "registry.ollama.ai";
const DEFAULT_NAMESPACE: &str = "library";
const DEFAULT_TAG: &str = "latest";
const MODEL_MEDIA_TYPE: &str = "application/vnd.ollama.image.model";

/// A parsed `ollama:` spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OllamaSpec {
    pub host: String,
    pub namespace: String,
    pub name: String,
    pub tag: String,
}

impl OllamaSpec {
    /// Parses what follows `ollama:`: `NAME`, `NAMESPACE/NAME` or `HOST/NAMESPACE/NAME`, each
    /// with an optional `:TAG`.
    pub fn parse(rest: &str) -> Result<OllamaSpec, String> {
        // The tag follows the last `:` after the last `/` (a host may carry a port).
        let last_slash = rest.rfind('/').map_or(0, |idx| idx + 1);
        let (location, tag) = match rest[last_slash..].rfind(':') {
            Some(colon_idx) => (
                &rest[..last_slash + colon_idx],
                &rest[last_slash + colon_idx + 1..],
            ),
            None => (rest, DEFAULT_TAG),
        };
        let parts: Vec<&str> = location.split('/').collect();
        let (host, namespace, name) = match parts.as_slice() {
            [name] => (DEFAULT_HOST, DEFAULT_NAMESPACE, *name),
            [namespace, name] => (DEFAULT_HOST, *namespace, *name),
            [host, namespace, name] => (*host, *namespace, *name),
            _ => return Err("expected ollama:NAME[:TAG] or ollama:NAMESPACE/NAME[:TAG]".into()),
        };
        for segment in [host, namespace, name, tag] {
            cache::check_path_segment(segment)?;
        }
        Ok(OllamaSpec {
            host: host.to_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            tag: tag.to_owned(),
        })
    }

    /// The name as `ollama pull` takes it.
    pub fn pull_name(&self) -> String {
        let mut name = String::new();
        if self.host != DEFAULT_HOST {
            name.push_str(&self.host);
            name.push('/');
        }
        if self.host != DEFAULT_HOST || self.namespace != DEFAULT_NAMESPACE {
            name.push_str(&self.namespace);
            name.push('/');
        }
        name.push_str(&self.name);
        name.push(':');
        name.push_str(&self.tag);
        name
    }

    fn manifest_path(&self, store: &Path) -> PathBuf {
        store
            .join("manifests")
            .join(&self.host)
            .join(&self.namespace)
            .join(&self.name)
            .join(&self.tag)
    }
}

/// `$OLLAMA_MODELS`, else `~/.ollama/models`.
pub(crate) fn default_store() -> Option<PathBuf> {
    std::env::var_os("OLLAMA_MODELS")
        .filter(|value| !value.is_empty())
        .map(PathBuf::from)
        .or_else(|| super::home_dir().map(|home| home.join(".ollama").join("models")))
}

pub(crate) fn resolve(spec: &OllamaSpec, options: &ResolveOptions) -> Result<ResolvedModel, Error> {
    let store = options
        .ollama_models
        .clone()
        .or_else(default_store)
        .ok_or(Error::NoHome)?;
    let manifest_path = spec.manifest_path(&store);
    let manifest_error = |detail: String| Error::OllamaManifest {
        path: manifest_path.clone(),
        detail,
    };
    let text = match std::fs::read_to_string(&manifest_path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::OllamaNotPulled {
                name: spec.pull_name(),
                manifest: manifest_path,
            })
        }
        Err(source) => {
            return Err(Error::Read {
                path: manifest_path,
                source,
            })
        }
    };
    let manifest: serde_json::Value = serde_json::from_str(&text)
        .map_err(|error| manifest_error(format!("invalid JSON: {error}")))?;
    let digest = manifest
        .get("layers")
        .and_then(serde_json::Value::as_array)
        .and_then(|layers| {
            layers.iter().find(|layer| {
                layer.get("mediaType").and_then(serde_json::Value::as_str) == Some(MODEL_MEDIA_TYPE)
            })
        })
        .and_then(|layer| layer.get("digest"))
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| manifest_error(format!("no layer of type {MODEL_MEDIA_TYPE}")))?;
    let hex = digest
        .strip_prefix("sha256:")
        .filter(|hex| hex.len() == 64 && hex.bytes().all(|byte| byte.is_ascii_hexdigit()))
        .ok_or_else(|| manifest_error(format!("invalid layer digest `{digest}`")))?;
    let blob = store.join("blobs").join(format!("sha256-{hex}"));
    if !blob.is_file() {
        return Err(Error::OllamaBlobMissing {
            name: spec.pull_name(),
            blob,
        });
    }
    ResolvedModel::inspect(
        blob,
        ModelSource::Ollama {
            spec: spec.clone(),
            manifest: manifest_path,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Result<(&str, &str, &str, &str, &str), &str>) {
        match (OllamaSpec::parse(input), expected) {
            (Ok(spec), Ok((host, namespace, name, tag, pull_name))) => {
                assert_eq!(
                    (
                        spec.host.as_str(),
                        spec.namespace.as_str(),
                        spec.name.as_str(),
                        spec.tag.as_str()
                    ),
                    (host, namespace, name, tag)
                );
                assert_eq!(spec.pull_name(), pull_name);
            }
            (Err(error), Err(message)) => assert_eq!(error, message, "{input}"),
            (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn parse_specs() {
        let registry = DEFAULT_HOST;
        check(
            "qwen2.5-coder",
            Ok((
                registry,
                "library",
                "qwen2.5-coder",
                "latest",
                "qwen2.5-coder:latest",
            )),
        );
        check(
            "qwen2.5-coder:1.5b-base",
            Ok((
                registry,
                "library",
                "qwen2.5-coder",
                "1.5b-base",
                "qwen2.5-coder:1.5b-base",
            )),
        );
        check(
            "me/coder:q4",
            Ok((registry, "me", "coder", "q4", "me/coder:q4")),
        );
        check(
            "host:5000/me/coder",
            Ok((
                "host:5000",
                "me",
                "coder",
                "latest",
                "host:5000/me/coder:latest",
            )),
        );
        check(
            "a/b/c/d",
            Err("expected ollama:NAME[:TAG] or ollama:NAMESPACE/NAME[:TAG]"),
        );
        check("../x", Err("`..` is not allowed in a path"));
        check("coder:", Err("empty path segment"));
    }
}
