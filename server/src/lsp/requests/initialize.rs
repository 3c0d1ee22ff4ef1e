//! `initialize`: negotiate the position encoding, take the client's settings and roots, and
//! advertise exactly what is implemented.

use std::path::PathBuf;

use tower_lsp_server::jsonrpc::Result;
use tower_lsp_server::ls_types::*;

use crate::lsp::convert::PositionEncoding;
use crate::lsp::Server;

pub(crate) async fn handle(server: &Server, params: InitializeParams) -> Result<InitializeResult> {
    let offered = params
        .capabilities
        .general
        .as_ref()
        .and_then(|general| general.position_encodings.as_deref());
    let encoding = PositionEncoding::negotiate(offered);
    server.state.set_encoding(encoding);

    let roots = workspace_roots(&params);
    server.state.set_workspace_roots(roots);

    if let Some(options) = params.initialization_options {
        if let Err(error) = server
            .state
            .update_layers(|layers| layers.initialization_options = Some(options))
        {
            tracing::error!("ignoring initializationOptions: {error}");
            server
                .client
                .show_message(MessageType::ERROR, format!("Wellspring: {error}"))
                .await;
        }
    }

    Ok(InitializeResult {
        capabilities: ServerCapabilities {
            position_encoding: Some(encoding.to_kind()),
            text_document_sync: Some(TextDocumentSyncCapability::Options(
                TextDocumentSyncOptions {
                    open_close: Some(true),
                    change: Some(TextDocumentSyncKind::INCREMENTAL),
                    save: Some(TextDocumentSyncSaveOptions::Supported(true)),
                    ..TextDocumentSyncOptions::default()
                },
            )),
            ..ServerCapabilities::default()
        },
        server_info: Some(ServerInfo {
            name: "wellspring".to_owned(),
            version: Some(env!("CARGO_PKG_VERSION").to_owned()),
        }),
        offset_encoding: None,
    })
}

fn workspace_roots(params: &InitializeParams) -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = params
        .workspace_folders
        .iter()
        .flatten()
        .filter_map(|folder| folder.uri.to_file_path().map(|path| path.into_owned()))
        .collect();
    #[allow(deprecated)]
    if roots.is_empty() {
        if let Some(path) = params.root_uri.as_ref().and_then(|uri| uri.to_file_path()) {
            roots.push(path.into_owned());
        }
    }
    roots
}
