//! Work-done progress (`$/progress`) for long requests: on the token the client gave with the
//! request, or on one the server creates when the client supports that.
//!
//! Reports go through a task of their own, so the work never waits for the client: a client
//! that is busy (Helix waits for `codeAction/resolve` on its UI thread and answers the server's
//! requests afterwards) delays the progress bar, never the model.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;
use tower_lsp_server::ls_types::notification::Progress as ProgressNotification;
use tower_lsp_server::ls_types::request::WorkDoneProgressCreate;
use tower_lsp_server::ls_types::*;
use tower_lsp_server::Client;

use super::Server;

/// Longest report message: clients show it in a status line.
const MAX_MESSAGE_CHARS: usize = 80;

static NEXT_TOKEN: AtomicU64 = AtomicU64::new(1);

enum Update {
    Report(String),
    End(Option<String>),
}

/// A progress bar the client shows while work runs; ended when finished or dropped.
pub(crate) struct Progress {
    updates: Option<mpsc::UnboundedSender<Update>>,
    task: Option<tokio::task::JoinHandle<()>>,
    /// Set once the client has been sent the progress's beginning.
    begun: Arc<AtomicBool>,
}

impl Progress {
    /// Starts a progress titled `title` on `token`, or on a token of the server's when the
    /// client supports `window/workDoneProgress/create`; otherwise nothing is shown.
    pub(crate) fn start(server: &Server, title: &str, token: Option<ProgressToken>) -> Progress {
        let supported = server.state.client_support().work_done_progress;
        Progress::start_on(&server.client, supported, title, token)
    }

    /// [`Progress::start`] for code that has the client but no `Server`; `supported` says the
    /// client announced `window.workDoneProgress`.
    pub(crate) fn start_on(
        client: &Client,
        supported: bool,
        title: &str,
        token: Option<ProgressToken>,
    ) -> Progress {
        let token = match token {
            Some(token) => Some((token, false)),
            None if supported => {
                let id = NEXT_TOKEN.fetch_add(1, Ordering::Relaxed);
                Some((
                    ProgressToken::String(format!("wellspring/progress/{id}")),
                    true,
                ))
            }
            None => None,
        };
        let begun = Arc::new(AtomicBool::new(false));
        let Some((token, create)) = token else {
            return Progress {
                updates: None,
                task: None,
                begun,
            };
        };
        let (updates, receiver) = mpsc::unbounded_channel();
        let task = tokio::spawn(send_updates(
            client.clone(),
            token,
            create,
            title.to_owned(),
            receiver,
            Arc::clone(&begun),
        ));
        Progress {
            updates: Some(updates),
            task: Some(task),
            begun,
        }
    }

    /// Shows `message` (its last line, shortened to fit a status line).
    pub(crate) fn report(&self, message: &str) {
        if let Some(updates) = &self.updates {
            let _ = updates.send(Update::Report(status_line(message)));
        }
    }

    /// Ends the progress with a last message, and returns once the client has been sent the end,
    /// so that a message sent afterwards (a failure, say) is not overwritten by it. A progress
    /// the client has not been shown yet (its token still being created, as while Helix waits
    /// for `codeAction/resolve`) is dropped without waiting: it will never be shown.
    pub(crate) async fn finish(mut self, message: &str) {
        if let Some(updates) = self.updates.take() {
            let _ = updates.send(Update::End(Some(status_line(message))));
        }
        if let Some(task) = self.task.take() {
            if self.begun.load(Ordering::SeqCst) {
                let _ = task.await;
            }
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(updates) = self.updates.take() {
            let _ = updates.send(Update::End(None));
        }
    }
}

/// The tail of the last non-blank line of `text`, at most [`MAX_MESSAGE_CHARS`] characters.
fn status_line(text: &str) -> String {
    let line = text
        .lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .unwrap_or_default()
        .trim();
    let n_chars = line.chars().count();
    if n_chars <= MAX_MESSAGE_CHARS {
        return line.to_owned();
    }
    let tail: String = line.chars().skip(n_chars + 1 - MAX_MESSAGE_CHARS).collect();
    format!("…{tail}")
}

async fn send_updates(
    client: Client,
    token: ProgressToken,
    create: bool,
    title: String,
    mut updates: mpsc::UnboundedReceiver<Update>,
    begun: Arc<AtomicBool>,
) {
    if create {
        let params = WorkDoneProgressCreateParams {
            token: token.clone(),
        };
        if let Err(error) = client.send_request::<WorkDoneProgressCreate>(params).await {
            tracing::debug!("the client refused a progress token: {error}");
            return;
        }
        // Work that ended while the token was being created is not worth showing any more, and
        // showing it now could overwrite a message sent since.
        let mut queued = Vec::new();
        while let Ok(update) = updates.try_recv() {
            if matches!(update, Update::End(_)) {
                return;
            }
            queued.push(update);
        }
        begun.store(true, Ordering::SeqCst);
        send_begin(&client, &token, title).await;
        for update in queued {
            if let Update::Report(message) = update {
                send_report(&client, &token, message).await;
            }
        }
    } else {
        begun.store(true, Ordering::SeqCst);
        send_begin(&client, &token, title).await;
    }
    let mut end_message = None;
    'reports: while let Some(update) = updates.recv().await {
        // Reports that queued up while the client was slow collapse into the newest.
        let mut latest = update;
        while let Ok(next) = updates.try_recv() {
            if matches!(latest, Update::End(_)) {
                break;
            }
            latest = next;
        }
        match latest {
            Update::Report(message) => send_report(&client, &token, message).await,
            Update::End(message) => {
                end_message = message;
                break 'reports;
            }
        }
    }
    send(
        &client,
        &token,
        WorkDoneProgress::End(WorkDoneProgressEnd {
            message: end_message,
        }),
    )
    .await;
}

async fn send(client: &Client, token: &ProgressToken, value: WorkDoneProgress) {
    client
        .send_notification::<ProgressNotification>(ProgressParams {
            token: token.clone(),
            value: ProgressParamsValue::WorkDone(value),
        })
        .await;
}

async fn send_begin(client: &Client, token: &ProgressToken, title: String) {
    let begin = WorkDoneProgressBegin {
        title,
        cancellable: Some(false),
        message: None,
        percentage: None,
    };
    send(client, token, WorkDoneProgress::Begin(begin)).await;
}

async fn send_report(client: &Client, token: &ProgressToken, message: String) {
    let report = WorkDoneProgressReport {
        cancellable: Some(false),
        message: Some(message),
        percentage: None,
    };
    send(client, token, WorkDoneProgress::Report(report)).await;
}

#[cfg(test)]
mod tests {
    use super::status_line;

    #[test]
    fn status_lines_show_the_end_of_the_last_line() {
        assert_eq!(status_line("first\nsecond line\n\n"), "second line");
        assert_eq!(status_line(""), "");
        let long = "x".repeat(100) + "END";
        let shown = status_line(&long);
        assert_eq!(shown.chars().count(), 80);
        assert!(shown.starts_with('…') && shown.ends_with("END"));
    }
}
