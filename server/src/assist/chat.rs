//! Chat about a selection: the messages sent to the model, with the selection, its enclosing
//! scope and the definitions it uses as context.

use std::ops::Range;

use tokio::sync::mpsc;

use super::{fence_name, slice, target_range};
use crate::context::{self, Budget, ContextSnapshot};
use crate::engine::{ChatMessage, ChatOutcome, ChatRequest, Engine, Error, SamplingConfig};

const SYSTEM_PROMPT: &str = "You are Wellspring, a coding assistant inside the user's editor. \
Answer precisely and briefly. When you show code, use fenced code blocks with the language name.";

/// Tokens of definitions and imports added around the selection.
const CONTEXT_BUDGET_TOKENS: usize = 768;

pub fn message(role: &str, content: impl Into<String>) -> ChatMessage {
    ChatMessage {
        role: role.to_owned(),
        content: content.into(),
    }
}

/// Describes the code the user is asking about: where it is, the code itself, the header of its
/// enclosing scope, and the definitions and imports the context builder finds for it.
pub fn describe_code(
    snapshot: &ContextSnapshot,
    engine: &Engine,
    selection: Range<usize>,
) -> String {
    let document = &snapshot.current;
    let target = target_range(document, selection);
    let path = snapshot.display_path(&document.uri);
    let fence = fence_name(document.language);
    let code = slice(document, target.clone());
    let token_counter = engine.token_counter();
    let built = context::build(
        snapshot,
        target.start,
        &Budget {
            n_prompt_tokens: CONTEXT_BUDGET_TOKENS,
        },
        &engine.caps(),
        token_counter.as_ref(),
    );
    let mut description = String::new();
    let related: Vec<_> = built
        .prompt
        .extra
        .iter()
        .filter(|chunk| chunk.label != "recent-edit" && chunk.label != "recent-view")
        .collect();
    if !related.is_empty() {
        description.push_str("Related code:\n");
        for chunk in related {
            description.push_str(&format!(
                "From {} ({}):\n```{fence}\n{}\n```\n",
                chunk.path,
                chunk.label,
                chunk.text.trim_end()
            ));
        }
        description.push('\n');
    }
    let line_number = document.rope.byte_to_line(target.start) + 1;
    description.push_str(&format!(
        "The code, from {path} line {line_number}:\n```{fence}\n{}\n```\n",
        code.trim_end()
    ));
    description
}

/// The conversation for a question about a selection.
pub fn messages(
    snapshot: &ContextSnapshot,
    engine: &Engine,
    selection: Range<usize>,
    question: &str,
    history: &[ChatMessage],
) -> Vec<ChatMessage> {
    let mut messages = vec![message("system", SYSTEM_PROMPT)];
    let code = describe_code(snapshot, engine, selection);
    match history.split_first() {
        // The code goes with the first question; follow-ups keep the thread as it was.
        Some((first, rest)) if first.role == "user" => {
            messages.push(message("user", format!("{code}\n{}", first.content)));
            messages.extend(rest.iter().cloned());
            messages.push(message("user", question));
        }
        _ => {
            messages.extend(history.iter().cloned());
            messages.push(message("user", format!("{code}\n{question}")));
        }
    }
    messages
}

/// Streams an answer to `messages` through `deltas`; returns the whole answer.
pub async fn answer(
    engine: &Engine,
    messages: Vec<ChatMessage>,
    deltas: mpsc::UnboundedSender<String>,
    max_tokens: u32,
) -> Result<ChatOutcome, Error> {
    let request = ChatRequest {
        messages,
        max_tokens,
        grammar: None,
        sampling: SamplingConfig::default(),
    };
    engine.chat(request, deltas).await
}
