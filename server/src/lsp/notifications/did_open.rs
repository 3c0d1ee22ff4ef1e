//! `textDocument/didOpen`: store the text and parse it.

use tower_lsp_server::ls_types::DidOpenTextDocumentParams;

use crate::lsp::{Server, State};

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
        server.state.finish_parse_in_background(uri, opened.version);
    }
    if let Some(engine) = server.state.engine() {
        State::warm_token_counts_in_background(&engine, vec![opened]);
    }
}
