//! Assembling one prompt: the budget split between the tiers, the tiers themselves (file header,
//! definitions of used names, recent chunks, other open files) and the final `FimPrompt`.
//!
//! Priorities, highest first: the cursor's neighbourhood, the headers of the enclosing scopes and
//! the imports, definitions of names used near the cursor, recent edits and views, other open
//! files. Each tier gets a share; what a tier leaves unused flows to the next, and what is left
//! at the end widens the neighbourhood (`ledger.rs` keeps that account). Order in the prompt is
//! by stability instead: other files, recent chunks, definitions, then the current file.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::ops::Range;
use std::sync::Arc;

use ropey::Rope;
use tree_sitter::Tree;

use super::ledger::{percent, Ledger, Tier};
use super::neighbourhood::{self, LineCosts, Neighbourhood};
use super::snapshot::{ContextSnapshot, RecentKind};
use super::symbols::{self, Candidate, Origin};
use crate::docs::DocumentKind;
use crate::engine::{ContextChunk, FimPrompt, ModelCaps, TokenCounter};
use crate::syntax::outline::{self, Definition};
use crate::syntax::Language;
use crate::text;

/// How many tokens a prompt may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Tokens of prompt (special tokens included), not counting what is generated.
    pub n_prompt_tokens: usize,
}

/// One labelled part of a prompt, for `wellspring prompt` and logs; never sent to the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// `definition`, `imports`, `scope-header`, `prefix`, `suffix`, `line-head`, `recent-edit`,
    /// `recent-view`, `open-file`.
    pub label: &'static str,
    pub path: String,
    /// What the section shows: the names defined, or the lines (1-based) taken.
    pub detail: String,
    pub n_tokens: usize,
}

/// A prompt and how it was put together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltPrompt {
    pub prompt: FimPrompt,
    /// In prompt order.
    pub sections: Vec<Section>,
}

/// Of the neighbourhood, the part the suffix may take at most.
const SUFFIX_PERCENT: usize = 30;
/// Most names looked up per prompt.
const MAX_NAMES: usize = 48;
/// A name defined in more files than this is looked up only in files something points at (the
/// same folder, an import, the qualifier); `new` or `len` would otherwise cost a scan of thousands.
const MAX_FILES_PER_NAME: usize = 16;
/// Tokens a chunk costs besides its text: the file separator, the path and a newline.
const N_CHUNK_OVERHEAD: usize = 2;
/// Special tokens around the current file: file separator, prefix, suffix, middle.
const N_FIM_OVERHEAD: usize = 4;

/// Builds the prompt for a cursor at `cursor_byte` in `snapshot.current`.
///
/// Pure: the same snapshot, cursor, budget and counter give the same prompt, byte for byte.
pub fn build(
    snapshot: &ContextSnapshot,
    cursor_byte: usize,
    budget: &Budget,
    caps: &ModelCaps,
    tokens: &dyn TokenCounter,
) -> BuiltPrompt {
    let document = &snapshot.current;
    let rope = &document.rope;
    let cursor_byte = text::floor_char_boundary(rope, cursor_byte);
    let path = snapshot.display_path(&document.uri);
    let tree = document
        .tree
        .as_ref()
        .filter(|_| document.kind == DocumentKind::Text);
    let language = document.language;
    let mut sections = Vec::new();

    if document.kind == DocumentKind::Binary {
        return BuiltPrompt {
            prompt: FimPrompt {
                path,
                ..FimPrompt::default()
            },
            sections,
        };
    }

    let n_budget = budget.n_prompt_tokens.min(caps.n_ctx_per_slot as usize);
    let repo_name = snapshot.repo_name().filter(|_| caps.has_repo_name);
    let n_overhead = N_FIM_OVERHEAD
        + tokens.count_tokens(&path)
        + repo_name
            .as_deref()
            .map_or(0, |name| tokens.count_tokens(name) + 2);

    let cursor_line = rope.byte_to_line(cursor_byte);
    // The line head gets a fixed reserve, so that its length never moves the other cuts.
    let n_line_head_reserve = (n_budget / 8).min(128);
    let (line_head, n_line_head) = line_head_within(
        &text::line_head(rope, cursor_byte),
        n_line_head_reserve,
        tokens,
    );
    let n_available = n_budget.saturating_sub(n_overhead + n_line_head_reserve);

    let costs = LineCosts::new(rope, tree, tokens);
    let syntax = language.zip(tree).map(|(language, tree)| {
        let file_outline = outline::file_outline(language, rope, tree);
        FileSyntax {
            language,
            tree,
            scopes: outline::scopes(language, rope, tree, Some(cursor_byte)),
            outline: file_outline,
        }
    });

    // Pass 1: the neighbourhood at its floor share decides what is already visible.
    let mut ledger = Ledger::new(n_available);
    let n_floor = ledger.share(Tier::Neighbourhood);
    let first_cut = neighbourhood::cut(
        rope,
        cursor_byte,
        n_floor - percent(n_floor, SUFFIX_PERCENT),
        percent(n_floor, SUFFIX_PERCENT),
        &costs,
    );

    // The header is only estimated here: its final cut follows the neighbourhood's, within the
    // estimate.
    let n_header_estimate = match &syntax {
        Some(syntax) => {
            file_header(
                syntax,
                rope,
                first_cut.prefix_lines.start,
                ledger.grant(Tier::Header),
                &costs,
            )
            .n_tokens
        }
        None => 0,
    };
    ledger.spend(Tier::Header, n_header_estimate);

    let definitions = match &syntax {
        Some(syntax) => choose_definitions(
            snapshot,
            &path,
            syntax,
            cursor_byte,
            &first_cut,
            ledger.grant(Tier::Definitions),
            tokens,
        ),
        None => Vec::new(),
    };
    ledger.spend(
        Tier::Definitions,
        definitions.iter().map(|it| it.n_tokens).sum(),
    );

    let recent = choose_recent(snapshot, &first_cut, ledger.grant(Tier::Recent), tokens);
    ledger.spend(Tier::Recent, recent.iter().map(|it| it.n_tokens).sum());

    let open_files = choose_open_files(snapshot, &path, ledger.grant(Tier::OpenFiles), tokens);
    ledger.spend(
        Tier::OpenFiles,
        open_files.iter().map(|it| it.n_tokens).sum(),
    );

    // Pass 2: whatever the other tiers left widens the neighbourhood; the suffix is cut first so
    // that what it does not need goes to the prefix.
    let n_rest = ledger.rest();
    let suffix_only = neighbourhood::cut(
        rope,
        cursor_byte,
        0,
        percent(n_rest, SUFFIX_PERCENT),
        &costs,
    );
    let cut = neighbourhood::cut(
        rope,
        cursor_byte,
        n_rest.saturating_sub(suffix_only.n_suffix_tokens),
        percent(n_rest, SUFFIX_PERCENT),
        &costs,
    );
    let header = match &syntax {
        Some(syntax) => file_header(
            syntax,
            rope,
            cut.prefix_lines.start,
            n_header_estimate,
            &costs,
        ),
        None => FileHeader::default(),
    };
    let visible = cut.prefix.start..cut.suffix.end;

    let mut extra = Vec::new();
    for chunk in open_files {
        sections.push(chunk.section());
        extra.push(chunk.chunk);
    }
    for chunk in recent {
        let hidden_by_cut = chunk.uri == document.uri
            && overlaps(
                &chunk.lines,
                &(cut.prefix_lines.start..cut.suffix_lines.end),
            );
        if !hidden_by_cut {
            sections.push(chunk.section());
            extra.push(chunk.chunk);
        }
    }
    for chunk in definitions {
        let shown_by_cut = chunk.chunk.path == path
            && chunk
                .byte_ranges
                .iter()
                .all(|range| visible.start <= range.start && range.end <= visible.end);
        if !shown_by_cut {
            sections.push(chunk.section());
            extra.push(chunk.chunk);
        }
    }

    let mut prefix = String::new();
    if !caps.has_file_sep && !extra.is_empty() {
        prefix.push_str(&commented_chunks(language, &extra));
        extra.clear();
    }
    for (label, lines, n_tokens) in &header.sections {
        sections.push(Section {
            label,
            path: path.clone(),
            detail: line_ranges(lines),
            n_tokens: *n_tokens,
        });
    }
    prefix.push_str(&header.text);
    prefix.push_str(&text::slice(rope, cut.prefix.clone()));
    sections.push(Section {
        label: "prefix",
        path: path.clone(),
        detail: line_ranges(&cut.prefix_lines.clone().collect::<Vec<_>>()),
        n_tokens: cut.n_prefix_tokens,
    });
    sections.push(Section {
        label: "suffix",
        path: path.clone(),
        detail: line_ranges(&cut.suffix_lines.clone().collect::<Vec<_>>()),
        n_tokens: cut.n_suffix_tokens,
    });
    sections.push(Section {
        label: "line-head",
        path: path.clone(),
        detail: format!("line {}", cursor_line + 1),
        n_tokens: n_line_head,
    });

    BuiltPrompt {
        prompt: FimPrompt {
            repo_name,
            extra,
            path,
            prefix,
            suffix: text::slice(rope, cut.suffix.clone()),
            line_head,
        },
        sections,
    }
}

fn overlaps(a: &Range<usize>, b: &Range<usize>) -> bool {
    a.start < b.end && b.start < a.end
}

/// The line before the cursor, cut from the left when it alone would exceed its reserve.
fn line_head_within(text: &str, n_reserve: usize, tokens: &dyn TokenCounter) -> (String, usize) {
    let n_tokens = tokens.count_tokens(text);
    if n_tokens <= n_reserve {
        return (text.to_owned(), n_tokens);
    }
    let mut start = 0;
    let mut step = text.len() / 2;
    // Binary search for the longest tail that fits, on character boundaries.
    while step > 0 {
        let mut candidate = (start + step).min(text.len());
        while !text.is_char_boundary(candidate) {
            candidate += 1;
        }
        if tokens.count_tokens(&text[candidate..]) > n_reserve {
            start = candidate;
        }
        step /= 2;
    }
    let mut start = (start + 1).min(text.len());
    while !text.is_char_boundary(start) {
        start += 1;
    }
    let tail = &text[start..];
    (tail.to_owned(), tokens.count_tokens(tail))
}

/// `[3, 4, 5, 9]` → `3-5, 9` shown 1-based as `4-6, 10`.
fn line_ranges(lines: &[usize]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut iter = lines.iter().copied().peekable();
    while let Some(first) = iter.next() {
        let mut last = first;
        while iter.next_if(|next| *next == last + 1).is_some() {
            last += 1;
        }
        if first == last {
            parts.push(format!("{}", first + 1));
        } else {
            parts.push(format!("{}-{}", first + 1, last + 1));
        }
    }
    if parts.is_empty() {
        "none".to_owned()
    } else {
        format!("lines {}", parts.join(", "))
    }
}

#[derive(Debug, Default)]
struct FileHeader {
    text: String,
    n_tokens: usize,
    sections: Vec<(&'static str, Vec<usize>, usize)>,
}

/// What the builder reads from the current file's tree, computed once per prompt.
struct FileSyntax<'a> {
    language: Language,
    tree: &'a Tree,
    /// Around the cursor, outermost first.
    scopes: Vec<outline::Scope>,
    /// The whole file's imports and definitions, read in one walk over the tree.
    outline: outline::FileOutline<'a>,
}

/// The imports and the headers of the scopes around the cursor that lie above the prefix.
fn file_header(
    syntax: &FileSyntax<'_>,
    rope: &Rope,
    prefix_first_line: usize,
    n_budget: usize,
    costs: &LineCosts<'_>,
) -> FileHeader {
    if prefix_first_line == 0 {
        return FileHeader::default();
    }
    let line_cost = |line_idx: usize| costs.line(line_idx);
    let mut chosen: BTreeSet<usize> = BTreeSet::new();
    let mut n_used = 0;

    // Innermost scopes first: when the budget is tight the nearest header matters most.
    let mut scope_lines: Vec<usize> = Vec::new();
    for scope in syntax.scopes.iter().rev() {
        let lines: Vec<usize> = scope
            .header_lines
            .clone()
            .filter(|line_idx| *line_idx < prefix_first_line && !chosen.contains(line_idx))
            .collect();
        let n_scope: usize = lines.iter().map(|line_idx| line_cost(*line_idx)).sum();
        if n_used + n_scope > n_budget {
            break;
        }
        n_used += n_scope;
        chosen.extend(lines.iter().copied());
        scope_lines.extend(lines);
    }
    let n_scopes = n_used;

    let mut import_lines: Vec<usize> = Vec::new();
    'imports: for range in syntax.outline.imports.iter().cloned() {
        let first_line = rope.byte_to_line(range.start);
        let last_line = rope.byte_to_line(range.end.saturating_sub(1).max(range.start));
        let lines: Vec<usize> = (first_line..=last_line)
            .filter(|line_idx| *line_idx < prefix_first_line && !chosen.contains(line_idx))
            .collect();
        if lines.is_empty() {
            continue;
        }
        let n_import: usize = lines.iter().map(|line_idx| line_cost(*line_idx)).sum();
        if n_used + n_import > n_budget {
            break 'imports;
        }
        n_used += n_import;
        chosen.extend(lines.iter().copied());
        import_lines.extend(lines);
    }

    let mut text = String::new();
    for line_idx in &chosen {
        text.push_str(&text::lines(rope, *line_idx..*line_idx + 1));
    }
    import_lines.sort_unstable();
    scope_lines.sort_unstable();
    let mut sections = Vec::new();
    if !import_lines.is_empty() {
        sections.push(("imports", import_lines, n_used - n_scopes));
    }
    if !scope_lines.is_empty() {
        sections.push(("scope-header", scope_lines, n_scopes));
    }
    FileHeader {
        text,
        n_tokens: n_used,
        sections,
    }
}

/// An extra chunk with what the budget and the sections need to know about it.
struct ChosenChunk {
    chunk: ContextChunk,
    detail: String,
    n_tokens: usize,
    uri: String,
    lines: Range<usize>,
    byte_ranges: Vec<Range<usize>>,
}

impl ChosenChunk {
    fn section(&self) -> Section {
        let label = match self.chunk.label.as_str() {
            "definition" => "definition",
            "recent-edit" => "recent-edit",
            "recent-view" => "recent-view",
            _ => "open-file",
        };
        Section {
            label,
            path: self.chunk.path.clone(),
            detail: self.detail.clone(),
            n_tokens: self.n_tokens,
        }
    }
}

/// Definitions of the names used near the cursor, one chunk per file, sorted by path.
#[allow(clippy::too_many_arguments)]
fn choose_definitions(
    snapshot: &ContextSnapshot,
    path: &str,
    syntax: &FileSyntax<'_>,
    cursor_byte: usize,
    first_cut: &Neighbourhood,
    n_budget: usize,
    tokens: &dyn TokenCounter,
) -> Vec<ChosenChunk> {
    let rope = &snapshot.current.rope;
    let visible = first_cut.prefix.start..first_cut.suffix.end;
    let used_names: Vec<symbols::UsedName> =
        symbols::used_names(Some(syntax.language), rope, Some(syntax.tree), cursor_byte)
            .into_iter()
            .take(MAX_NAMES)
            .collect();
    let wanted: HashSet<&str> = used_names.iter().map(|it| it.name.as_str()).collect();
    let current_definitions: Vec<Arc<Definition>> = outline::outline_definitions_matching(
        syntax.language,
        rope,
        syntax.tree,
        &syntax.outline,
        |name| wanted.contains(name),
    )
    .into_iter()
    .filter(|it| !(visible.start <= it.byte_range.start && it.byte_range.end <= visible.end))
    // The definition being edited is context already, not a reference.
    .filter(|it| !(it.byte_range.start <= cursor_byte && cursor_byte <= it.byte_range.end))
    .map(Arc::new)
    .collect();
    let import_words = symbols::import_words(rope, &syntax.outline.imports);
    let enclosing_class = syntax
        .scopes
        .iter()
        .rev()
        .find(|it| it.is_class)
        .and_then(|it| it.name.as_deref());
    let origin = Origin {
        path,
        import_words: &import_words,
        enclosing_class,
    };
    let current_path: Arc<str> = Arc::from(path);

    // Open documents the index does not cover (outside the workspace, or not indexed yet).
    let mut open_outlines: Vec<(Arc<str>, Vec<Arc<Definition>>)> = Vec::new();
    for document in &snapshot.open {
        if document.uri == snapshot.current.uri {
            continue;
        }
        let open_path = snapshot.display_path(&document.uri);
        if snapshot.index.file(&open_path).is_some() {
            continue;
        }
        if let (Some(language), Some(tree)) = (document.language, document.tree.as_ref()) {
            open_outlines.push((
                Arc::from(open_path),
                outline::definitions(language, &document.rope, tree)
                    .into_iter()
                    .map(Arc::new)
                    .collect(),
            ));
        }
    }

    let mut taken: BTreeMap<Arc<str>, Vec<Arc<Definition>>> = BTreeMap::new();
    let mut n_used = 0;
    for used in &used_names {
        let mut candidates: Vec<Candidate> = current_definitions
            .iter()
            .filter(|it| it.name == used.name)
            .map(|it| Candidate {
                path: Arc::clone(&current_path),
                definition: Arc::clone(it),
                is_current_file: true,
            })
            .collect();
        for (open_path, definitions) in &open_outlines {
            candidates.extend(
                definitions
                    .iter()
                    .filter(|it| it.name == used.name)
                    .map(|it| Candidate {
                        path: Arc::clone(open_path),
                        definition: Arc::clone(it),
                        is_current_file: false,
                    }),
            );
        }
        candidates.extend(
            snapshot
                .index
                .definitions_in(
                    &used.name,
                    |candidate_path, crowded| {
                        candidate_path != path
                            && (!crowded
                                || symbols::path_is_plausible(used, candidate_path, &origin))
                    },
                    MAX_FILES_PER_NAME,
                )
                .into_iter()
                .map(|it| Candidate {
                    path: it.path,
                    definition: it.definition,
                    is_current_file: false,
                }),
        );
        for candidate in symbols::choose(used, candidates, &origin) {
            let already = taken.get(&candidate.path).is_some_and(|definitions| {
                definitions.iter().any(|it| {
                    it.byte_range.start <= candidate.definition.byte_range.start
                        && candidate.definition.byte_range.end <= it.byte_range.end
                })
            });
            if already {
                continue;
            }
            let n_path = if taken.contains_key(&candidate.path) {
                0
            } else {
                tokens.count_tokens(&candidate.path) + N_CHUNK_OVERHEAD
            };
            let n_definition = tokens.count_tokens(&candidate.definition.summary) + 1;
            if n_used + n_path + n_definition > n_budget {
                continue;
            }
            n_used += n_path + n_definition;
            let definitions = taken.entry(candidate.path).or_default();
            // A class taken after one of its methods replaces the method.
            definitions.retain(|it| {
                !(candidate.definition.byte_range.start <= it.byte_range.start
                    && it.byte_range.end <= candidate.definition.byte_range.end)
            });
            definitions.push(candidate.definition);
        }
    }

    taken
        .into_iter()
        .map(|(chunk_path, mut definitions)| {
            definitions.sort_by_key(|it| it.byte_range.start);
            let text = join_summaries(&definitions);
            let n_tokens =
                tokens.count_tokens(&chunk_path) + N_CHUNK_OVERHEAD + tokens.count_tokens(&text);
            ChosenChunk {
                detail: definitions
                    .iter()
                    .map(|it| it.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                byte_ranges: definitions.iter().map(|it| it.byte_range.clone()).collect(),
                chunk: ContextChunk {
                    path: chunk_path.to_string(),
                    label: "definition".to_owned(),
                    text,
                },
                n_tokens,
                uri: String::new(),
                lines: 0..0,
            }
        })
        .collect()
}

/// Summaries of one file's definitions, blank-line separated; container headers shared with the
/// previous definition (`class Matrix {` above two methods) are written once.
fn join_summaries(definitions: &[Arc<Definition>]) -> String {
    let mut text = String::new();
    let mut previous_headers: Vec<&str> = Vec::new();
    for definition in definitions {
        let lines: Vec<&str> = definition.summary.lines().collect();
        let n_headers = definition.n_container_lines.min(lines.len());
        let headers = &lines[..n_headers];
        let shared = !headers.is_empty() && headers == previous_headers.as_slice();
        if !text.is_empty() {
            text.push('\n');
        }
        let start = if shared { n_headers } else { 0 };
        for line in &lines[start..] {
            text.push_str(line);
            text.push('\n');
        }
        previous_headers = headers.to_vec();
    }
    text
}

/// Recent chunks, newest preferred, shown oldest first; those inside the neighbourhood are left
/// out because the prompt shows them already.
fn choose_recent(
    snapshot: &ContextSnapshot,
    first_cut: &Neighbourhood,
    n_budget: usize,
    tokens: &dyn TokenCounter,
) -> Vec<ChosenChunk> {
    let current_uri = &snapshot.current.uri;
    let window = first_cut.prefix_lines.start..first_cut.suffix_lines.end;
    let mut chosen = Vec::new();
    let mut n_used = 0;
    for recent in snapshot.recent.iter().rev() {
        if &recent.uri == current_uri && overlaps(&recent.lines, &window) {
            continue;
        }
        let chunk_path = snapshot.display_path(&recent.uri);
        let n_tokens =
            tokens.count_tokens(&chunk_path) + N_CHUNK_OVERHEAD + tokens.count_tokens(&recent.text);
        if n_used + n_tokens > n_budget {
            continue;
        }
        n_used += n_tokens;
        let label = match recent.kind {
            RecentKind::Edit => "recent-edit",
            RecentKind::View => "recent-view",
        };
        chosen.push(ChosenChunk {
            chunk: ContextChunk {
                path: chunk_path,
                label: label.to_owned(),
                text: recent.text.clone(),
            },
            detail: line_ranges(&recent.lines.clone().collect::<Vec<_>>()),
            n_tokens,
            uri: recent.uri.clone(),
            lines: recent.lines.clone(),
            byte_ranges: Vec::new(),
        });
    }
    chosen.reverse();
    chosen
}

/// Outlines (top-level signatures) of the other open documents, sorted by path.
fn choose_open_files(
    snapshot: &ContextSnapshot,
    path: &str,
    n_budget: usize,
    tokens: &dyn TokenCounter,
) -> Vec<ChosenChunk> {
    let mut documents: Vec<(String, &Arc<crate::docs::Document>)> = snapshot
        .open
        .iter()
        .filter(|document| {
            document.uri != snapshot.current.uri && document.kind == DocumentKind::Text
        })
        .map(|document| (snapshot.display_path(&document.uri), document))
        .filter(|(open_path, _)| open_path != path)
        .collect();
    documents.sort_by(|a, b| a.0.cmp(&b.0));
    documents.dedup_by(|a, b| a.0 == b.0);
    if documents.is_empty() {
        return Vec::new();
    }
    let n_per_file = n_budget / documents.len();
    let mut chosen = Vec::new();
    for (open_path, document) in documents {
        let definitions: Vec<Arc<Definition>> = match snapshot.index.file(&open_path) {
            Some(file) => file.definitions.clone(),
            None => match (document.language, document.tree.as_ref()) {
                (Some(language), Some(tree)) => {
                    outline::definitions(language, &document.rope, tree)
                        .into_iter()
                        .map(Arc::new)
                        .collect()
                }
                _ => Vec::new(),
            },
        };
        let top_level: Vec<&Arc<Definition>> = definitions
            .iter()
            .filter(|it| {
                !definitions.iter().any(|outer| {
                    outer.byte_range != it.byte_range
                        && outer.byte_range.start <= it.byte_range.start
                        && it.byte_range.end <= outer.byte_range.end
                })
            })
            .collect();
        let n_path = tokens.count_tokens(&open_path) + N_CHUNK_OVERHEAD;
        let mut n_used = n_path;
        let mut text = String::new();
        let mut names = Vec::new();
        for definition in top_level {
            let n_definition = tokens.count_tokens(&definition.summary) + 1;
            if n_used + n_definition > n_per_file {
                break;
            }
            n_used += n_definition;
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(&definition.summary);
            names.push(definition.name.clone());
        }
        if text.is_empty() {
            continue;
        }
        chosen.push(ChosenChunk {
            chunk: ContextChunk {
                path: open_path,
                label: "open-file".to_owned(),
                text,
            },
            detail: names.join(", "),
            n_tokens: n_used,
            uri: document.uri.clone(),
            lines: 0..0,
            byte_ranges: Vec::new(),
        });
    }
    chosen
}

/// For models without a file separator: the extra chunks as comments at the top of the prefix.
fn commented_chunks(language: Option<Language>, extra: &[ContextChunk]) -> String {
    let comment = match language {
        Some(Language::Python) => "#",
        Some(Language::Lua) => "--",
        _ => "//",
    };
    let mut text = String::new();
    for chunk in extra {
        text.push_str(&format!("{comment} {} ({})\n", chunk.path, chunk.label));
        for line in chunk.text.lines() {
            text.push_str(comment);
            if !line.is_empty() {
                text.push(' ');
                text.push_str(line);
            }
            text.push('\n');
        }
    }
    text
}
