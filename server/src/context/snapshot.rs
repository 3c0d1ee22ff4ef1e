//! The prompt builder's input: an immutable view of everything a prompt may draw on, assembled
//! by the LSP layer from the document store, the workspace index and the ring of recent chunks.

use std::collections::VecDeque;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use ropey::Rope;

use crate::docs::Document;
use crate::index::WorkspaceIndex;

/// Everything one prompt is built from. Cheap to clone (`Arc`s and a small ring).
#[derive(Debug, Clone)]
pub struct ContextSnapshot {
    /// The document being completed.
    pub current: Arc<Document>,
    /// The other open documents (the current one may be included; it is skipped).
    pub open: Vec<Arc<Document>>,
    /// Definitions across the workspace; its root makes paths relative.
    pub index: Arc<WorkspaceIndex>,
    pub recent: RecentChunks,
}

impl ContextSnapshot {
    /// A snapshot with no other documents, an empty index and no history.
    pub fn single(current: Arc<Document>) -> ContextSnapshot {
        ContextSnapshot {
            current,
            open: Vec::new(),
            index: Arc::new(WorkspaceIndex::new(None)),
            recent: RecentChunks::default(),
        }
    }

    /// How `uri` is shown in prompts: relative to the workspace root when under it.
    pub fn display_path(&self, uri: &str) -> String {
        display_path(uri, self.index.root())
    }

    /// The workspace folder's name, for models with a repo-name token.
    pub fn repo_name(&self) -> Option<String> {
        self.index
            .root()
            .and_then(Path::file_name)
            .map(|name| name.to_string_lossy().into_owned())
    }
}

/// `file:///ws/src/a%20b.rs` with root `/ws` → `src/a b.rs`. Other URIs are shown as they are.
pub fn display_path(uri: &str, root: Option<&Path>) -> String {
    let Some(encoded) = uri.strip_prefix("file://") else {
        return uri.to_owned();
    };
    let path = percent_decode(encoded);
    if let Some(root) = root.and_then(Path::to_str) {
        let root = root.trim_end_matches('/');
        if let Some(relative) = path.strip_prefix(root).and_then(|it| it.strip_prefix('/')) {
            return relative.to_owned();
        }
    }
    path
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut byte_idx = 0;
    while byte_idx < bytes.len() {
        let hex = bytes
            .get(byte_idx + 1..byte_idx + 3)
            .and_then(|pair| std::str::from_utf8(pair).ok())
            .and_then(|pair| u8::from_str_radix(pair, 16).ok());
        match (bytes[byte_idx], hex) {
            (b'%', Some(value)) => {
                decoded.push(value);
                byte_idx += 3;
            }
            (byte, _) => {
                decoded.push(byte);
                byte_idx += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecentKind {
    Edit,
    View,
}

/// A region of a document the user recently edited or looked at, as it was then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecentChunk {
    pub uri: String,
    pub kind: RecentKind,
    /// Lines of the document the text was taken from (0-based, end exclusive).
    pub lines: Range<usize>,
    pub text: String,
}

/// A bounded ring of recent chunks, oldest first, with overlapping chunks of one document merged
/// into the newest. Owned by the LSP layer (which records into it) and cloned into snapshots.
#[derive(Debug, Clone)]
pub struct RecentChunks {
    chunks: VecDeque<Arc<RecentChunk>>,
    capacity: usize,
    lines_around_edit: usize,
}

impl Default for RecentChunks {
    fn default() -> Self {
        RecentChunks::new(16, 8)
    }
}

impl RecentChunks {
    /// A ring keeping `capacity` chunks; an edit records `lines_around_edit` lines above and
    /// below the edited line.
    pub fn new(capacity: usize, lines_around_edit: usize) -> RecentChunks {
        RecentChunks {
            chunks: VecDeque::with_capacity(capacity),
            capacity: capacity.max(1),
            lines_around_edit,
        }
    }

    /// Records the lines around `byte_idx` (clamped to the document) after an edit there.
    pub fn record_edit(&mut self, uri: &str, rope: &Rope, byte_idx: usize) {
        let line_idx = rope.byte_to_line(byte_idx.min(rope.len_bytes()));
        let first_line = line_idx.saturating_sub(self.lines_around_edit);
        let end_line = (line_idx + self.lines_around_edit + 1).min(rope.len_lines());
        self.record(uri, RecentKind::Edit, rope, first_line..end_line);
    }

    /// Records `lines` (0-based, end exclusive, clamped) of a document the user looked at.
    pub fn record_view(&mut self, uri: &str, rope: &Rope, lines: Range<usize>) {
        let end_line = lines.end.min(rope.len_lines());
        self.record(
            uri,
            RecentKind::View,
            rope,
            lines.start.min(end_line)..end_line,
        );
    }

    fn record(&mut self, uri: &str, kind: RecentKind, rope: &Rope, lines: Range<usize>) {
        let text = crate::text::lines(rope, lines.clone());
        if text.trim().is_empty() {
            return;
        }
        // A chunk that overlaps an older one of the same document supersedes it; an edit is
        // never replaced by a view of the same place, which says less.
        let mut kind = kind;
        self.chunks.retain(|old| {
            let overlaps =
                old.uri == uri && old.lines.start < lines.end && lines.start < old.lines.end;
            if overlaps && old.kind == RecentKind::Edit {
                kind = RecentKind::Edit;
            }
            !overlaps && old.text != text
        });
        self.chunks.push_back(Arc::new(RecentChunk {
            uri: uri.to_owned(),
            kind,
            lines,
            text,
        }));
        while self.chunks.len() > self.capacity {
            self.chunks.pop_front();
        }
    }

    /// Oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &RecentChunk> {
        self.chunks.iter().map(|chunk| &**chunk)
    }

    pub fn len(&self) -> usize {
        self.chunks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_paths_are_relative_and_decoded() {
        let root = Path::new("/ws/proj");
        assert_eq!(
            display_path("file:///ws/proj/src/a%20b.rs", Some(root)),
            "src/a b.rs"
        );
        assert_eq!(
            display_path("file:///elsewhere/x.py", Some(root)),
            "/elsewhere/x.py"
        );
        assert_eq!(display_path("untitled:1", Some(root)), "untitled:1");
    }

    #[test]
    fn overlapping_chunks_merge_into_the_newest() {
        let rope = Rope::from_str(&(0..100).map(|n| format!("line {n}\n")).collect::<String>());
        let mut ring = RecentChunks::new(3, 2);
        ring.record_edit("a", &rope, rope.line_to_byte(10));
        ring.record_edit("a", &rope, rope.line_to_byte(11));
        ring.record_view("a", &rope, 9..12);
        assert_eq!(ring.len(), 1);
        let only = ring.iter().next().expect("one chunk");
        assert_eq!((only.kind, only.lines.clone()), (RecentKind::Edit, 9..12));

        ring.record_edit("b", &rope, 0);
        ring.record_edit("a", &rope, rope.line_to_byte(50));
        ring.record_edit("a", &rope, rope.line_to_byte(80));
        let kept: Vec<(&str, usize)> = ring
            .iter()
            .map(|chunk| (chunk.uri.as_str(), chunk.lines.start))
            .collect();
        assert_eq!(kept, [("b", 0), ("a", 48), ("a", 78)]);
    }
}
