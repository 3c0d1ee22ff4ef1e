//! `workspace/executeCommand`: chat (streamed), explain (a chat the server starts), instruct and
//! applyAction (edits applied with `workspace/applyEdit`).

use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::mpsc;
use tower_lsp_server::jsonrpc::{self, Result};
use tower_lsp_server::ls_types::*;

use super::code_action_resolve::{compute_edit, edit_for};
use super::{document_range, engine_unavailable, report_engine_error};
use crate::assist::actions::{self, ActionKind};
use crate::assist::chat;
use crate::engine::ChatMessage;
use crate::lsp::ext::{
    self, ChatArgs, ChatProgress, ChatProgressParams, ChatResult, CodeActionData, InstructArgs,
    RangeArgs,
};
use crate::lsp::{invalid_params, Server};

/// The commands this server executes, for the `executeCommandProvider` capability.
pub(crate) const COMMANDS: [&str; 4] = [
    ext::COMMAND_CHAT,
    ext::COMMAND_EXPLAIN,
    ext::COMMAND_INSTRUCT,
    ext::COMMAND_APPLY_ACTION,
];

fn single_argument<T: DeserializeOwned>(command: &str, arguments: Vec<Value>) -> Result<T> {
    let argument = arguments
        .into_iter()
        .next()
        .ok_or_else(|| invalid_params(format!("{command} takes one argument")))?;
    serde_json::from_value(argument).map_err(|error| invalid_params(format!("{command}: {error}")))
}

pub(crate) async fn handle(server: &Server, params: ExecuteCommandParams) -> Result<Option<Value>> {
    let command = params.command.as_str();
    let result = match command {
        ext::COMMAND_CHAT => {
            let args: ChatArgs = single_argument(command, params.arguments)?;
            let history = args
                .history
                .iter()
                .map(|message| ChatMessage {
                    role: message.role.clone(),
                    content: message.content.clone(),
                })
                .collect::<Vec<_>>();
            let title = format!("Chat: {}", args.question.lines().next().unwrap_or_default());
            to_value(
                stream_chat(
                    server,
                    args.chat_id,
                    title,
                    args.text_document.uri.as_str(),
                    args.range,
                    &args.question,
                    &history,
                )
                .await?,
            )
        }
        ext::COMMAND_EXPLAIN => {
            let args: RangeArgs = single_argument(command, params.arguments)?;
            let question = actions::prose_question(ActionKind::Explain);
            let chat_id = server.state.next_chat_id();
            to_value(
                stream_chat(
                    server,
                    chat_id,
                    "Explain".to_owned(),
                    args.text_document.uri.as_str(),
                    args.range,
                    &question,
                    &[],
                )
                .await?,
            )
        }
        ext::COMMAND_INSTRUCT => {
            let args: InstructArgs = single_argument(command, params.arguments)?;
            let edit = edit_for(
                server,
                ActionKind::Instruct,
                args.text_document.uri.as_str(),
                args.range,
                None,
                &[],
                Some(&args.instruction),
            )
            .await?;
            apply(server, "Wellspring: edit with instruction", edit).await?
        }
        ext::COMMAND_APPLY_ACTION => {
            let data: CodeActionData = single_argument(command, params.arguments)?;
            let edit = compute_edit(server, &data).await?;
            apply(server, "Wellspring", edit).await?
        }
        _ => return Err(invalid_params(format!("unknown command {command}"))),
    };
    Ok(Some(result))
}

fn to_value<T: serde::Serialize>(value: T) -> Value {
    serde_json::to_value(value).expect("result types serialise")
}

async fn apply(server: &Server, label: &str, edit: WorkspaceEdit) -> Result<Value> {
    tracing::info!(label, "asking the client to apply an edit");
    let response = server.client.apply_edit(edit.clone()).await?;
    if !response.applied {
        let reason = response
            .failure_reason
            .unwrap_or_else(|| "the client refused it".to_owned());
        return Err(invalid_params(format!(
            "{label}: the edit was not applied: {reason}"
        )));
    }
    Ok(to_value(edit))
}

/// Answers a question about `range` of `uri`, streaming the answer as `wellspring/chatProgress`.
async fn stream_chat(
    server: &Server,
    chat_id: String,
    title: String,
    uri: &str,
    range: Range,
    question: &str,
    history: &[ChatMessage],
) -> Result<ChatResult> {
    let (document, selection) = document_range(server, uri, range)?;
    let engine = server
        .state
        .engine()
        .ok_or_else(|| engine_unavailable(server))?;
    let snapshot = server.state.context_snapshot(document);
    let messages = chat::messages(&snapshot, &engine, selection, question, history);
    let (deltas_tx, mut deltas_rx) = mpsc::unbounded_channel::<String>();
    let client = server.client.clone();
    let forward_id = chat_id.clone();
    // Deltas are sent in order by one task; the response waits for it, so it comes after them.
    let forwarder = tokio::spawn(async move {
        let mut title = Some(title);
        while let Some(delta) = deltas_rx.recv().await {
            let params = ChatProgressParams {
                chat_id: forward_id.clone(),
                title: title.take(),
                delta,
                done: false,
            };
            client.send_notification::<ChatProgress>(params).await;
        }
        let params = ChatProgressParams {
            chat_id: forward_id,
            title: title.take(),
            delta: String::new(),
            done: true,
        };
        client.send_notification::<ChatProgress>(params).await;
    });
    let outcome = chat::answer(
        &engine,
        messages,
        deltas_tx,
        server.state.config().chat.max_tokens,
    )
    .await;
    let _ = forwarder.await;
    match outcome {
        Ok(outcome) => Ok(ChatResult {
            chat_id,
            text: outcome.text,
        }),
        Err(error) => {
            report_engine_error(server, "chat", &error).await;
            Err(jsonrpc::Error {
                code: jsonrpc::ErrorCode::ServerError(-32002),
                message: format!("chat failed: {error}").into(),
                data: None,
            })
        }
    }
}
