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

use crate::syntax::outline::{self, Definition};
use crate::syntax::{self, Language};

pub use scan::ScanConfig;

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
    /// Shared with the lookups that return them, so a prompt never copies a summary.
    pub definitions: Vec<Arc<Definition>>,
    /// (hash of the name, index into `definitions`), sorted: a lookup by name in a file with
    /// thousands of definitions is a binary search over this one contiguous array, and only
    /// the hits are compared by name.
    by_name: Vec<(u64, u32)>,
}

/// A definition found by name, with the file it lives in.
#[derive(Debug, Clone)]
pub struct IndexedDefinition {
    pub path: Arc<str>,
    pub language: Language,
    pub definition: Arc<Definition>,
}

/// Definitions per file and an inverted map from name to the files that define it.
///
/// Shared as `Arc<WorkspaceIndex>`: readers and the one writer (the LSP layer, or the background
/// scan) use it concurrently. Lookups return results sorted by path, so a prompt built from the
/// same index contents is always the same.
pub struct WorkspaceIndex {
    root: Option<PathBuf>,
    files: DashMap<Arc<str>, Arc<FileSymbols>>,
    /// Copy-on-write lists, so a lookup takes one reference count however many files define a
    /// name, and never holds a shard lock while the caller filters.
    by_name: DashMap<String, Arc<Vec<Arc<str>>>>,
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
        let definitions = outline::definitions(language, rope, tree)
            .into_iter()
            .map(Arc::new)
            .collect();
        self.insert(FileSymbols::new(key, language, definitions));
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
                Arc::make_mut(&mut paths).insert(position, Arc::clone(&key));
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
                    if let Ok(position) = paths.binary_search_by(|path| (**path).cmp(key)) {
                        Arc::make_mut(&mut paths).remove(position);
                    }
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

    /// The files defining `name` (sorted by path), shared with the index.
    pub fn files_defining(&self, name: &str) -> Arc<Vec<Arc<str>>> {
        self.by_name
            .get(name)
            .map(|paths| Arc::clone(paths.value()))
            .unwrap_or_default()
    }

    /// Every definition of `name`, sorted by path then position.
    pub fn definitions_named(&self, name: &str) -> Vec<IndexedDefinition> {
        let mut found = Vec::new();
        for path in self.files_defining(name).iter() {
            if let Some(file) = self.file(path) {
                file.push_named(name, &mut found);
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
        for path in paths
            .iter()
            .filter(|path| keep(path, crowded))
            .take(max_files)
        {
            if let Some(file) = self.file(path) {
                file.push_named(name, &mut found);
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

/// A hash of a definition's name that only has to agree with itself within one process.
fn name_hash(name: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    name.hash(&mut hasher);
    hasher.finish()
}

impl FileSymbols {
    pub fn new(path: Arc<str>, language: Language, definitions: Vec<Arc<Definition>>) -> Self {
        let mut by_name: Vec<(u64, u32)> = definitions
            .iter()
            .enumerate()
            .map(|(definition_idx, definition)| {
                let definition_idx =
                    u32::try_from(definition_idx).expect("a file has fewer than 2^32 definitions");
                (name_hash(&definition.name), definition_idx)
            })
            .collect();
        // By index within a hash, so definitions of one name stay in document order.
        by_name.sort_unstable();
        FileSymbols {
            path,
            language,
            definitions,
            by_name,
        }
    }

    /// This file's definitions of `name`, in document order.
    pub fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Arc<Definition>> + 'a {
        let hash = name_hash(name);
        let first = self.by_name.partition_point(|(other, _)| *other < hash);
        self.by_name[first..]
            .iter()
            .take_while(move |(other, _)| *other == hash)
            .map(|(_, idx)| &self.definitions[*idx as usize])
            .filter(move |definition| definition.name == name)
    }

    /// Appends this file's definitions of `name` to `found`, sharing them.
    fn push_named(&self, name: &str, found: &mut Vec<IndexedDefinition>) {
        for definition in self.named(name) {
            found.push(IndexedDefinition {
                path: Arc::clone(&self.path),
                language: self.language,
                definition: Arc::clone(definition),
            });
        }
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
    fn lookups_by_name_keep_document_order_and_share_definitions() {
        let index = WorkspaceIndex::new(Some(PathBuf::from("/ws")));
        index.update_file(
            Path::new("/ws/a.py"),
            "def zeta():\n    pass\n\ndef alpha(x):\n    pass\n\ndef alpha(x, y):\n    pass\n",
        );
        let found = index.definitions_named("alpha");
        let lines: Vec<usize> = found.iter().map(|it| it.definition.start_line).collect();
        assert_eq!(lines, [3, 6]);
        let file = index.file("a.py").expect("indexed");
        assert!(Arc::ptr_eq(&found[0].definition, &file.definitions[1]));
        assert_eq!(file.named("zeta").count(), 1);
        assert_eq!(file.named("beta").count(), 0);
        assert_eq!(file.named("alph").count(), 0);
    }

    #[test]
    fn a_crowded_name_is_looked_up_only_in_kept_files() {
        let index = WorkspaceIndex::new(Some(PathBuf::from("/ws")));
        for name in ["a", "b", "c", "d"] {
            index.update_file(
                &Path::new("/ws").join(format!("{name}.rs")),
                "fn new() {}\n",
            );
        }
        let paths = |max_files: usize, keep: &dyn Fn(&str, bool) -> bool| -> Vec<String> {
            index
                .definitions_in("new", keep, max_files)
                .iter()
                .map(|it| it.path.to_string())
                .collect()
        };
        assert_eq!(
            paths(4, &|_, crowded| !crowded),
            ["a.rs", "b.rs", "c.rs", "d.rs"]
        );
        assert!(paths(3, &|_, crowded| !crowded).is_empty());
        assert_eq!(paths(1, &|path, _| path != "a.rs"), ["b.rs"]);
    }

    #[test]
    fn files_without_a_grammar_are_not_indexed() {
        let index = WorkspaceIndex::new(None);
        index.update_file(Path::new("notes.txt"), "fn alpha() {}\n");
        assert_eq!(index.len_files(), 0);
    }
}
