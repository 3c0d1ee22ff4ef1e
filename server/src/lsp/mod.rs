//! Protocol layer: the only code that sees LSP types and JSON.
//!
//! `server.rs` is the table of contents (one delegating line per method); each request and
//! notification has its own file under `requests/` and `notifications/`. Handlers read params,
//! take a snapshot, call a domain function and convert the result; logic lives outside `lsp/`.

mod chat;
pub mod convert;
mod edits;
pub(crate) mod engine_loader;
pub mod ext;
mod notifications;
mod progress;
mod requests;
mod server;
mod state;
mod suggest;
mod transport;

pub use server::{serve, serve_stdio, Server};
pub use state::State;

use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use tower_lsp_server::jsonrpc;

/// The framing guard's reader and classifier, public only so the fuzz targets in `fuzz/` can feed
/// them bytes directly. Not part of the server's API: nothing else may depend on it.
#[doc(hidden)]
pub mod fuzzing {
    pub use super::transport::{classify, FrameReader, Incoming};
}

/// Runs a handler so that a panic inside it becomes an `InternalError` response and a log line,
/// and the server keeps serving.
pub(crate) async fn guard<T>(
    method: &'static str,
    handler: impl std::future::Future<Output = jsonrpc::Result<T>>,
) -> jsonrpc::Result<T> {
    match AssertUnwindSafe(handler).catch_unwind().await {
        Ok(result) => result,
        Err(panic) => {
            let message = panic_message(&panic);
            tracing::error!(method, "handler panicked: {message}");
            Err(jsonrpc::Error {
                code: jsonrpc::ErrorCode::InternalError,
                message: format!("internal error in {method}: {message}").into(),
                data: None,
            })
        }
    }
}

/// The notification flavour of [`guard`]: a panic is logged and swallowed.
pub(crate) async fn guard_notification(
    method: &'static str,
    handler: impl std::future::Future<Output = ()>,
) {
    if let Err(panic) = AssertUnwindSafe(handler).catch_unwind().await {
        tracing::error!(
            method,
            "notification handler panicked: {}",
            panic_message(&panic)
        );
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|message| (*message).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

/// The error code of a code action or instruction the model could not turn into an edit (no code
/// block, no change, an edit that would break the syntax, or the engine failing).
pub(crate) const EDIT_NOT_WRITTEN: i64 = -32003;

/// Runs a request the user started (a code action, a command), so that its failure also reaches
/// the user as `window/showMessage`: many clients drop error responses to these silently. A
/// request the client cancelled is dropped before it can fail, so it shows nothing.
pub(crate) async fn shown<T>(
    server: &Server,
    result: impl std::future::Future<Output = jsonrpc::Result<T>>,
) -> jsonrpc::Result<T> {
    let result = result.await;
    if let Err(error) = &result {
        show_failure(server, error).await;
    }
    result
}

/// Shows a failed request's error to the user.
pub(crate) async fn show_failure(server: &Server, error: &jsonrpc::Error) {
    if error.code == jsonrpc::ErrorCode::RequestCancelled {
        return;
    }
    tracing::warn!("request failed: {}", error.message);
    // The model not managing an edit (no code block, no change) is a warning; anything else,
    // an error.
    let severity = if error.code == jsonrpc::ErrorCode::ServerError(EDIT_NOT_WRITTEN) {
        tower_lsp_server::ls_types::MessageType::WARNING
    } else {
        tower_lsp_server::ls_types::MessageType::ERROR
    };
    server
        .client
        .show_message(severity, format!("Wellspring: {}", error.message))
        .await;
}

/// Builds an `InvalidParams` error with a clear message.
pub(crate) fn invalid_params(message: impl std::fmt::Display) -> jsonrpc::Error {
    jsonrpc::Error::invalid_params(message.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_handler_becomes_an_internal_error() {
        let result: jsonrpc::Result<()> = guard("test/panic", async { panic!("boom") }).await;
        let error = result.unwrap_err();
        assert_eq!(error.code, jsonrpc::ErrorCode::InternalError);
        assert!(error.message.contains("boom"));
        guard_notification("test/panic", async { panic!("quiet") }).await;
    }
}

/// `docs/lsp-extensions.md` records a hash of `lsp/ext.rs`, so the wire types cannot change
/// without someone reading the doc (and `editors/vscode/src/lsp_ext.ts`) again.
#[cfg(test)]
mod ext_doc_tests {
    use sha2::{Digest, Sha256};

    #[test]
    fn the_extensions_doc_is_current_with_ext_rs() {
        let ext = include_str!("ext.rs").replace("\r\n", "\n");
        let digest = Sha256::digest(ext.as_bytes());
        let hash: String = digest[..8]
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        let doc = include_str!("../../../docs/lsp-extensions.md");
        let expected = format!("lsp/ext.rs hash: {hash}");
        assert!(
            doc.contains(&expected),
            "server/src/lsp/ext.rs changed: bring docs/lsp-extensions.md and \
             editors/vscode/src/lsp_ext.ts up to date, then set the doc's hash line to `{expected}`"
        );
    }
}
