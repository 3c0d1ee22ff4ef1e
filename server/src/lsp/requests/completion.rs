//! `textDocument/completion`: the fallback for clients without inline completion. One item
//! carrying the whole suggestion, marked incomplete so that typing asks again.

use tower_lsp_server::jsonrpc::Result;
use tower_lsp_server::ls_types::*;

use crate::assist::completion::{self, Trigger};
use crate::lsp::convert;
use crate::lsp::suggest::{suggestions, target};
use crate::lsp::Server;
use crate::text;

/// Longest label shown in the menu; the full text is in the item's documentation.
const MAX_LABEL_CHARS: usize = 60;

pub(crate) async fn handle(
    server: &Server,
    params: CompletionParams,
) -> Result<Option<CompletionResponse>> {
    let Some(target) = target(server, &params.text_document_position).await? else {
        return Ok(None);
    };
    if let Some(trigger) = params.context.as_ref().and_then(|context| {
        (context.trigger_kind == CompletionTriggerKind::TRIGGER_CHARACTER)
            .then_some(context.trigger_character.as_deref())
            .flatten()
    }) {
        let before = text::line_head(&target.document.rope, target.cursor_byte);
        if !completion::triggers_here(target.document.language, &before, trigger) {
            return Ok(None);
        }
    }
    let cursor_byte = target.cursor_byte;
    let rope = target.document.rope.clone();
    let language_id = target.document.language_id.clone();
    let snapshot = server.state.context_snapshot(target.document.clone());
    let suggestions =
        suggestions(server, &target, &snapshot, cursor_byte, Trigger::Automatic).await;
    // The item replaces the word being typed, so the client's filtering keeps it visible.
    let word_start = completion::word_start(&snapshot, cursor_byte);
    let word = rope.byte_slice(word_start..cursor_byte).to_string();
    let range = convert::range(&rope, word_start..cursor_byte, server.state.encoding());
    let items = suggestions
        .into_iter()
        .map(|suggestion| {
            let new_text = format!("{word}{}", suggestion.text);
            let first_line = new_text.lines().next().unwrap_or_default().trim();
            let mut label: String = first_line.chars().take(MAX_LABEL_CHARS).collect();
            if new_text.trim_end().contains('\n') || first_line.chars().count() > MAX_LABEL_CHARS {
                label.push('…');
            }
            CompletionItem {
                label,
                kind: Some(CompletionItemKind::TEXT),
                detail: Some("Wellspring".to_owned()),
                documentation: Some(Documentation::MarkupContent(MarkupContent {
                    kind: MarkupKind::Markdown,
                    value: format!("```{language_id}\n{new_text}\n```"),
                })),
                filter_text: Some(new_text.clone()),
                sort_text: Some("0".to_owned()),
                preselect: Some(true),
                insert_text_format: Some(InsertTextFormat::PLAIN_TEXT),
                text_edit: Some(CompletionTextEdit::Edit(TextEdit { range, new_text })),
                ..CompletionItem::default()
            }
        })
        .collect();
    Ok(Some(CompletionResponse::List(CompletionList {
        is_incomplete: true,
        items,
    })))
}
