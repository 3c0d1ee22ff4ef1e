//! The completion flow that `textDocument/inlineCompletion`, `textDocument/completion` and
//! `wellspring/warm` share: which engine serves a document, the request's target once the
//! optional debounce has passed, and asking for suggestions with the server's policy for errors
//! (reported once) and the status bar (the latency after a success).

use std::sync::Arc;
use std::time::Duration;

use tower_lsp_server::jsonrpc::Result;
use tower_lsp_server::ls_types::TextDocumentPositionParams;

use super::engine_loader::send_status;
use super::requests::{document_at, report_engine_error};
use super::Server;
use crate::assist::completion::{self, Suggestion, Trigger};
use crate::config::Config;
use crate::context::ContextSnapshot;
use crate::docs::Document;
use crate::engine::{self, Engine};

/// The engine to complete `document` with, and the settings it runs under; `None` when the model
/// is not loaded or completions are off for this document.
pub(crate) fn completion_engine(server: &Server, document: &Document) -> Option<(Engine, Config)> {
    let config = server.state.config();
    let wanted = completion::enabled_for(&config.completion, &document.language_id);
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
