//! `wellspring/warm`: the user is looking at a position (a file opened or focused, the cursor
//! moved to another line). While the engine is idle it evaluates the prompt a completion there
//! would use, so the first keystroke costs only the line.

use tower_lsp_server::ls_types::TextDocumentPositionParams;

use crate::assist::completion;
use crate::lsp::requests::document_at;
use crate::lsp::suggest::completion_engine;
use crate::lsp::Server;

pub(crate) async fn handle(server: &Server, params: TextDocumentPositionParams) {
    let uri = params.text_document.uri.as_str();
    // A notification has no answer: a bad position is logged and nothing else happens.
    let (document, cursor_byte) = match document_at(server, uri, params.position) {
        Ok(found) => found,
        Err(error) => {
            tracing::warn!(uri, error = %error.message, "wellspring/warm ignored");
            return;
        }
    };
    let Some((engine, config)) = completion_engine(server, &document) else {
        return;
    };
    let snapshot = server.state.context_snapshot(document);
    completion::warm(&engine, &snapshot, cursor_byte, &config);
}
