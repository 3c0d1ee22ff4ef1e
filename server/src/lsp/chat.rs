//! Chat answers streamed to the client: as `wellspring/chatProgress` to clients that announce
//! it, and otherwise as `$/progress` reports, then opened as a markdown document where the client
//! can show one. The whole answer is always the command's result.

use std::path::PathBuf;

use tokio::sync::mpsc;
use tower_lsp_server::jsonrpc::{self, Result};
use tower_lsp_server::ls_types::*;
use tower_lsp_server::Client;

use super::ext::{ChatProgress, ChatProgressParams, ChatResult};
use super::progress::Progress;
use super::requests::{document_range, engine_unavailable};
use super::Server;
use crate::assist::chat;
use crate::engine::ChatMessage;

/// A question about a range of a document, for chat and Explain.
pub(crate) struct Question<'a> {
    pub chat_id: String,
    pub title: String,
    pub uri: &'a str,
    pub range: Range,
    pub text: &'a str,
    pub history: &'a [ChatMessage],
}

/// Answers `question`, streaming the answer as the client can show it (see the module comment).
pub(crate) async fn stream_chat(
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
