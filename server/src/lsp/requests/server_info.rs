//! `wellspring/serverInfo`: version and session facts, for health checks.

use tower_lsp_server::jsonrpc::Result;

use crate::engine::ChatModel;
use crate::lsp::ext::ServerInfoResult;
use crate::lsp::Server;

pub(crate) async fn handle(server: &Server) -> Result<ServerInfoResult> {
    let encoding = server.state.encoding().to_kind();
    Ok(ServerInfoResult {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        position_encoding: encoding.as_str().to_owned(),
        open_documents: server.state.documents.len(),
        state: server.state.engine_state().name().to_owned(),
        model: server
            .state
            .model_path()
            .map(|path| path.display().to_string()),
        chat_model: server
            .state
            .engine()
            .and_then(|engine| match engine.chat_model() {
                ChatModel::File(path) => Some(path.display().to_string()),
                ChatModel::SameAsCompletion | ChatModel::Unavailable(_) => None,
            }),
        backend: server.state.engine().map_or_else(
            || "none".to_owned(),
            |engine| engine.backend_name().to_owned(),
        ),
    })
}
