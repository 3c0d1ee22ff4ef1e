//! The one walk over the workspace that fills the index: every file with a known grammar, in
//! parallel, skipping what `.gitignore` (and `.ignore`, and hidden directories) exclude.
//!
//! Meant for a background task at startup; the index is usable (with fewer answers) while it runs.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use ignore::{WalkBuilder, WalkState};

use super::{Error, WorkspaceIndex};
use crate::syntax::Language;

/// What the walk reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanConfig {
    /// Stop after this many files were indexed.
    pub max_files: usize,
    /// Skip files larger than this (generated code, bundles, data).
    pub max_file_bytes: u64,
    /// Worker threads; 0 picks the machine's parallelism.
    pub n_threads: usize,
}

impl Default for ScanConfig {
    fn default() -> Self {
        ScanConfig {
            max_files: 20_000,
            max_file_bytes: 1024 * 1024,
            n_threads: 0,
        }
    }
}

/// What the walk did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanStats {
    pub n_files_indexed: usize,
    pub n_files_skipped: usize,
}

impl WorkspaceIndex {
    /// Walks the index's root and indexes every source file found. Unreadable, binary and
    /// oversized files are skipped and counted; only a root that cannot be walked is an error.
    pub fn scan(&self, config: &ScanConfig) -> Result<ScanStats, Error> {
        let Some(root) = self.root().map(Path::to_path_buf) else {
            return Ok(ScanStats::default());
        };
        if !root.is_dir() {
            return Err(Error::Walk {
                root,
                message: "not a directory".to_owned(),
            });
        }
        let n_indexed = Arc::new(AtomicUsize::new(0));
        let n_skipped = Arc::new(AtomicUsize::new(0));
        let walker = WalkBuilder::new(&root)
            .threads(config.n_threads)
            .require_git(false)
            .build_parallel();
        walker.run(|| {
            let n_indexed = Arc::clone(&n_indexed);
            let n_skipped = Arc::clone(&n_skipped);
            Box::new(move |entry| {
                let Ok(entry) = entry else {
                    n_skipped.fetch_add(1, Ordering::Relaxed);
                    return WalkState::Continue;
                };
                if !entry.file_type().is_some_and(|it| it.is_file()) {
                    return WalkState::Continue;
                }
                let path = entry.path();
                if Language::from_path(&path.to_string_lossy()).is_none() {
                    return WalkState::Continue;
                }
                if n_indexed.load(Ordering::Relaxed) >= config.max_files {
                    return WalkState::Quit;
                }
                let too_large = entry
                    .metadata()
                    .map(|metadata| metadata.len() > config.max_file_bytes)
                    .unwrap_or(true);
                let text = if too_large {
                    None
                } else {
                    std::fs::read(path)
                        .ok()
                        .filter(|bytes| !bytes.iter().take(8192).any(|byte| *byte == 0))
                        .and_then(|bytes| String::from_utf8(bytes).ok())
                };
                match text {
                    Some(text) => {
                        self.update_file(path, &text);
                        n_indexed.fetch_add(1, Ordering::Relaxed);
                    }
                    None => {
                        n_skipped.fetch_add(1, Ordering::Relaxed);
                    }
                }
                WalkState::Continue
            })
        });
        Ok(ScanStats {
            n_files_indexed: n_indexed.load(Ordering::Relaxed),
            n_files_skipped: n_skipped.load(Ordering::Relaxed),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_respects_gitignore_and_skips_unknown_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("src")).expect("mkdir");
        std::fs::create_dir_all(root.join("build")).expect("mkdir");
        std::fs::write(root.join(".gitignore"), "build/\n").expect("write");
        std::fs::write(root.join("src/lib.py"), "def kept():\n    pass\n").expect("write");
        std::fs::write(root.join("build/gen.py"), "def ignored():\n    pass\n").expect("write");
        std::fs::write(root.join("notes.md"), "# def nothing\n").expect("write");
        std::fs::write(root.join("src/blob.py"), b"def x():\0\n").expect("write");
        let index = WorkspaceIndex::new(Some(root.to_path_buf()));
        let stats = index.scan(&ScanConfig::default()).expect("scan");
        assert_eq!(
            stats,
            ScanStats {
                n_files_indexed: 1,
                n_files_skipped: 1
            }
        );
        assert_eq!(index.files_defining("kept").len(), 1);
        assert!(index.files_defining("ignored").is_empty());
        assert_eq!(&*index.files_defining("kept")[0], "src/lib.py");
    }
}
