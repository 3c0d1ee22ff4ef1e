//! `workspace/executeCommand`: chat (streamed, see `lsp/chat.rs`), explain (a chat the server
//! starts), instruct and applyAction (edits applied with `workspace/applyEdit`), and
//! downloadModel (the model a `noModel` status offered).

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::Value;
use tower_lsp_server::jsonrpc::Result;
use tower_lsp_server::ls_types::*;

use super::document_range;
use crate::assist::actions::{self, ActionKind};
use crate::engine::ChatMessage;
use crate::lsp::chat::{stream_chat, Question};
use crate::lsp::edits;
use crate::lsp::engine_loader;
use crate::lsp::ext::{self, ChatArgs, CodeActionData, InstructArgs, RangeArgs};
use crate::lsp::state::EngineState;
use crate::lsp::{invalid_params, show_failure, Server};

/// The commands this server executes, for the `executeCommandProvider` capability.
pub(crate) const COMMANDS: [&str; 5] = [
    ext::COMMAND_CHAT,
    ext::COMMAND_EXPLAIN,
    ext::COMMAND_INSTRUCT,
    ext::COMMAND_APPLY_ACTION,
    ext::COMMAND_DOWNLOAD_MODEL,
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
    let token = params.work_done_progress_params.work_done_token;
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
            let question = Question {
                chat_id: args.chat_id,
                title,
                uri: args.text_document.uri.as_str(),
                range: args.range,
                text: &args.question,
                history: &history,
            };
            to_value(stream_chat(server, question, token).await?)
        }
        ext::COMMAND_EXPLAIN => {
            let args: RangeArgs = single_argument(command, params.arguments)?;
            let text = actions::prose_question(ActionKind::Explain);
            let question = Question {
                chat_id: server.state.next_chat_id(),
                title: "Explain".to_owned(),
                uri: args.text_document.uri.as_str(),
                range: args.range,
                text: &text,
                history: &[],
            };
            to_value(stream_chat(server, question, token).await?)
        }
        ext::COMMAND_INSTRUCT => {
            let args: InstructArgs = single_argument(command, params.arguments)?;
            let (document, selection) =
                document_range(server, args.text_document.uri.as_str(), args.range)?;
            let computed = edits::compute(
                server,
                ActionKind::Instruct,
                document,
                selection,
                &[],
                Some(&args.instruction),
            )
            .await?;
            to_value(edits::apply(server, &computed).await?)
        }
        ext::COMMAND_APPLY_ACTION => {
            let data: CodeActionData = single_argument(command, params.arguments)?;
            if let Some(job) = &data.job {
                // `codeAction/resolve` handed this edit over before the model was done. It
                // applies itself when done; if this server never heard of it (it restarted
                // since), the action runs again, in the background like the original.
                if !server.state.was_handed_over(job) {
                    let server = server.clone();
                    tokio::spawn(async move {
                        if let Err(error) = run_action_again(&server, &data).await {
                            show_failure(&server, &error).await;
                        }
                    });
                }
                return Ok(None);
            }
            let (kind, document, selection) = edits::offered_target(server, &data)?;
            let computed =
                edits::compute(server, kind, document, selection, &data.diagnostics, None).await?;
            to_value(edits::apply(server, &computed).await?)
        }
        ext::COMMAND_DOWNLOAD_MODEL => {
            let engine_state = server.state.engine_state();
            let EngineState::NoModel(offer) = engine_state else {
                return Err(invalid_params(format!(
                    "{command}: there is nothing to download (the model is {}); set model.path to choose another",
                    engine_state.wire().name()
                )));
            };
            tracing::info!(spec = %offer.spec, "the user asked to download the default model");
            server.state.approve_default_download();
            engine_loader::load(server.client.clone(), Arc::clone(&server.state));
            return Ok(None);
        }
        _ => return Err(invalid_params(format!("unknown command {command}"))),
    };
    Ok(Some(result))
}

fn to_value<T: serde::Serialize>(value: T) -> Value {
    serde_json::to_value(value).expect("result types serialise")
}

/// Runs a code action whose handed-over job this server does not know, and applies its edit.
async fn run_action_again(server: &Server, data: &CodeActionData) -> Result<()> {
    let (kind, document, selection) = edits::offered_target(server, data)?;
    let computed =
        edits::compute(server, kind, document, selection, &data.diagnostics, None).await?;
    edits::apply(server, &computed).await?;
    Ok(())
}
