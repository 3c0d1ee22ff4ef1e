//! One file per request method, plus the lookups they share.

pub(super) mod code_action;
pub(super) mod code_action_resolve;
pub(super) mod completion;
pub(super) mod document_state;
pub(super) mod execute_command;
pub(super) mod initialize;
pub(super) mod inline_completion;
pub(super) mod server_info;
pub(super) mod shutdown;
pub(super) mod stats;

use std::sync::Arc;

use tower_lsp_server::jsonrpc;
use tower_lsp_server::ls_types::{MessageType, Position, Range};

use crate::docs::{Document, DocumentKind};
use crate::lsp::convert::{self, Leniency};
use crate::lsp::{invalid_params, Server};

/// The open document at `uri` and the byte offset of `position` in it.
pub(crate) fn document_at(
    server: &Server,
    uri: &str,
    position: Position,
) -> jsonrpc::Result<(Arc<Document>, usize)> {
    let document = open_document(server, uri)?;
    let byte_idx = convert::byte_offset(
        &document.rope,
        position,
        server.state.encoding(),
        Leniency::Strict,
    )
    .map_err(|error| invalid_params(format!("{uri}: {error}")))?;
    Ok((document, byte_idx))
}

/// The open document at `uri` and `range` as bytes.
pub(crate) fn document_range(
    server: &Server,
    uri: &str,
    range: Range,
) -> jsonrpc::Result<(Arc<Document>, std::ops::Range<usize>)> {
    let document = open_document(server, uri)?;
    let bytes = byte_range_in(server, &document, range)?;
    Ok((document, bytes))
}

/// `range` as bytes of `document` (this snapshot, whatever the store holds by now).
pub(crate) fn byte_range_in(
    server: &Server,
    document: &Document,
    range: Range,
) -> jsonrpc::Result<std::ops::Range<usize>> {
    convert::byte_range(
        &document.rope,
        range,
        server.state.encoding(),
        Leniency::Strict,
    )
    .map_err(|error| invalid_params(format!("{}: {error}", document.uri)))
}

pub(crate) fn open_document(server: &Server, uri: &str) -> jsonrpc::Result<Arc<Document>> {
    let document = server
        .state
        .documents
        .get(uri)
        .ok_or_else(|| invalid_params(format!("document {uri} is not open")))?;
    if document.kind == DocumentKind::Binary {
        return Err(invalid_params(format!("document {uri} is binary")));
    }
    Ok(document)
}

/// Reports an engine failure: a log line always, a message to the user once per distinct error.
pub(crate) async fn report_engine_error(
    server: &Server,
    what: &str,
    error: impl std::fmt::Display,
) {
    let message = format!("{what} failed: {error}");
    tracing::error!("{message}");
    if server.state.should_show_error(&message) {
        server
            .client
            .show_message(MessageType::ERROR, format!("Wellspring: {message}"))
            .await;
    }
}

/// The error a request gets when the model is not ready.
pub(crate) fn engine_unavailable(server: &Server) -> jsonrpc::Error {
    let message = match server.state.engine_state() {
        crate::lsp::state::EngineState::Loading { .. } => "the model is still loading".to_owned(),
        crate::lsp::state::EngineState::Failed(error) => {
            format!("the model is not available: {error}")
        }
        crate::lsp::state::EngineState::Disabled => "no model is configured".to_owned(),
        crate::lsp::state::EngineState::NoModel(offer) => format!(
            "no model yet: the default, {}, is not downloaded; download it (wellspring.downloadModel) or set model.path",
            offer.description
        ),
        crate::lsp::state::EngineState::Ready(_) => "the model is ready".to_owned(),
    };
    jsonrpc::Error {
        code: jsonrpc::ErrorCode::ServerError(-32001),
        message: message.into(),
        data: None,
    }
}
