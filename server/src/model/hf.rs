//! `hf:OWNER/REPO/FILE.gguf[@REVISION]`: GGUF files on Hugging Face, downloaded once into the
//! model cache and found there afterwards without touching the network.

use std::path::{Path, PathBuf};

use super::http::{self, Download, StatusHints};
use super::{cache, Error, ModelSource, ResolveOptions, ResolvedModel};

pub(crate) const DEFAULT_ENDPOINT: &str = "https://huggingface.co";
const DEFAULT_REVISION: &str = "main";

/// A parsed `hf:` spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HfSpec {
    pub owner: String,
    pub repo: String,
    /// Path of the file inside the repository; may contain `/`.
    pub file: String,
    /// Branch, tag or commit; `main` when the spec names none.
    pub revision: String,
}

impl HfSpec {
    /// Parses what follows `hf:`.
    pub fn parse(rest: &str) -> Result<HfSpec, String> {
        let (location, revision) = match rest.split_once('@') {
            Some((location, revision)) => (location, revision),
            None => (rest, DEFAULT_REVISION),
        };
        let mut parts = location.splitn(3, '/');
        let (Some(owner), Some(repo), Some(file)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err("expected hf:OWNER/REPO/FILE.gguf".into());
        };
        for segment in [owner, repo].into_iter().chain(file.split('/')) {
            cache::check_path_segment(segment)?;
        }
        if revision.is_empty()
            || revision
                .split('/')
                .any(|part| cache::check_path_segment(part).is_err())
        {
            return Err(format!("invalid revision `{revision}`"));
        }
        if !file.to_ascii_lowercase().ends_with(".gguf") {
            return Err("the file must be a .gguf file (hf:OWNER/REPO/FILE.gguf)".into());
        }
        Ok(HfSpec {
            owner: owner.to_owned(),
            repo: repo.to_owned(),
            file: file.to_owned(),
            revision: revision.to_owned(),
        })
    }

    /// The spec written back, `@main` left out.
    pub fn to_spec_string(&self) -> String {
        let mut spec = format!("hf:{}/{}/{}", self.owner, self.repo, self.file);
        if self.revision != DEFAULT_REVISION {
            spec.push('@');
            spec.push_str(&self.revision);
        }
        spec
    }

    /// `{endpoint}/{owner}/{repo}/resolve/{revision}/{file}`, each part percent-encoded.
    pub fn url(&self, endpoint: &str) -> String {
        let file = self
            .file
            .split('/')
            .map(percent_encode)
            .collect::<Vec<_>>()
            .join("/");
        format!(
            "{}/{}/{}/resolve/{}/{}",
            endpoint.trim_end_matches('/'),
            percent_encode(&self.owner),
            percent_encode(&self.repo),
            percent_encode(&self.revision),
            file
        )
    }

    /// Where the file lives in the cache: `hf/OWNER/REPO/REVISION/FILE`.
    pub(crate) fn cache_path(&self, cache_dir: &Path) -> PathBuf {
        let mut path = cache_dir.join(cache::HF_DIR);
        path.push(&self.owner);
        path.push(&self.repo);
        path.push(cache::encode_revision(&self.revision));
        for segment in self.file.split('/') {
            path.push(segment);
        }
        path
    }
}

/// Encodes everything except RFC 3986 unreserved characters.
fn percent_encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

pub(crate) fn resolve(spec: &HfSpec, options: &ResolveOptions) -> Result<ResolvedModel, Error> {
    let cache_dir = options.cache_dir()?;
    let path = spec.cache_path(&cache_dir);
    let source = |downloaded| ModelSource::HuggingFace {
        spec: spec.clone(),
        downloaded,
    };
    if path.is_file() {
        return ResolvedModel::inspect(path, source(false));
    }
    if !options.allow_download {
        return Err(Error::NotCached {
            spec: spec.to_spec_string(),
        });
    }
    // One download of a file at a time, in this process and across processes; someone may have
    // finished ours while we waited.
    let _lock = cache::download_lock(&cache_dir, &path)?;
    if path.is_file() {
        return ResolvedModel::inspect(path, source(false));
    }
    let endpoint = options.hf_endpoint();
    let url = spec.url(&endpoint);
    let token = options.hf_token();
    let hints = || StatusHints {
        not_found: "check the repo and file name",
        forbidden: "the repo may be gated or private: set HF_TOKEN to a token that can read it",
    };
    let agent = http::agent();
    // Hugging Face names the sha256 and size of LFS files before redirecting to its CDN; a
    // missing file or a gated repo fails here, before anything is written.
    let linked = http::head_linked(&agent, &url, token.as_deref(), &hints())?;
    let part_path = cache::part_path(&path);
    cache::create_parent(&part_path)?;
    let have_bytes = std::fs::metadata(&part_path).map_or(0, |metadata| metadata.len());
    let complete = linked.file_bytes == Some(have_bytes);
    if linked
        .file_bytes
        .is_some_and(|file_bytes| have_bytes > file_bytes)
    {
        remove_part(&part_path)?;
    }
    if !complete {
        let label = spec.file.rsplit('/').next().unwrap_or(&spec.file);
        let download = Download {
            url: &url,
            bearer_token: token.as_deref(),
            hints: hints(),
            label,
            progress: options.progress.clone(),
            progress_bar: options.progress_bar,
        };
        tracing::info!(%url, path = %path.display(), "downloading model");
        http::download_to_part(&agent, &download, &part_path)?;
    }
    verify_linked(&linked, &part_path, &url)?;
    cache::finish_part(&part_path, &path, &url)?;
    ResolvedModel::inspect(path, source(true))
}

fn remove_part(part_path: &Path) -> Result<(), Error> {
    std::fs::remove_file(part_path).map_err(|source| Error::Cache {
        path: part_path.to_path_buf(),
        source,
    })
}

/// Checks a finished download against the size and sha256 the server announced; a mismatch
/// deletes it (resuming a corrupt file would only keep it corrupt).
fn verify_linked(linked: &http::LinkedFile, part_path: &Path, url: &str) -> Result<(), Error> {
    let file_bytes = std::fs::metadata(part_path)
        .map_err(|source| Error::Read {
            path: part_path.to_path_buf(),
            source,
        })?
        .len();
    let mismatch = match (linked.file_bytes, &linked.sha256) {
        (Some(expected_bytes), _) if expected_bytes != file_bytes => Some(Error::SizeMismatch {
            what: url.to_owned(),
            expected_bytes,
            actual_bytes: file_bytes,
        }),
        (_, Some(expected)) => {
            let actual = cache::sha256_file(part_path)?;
            (actual != *expected).then(|| Error::Checksum {
                what: url.to_owned(),
                expected: expected.clone(),
                actual,
            })
        }
        _ => None,
    };
    match mismatch {
        Some(error) => {
            remove_part(part_path)?;
            Err(error)
        }
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Result<(&str, &str, &str, &str), &str>) {
        let parsed = HfSpec::parse(input);
        match expected {
            Ok((owner, repo, file, revision)) => {
                let spec = parsed.unwrap_or_else(|error| panic!("{input}: {error}"));
                assert_eq!(
                    (
                        spec.owner.as_str(),
                        spec.repo.as_str(),
                        spec.file.as_str(),
                        spec.revision.as_str()
                    ),
                    (owner, repo, file, revision)
                );
                assert_eq!(
                    spec.to_spec_string(),
                    format!("hf:{input}").replace("@main", "")
                );
            }
            Err(message) => assert_eq!(parsed, Err(message.to_owned()), "{input}"),
        }
    }

    #[test]
    fn parse_specs() {
        check("a/b/c.gguf", Ok(("a", "b", "c.gguf", "main")));
        check("a/b/c.GGUF@v1.0", Ok(("a", "b", "c.GGUF", "v1.0")));
        check(
            "a/b/sub/dir/c.gguf@refs/pr/1",
            Ok(("a", "b", "sub/dir/c.gguf", "refs/pr/1")),
        );
        check("a/b", Err("expected hf:OWNER/REPO/FILE.gguf"));
        check(
            "a/b/c.bin",
            Err("the file must be a .gguf file (hf:OWNER/REPO/FILE.gguf)"),
        );
        check("a/../c.gguf", Err("`..` is not allowed in a path"));
        check("a//c.gguf", Err("empty path segment"));
        check("a/b/c.gguf@", Err("invalid revision ``"));
    }

    #[test]
    fn urls() {
        let spec =
            HfSpec::parse("Qwen/Qwen2.5-Coder-1.5B-GGUF/x y.gguf@refs/pr/1").expect("valid spec");
        assert_eq!(
            spec.url("https://huggingface.co/"),
            "https://huggingface.co/Qwen/Qwen2.5-Coder-1.5B-GGUF/resolve/refs%2Fpr%2F1/x%20y.gguf"
        );
    }
}
