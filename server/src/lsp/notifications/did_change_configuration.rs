//! `workspace/didChangeConfiguration`: replace the client's live settings layer.

use tower_lsp_server::ls_types::{DidChangeConfigurationParams, MessageType};

use std::sync::Arc;

use crate::lsp::{engine_loader, Server};

pub(crate) async fn handle(server: &Server, params: DidChangeConfigurationParams) {
    let settings = params.settings;
    let before = server.state.config();
    match server
        .state
        .update_layers(|layers| layers.did_change_configuration = Some(settings))
    {
        Ok(config) => {
            tracing::info!(?config, "configuration changed");
            if config.model != before.model || config.engine != before.engine {
                engine_loader::load(server.client.clone(), Arc::clone(&server.state));
            }
        }
        Err(error) => {
            tracing::error!("ignoring configuration change: {error}");
            server
                .client
                .show_message(MessageType::ERROR, format!("Wellspring: {error}"))
                .await;
        }
    }
}
