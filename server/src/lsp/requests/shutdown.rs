//! `shutdown`: stop accepting work; `exit` (handled by the framework) then ends the process.

use tower_lsp_server::jsonrpc::Result;

use crate::lsp::Server;

pub(crate) async fn handle(server: &Server) -> Result<()> {
    tracing::info!(
        open_documents = server.state.documents.len(),
        "shutdown requested"
    );
    Ok(())
}
