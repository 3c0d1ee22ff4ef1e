//! Progress of long model operations (downloads, joining chunks), reported two ways: to the
//! caller's callback (the LSP layer turns it into `$/progress`) and, for the CLI, as an
//! indicatif bar on stderr. How often the callback fires is decided here so callers need not
//! rate-limit it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The callback type of [`super::ResolveOptions::progress`].
pub type ProgressCallback = Arc<dyn Fn(Progress) + Send + Sync>;

/// One progress report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub stage: ProgressStage,
    /// What is being worked on, for people: a file name.
    pub label: String,
    pub done_bytes: u64,
    /// `None` when the server did not say how big the file is.
    pub total_bytes: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressStage {
    Downloading,
    /// Concatenating the chunks of a built-in model.
    Joining,
}

/// The callback fires at most this often, plus once at the start and once at the end.
const CALLBACK_INTERVAL: Duration = Duration::from_millis(100);

/// Reports one stage of work on one file.
pub(crate) struct Reporter {
    callback: Option<ProgressCallback>,
    bar: Option<ProgressBar>,
    stage: ProgressStage,
    label: String,
    total_bytes: Option<u64>,
    last_call: Option<Instant>,
    done_bytes: u64,
}

impl Reporter {
    /// Starts reporting with `done_bytes` already done (a resumed download).
    pub(crate) fn start(
        callback: Option<ProgressCallback>,
        show_bar: bool,
        stage: ProgressStage,
        label: &str,
        done_bytes: u64,
        total_bytes: Option<u64>,
    ) -> Reporter {
        let bar = show_bar.then(|| {
            let bar = ProgressBar::with_draw_target(total_bytes, ProgressDrawTarget::stderr());
            let verb = match stage {
                ProgressStage::Downloading => "downloading",
                ProgressStage::Joining => "joining",
            };
            let template = match total_bytes {
                Some(_) => "{msg} [{bar:30}] {decimal_bytes}/{decimal_total_bytes} {decimal_bytes_per_sec} eta {eta}",
                None => "{msg} {decimal_bytes} {decimal_bytes_per_sec}",
            };
            let style = ProgressStyle::with_template(template)
                .expect("the template is a valid indicatif template")
                .progress_chars("=> ");
            bar.set_style(style);
            bar.set_message(format!("{verb} {label}"));
            bar.set_position(done_bytes);
            bar
        });
        let mut reporter = Reporter {
            callback,
            bar,
            stage,
            label: label.to_owned(),
            total_bytes,
            last_call: None,
            done_bytes,
        };
        reporter.call();
        reporter
    }

    pub(crate) fn advance(&mut self, n_bytes: u64) {
        self.done_bytes += n_bytes;
        if let Some(bar) = &self.bar {
            bar.set_position(self.done_bytes);
        }
        let due = self
            .last_call
            .is_none_or(|last_call| last_call.elapsed() >= CALLBACK_INTERVAL);
        if due {
            self.call();
        }
    }

    /// Reports the final count (always, however recent the last report was).
    pub(crate) fn finish(mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        self.call();
    }

    fn call(&mut self) {
        if let Some(callback) = &self.callback {
            callback(Progress {
                stage: self.stage,
                label: self.label.clone(),
                done_bytes: self.done_bytes,
                total_bytes: self.total_bytes,
            });
            self.last_call = Some(Instant::now());
        }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        // A failed operation leaves no half-drawn bar behind.
        if let Some(bar) = self.bar.take() {
            bar.abandon();
        }
    }
}
