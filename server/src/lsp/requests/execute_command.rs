//! `workspace/executeCommand`: chat (streamed), explain (a chat the server starts), instruct and
//! applyAction (edits applied with `workspace/applyEdit`).
//!
//! Chat streams as `wellspring/chatProgress` to clients that announce it, and otherwise as
//! `$/progress` reports, then opens as a markdown document where the client can show one; the
//! whole answer is always the command's result.

use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::mpsc;
use tower_lsp_server::jsonrpc::{self, Result};
use tower_lsp_server::ls_types::*;
use tower_lsp_server::Client;

use super::{document_range, engine_unavailable};
use crate::assist::actions::{self, ActionKind};
use crate::assist::chat;
use crate::engine::ChatMessage;
use crate::lsp::edits;
use crate::lsp::ext::{
    self, ChatArgs, ChatProgress, ChatProgressParams, ChatResult, CodeActionData, InstructArgs,
    RangeArgs,
};
use crate::lsp::progress::Progress;
use crate::lsp::{invalid_params, show_failure, Server};

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

/// A question about a range of a document, for chat and Explain.
struct Question<'a> {
    chat_id: String,
    title: String,
    uri: &'a str,
    range: Range,
    text: &'a str,
    history: &'a [ChatMessage],
}

/// Answers `question`, streaming the answer as the client can show it (see the module comment).
async fn stream_chat(
    server: &Server,
    question: Question<'_>,
    token: Option<ProgressToken>,
) -> Result<ChatResult> {
    let (document, selection) = document_range(server, question.uri, question.range)?;
    let engine = server
        .state
        .engine()
        .ok_or_else(|| engine_unavailable(server))?;
    let snapshot = server.state.context_snapshot(document);
    let max_tokens = server.state.config().chat.max_tokens;
    let conversation = chat::messages(
        &snapshot,
        &engine,
        selection,
        question.text,
        question.history,
        max_tokens,
    );
    if let Some(notice) = &conversation.notice {
        tracing::info!("chat {}: {notice}", question.chat_id);
    }
    let (deltas_tx, deltas_rx) = mpsc::unbounded_channel::<String>();
    let support = server.state.client_support();
    // Deltas are sent in order by one task; the response waits for it, so it comes after them.
    let forwarder = if support.chat_progress {
        tokio::spawn(forward_chat_progress(
            server.client.clone(),
            question.chat_id.clone(),
            question.title.clone(),
            conversation.notice.clone(),
            deltas_rx,
        ))
    } else {
        let progress = Progress::start(server, &question.title, token);
        if let Some(notice) = &conversation.notice {
            progress.report(notice);
        }
        tokio::spawn(forward_work_done_progress(progress, deltas_rx))
    };
    let outcome = chat::answer(&engine, conversation.messages, deltas_tx, max_tokens).await;
    let _ = forwarder.await;
    match outcome {
        Ok(outcome) => {
            if !support.chat_progress && support.show_document {
                show_answer(
                    server,
                    &question,
                    &outcome.text,
                    conversation.notice.as_deref(),
                )
                .await;
            }
            Ok(ChatResult {
                chat_id: question.chat_id,
                text: outcome.text,
                notice: conversation.notice,
            })
        }
        Err(error) => {
            tracing::error!("chat failed: {error}");
            Err(jsonrpc::Error {
                code: jsonrpc::ErrorCode::ServerError(-32002),
                message: format!("chat failed: {error}").into(),
                data: None,
            })
        }
    }
}

/// Sends each delta as `wellspring/chatProgress`, then one marked done.
async fn forward_chat_progress(
    client: Client,
    chat_id: String,
    title: String,
    notice: Option<String>,
    mut deltas: mpsc::UnboundedReceiver<String>,
) {
    let mut title = Some(title);
    let mut notice = notice;
    while let Some(delta) = deltas.recv().await {
        let params = ChatProgressParams {
            chat_id: chat_id.clone(),
            title: title.take(),
            delta,
            done: false,
            notice: notice.take(),
        };
        client.send_notification::<ChatProgress>(params).await;
    }
    let params = ChatProgressParams {
        chat_id,
        title: title.take(),
        delta: String::new(),
        done: true,
        notice: notice.take(),
    };
    client.send_notification::<ChatProgress>(params).await;
}

/// Shows the answer so far as `$/progress` reports: a status line's worth, its newest words.
async fn forward_work_done_progress(
    progress: Progress,
    mut deltas: mpsc::UnboundedReceiver<String>,
) {
    let mut text = String::new();
    while let Some(delta) = deltas.recv().await {
        text.push_str(&delta);
        progress.report(&text);
    }
    progress.finish("answered").await;
}

/// Writes the answer to a markdown file in a private temporary folder and asks the client to
/// open it (`window/showDocument`). Failing that, the answer is still the command's result.
async fn show_answer(server: &Server, question: &Question<'_>, answer: &str, notice: Option<&str>) {
    let written = write_answer(question, answer, notice);
    let shown = match written {
        Ok(path) => match Uri::from_file_path(&path) {
            Some(uri) => {
                let params = ShowDocumentParams {
                    uri,
                    external: Some(false),
                    take_focus: Some(true),
                    selection: None,
                };
                server
                    .client
                    .show_document(params)
                    .await
                    .map_err(|error| error.to_string())
            }
            None => Err(format!("{} is not a file URI", path.display())),
        },
        Err(error) => Err(error.to_string()),
    };
    match shown {
        Ok(true) => {}
        Ok(false) => tracing::info!("the client did not open the chat answer"),
        Err(error) => tracing::warn!("cannot show the chat answer as a document: {error}"),
    }
}

/// Where this process writes chat answers for `window/showDocument`; removed when it exits.
fn answers_folder() -> PathBuf {
    std::env::temp_dir().join(format!("wellspring-answers-{}", std::process::id()))
}

/// Removes the answers this process wrote, when the session ends.
pub(crate) fn remove_answers() {
    let _ = std::fs::remove_dir_all(answers_folder());
}

fn write_answer(
    question: &Question<'_>,
    answer: &str,
    notice: Option<&str>,
) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let folder = answers_folder();
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&folder)?;
    // The folder may have existed: it must be private, since answers quote the user's code.
    std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o700))?;
    let name: String = question
        .chat_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    let path = folder.join(format!("{name}.md"));
    let mut contents = format!("# {}\n\n", question.title);
    if question.text != question.title {
        contents.push_str(&format!("> {}\n\n", question.text.replace('\n', "\n> ")));
    }
    if let Some(notice) = notice {
        contents.push_str(&format!("_({notice})_\n\n"));
    }
    contents.push_str(answer.trim_end());
    contents.push('\n');
    std::fs::write(&path, contents)?;
    Ok(path)
}
