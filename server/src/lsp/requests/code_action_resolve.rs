//! `codeAction/resolve`: run the chosen action on the model and attach its `WorkspaceEdit`, or,
//! when the model takes longer than `chat.resolve_timeout_ms`, let the edit finish in the
//! background and apply itself (some editors wait for this request on their UI thread), and
//! attach a `wellspring.applyAction` command that names it.

use std::time::Duration;

use tower_lsp_server::jsonrpc::Result;
use tower_lsp_server::ls_types::*;

use crate::lsp::edits::{self, ActionJob};
use crate::lsp::ext::{self, CodeActionData};
use crate::lsp::{invalid_params, Server};

pub(crate) async fn handle(server: &Server, mut action: CodeAction) -> Result<CodeAction> {
    // Clients resolve every action they run, including the ones that carry a command and need
    // nothing resolved (Explain, Edit with instruction).
    let Some(data) = action.data.clone() else {
        return Ok(action);
    };
    let mut data: CodeActionData = serde_json::from_value(data)
        .map_err(|error| invalid_params(format!("code action data: {error}")))?;
    let (kind, document, selection) = edits::offered_target(server, &data)?;
    let mut job = ActionJob::spawn(server, kind, document, selection, data.diagnostics.clone());
    let timeout_ms = server.state.config().chat.resolve_timeout_ms;
    let finished = if timeout_ms == 0 {
        Some(job.finish().await)
    } else {
        tokio::time::timeout(Duration::from_millis(timeout_ms), job.finish())
            .await
            .ok()
    };
    match finished {
        Some(computed) => action.edit = Some(edits::workspace_edit(server, &computed?)?),
        None => {
            tracing::info!(
                action = kind.id(),
                timeout_ms,
                "the model is still writing; resolving to a command that applies the edit later"
            );
            job.apply_when_done(server);
            data.job = Some(server.state.hand_over_action());
            action.command = Some(Command::new(
                kind.title().to_owned(),
                ext::COMMAND_APPLY_ACTION.to_owned(),
                Some(vec![
                    serde_json::to_value(&data).expect("code action data serialises")
                ]),
            ));
        }
    }
    Ok(action)
}
