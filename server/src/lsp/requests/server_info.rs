//! `wellspring/serverInfo`: version and session facts, for health checks.

use tower_lsp_server::jsonrpc::Result;

use crate::engine::{ChatModelState, DraftModelState};
use crate::lsp::ext::{
    ChatModelStateResult, DraftModelStateResult, EngineInfoResult, EngineMode, ServerInfoResult,
};
use crate::lsp::state::EngineState;
use crate::lsp::Server;

pub(crate) async fn handle(server: &Server) -> Result<ServerInfoResult> {
    let encoding = server.state.encoding().to_kind();
    let engine_info = match server.state.engine() {
        Some(engine) => engine.info().await.ok(),
        None => None,
    };
    let chat_model = engine_info
        .as_ref()
        .map(|info| info.chat_model_state.clone());
    let draft_model = engine_info
        .as_ref()
        .map(|info| info.stats.draft_model.clone());
    Ok(ServerInfoResult {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        position_encoding: encoding.as_str().to_owned(),
        open_documents: server.state.documents.len(),
        state: server.state.engine_state().wire(),
        model: server
            .state
            .model_path()
            .map(|path| path.display().to_string()),
        chat_model: match &chat_model {
            Some(ChatModelState::Ready(path)) => Some(path.display().to_string()),
            _ => None,
        },
        chat_model_state: chat_model.as_ref().map(|state| match state {
            ChatModelState::SameAsCompletion => ChatModelStateResult::Same,
            ChatModelState::Loading => ChatModelStateResult::Loading,
            ChatModelState::Ready(_) => ChatModelStateResult::Ready,
            ChatModelState::Unavailable(_) => ChatModelStateResult::Unavailable,
        }),
        chat_model_error: match chat_model {
            Some(ChatModelState::Unavailable(reason)) => Some(reason),
            _ => None,
        },
        draft_model_state: draft_model.as_ref().map(|state| match state {
            DraftModelState::None => DraftModelStateResult::None,
            DraftModelState::Loading => DraftModelStateResult::Loading,
            DraftModelState::Ready => DraftModelStateResult::Ready,
            DraftModelState::Unavailable(_) => DraftModelStateResult::Unavailable,
        }),
        draft_model_error: match draft_model {
            Some(DraftModelState::Unavailable(reason)) => Some(reason),
            _ => None,
        },
        backend: server.state.engine().map_or_else(
            || "none".to_owned(),
            |engine| engine.backend_name().to_owned(),
        ),
        device: server
            .state
            .engine()
            .map(|engine| crate::lsp::convert::device(engine.placement())),
        engine: engine_info.map(|info| EngineInfoResult {
            mode: if info.shared {
                EngineMode::Shared
            } else {
                EngineMode::InProcess
            },
            pid: info.pid,
            socket: info.socket,
            clients: info.n_clients,
            endpoint: info.endpoint,
            token_counting: server
                .state
                .engine()
                .and_then(|engine| engine.token_counting())
                .map(str::to_owned),
        }),
        fim: server.state.engine().map(|engine| engine.caps().has_fim),
        binary: std::env::current_exe()
            .ok()
            .map(|path| path.display().to_string()),
        offer: match server.state.engine_state() {
            EngineState::NoModel(offer) => Some(offer),
            _ => None,
        },
    })
}
