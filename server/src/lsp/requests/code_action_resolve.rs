//! `codeAction/resolve`: run the chosen action on the model and attach its `WorkspaceEdit`.

use std::collections::HashMap;

use tower_lsp_server::jsonrpc::{self, Result};
use tower_lsp_server::ls_types::*;

use super::{document_range, engine_unavailable};
use crate::assist::actions::{self, ActionKind};
use crate::lsp::ext::CodeActionData;
use crate::lsp::{convert, invalid_params, Server};

pub(crate) async fn handle(server: &Server, mut action: CodeAction) -> Result<CodeAction> {
    // Clients resolve every action they run, including the ones that carry a command and need
    // nothing resolved (Explain, Edit with instruction).
    let Some(data) = action.data.clone() else {
        return Ok(action);
    };
    let data: CodeActionData = serde_json::from_value(data)
        .map_err(|error| invalid_params(format!("code action data: {error}")))?;
    action.edit = Some(compute_edit(server, &data).await?);
    Ok(action)
}

/// Runs the action described by `data` and returns the edit, for resolve and `wellspring.applyAction`.
pub(crate) async fn compute_edit(server: &Server, data: &CodeActionData) -> Result<WorkspaceEdit> {
    let kind = ActionKind::from_id(&data.action)
        .ok_or_else(|| invalid_params(format!("unknown action {:?}", data.action)))?;
    edit_for(
        server,
        kind,
        &data.uri,
        data.range,
        Some(data.version),
        &data.diagnostics,
        None,
    )
    .await
}

/// Runs an editing action on `range` of `uri` and returns the `WorkspaceEdit`.
pub(crate) async fn edit_for(
    server: &Server,
    kind: ActionKind,
    uri: &str,
    range: Range,
    version: Option<i32>,
    diagnostics: &[String],
    instruction: Option<&str>,
) -> Result<WorkspaceEdit> {
    let (document, selection) = document_range(server, uri, range)?;
    if version.is_some_and(|version| version != document.version) {
        return Err(invalid_params(
            "the document changed since the action was offered; ask for code actions again",
        ));
    }
    let engine = server
        .state
        .engine()
        .ok_or_else(|| engine_unavailable(server))?;
    let rope = document.rope.clone();
    let snapshot = server.state.context_snapshot(document);
    let edit = actions::run(
        &engine,
        &snapshot,
        kind,
        selection,
        diagnostics,
        instruction,
        server.state.config().chat.max_edit_tokens,
    )
    .await
    .map_err(|error| jsonrpc::Error {
        code: jsonrpc::ErrorCode::ServerError(-32002),
        message: format!("{}: {error}", kind.title()).into(),
        data: None,
    })?;
    let text_edit = TextEdit {
        range: convert::range(&rope, edit.range, server.state.encoding()),
        new_text: edit.new_text,
    };
    let uri: Uri = uri
        .parse()
        .map_err(|_| invalid_params(format!("invalid uri {uri}")))?;
    Ok(WorkspaceEdit {
        changes: Some(HashMap::from([(uri, vec![text_edit])])),
        ..WorkspaceEdit::default()
    })
}
