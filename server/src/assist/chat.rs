//! Chat about a selection: the messages sent to the model, with the selection, its enclosing
//! scope and the definitions it uses as context.

use std::ops::Range;

use tokio::sync::mpsc;

use super::{fence_name, target_range};
use crate::context::{self, Budget, ContextSnapshot};
use crate::engine::{ChatMessage, ChatOutcome, ChatRequest, Engine, Error, SamplingConfig};
use crate::text;

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

/// The code the user is asking about, described for the model: the definitions and imports the
/// context builder finds for it (`related`, may be empty), and where it is with the code itself.
pub struct CodeDescription {
    pub related: String,
    pub code: String,
}

impl CodeDescription {
    pub fn text(&self) -> String {
        format!("{}{}", self.related, self.code)
    }
}

/// Describes the code the user is asking about: where it is, the code itself, the header of its
/// enclosing scope, and the definitions and imports the context builder finds for it.
pub fn describe_code(
    snapshot: &ContextSnapshot,
    engine: &Engine,
    selection: Range<usize>,
) -> CodeDescription {
    let document = &snapshot.current;
    let target = target_range(document, selection);
    let path = snapshot.display_path(&document.uri);
    let fence = fence_name(document.language);
    let code = text::slice(&document.rope, target.clone());
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
    let mut related = String::new();
    let chunks: Vec<_> = built
        .prompt
        .extra
        .iter()
        .filter(|chunk| chunk.label != "recent-edit" && chunk.label != "recent-view")
        .collect();
    if !chunks.is_empty() {
        related.push_str("Related code:\n");
        for chunk in chunks {
            related.push_str(&format!(
                "From {} ({}):\n```{fence}\n{}\n```\n",
                chunk.path,
                chunk.label,
                chunk.text.trim_end()
            ));
        }
        related.push('\n');
    }
    let line_number = document.rope.byte_to_line(target.start) + 1;
    CodeDescription {
        related,
        code: format!(
            "The code, from {path} line {line_number}:\n```{fence}\n{}\n```\n",
            code.trim_end()
        ),
    }
}

/// A conversation ready for the model, and what had to be left out to fit its context.
pub struct Conversation {
    pub messages: Vec<ChatMessage>,
    /// Said to the user before the answer when something was left out.
    pub notice: Option<String>,
}

/// Tokens a chat template adds around each message (role markers, separators), counted high.
const TEMPLATE_TOKENS_PER_MESSAGE: usize = 8;

/// The conversation for a question about a selection, fitted to the chat context with room for
/// an answer of `max_tokens`: the oldest turns go first, then the related definitions, and the
/// selection is cut only when it alone does not fit. The question is always kept.
pub fn messages(
    snapshot: &ContextSnapshot,
    engine: &Engine,
    selection: Range<usize>,
    question: &str,
    history: &[ChatMessage],
    max_tokens: u32,
) -> Conversation {
    let description = describe_code(snapshot, engine, selection);
    let n_ctx = engine.chat_n_ctx() as usize;
    let budget = n_ctx.saturating_sub((max_tokens as usize).clamp(1, n_ctx / 2));
    let counter = engine.token_counter();
    let count = |text: &str| counter.count_tokens(text) + TEMPLATE_TOKENS_PER_MESSAGE;
    fit(&description, question, history, budget, &count, n_ctx)
}

/// Lays out the conversation and leaves out what does not fit `budget` tokens; see [`messages`].
fn fit(
    description: &CodeDescription,
    question: &str,
    history: &[ChatMessage],
    budget: usize,
    count: &dyn Fn(&str) -> usize,
    n_ctx: usize,
) -> Conversation {
    // The code goes with the first question, so the start of a thread stays the same from turn
    // to turn (and its cached tokens are reused); follow-ups keep the thread as it was.
    let (first_question, middle): (Option<&str>, &[ChatMessage]) = match history.split_first() {
        Some((first, rest)) if first.role == "user" => (Some(first.content.as_str()), rest),
        _ => (None, history),
    };
    let code_message = |description: &str| match first_question {
        Some(first) => format!("{description}\n{first}"),
        None => format!("{description}\n{question}"),
    };
    let fixed_cost = count(SYSTEM_PROMPT)
        + if first_question.is_some() {
            count(question)
        } else {
            0
        };
    let middle_costs: Vec<usize> = middle
        .iter()
        .map(|message| count(&message.content))
        .collect();
    let mut middle_cost: usize = middle_costs.iter().sum();
    let mut related = description.related.as_str();
    let mut code = description.code.clone();
    let over = |middle_cost: usize, description: &str| {
        fixed_cost + middle_cost + count(&code_message(description)) > budget
    };

    // Whole turns go first, oldest first, a question with its answer. The code message stays as
    // it is meanwhile, so it is counted once.
    let whole_code_cost = count(&code_message(&description.text()));
    let mut n_dropped = 0;
    while n_dropped < middle.len() && fixed_cost + middle_cost + whole_code_cost > budget {
        let n_turn = if middle[n_dropped].role == "user" && n_dropped + 1 < middle.len() {
            2
        } else {
            1
        };
        for cost in &middle_costs[n_dropped..n_dropped + n_turn] {
            middle_cost -= cost;
        }
        n_dropped += n_turn;
    }
    let mut left_out = Vec::new();
    if n_dropped > 0 {
        left_out.push(format!(
            "the {n_dropped} oldest messages of this conversation"
        ));
    }
    if !related.is_empty() && fixed_cost + middle_cost + whole_code_cost > budget {
        related = "";
        left_out.push("the related definitions".to_owned());
    }
    if over(middle_cost, &code) {
        let lines: Vec<&str> = description.code.lines().collect();
        // The longest head of the code block that fits, closed again so it stays a code block.
        let cut = |n_kept: usize| {
            format!(
                "{}\n```\n(the last {} lines are left out)\n",
                lines[..n_kept].join("\n"),
                lines.len() - n_kept
            )
        };
        let mut n_fit = 0;
        let mut n_too_many = lines.len();
        while n_fit + 1 < n_too_many {
            let n_try = (n_fit + n_too_many) / 2;
            if over(middle_cost, &cut(n_try)) {
                n_too_many = n_try;
            } else {
                n_fit = n_try;
            }
        }
        code = cut(n_fit);
        left_out.push(format!(
            "all but the first {} lines of the selection",
            n_fit.saturating_sub(2)
        ));
    }

    let mut messages = vec![message("system", SYSTEM_PROMPT)];
    messages.push(message("user", code_message(&format!("{related}{code}"))));
    if first_question.is_some() {
        messages.extend(middle[n_dropped..].iter().cloned());
        messages.push(message("user", question));
    }
    let notice = (!left_out.is_empty()).then(|| {
        format!(
            "To fit the model's {n_ctx}-token context, this answer leaves out {}.",
            left_out.join(", and ")
        )
    });
    Conversation { messages, notice }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// One token per word, as a stand-in for the model's vocabulary; the template adds one per
    /// message.
    fn count(text: &str) -> usize {
        text.split_whitespace().count() + 1
    }

    fn description(n_related_words: usize, n_code_lines: usize) -> CodeDescription {
        CodeDescription {
            related: "related ".repeat(n_related_words),
            code: format!(
                "The code:\n```py\n{}```\n",
                (0..n_code_lines)
                    .map(|i| format!("line {i}\n"))
                    .collect::<String>()
            ),
        }
    }

    fn history(n_turns: usize) -> Vec<ChatMessage> {
        (0..n_turns)
            .flat_map(|turn| {
                [
                    message("user", format!("question {turn} about this")),
                    message("assistant", format!("answer {turn} with four words")),
                ]
            })
            .collect()
    }

    fn total(conversation: &Conversation) -> usize {
        conversation
            .messages
            .iter()
            .map(|message| count(&message.content))
            .sum()
    }

    #[test]
    fn a_conversation_that_fits_is_kept_whole() {
        let fitted = fit(&description(5, 3), "why?", &history(3), 1000, &count, 2048);
        assert_eq!(fitted.notice, None);
        // System, code with the first question, five more turns' messages, the new question.
        assert_eq!(fitted.messages.len(), 1 + 1 + 5 + 1);
        assert!(fitted.messages[1].content.contains("question 0"));
        assert!(fitted.messages[1].content.contains("related related"));
        assert_eq!(fitted.messages.last().unwrap().content, "why?");
    }

    #[test]
    fn the_oldest_turns_go_first_and_the_question_and_code_stay() {
        let long = history(300);
        let budget = 200;
        let fitted = fit(
            &description(5, 3),
            "why is it slow?",
            &long,
            budget,
            &count,
            512,
        );
        assert!(total(&fitted) <= budget, "{}", total(&fitted));
        let notice = fitted.notice.as_deref().unwrap();
        assert!(notice.contains("oldest messages"), "{notice}");
        assert!(notice.contains("512-token context"), "{notice}");
        let code_message = &fitted.messages[1].content;
        assert!(code_message.contains("line 2") && code_message.contains("question 0"));
        // What is left of the thread is its newest end, in order, turns kept whole.
        let kept = &fitted.messages[2..fitted.messages.len() - 1];
        assert_eq!(kept.last().unwrap().content, "answer 299 with four words");
        assert_eq!(kept[0].role, "user");
        assert_eq!(fitted.messages.last().unwrap().content, "why is it slow?");
    }

    #[test]
    fn related_code_goes_before_the_selection_is_cut() {
        let fitted = fit(&description(300, 10), "what?", &[], 100, &count, 512);
        let notice = fitted.notice.as_deref().unwrap();
        assert!(
            notice.contains("related definitions") && !notice.contains("selection"),
            "{notice}"
        );
        assert!(fitted.messages[1].content.contains("line 9"));
        assert!(total(&fitted) <= 100);
    }

    #[test]
    fn a_selection_too_long_alone_is_cut_to_its_head_and_stays_a_code_block() {
        let fitted = fit(&description(0, 500), "what?", &[], 300, &count, 512);
        let notice = fitted.notice.as_deref().unwrap();
        assert!(notice.contains("lines of the selection"), "{notice}");
        let code_message = &fitted.messages[1].content;
        assert!(code_message.contains("line 0") && !code_message.contains("line 499"));
        assert_eq!(code_message.matches("```").count(), 2, "{code_message}");
        assert!(code_message.ends_with("what?"));
        assert!(total(&fitted) <= 300, "{}", total(&fitted));
    }
}
