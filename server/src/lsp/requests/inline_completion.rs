//! `textDocument/inlineCompletion`: ghost text at the cursor.

use std::sync::Arc;
use std::time::Duration;

use tower_lsp_server::jsonrpc::Result;
use tower_lsp_server::ls_types::*;

use super::{document_at, report_engine_error};
use crate::assist::completion::{self, Suggestion, Trigger};
use crate::config::Config;
use crate::context::ContextSnapshot;
use crate::docs::Document;
use crate::engine::{self, Engine};
use crate::lsp::convert::{self, Leniency};
use crate::lsp::engine_loader::send_status;
use crate::lsp::{invalid_params, Server};

/// The engine to complete `document` with, and the settings it runs under; `None` when the model
/// is not loaded or completions are off for this document.
pub(crate) fn completion_engine(server: &Server, document: &Document) -> Option<(Engine, Config)> {
    let config = server.state.config();
    let wanted = config.completion.enabled
        && !config
            .completion
            .disabled_languages
            .iter()
            .any(|language_id| language_id == &document.language_id);
    let engine = server.state.engine().filter(|_| wanted)?;
    Some((engine, config))
}

/// What a completion request works on.
pub(crate) struct Target {
    pub document: Arc<Document>,
    pub cursor_byte: usize,
    pub engine: Engine,
    pub config: Config,
}

/// The document, cursor and engine for a completion at `position`, or `None` when completions
/// are off here, the model is not loaded, or a newer edit arrived while `debounce_ms` passed.
/// An invalid position is an error.
pub(crate) async fn target(
    server: &Server,
    position: &TextDocumentPositionParams,
) -> Result<Option<Target>> {
    let uri = position.text_document.uri.as_str();
    let (document, cursor_byte) = document_at(server, uri, position.position)?;
    let Some((engine, config)) = completion_engine(server, &document) else {
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
    Ok(Some(Target {
        document,
        cursor_byte,
        engine,
        config,
    }))
}

/// Asks for suggestions. A request replaced by a newer keystroke has none; other engine errors
/// are reported (once) and give none. A success clears the shown error and puts the latency in
/// the status bar.
pub(crate) async fn suggestions(
    server: &Server,
    target: &Target,
    snapshot: &ContextSnapshot,
    cursor_byte: usize,
    trigger: Trigger,
) -> Vec<Suggestion> {
    let suggestions = match completion::suggest(
        &target.engine,
        snapshot,
        cursor_byte,
        trigger,
        &target.config,
    )
    .await
    {
        Ok(suggestions) => suggestions,
        Err(engine::Error::Superseded | engine::Error::Busy) => return Vec::new(),
        Err(error) => {
            report_engine_error(server, "completion", error).await;
            return Vec::new();
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
    suggestions
}

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
