//! Keeps llama.cpp's first error message after a call, so that a failed load or context can say why in the
//! error the user sees rather than only in the log.
//!
//! llama.cpp reports the reason for a failure (an unknown architecture, a missing tensor, a
//! buffer it could not allocate) only through its log, which `llama_cpp_2` forwards to `tracing`
//! on the thread that called into llama.cpp. [`LlamaErrors`] is a `tracing` layer that remembers
//! the first error on each thread since it was last cleared; the binary installs it, and without it errors simply carry
//! no llama.cpp detail.

use std::cell::RefCell;
use std::fmt;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// The `tracing` target `llama_cpp_2` logs llama.cpp and ggml messages under.
const LLAMA_TARGET: &str = "llama-cpp-2";

thread_local! {
    static LAST_ERROR: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// A `tracing` layer that remembers llama.cpp's first error message on each thread.
pub struct LlamaErrors;

impl<S: Subscriber> Layer<S> for LlamaErrors {
    fn on_event(&self, event: &Event<'_>, _context: Context<'_, S>) {
        let metadata = event.metadata();
        if *metadata.level() != Level::ERROR || metadata.target() != LLAMA_TARGET {
            return;
        }
        let mut message = MessageField(String::new());
        event.record(&mut message);
        let text = message.0.trim().to_owned();
        // The first error names the cause; llama.cpp follows it with generic ones ("failed to
        // load model").
        if !text.is_empty() {
            LAST_ERROR.with(|last| {
                last.borrow_mut().get_or_insert(text);
            });
        }
    }
}

struct MessageField(String);

impl Visit for MessageField {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0 = value.to_owned();
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

/// Forgets what earlier calls logged, so that [`take`] after the next call only reports what
/// that call said.
pub(crate) fn clear() {
    LAST_ERROR.with(|last| last.borrow_mut().take());
}

/// llama.cpp's first error on this thread since [`clear`], if any was logged and captured.
pub(crate) fn take() -> Option<String> {
    LAST_ERROR.with(|last| last.borrow_mut().take())
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    #[test]
    fn the_first_llama_error_since_clear_is_kept() {
        let subscriber = tracing_subscriber::registry().with(LlamaErrors);
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!(target: "llama-cpp-2", "stale error");
            clear();
            tracing::warn!(target: "llama-cpp-2", "only a warning");
            tracing::error!(target: "wellspring", "not from llama.cpp");
            tracing::error!(target: "llama-cpp-2", "unknown model architecture: 'x'");
            tracing::error!(target: "llama-cpp-2", "failed to load model");
        });
        assert_eq!(take().as_deref(), Some("unknown model architecture: 'x'"));
        assert_eq!(take(), None);
    }
}
