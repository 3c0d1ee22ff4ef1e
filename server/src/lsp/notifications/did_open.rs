//! `textDocument/didOpen`: store the text and parse it.

use std::sync::Arc;

use tower_lsp_server::ls_types::DidOpenTextDocumentParams;

use crate::context;
use crate::docs::{Document, DocumentKind};
use crate::engine::Engine;
use crate::lsp::Server;

pub(crate) async fn handle(server: &Server, params: DidOpenTextDocumentParams) {
    let document = params.text_document;
    let uri = document.uri.as_str();
    let (opened, needs_parse) =
        server
            .state
            .documents
            .open(uri, &document.language_id, document.version, &document.text);
    tracing::info!(
        uri,
        version = opened.version,
        n_bytes = opened.rope.len_bytes(),
        language = ?opened.language,
        kind = ?opened.kind,
        "opened"
    );
    if needs_parse {
        finish_parse_in_background(server, uri, opened.version);
    }
    if let Some(engine) = server.state.engine() {
        warm_token_counts_in_background(&engine, vec![opened]);
    }
}

/// Counts the lines of just-opened documents with the engine's (remembering) token counter on a
/// blocking worker, so the first prompt built in each finds them counted. The engine does this
/// for the documents already open when a model finishes loading.
pub(crate) fn warm_token_counts_in_background(engine: &Engine, documents: Vec<Arc<Document>>) {
    let tokens = engine.token_counter();
    tokio::task::spawn_blocking(move || {
        for document in documents {
            if document.kind != DocumentKind::Binary {
                context::warm_line_counts(&document.rope, &*tokens, context::MAX_WARM_LINES);
            }
        }
    });
}

/// Moves a parse that overran the synchronous budget to a blocking worker.
pub(crate) fn finish_parse_in_background(server: &Server, uri: &str, version: i32) {
    let state = Arc::clone(&server.state);
    let uri = uri.to_owned();
    tokio::task::spawn_blocking(move || state.documents.finish_parse(&uri, version));
}
