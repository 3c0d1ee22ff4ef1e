//! `textDocument/didClose`: forget the document.

use tower_lsp_server::ls_types::DidCloseTextDocumentParams;

use crate::lsp::Server;

pub(crate) async fn handle(server: &Server, params: DidCloseTextDocumentParams) {
    let uri = params.text_document.uri.as_str();
    if server.state.documents.close(uri).is_none() {
        tracing::warn!(uri, "didClose for a document that is not open");
    }
}
