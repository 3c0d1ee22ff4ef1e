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

    let resolves_edits = params
        .capabilities
        .text_document
        .as_ref()
        .and_then(|text_document| text_document.code_action.as_ref())
        .and_then(|code_action| code_action.resolve_support.as_ref())
        .is_some_and(|support| support.properties.iter().any(|property| property == "edit"));
    server
        .state
        .set_client_resolves_code_actions(resolves_edits);

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
            inline_completion_provider: Some(OneOf::Left(true)),
            completion_provider: Some(CompletionOptions {
                resolve_provider: Some(false),
                ..CompletionOptions::default()
            }),
            code_action_provider: Some(CodeActionProviderCapability::Options(CodeActionOptions {
                code_action_kinds: Some(vec![
                    CodeActionKind::QUICKFIX,
                    CodeActionKind::REFACTOR,
                    CodeActionKind::REFACTOR_REWRITE,
                ]),
                resolve_provider: Some(true),
                ..CodeActionOptions::default()
            })),
            execute_command_provider: Some(ExecuteCommandOptions {
                commands: super::execute_command::COMMANDS
                    .iter()
                    .map(|command| (*command).to_owned())
                    .collect(),
                ..ExecuteCommandOptions::default()
            }),
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
