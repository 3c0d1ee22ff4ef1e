//! Work-done progress (`$/progress`) for long requests: on the token the client gave with the
//! request, or on one the server creates when the client supports that.
//!
//! Reports go through a task of their own, so the work never waits for the client: a client
//! that is busy (Helix waits for `codeAction/resolve` on its UI thread and answers the server's
//! requests afterwards) delays the progress bar, never the model.

use std::sync::atomic::{AtomicU64, Ordering};

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
}

impl Progress {
    /// Starts a progress titled `title` on `token`, or on a token of the server's when the
    /// client supports `window/workDoneProgress/create`; otherwise nothing is shown.
    pub(crate) fn start(server: &Server, title: &str, token: Option<ProgressToken>) -> Progress {
        let token = match token {
            Some(token) => Some((token, false)),
            None if server.state.client_support().work_done_progress => {
                let id = NEXT_TOKEN.fetch_add(1, Ordering::Relaxed);
                Some((
                    ProgressToken::String(format!("wellspring/progress/{id}")),
                    true,
                ))
            }
            None => None,
        };
        let Some((token, create)) = token else {
            return Progress { updates: None };
        };
        let (updates, receiver) = mpsc::unbounded_channel();
        tokio::spawn(send_updates(
            server.client.clone(),
            token,
            create,
            title.to_owned(),
            receiver,
        ));
        Progress {
            updates: Some(updates),
        }
    }

    /// Shows `message` (its last line, shortened to fit a status line).
    pub(crate) fn report(&self, message: &str) {
        if let Some(updates) = &self.updates {
            let _ = updates.send(Update::Report(status_line(message)));
        }
    }

    /// Ends the progress with a last message.
    pub(crate) fn finish(mut self, message: &str) {
        if let Some(updates) = self.updates.take() {
            let _ = updates.send(Update::End(Some(status_line(message))));
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
) {
    if create {
        let params = WorkDoneProgressCreateParams {
            token: token.clone(),
        };
        if let Err(error) = client.send_request::<WorkDoneProgressCreate>(params).await {
            tracing::debug!("the client refused a progress token: {error}");
            return;
        }
    }
    let send = |value: WorkDoneProgress| {
        client.send_notification::<ProgressNotification>(ProgressParams {
            token: token.clone(),
            value: ProgressParamsValue::WorkDone(value),
        })
    };
    send(WorkDoneProgress::Begin(WorkDoneProgressBegin {
        title,
        cancellable: Some(false),
        message: None,
        percentage: None,
    }))
    .await;
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
            Update::Report(message) => {
                send(WorkDoneProgress::Report(WorkDoneProgressReport {
                    cancellable: Some(false),
                    message: Some(message),
                    percentage: None,
                }))
                .await
            }
            Update::End(message) => {
                end_message = message;
                break 'reports;
            }
        }
    }
    send(WorkDoneProgress::End(WorkDoneProgressEnd {
        message: end_message,
    }))
    .await;
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
