//! `textDocument/inlineCompletion`: ghost text at the cursor.

use std::time::Duration;

use tower_lsp_server::jsonrpc::Result;
use tower_lsp_server::ls_types::*;

use super::{document_at, report_engine_error};
use crate::assist::completion::{self, Trigger};
use crate::config::Config;
use crate::docs::Document;
use crate::engine;
use crate::lsp::convert::{self, Leniency};
use crate::lsp::engine_loader::send_status;
use crate::lsp::{invalid_params, Server};

/// Whether completions are wanted for this document at all.
pub(crate) fn completions_wanted(config: &Config, document: &Document) -> bool {
    config.completion.enabled
        && !config
            .completion
            .disabled_languages
            .iter()
            .any(|language_id| language_id == &document.language_id)
}

pub(crate) async fn handle(
    server: &Server,
    params: InlineCompletionParams,
) -> Result<Option<InlineCompletionResponse>> {
    let position = params.text_document_position;
    let uri = position.text_document.uri.as_str();
    let (document, cursor_byte) = document_at(server, uri, position.position)?;
    let config = server.state.config();
    let Some(engine) = server
        .state
        .engine()
        .filter(|_| completions_wanted(&config, &document))
    else {
        return Ok(None);
    };
    if config.completion.debounce_ms > 0 {
        tokio::time::sleep(Duration::from_millis(config.completion.debounce_ms)).await;
        if server
            .state
            .documents
            .get(uri)
            .is_none_or(|latest| latest.version != document.version)
        {
            return Ok(None);
        }
    }
    let encoding = server.state.encoding();
    let rope = document.rope.clone();
    let mut snapshot = server.state.context_snapshot(document);
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
    let suggestions =
        match completion::suggest(&engine, &snapshot, cursor_byte, trigger, &config).await {
            Ok(suggestions) => suggestions,
            Err(engine::Error::Superseded) => return Ok(None),
            Err(error) => {
                report_engine_error(server, "completion", error).await;
                return Ok(None);
            }
        };
    server.state.clear_shown_error();
    if let Some(first) = suggestions.first() {
        send_status(
            &server.client,
            &server.state,
            None,
            Some(first.figures.t_total_ms),
        )
        .await;
    }
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
