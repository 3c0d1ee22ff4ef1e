//! `initialize`: negotiate the position encoding, take the client's settings and roots, and
//! advertise exactly what is implemented.

use std::path::PathBuf;

use tower_lsp_server::jsonrpc::Result;
use tower_lsp_server::ls_types::*;

use crate::assist::completion;
use crate::lsp::convert::PositionEncoding;
use crate::lsp::state::ClientSupport;
use crate::lsp::Server;

pub(crate) async fn handle(server: &Server, params: InitializeParams) -> Result<InitializeResult> {
    let offered = params
        .capabilities
        .general
        .as_ref()
        .and_then(|general| general.position_encodings.as_deref());
    let encoding = PositionEncoding::negotiate(offered);
    server.state.set_encoding(encoding);

    let mut support = client_support(&params.capabilities);
    // Helix opens documents the server shows (file URIs) since 24.03, but announces it only
    // in releases after 25.07; without it, chat answers would reach Helix as one status line.
    if params
        .client_info
        .as_ref()
        .is_some_and(|client| client.name == "helix")
    {
        support.show_document = true;
    }
    server.state.set_client_support(support);

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
                trigger_characters: Some(
                    completion::TRIGGER_CHARACTERS
                        .iter()
                        .map(|trigger| (*trigger).to_owned())
                        .collect(),
                ),
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

/// The parts of the client's capabilities that change what the server sends.
fn client_support(capabilities: &ClientCapabilities) -> ClientSupport {
    let resolves_code_actions = capabilities
        .text_document
        .as_ref()
        .and_then(|text_document| text_document.code_action.as_ref())
        .and_then(|code_action| code_action.resolve_support.as_ref())
        .is_some_and(|support| support.properties.iter().any(|property| property == "edit"));
    let document_changes = capabilities
        .workspace
        .as_ref()
        .and_then(|workspace| workspace.workspace_edit.as_ref())
        .and_then(|workspace_edit| workspace_edit.document_changes)
        .unwrap_or(false);
    let window = capabilities.window.as_ref();
    let work_done_progress = window
        .and_then(|window| window.work_done_progress)
        .unwrap_or(false);
    let show_document = window
        .and_then(|window| window.show_document.as_ref())
        .is_some_and(|show_document| show_document.support);
    let experimental = |name: &str| {
        capabilities
            .experimental
            .as_ref()
            .and_then(|experimental| experimental.get("wellspring"))
            .and_then(|wellspring| wellspring.get(name))
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false)
    };
    ClientSupport {
        resolves_code_actions,
        document_changes,
        work_done_progress,
        show_document,
        chat_progress: experimental("chatProgress"),
        instruct_prompt: experimental("instructPrompt"),
    }
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
