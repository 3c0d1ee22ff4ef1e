//! Code actions: the instruction sent to the model for each kind, and the turning of its answer
//! into an edit that applies cleanly and does not break the file's syntax.

use std::ops::Range;

use tokio::sync::mpsc;

use super::chat::{describe_code, message};
use super::{fence_name, target_range};
use crate::context::ContextSnapshot;
use crate::engine::{ChatRequest, Engine, SamplingConfig};
use crate::text;

/// The kinds of code action Wellspring offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionKind {
    Explain,
    Fix,
    Document,
    WriteTests,
    Simplify,
    Instruct,
}

impl ActionKind {
    pub const ALL: [ActionKind; 6] = [
        ActionKind::Explain,
        ActionKind::Fix,
        ActionKind::Document,
        ActionKind::WriteTests,
        ActionKind::Simplify,
        ActionKind::Instruct,
    ];

    pub fn id(self) -> &'static str {
        match self {
            ActionKind::Explain => "explain",
            ActionKind::Fix => "fix",
            ActionKind::Document => "document",
            ActionKind::WriteTests => "tests",
            ActionKind::Simplify => "simplify",
            ActionKind::Instruct => "instruct",
        }
    }

    pub fn from_id(id: &str) -> Option<ActionKind> {
        ActionKind::ALL.into_iter().find(|kind| kind.id() == id)
    }

    pub fn title(self) -> &'static str {
        match self {
            ActionKind::Explain => "Wellspring: Explain",
            ActionKind::Fix => "Wellspring: Fix",
            ActionKind::Document => "Wellspring: Add documentation",
            ActionKind::WriteTests => "Wellspring: Write tests",
            ActionKind::Simplify => "Wellspring: Simplify",
            ActionKind::Instruct => "Wellspring: Edit with instruction…",
        }
    }

    /// The title without the product name, for messages that already say who speaks.
    pub fn name(self) -> &'static str {
        self.title()
            .strip_prefix("Wellspring: ")
            .expect("every title starts with the product name")
    }

    fn instruction(self, diagnostics: &[String], instruction: Option<&str>) -> String {
        match self {
            ActionKind::Explain => "Explain what this code does, step by step, and point out anything surprising.".to_owned(),
            ActionKind::Fix if diagnostics.is_empty() => "Fix the bugs in this code.".to_owned(),
            ActionKind::Fix => format!("Fix this code. The editor reports:\n- {}", diagnostics.join("\n- ")),
            ActionKind::Document => "Add documentation comments (docstrings) in the language's usual style to this code. Keep the code itself unchanged.".to_owned(),
            ActionKind::WriteTests => "Write unit tests for this code, in the language's usual test style. Answer with the tests only.".to_owned(),
            ActionKind::Simplify => "Simplify this code without changing its behaviour.".to_owned(),
            ActionKind::Instruct => instruction.unwrap_or("Improve this code.").to_owned(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Engine(#[from] crate::engine::Error),
    #[error("the model's answer had no code block")]
    NoCode,
    #[error("the model suggested no change")]
    NoChange,
    #[error("the suggested edit would introduce syntax errors, so it was not applied")]
    BreaksSyntax,
}

/// A replacement of `range` (bytes of the document it was computed for) by `new_text`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    pub range: Range<usize>,
    pub new_text: String,
}

/// Constrains answers to one fenced code block, so the edit can always be extracted.
const CODE_BLOCK_GRAMMAR: &str = r#"root ::= "```" lang "\n" body "```"
lang ::= [a-zA-Z0-9_+#-]{0,12}
body ::= ( [^`] | "`" [^`] | "``" [^`] )*
"#;

/// The question a prose action (Explain) asks in chat.
pub fn prose_question(kind: ActionKind) -> String {
    kind.instruction(&[], None)
}

/// Runs an editing action on the selection (or the enclosing scope when it is empty) and returns
/// the edit to apply.
pub async fn run(
    engine: &Engine,
    snapshot: &ContextSnapshot,
    kind: ActionKind,
    selection: Range<usize>,
    diagnostics: &[String],
    instruction: Option<&str>,
    max_tokens: u32,
) -> Result<Edit, Error> {
    let document = &snapshot.current;
    let target = target_range(document, selection.clone());
    let fence = fence_name(document.language);
    let code = describe_code(snapshot, engine, selection).text();
    let ask = kind.instruction(diagnostics, instruction);
    let format = match kind {
        ActionKind::WriteTests => format!("Answer with one ```{fence} code block containing only the new tests."),
        _ => format!("Answer with one ```{fence} code block containing the complete replacement for the code shown, and nothing else."),
    };
    let request = ChatRequest {
        messages: vec![
            message(
                "system",
                "You are Wellspring, a coding assistant that edits code inside the user's editor.",
            ),
            message("user", format!("{code}\n{ask}\n{format}")),
        ],
        max_tokens,
        grammar: Some(CODE_BLOCK_GRAMMAR.to_owned()),
        sampling: SamplingConfig::default(),
    };
    // The edit is applied whole; nobody watches it stream.
    let (deltas, _ignored) = mpsc::unbounded_channel();
    let outcome = engine.chat(request, deltas).await?;
    let new_code = extract_code(&outcome.text).ok_or(Error::NoCode)?;
    let old_code = text::slice(&document.rope, target.clone());
    let edit = match kind {
        ActionKind::WriteTests => {
            let indent = leading_indent(&old_code);
            let mut new_text = String::from(if old_code.ends_with('\n') {
                "\n"
            } else {
                "\n\n"
            });
            new_text.push_str(&reindent(&new_code, &indent));
            Edit {
                range: target.end..target.end,
                new_text,
            }
        }
        _ => {
            let mut new_text = reindent(&new_code, &leading_indent(&old_code));
            // The replacement ends the way the replaced code did, so no blank line is added or
            // lost after it.
            if old_code.ends_with('\n') {
                if !new_text.ends_with('\n') {
                    new_text.push('\n');
                }
            } else {
                new_text.truncate(new_text.trim_end_matches(['\n', '\r']).len());
            }
            if new_text.trim() == old_code.trim() {
                return Err(Error::NoChange);
            }
            Edit {
                range: target,
                new_text,
            }
        }
    };
    if breaks_syntax(snapshot, &edit) {
        return Err(Error::BreaksSyntax);
    }
    Ok(edit)
}

/// The body of the first fenced code block in `answer`.
pub fn extract_code(answer: &str) -> Option<String> {
    let start = answer.find("```")?;
    let after_fence = &answer[start + 3..];
    let body_start = after_fence.find('\n')? + 1;
    let body = &after_fence[body_start..];
    let body = match body.find("```") {
        Some(end) => &body[..end],
        // A block cut off by the token limit: keep what came.
        None => body,
    };
    let body = body.trim_end_matches([' ', '\t']);
    (!body.trim().is_empty()).then(|| body.to_owned())
}

fn leading_indent(code: &str) -> String {
    code.lines()
        .find(|line| !line.trim().is_empty())
        .map(|line| line[..line.len() - line.trim_start().len()].to_owned())
        .unwrap_or_default()
}

/// Shifts `code` so its first non-blank line starts at `indent`, keeping relative indentation.
fn reindent(code: &str, indent: &str) -> String {
    let current = leading_indent(code);
    if current == indent {
        return code.to_owned();
    }
    code.split_inclusive('\n')
        .map(|line| {
            if line.trim().is_empty() {
                line.trim_start_matches([' ', '\t']).to_owned()
            } else if let Some(rest) = line.strip_prefix(current.as_str()) {
                format!("{indent}{rest}")
            } else {
                format!("{indent}{}", line.trim_start())
            }
        })
        .collect()
}

/// Whether applying `edit` turns a document without syntax errors into one with them.
fn breaks_syntax(snapshot: &ContextSnapshot, edit: &Edit) -> bool {
    let document = &snapshot.current;
    let (Some(language), Some(tree)) = (document.language, document.tree.as_ref()) else {
        return false;
    };
    if tree.root_node().has_error() {
        return false;
    }
    let mut text = document.rope.to_string();
    text.replace_range(edit.range.clone(), &edit.new_text);
    let mut parser = language.parser();
    parser
        .parse(&text, None)
        .is_none_or(|tree| tree.root_node().has_error())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_blocks_are_extracted() {
        assert_eq!(
            extract_code("Sure:\n```rust\nfn a() {}\n```\nDone").as_deref(),
            Some("fn a() {}\n")
        );
        assert_eq!(extract_code("```\nx = 1\n").as_deref(), Some("x = 1\n"));
        assert_eq!(extract_code("no code here"), None);
        assert_eq!(extract_code("```py\n   \n```"), None);
    }

    #[test]
    fn reindent_keeps_relative_indentation() {
        let code = "def f():\n    return 1\n";
        assert_eq!(reindent(code, "    "), "    def f():\n        return 1\n");
        assert_eq!(reindent("  a\n\n    b\n", ""), "a\n\n  b\n");
    }

    #[test]
    fn action_ids_round_trip() {
        for kind in ActionKind::ALL {
            assert_eq!(ActionKind::from_id(kind.id()), Some(kind));
            assert!(!kind.name().is_empty());
        }
    }
}
