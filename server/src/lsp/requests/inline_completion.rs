//! `textDocument/inlineCompletion`: ghost text at the cursor.

use tower_lsp_server::jsonrpc::Result;
use tower_lsp_server::ls_types::*;

use crate::assist::completion::{self, Trigger};
use crate::lsp::convert::{self, Leniency};
use crate::lsp::suggest::{suggestions, target};
use crate::lsp::{invalid_params, Server};

pub(crate) async fn handle(
    server: &Server,
    params: InlineCompletionParams,
) -> Result<Option<InlineCompletionResponse>> {
    let position = params.text_document_position;
    let uri = position.text_document.uri.as_str();
    let Some(target) = target(server, &position).await? else {
        return Ok(None);
    };
    let cursor_byte = target.cursor_byte;
    let encoding = server.state.encoding();
    let rope = target.document.rope.clone();
    let mut snapshot = server.state.context_snapshot(target.document.clone());
    // With a completion menu open, the suggestion continues the selected item.
    let (replace, cursor_byte, item_text) = match params.context.selected_completion_info {
        Some(selected) => {
            let bytes = convert::byte_range(&rope, selected.range, encoding, Leniency::Strict)
                .map_err(|error| {
                    invalid_params(format!("{uri}: selectedCompletionInfo: {error}"))
                })?;
            let (extended, extended_cursor) =
                completion::with_selected_item(&snapshot, bytes.clone(), &selected.text);
            snapshot = extended;
            (bytes, extended_cursor, selected.text)
        }
        None => (cursor_byte..cursor_byte, cursor_byte, String::new()),
    };
    let trigger = if params.context.trigger_kind == InlineCompletionTriggerKind::INVOKED {
        Trigger::Invoked
    } else {
        Trigger::Automatic
    };
    let suggestions = suggestions(server, &target, &snapshot, cursor_byte, trigger).await;
    let range = convert::range(&rope, replace, encoding);
    let items = suggestions
        .into_iter()
        .map(|suggestion| InlineCompletionItem {
            insert_text: format!("{item_text}{}", suggestion.text),
            filter_text: None,
            range: Some(range),
            command: None,
            insert_text_format: Some(InsertTextFormat::PLAIN_TEXT),
        })
        .collect();
    Ok(Some(InlineCompletionResponse::List(InlineCompletionList {
        items,
    })))
}
