//! `textDocument/didOpen`: store the text and parse it.

use std::sync::Arc;

use tower_lsp_server::ls_types::DidOpenTextDocumentParams;

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
}

/// Moves a parse that overran the synchronous budget to a blocking worker.
pub(crate) fn finish_parse_in_background(server: &Server, uri: &str, version: i32) {
    let state = Arc::clone(&server.state);
    let uri = uri.to_owned();
    tokio::task::spawn_blocking(move || state.documents.finish_parse(&uri, version));
}
