//! `impl LanguageServer`: the table of contents of the protocol layer, one line per method.

use std::sync::Arc;

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tower_lsp_server::jsonrpc::Result;
use tower_lsp_server::ls_types::*;
use tower_lsp_server::{Client, LanguageServer, LspService};

use super::{ext, guard, guard_notification, notifications, requests, shown, State};
use crate::config::Layers;

#[derive(Clone)]
pub struct Server {
    pub(crate) client: Client,
    pub(crate) state: Arc<State>,
}

impl LanguageServer for Server {
    // Lifecycle.
    async fn initialize(&self, params: InitializeParams) -> Result<InitializeResult> {
        guard("initialize", requests::initialize::handle(self, params)).await
    }

    async fn initialized(&self, _: InitializedParams) {
        guard_notification("initialized", notifications::initialized::handle(self)).await
    }

    async fn shutdown(&self) -> Result<()> {
        guard("shutdown", requests::shutdown::handle(self)).await
    }

    // Notifications that mutate state: each finishes its mutation before its first await.
    async fn did_open(&self, params: DidOpenTextDocumentParams) {
        guard_notification(
            "textDocument/didOpen",
            notifications::did_open::handle(self, params),
        )
        .await
    }

    async fn did_change(&self, params: DidChangeTextDocumentParams) {
        guard_notification(
            "textDocument/didChange",
            notifications::did_change::handle(self, params),
        )
        .await
    }

    async fn did_save(&self, params: DidSaveTextDocumentParams) {
        guard_notification(
            "textDocument/didSave",
            notifications::did_save::handle(self, params),
        )
        .await
    }

    async fn did_close(&self, params: DidCloseTextDocumentParams) {
        guard_notification(
            "textDocument/didClose",
            notifications::did_close::handle(self, params),
        )
        .await
    }

    async fn did_change_configuration(&self, params: DidChangeConfigurationParams) {
        guard_notification(
            "workspace/didChangeConfiguration",
            notifications::did_change_configuration::handle(self, params),
        )
        .await
    }

    // Requests that only read state (snapshot first, then await the model). Failures of the ones
    // the user starts (code actions, commands) are also shown as messages.
    async fn completion(&self, params: CompletionParams) -> Result<Option<CompletionResponse>> {
        guard(
            "textDocument/completion",
            requests::completion::handle(self, params),
        )
        .await
    }

    async fn code_action(&self, params: CodeActionParams) -> Result<Option<CodeActionResponse>> {
        guard(
            "textDocument/codeAction",
            requests::code_action::handle(self, params),
        )
        .await
    }

    async fn code_action_resolve(&self, params: CodeAction) -> Result<CodeAction> {
        let resolved = guard(
            "codeAction/resolve",
            requests::code_action_resolve::handle(self, params),
        );
        shown(self, resolved).await
    }

    async fn execute_command(&self, params: ExecuteCommandParams) -> Result<Option<Value>> {
        let executed = guard(
            "workspace/executeCommand",
            requests::execute_command::handle(self, params),
        );
        shown(self, executed).await
    }
}

impl Server {
    // Methods tower-lsp-server 0.23 has no trait method for, and custom `wellspring/…` requests;
    // registered in `serve`.
    async fn inline_completion(
        &self,
        params: InlineCompletionParams,
    ) -> Result<Option<InlineCompletionResponse>> {
        guard(
            ext::INLINE_COMPLETION,
            requests::inline_completion::handle(self, params),
        )
        .await
    }

    async fn server_info(&self) -> Result<ext::ServerInfoResult> {
        guard(ext::SERVER_INFO, requests::server_info::handle(self)).await
    }

    async fn warm(&self, params: TextDocumentPositionParams) {
        guard_notification(ext::WARM, notifications::warm::handle(self, params)).await;
    }

    async fn stats(&self) -> Result<ext::StatsResult> {
        guard(ext::STATS, requests::stats::handle(self)).await
    }

    async fn document_state(
        &self,
        params: ext::DocumentStateParams,
    ) -> Result<ext::DocumentStateResult> {
        guard(
            ext::DOCUMENT_STATE,
            requests::document_state::handle(self, params),
        )
        .await
    }
}

/// How many client messages may be in progress at once. A chat or an edit is a request that stays
/// open while the model writes (seconds to minutes), and tower-lsp takes no new message, not even
/// a `didChange`, while its limit (4 by default) is used up; so the limit is far above any number
/// of chats a person starts, and the engine's own queue orders the work.
const MAX_MESSAGES_IN_FLIGHT: usize = 1024;

/// Serves LSP on the given streams until the client sends `exit` or hangs up.
pub async fn serve<I, O>(input: I, output: O, layers: Layers)
where
    I: AsyncRead + Unpin,
    O: AsyncWrite + Unpin,
{
    let state = Arc::new(State::new(layers));
    let (service, socket) = LspService::build(|client| Server {
        client,
        state: Arc::clone(&state),
    })
    .custom_method(ext::INLINE_COMPLETION, Server::inline_completion)
    .custom_method(ext::SERVER_INFO, Server::server_info)
    .custom_method(ext::STATS, Server::stats)
    .custom_method(ext::DOCUMENT_STATE, Server::document_state)
    .custom_method(ext::WARM, Server::warm)
    .finish();
    super::transport::guarded(input, output, |server_input, server_output| async move {
        tower_lsp_server::Server::new(server_input, server_output, socket)
            .concurrency_level(MAX_MESSAGES_IN_FLIGHT)
            .serve(service)
            .await;
    })
    .await;
    super::chat::remove_answers();
    tracing::info!("client disconnected; server stopping");
}

pub async fn serve_stdio(layers: Layers) {
    serve(tokio::io::stdin(), tokio::io::stdout(), layers).await
}
