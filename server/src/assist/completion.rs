//! Inline suggestions: build the prompt, ask the engine, clean the answer.

use std::ops::Range;

use crate::config::{CompletionConfig, Config};
use crate::context::{self, Budget, ContextSnapshot};
use crate::engine::{
    CompletionFigures, CompletionRequest, DoneCheck, Engine, Error, SamplingConfig,
};
use crate::syntax::Language;
use crate::text;

/// A suggestion to insert at the cursor.
#[derive(Debug, Clone, PartialEq)]
pub struct Suggestion {
    pub text: String,
    pub figures: CompletionFigures,
    /// Generated tokens that post-processing cut off.
    pub n_discarded: u32,
}

/// How the request was triggered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// While typing: one suggestion, as fast as possible.
    Automatic,
    /// Asked for explicitly: a few different suggestions to cycle through.
    Invoked,
}

/// Characters after which clients that complete only on trigger characters should ask: member
/// access, and the second character of `::` and `->`, and a call's `(`. See [`triggers_here`].
pub const TRIGGER_CHARACTERS: [&str; 4] = [".", ":", ">", "("];

/// Whether a completion triggered by typing `trigger` (which ends `text_before_cursor`) is worth
/// running the model for: `:` only as the end of `::` and `>` only as the end of `->`, in the
/// languages where those are member or path access.
pub fn triggers_here(language: Option<Language>, text_before_cursor: &str, trigger: &str) -> bool {
    match trigger {
        ":" => {
            matches!(language, Some(Language::Rust | Language::Cpp))
                && text_before_cursor.ends_with("::")
        }
        ">" => {
            matches!(language, Some(Language::C | Language::Cpp))
                && text_before_cursor.ends_with("->")
        }
        _ => true,
    }
}

/// Most suggestions an invoked request returns.
const MAX_INVOKED_SUGGESTIONS: usize = 3;

/// Whether completions are wanted in a document of `language_id` under `config`.
pub fn enabled_for(config: &CompletionConfig, language_id: &str) -> bool {
    config.enabled
        && !config
            .disabled_languages
            .iter()
            .any(|disabled| disabled == language_id)
}

/// Whether only the rest of the cursor's line should be completed: text follows the cursor.
pub fn is_mid_line(snapshot: &ContextSnapshot, cursor_byte: usize) -> bool {
    let rope = &snapshot.current.rope;
    let line_end_byte = text::line_end_byte(rope, rope.byte_to_line(cursor_byte));
    rope.byte_slice(cursor_byte..line_end_byte)
        .chars()
        .any(|character| !character.is_whitespace())
}

/// The engine request for a completion at `cursor_byte`: the prompt, single or multi-line, the
/// user's settings, and the check that stops generation once the suggestion is complete.
pub fn request_at(
    engine: &Engine,
    snapshot: &ContextSnapshot,
    cursor_byte: usize,
    config: &Config,
) -> CompletionRequest {
    // The prompt and the tokens generated after it share the slot's context.
    let n_slot_room = (engine.caps().n_ctx_per_slot as usize)
        .saturating_sub(config.completion.max_tokens as usize);
    let budget = Budget {
        n_prompt_tokens: (config.context.budget_tokens as usize).min(n_slot_room),
    };
    let token_counter = engine.token_counter();
    let built = context::build(
        snapshot,
        cursor_byte,
        &budget,
        &engine.caps(),
        token_counter.as_ref(),
    );
    let single_line = is_mid_line(snapshot, cursor_byte);
    let mut request = CompletionRequest::new(
        snapshot.current.uri.clone(),
        built.prompt,
        single_line,
        &config.completion,
    );
    request.done_when = Some(DoneCheck::new(context::done_check(
        snapshot.current.clone(),
        cursor_byte,
    )));
    request
}

/// Has the engine evaluate, while it is idle, the prompt a completion at `cursor_byte` would use,
/// so the first keystroke there costs only the line (a file just opened or focused).
pub fn warm(engine: &Engine, snapshot: &ContextSnapshot, cursor_byte: usize, config: &Config) {
    engine.warm(request_at(engine, snapshot, cursor_byte, config));
}

/// Suggestions for a cursor at `cursor_byte`, best first; empty when the model has nothing useful.
pub async fn suggest(
    engine: &Engine,
    snapshot: &ContextSnapshot,
    cursor_byte: usize,
    trigger: Trigger,
    config: &Config,
) -> Result<Vec<Suggestion>, Error> {
    let request = request_at(engine, snapshot, cursor_byte, config);
    let mut suggestions: Vec<Suggestion> = Vec::new();
    let n_wanted = match trigger {
        Trigger::Automatic => 1,
        Trigger::Invoked => MAX_INVOKED_SUGGESTIONS,
    };
    for attempt_idx in 0..n_wanted {
        let mut attempt = request.clone();
        if attempt_idx > 0 {
            // Alternatives come from sampling; the first suggestion keeps the user's settings.
            attempt.sampling = SamplingConfig {
                temperature: 0.8,
                seed: attempt_idx as u32,
                ..attempt.sampling
            };
        }
        let completion = engine.complete(attempt).await?;
        tracing::info!(
            uri = %snapshot.current.uri,
            n_reused = completion.figures.generation.n_reused,
            n_evaluated = completion.figures.generation.n_evaluated,
            n_generated = completion.figures.generation.n_generated,
            t_total_ms = completion.figures.t_total_ms,
            served_without_inference = completion.figures.served_without_inference,
            "completion"
        );
        let shown = context::postprocess(&snapshot.current, cursor_byte, &completion.text);
        let n_discarded = n_discarded_tokens(
            &completion.text,
            &completion.token_ends,
            shown.as_deref().unwrap_or(""),
        );
        engine.record_discarded(n_discarded);
        let Some(text) = shown else {
            continue;
        };
        if suggestions.iter().any(|existing| existing.text == text) {
            continue;
        }
        suggestions.push(Suggestion {
            text,
            figures: completion.figures,
            n_discarded,
        });
    }
    Ok(suggestions)
}

/// How many generated tokens lie wholly past what `shown`, the post-processed suggestion, kept of
/// `raw`. Post-processing keeps whole lines and a start of its last one, changing only
/// indentation and line endings, so the kept part of `raw` is its first lines and as much of the
/// next as the shown line has after its indentation.
fn n_discarded_tokens(raw: &str, token_ends: &[usize], shown: &str) -> u32 {
    let n_kept_lines = if shown.is_empty() {
        0
    } else {
        shown.split('\n').count()
    };
    let last_shown = shown.rsplit('\n').next().unwrap_or("").trim_start();
    let mut n_kept_bytes = 0;
    for (line_idx, line) in raw.split_inclusive('\n').enumerate() {
        if line_idx + 1 < n_kept_lines {
            n_kept_bytes += line.len();
        } else if line_idx + 1 == n_kept_lines {
            let indent = line.len() - line.trim_start_matches([' ', '\t']).len();
            n_kept_bytes += line.len().min(indent + last_shown.len());
        }
    }
    let mut token_start = 0;
    let mut n_discarded = 0;
    for &token_end in token_ends {
        if token_start >= n_kept_bytes && token_end > token_start {
            n_discarded += 1;
        }
        token_start = token_end;
    }
    n_discarded
}

/// The start of the identifier-like word that ends at the cursor, for completion-menu filtering.
pub fn word_start(snapshot: &ContextSnapshot, cursor_byte: usize) -> usize {
    let rope = &snapshot.current.rope;
    let head = text::line_head(rope, cursor_byte);
    let n_word_bytes: usize = head
        .chars()
        .rev()
        .take_while(|character| character.is_alphanumeric() || *character == '_')
        .map(char::len_utf8)
        .sum();
    cursor_byte - n_word_bytes
}

/// Replaces `range` of the current document with `text` in a private copy, so a suggestion can
/// extend the item selected in an open completion menu. Returns the new snapshot and cursor.
pub fn with_selected_item(
    snapshot: &ContextSnapshot,
    range: Range<usize>,
    text: &str,
) -> (ContextSnapshot, usize) {
    let mut document = crate::docs::Document::clone(&snapshot.current);
    document.apply_edit(&crate::docs::TextEdit {
        start_byte: range.start,
        end_byte: range.end,
        text: text.to_owned(),
    });
    if let (Some(language), true) = (document.language, document.wants_tree()) {
        let mut parser = language.parser();
        document.tree =
            crate::syntax::parse_rope(&mut parser, &document.rope, document.tree.as_ref(), None);
    }
    let cursor_byte = range.start + text.len();
    let snapshot = ContextSnapshot {
        current: std::sync::Arc::new(document),
        ..snapshot.clone()
    };
    (snapshot, cursor_byte)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discarded_tokens_are_those_past_the_shown_text() {
        // Four tokens: "x = 1", "\n", "}", "\nfoo".
        let raw = "x = 1\n}\nfoo";
        let ends = [5, 6, 7, 11];
        assert_eq!(n_discarded_tokens(raw, &ends, "x = 1\n}"), 1);
        assert_eq!(n_discarded_tokens(raw, &ends, "x = 1"), 3);
        assert_eq!(n_discarded_tokens(raw, &ends, ""), 4);
        assert_eq!(n_discarded_tokens(raw, &ends, raw), 0);
        // Re-indented lines count by their text, not their indentation.
        let raw = "a\n        b\n        c";
        let ends = [1, 2, 11, 12, 21];
        assert_eq!(n_discarded_tokens(raw, &ends, "a\n\tb"), 2);
    }

    #[test]
    fn trigger_characters_run_the_model_only_where_they_mean_access() {
        let cases = [
            (Some(Language::Python), "math.", ".", true),
            (Some(Language::Python), "print(", "(", true),
            (Some(Language::Python), "    if x:", ":", false),
            (Some(Language::Rust), "std::", ":", true),
            (Some(Language::Rust), "let x:", ":", false),
            (Some(Language::Cpp), "node->", ">", true),
            (Some(Language::Cpp), "a >", ">", false),
            (Some(Language::Rust), "fn f() ->", ">", false),
            (None, "x->", ">", false),
        ];
        for (language, before, trigger, expected) in cases {
            assert_eq!(
                triggers_here(language, before, trigger),
                expected,
                "{language:?} {before:?}"
            );
        }
    }
}
