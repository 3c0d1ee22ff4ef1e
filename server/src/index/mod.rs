//! Workspace symbol index: the definitions of every source file in the workspace, looked up by
//! name in O(1), so prompts can show the signature of a function defined in a file nobody opened.
//!
//! This module owns the index and the one walk over the workspace that fills it (`scan`, which
//! respects `.gitignore`). Keeping it current is the caller's job: the LSP layer calls
//! [`WorkspaceIndex::update_file`] / [`WorkspaceIndex::update_tree`] on save or change and
//! [`WorkspaceIndex::remove`] on delete. Summaries come from `context::outline`; what goes into a
//! prompt is decided by `context/`.

mod scan;

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use dashmap::DashMap;
use ropey::Rope;
use tree_sitter::{Parser, Tree};

use crate::context::outline::{self, Definition};
use crate::syntax::{self, Language};

pub use scan::{ScanConfig, ScanStats};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot walk workspace {root}: {message}")]
    Walk { root: PathBuf, message: String },
}

/// One file's entry.
#[derive(Debug)]
pub struct FileSymbols {
    pub path: Arc<str>,
    pub language: Language,
    pub definitions: Vec<Definition>,
}

/// A definition found by name, with the file it lives in.
#[derive(Debug, Clone)]
pub struct IndexedDefinition {
    pub path: Arc<str>,
    pub language: Language,
    pub definition: Definition,
}

/// Definitions per file and an inverted map from name to the files that define it.
///
/// Shared as `Arc<WorkspaceIndex>`: readers and the one writer (the LSP layer, or the background
/// scan) use it concurrently. Lookups return results sorted by path, so a prompt built from the
/// same index contents is always the same.
pub struct WorkspaceIndex {
    root: Option<PathBuf>,
    files: DashMap<Arc<str>, Arc<FileSymbols>>,
    by_name: DashMap<String, Vec<Arc<str>>>,
}

thread_local! {
    static PARSERS: RefCell<HashMap<Language, Parser>> = RefCell::new(HashMap::new());
}

fn parse_text(language: Language, text: &Rope) -> Option<Tree> {
    PARSERS.with(|parsers| {
        let mut parsers = parsers.borrow_mut();
        let parser = parsers.entry(language).or_insert_with(|| language.parser());
        syntax::parse_rope(parser, text, None, None)
    })
}

impl WorkspaceIndex {
    /// An empty index; paths are stored relative to `root` when they are under it.
    pub fn new(root: Option<PathBuf>) -> WorkspaceIndex {
        WorkspaceIndex {
            root,
            files: DashMap::new(),
            by_name: DashMap::new(),
        }
    }

    pub fn root(&self) -> Option<&Path> {
        self.root.as_deref()
    }

    /// The key a path is stored under: relative to the root with `/` separators when it is
    /// inside the root, else the path as given.
    pub fn relative_path(&self, path: &Path) -> String {
        let relative = self
            .root
            .as_deref()
            .and_then(|root| path.strip_prefix(root).ok())
            .unwrap_or(path);
        relative
            .components()
            .map(|component| component.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/")
    }

    /// Parses `text` and replaces the file's definitions. Files in languages without a grammar
    /// are removed from the index.
    pub fn update_file(&self, path: &Path, text: &str) {
        let Some(language) = Language::from_path(&path.to_string_lossy()) else {
            self.remove(path);
            return;
        };
        let rope = Rope::from_str(text);
        match parse_text(language, &rope) {
            Some(tree) => self.update_tree(path, language, &rope, &tree),
            None => self.remove(path),
        }
    }

    /// Replaces the file's definitions from a tree the caller already has (an open document).
    pub fn update_tree(&self, path: &Path, language: Language, rope: &Rope, tree: &Tree) {
        let key: Arc<str> = self.relative_path(path).into();
        let definitions = outline::definitions(language, rope, tree);
        self.insert(FileSymbols {
            path: key,
            language,
            definitions,
        });
    }

    fn insert(&self, symbols: FileSymbols) {
        let key = Arc::clone(&symbols.path);
        self.remove_key(&key);
        let mut names: Vec<&str> = symbols
            .definitions
            .iter()
            .map(|it| it.name.as_str())
            .collect();
        names.sort_unstable();
        names.dedup();
        for name in names {
            let mut paths = self.by_name.entry(name.to_owned()).or_default();
            if let Err(position) = paths.binary_search(&key) {
                paths.insert(position, Arc::clone(&key));
            }
        }
        self.files.insert(key, Arc::new(symbols));
    }

    pub fn remove(&self, path: &Path) {
        let key = self.relative_path(path);
        self.remove_key(&key);
    }

    fn remove_key(&self, key: &str) {
        let Some((_, old)) = self.files.remove(key) else {
            return;
        };
        for definition in &old.definitions {
            let emptied = match self.by_name.get_mut(definition.name.as_str()) {
                Some(mut paths) => {
                    paths.retain(|path| &**path != key);
                    paths.is_empty()
                }
                None => false,
            };
            if emptied {
                self.by_name
                    .remove_if(definition.name.as_str(), |_, paths| paths.is_empty());
            }
        }
    }

    pub fn len_files(&self) -> usize {
        self.files.len()
    }

    pub fn len_names(&self) -> usize {
        self.by_name.len()
    }

    /// The files defining `name` (sorted by path).
    pub fn files_defining(&self, name: &str) -> Vec<Arc<str>> {
        self.by_name
            .get(name)
            .map(|paths| paths.clone())
            .unwrap_or_default()
    }

    /// Every definition of `name`, sorted by path then position.
    pub fn definitions_named(&self, name: &str) -> Vec<IndexedDefinition> {
        let mut found = Vec::new();
        for path in self.files_defining(name) {
            let Some(file) = self.file(&path) else {
                continue;
            };
            for definition in file.definitions.iter().filter(|it| it.name == name) {
                found.push(IndexedDefinition {
                    path: Arc::clone(&file.path),
                    language: file.language,
                    definition: definition.clone(),
                });
            }
        }
        found
    }

    /// Definitions of `name` in the files `keep(path, crowded)` accepts, from at most `max_files`
    /// files; `crowded` says more than `max_files` files define the name, so the caller can ask
    /// for a reason to read a file and a common name costs a filter over paths rather than
    /// copies of thousands of definitions.
    pub fn definitions_in(
        &self,
        name: &str,
        keep: impl Fn(&str, bool) -> bool,
        max_files: usize,
    ) -> Vec<IndexedDefinition> {
        let paths = self.files_defining(name);
        let crowded = paths.len() > max_files;
        let mut found = Vec::new();
        let mut n_files = 0;
        for path in paths {
            if !keep(&path, crowded) {
                continue;
            }
            n_files += 1;
            if n_files > max_files {
                break;
            }
            let Some(file) = self.file(&path) else {
                continue;
            };
            for definition in file.definitions.iter().filter(|it| it.name == name) {
                found.push(IndexedDefinition {
                    path: Arc::clone(&file.path),
                    language: file.language,
                    definition: definition.clone(),
                });
            }
        }
        found
    }

    /// One file's entry, by its relative path.
    pub fn file(&self, relative_path: &str) -> Option<Arc<FileSymbols>> {
        self.files
            .get(relative_path)
            .map(|entry| Arc::clone(entry.value()))
    }
}

impl std::fmt::Debug for WorkspaceIndex {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("WorkspaceIndex")
            .field("root", &self.root)
            .field("n_files", &self.files.len())
            .field("n_names", &self.by_name.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_replaces_and_remove_forgets() {
        let index = WorkspaceIndex::new(Some(PathBuf::from("/ws")));
        index.update_file(
            Path::new("/ws/src/a.rs"),
            "pub fn alpha() {}\npub struct Beta;\n",
        );
        index.update_file(Path::new("/ws/src/b.rs"), "fn alpha(x: u8) {}\n");
        let paths: Vec<String> = index
            .definitions_named("alpha")
            .iter()
            .map(|it| it.path.to_string())
            .collect();
        assert_eq!(paths, ["src/a.rs", "src/b.rs"]);

        index.update_file(Path::new("/ws/src/a.rs"), "pub fn gamma() {}\n");
        assert_eq!(index.files_defining("alpha").len(), 1);
        assert!(index.files_defining("Beta").is_empty());
        assert_eq!(index.files_defining("gamma").len(), 1);

        index.remove(Path::new("/ws/src/b.rs"));
        assert!(index.files_defining("alpha").is_empty());
        assert_eq!(index.len_files(), 1);
        assert_eq!(index.len_names(), 1);
    }

    #[test]
    fn files_without_a_grammar_are_not_indexed() {
        let index = WorkspaceIndex::new(None);
        index.update_file(Path::new("notes.txt"), "fn alpha() {}\n");
        assert_eq!(index.len_files(), 0);
    }
}
