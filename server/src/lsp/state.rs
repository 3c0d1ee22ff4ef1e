//! Server-wide state shared by all handlers: documents, configuration, negotiated encoding, the
//! engine and the context sources (workspace index, recent edits).

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use crate::config::{Config, Layers};
use crate::context::{self, ContextSnapshot, RecentChunks};
use crate::docs::{Document, DocumentKind, DocumentStore};
use crate::engine::Engine;
use crate::index::WorkspaceIndex;

use super::convert::PositionEncoding;
use super::edits::ComputedEdit;
use super::ext::{ModelOffer, ServerState};

/// How long the server remembers a code-action edit it handed over to the background.
const HANDED_OVER_MEMORY: Duration = Duration::from_secs(3600);

/// What the client said it can do in `initialize`, as far as the server changes its answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientSupport {
    /// Applies the edits that `codeAction/resolve` fills in.
    pub resolves_code_actions: bool,
    /// Takes versioned `documentChanges` in a `WorkspaceEdit`, and so refuses outdated edits.
    pub document_changes: bool,
    /// Answers `window/workDoneProgress/create`, so the server can show progress of its own.
    pub work_done_progress: bool,
    /// Opens documents the server asks it to show (`window/showDocument`).
    pub show_document: bool,
    /// Shows `wellspring/chatProgress` streams (experimental capability `wellspring.chatProgress`).
    pub chat_progress: bool,
    /// Runs the client-side `wellspring.instructPrompt` command (experimental capability
    /// `wellspring.instructPrompt`).
    pub instruct_prompt: bool,
}

/// Where the model stands.
#[derive(Clone)]
pub enum EngineState {
    /// No model is configured, or completions are turned off.
    Disabled,
    Loading {
        progress: f32,
    },
    Ready(Engine),
    Failed(String),
    /// No model was configured and the default one is not downloaded: the server waits for the
    /// user to choose (`wellspring.downloadModel`, or a `model.path`).
    NoModel(ModelOffer),
}

impl EngineState {
    /// The state as the wire names it.
    pub fn wire(&self) -> ServerState {
        match self {
            EngineState::Disabled => ServerState::Disabled,
            EngineState::Loading { .. } => ServerState::Loading,
            EngineState::Ready(_) => ServerState::Ready,
            EngineState::Failed(_) => ServerState::Error,
            EngineState::NoModel(_) => ServerState::NoModel,
        }
    }
}

/// Server-wide state. Every lock here recovers from poisoning: a handler that panicked while
/// holding one is answered with an internal error (see `guard`), and what it left behind is at
/// worst a stale value the server can still work with, whereas refusing it would fail every
/// later request that takes the lock, until a restart.
pub struct State {
    pub documents: DocumentStore,
    encoding: RwLock<PositionEncoding>,
    layers: Mutex<Layers>,
    config: RwLock<Config>,
    workspace_roots: RwLock<Vec<PathBuf>>,
    engine: RwLock<EngineState>,
    /// Bumped on every (re)load, so a slow load that was superseded does not install itself.
    engine_generation: AtomicU64,
    /// The resolved model file, once known.
    model_path: RwLock<Option<PathBuf>>,
    index: RwLock<Arc<WorkspaceIndex>>,
    recent: Mutex<RecentChunks>,
    next_chat_id: AtomicU64,
    client_support: RwLock<ClientSupport>,
    /// Code-action edits that `codeAction/resolve` handed over to the background (they apply
    /// themselves when the model is done), by job id, with when.
    handed_over: Mutex<HashMap<String, Instant>>,
    /// Edits the client refused to apply, newest last, for a second try.
    refused_edits: Mutex<VecDeque<ComputedEdit>>,
    next_job_id: AtomicU64,
    /// The last engine error shown to the user, so a failing engine shows one message, not one
    /// per keystroke.
    last_shown_error: Mutex<Option<String>>,
    /// Whether the user asked to download the default model (`wellspring.downloadModel`); it
    /// is downloaded only then.
    default_download_approved: AtomicBool,
}

impl State {
    /// `layers` holds the file and CLI layers; the client's layers arrive later.
    pub fn new(layers: Layers) -> State {
        let config = layers.resolve().unwrap_or_else(|error| {
            tracing::error!("{error}; using defaults");
            Config::default()
        });
        State {
            documents: DocumentStore::new(),
            encoding: RwLock::new(PositionEncoding::Utf16),
            layers: Mutex::new(layers),
            config: RwLock::new(config),
            workspace_roots: RwLock::new(Vec::new()),
            engine: RwLock::new(EngineState::Disabled),
            engine_generation: AtomicU64::new(0),
            model_path: RwLock::new(None),
            index: RwLock::new(Arc::new(WorkspaceIndex::new(None))),
            recent: Mutex::new(RecentChunks::default()),
            next_chat_id: AtomicU64::new(1),
            client_support: RwLock::new(ClientSupport::default()),
            handed_over: Mutex::new(HashMap::new()),
            refused_edits: Mutex::new(VecDeque::new()),
            next_job_id: AtomicU64::new(1),
            last_shown_error: Mutex::new(None),
            default_download_approved: AtomicBool::new(false),
        }
    }

    /// Lets the loader download the default model, which the user asked for.
    pub fn approve_default_download(&self) {
        self.default_download_approved.store(true, Ordering::SeqCst);
    }

    /// Whether the user asked to download the default model.
    pub fn default_download_approved(&self) -> bool {
        self.default_download_approved.load(Ordering::SeqCst)
    }

    pub fn encoding(&self) -> PositionEncoding {
        *self.encoding.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn set_encoding(&self, encoding: PositionEncoding) {
        *self
            .encoding
            .write()
            .unwrap_or_else(PoisonError::into_inner) = encoding;
    }

    pub fn config(&self) -> Config {
        self.config
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces one client layer and re-resolves; on error the previous config stays in force.
    pub fn update_layers(
        &self,
        update: impl FnOnce(&mut Layers),
    ) -> Result<Config, crate::config::Error> {
        let mut layers = self.layers.lock().unwrap_or_else(PoisonError::into_inner);
        let mut candidate = layers.clone();
        update(&mut candidate);
        let config = candidate.resolve()?;
        *layers = candidate;
        *self.config.write().unwrap_or_else(PoisonError::into_inner) = config.clone();
        Ok(config)
    }

    pub fn workspace_roots(&self) -> Vec<PathBuf> {
        self.workspace_roots
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn set_workspace_roots(&self, roots: Vec<PathBuf>) {
        let index = WorkspaceIndex::new(roots.first().cloned());
        *self.index.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(index);
        *self
            .workspace_roots
            .write()
            .unwrap_or_else(PoisonError::into_inner) = roots;
    }

    pub fn index(&self) -> Arc<WorkspaceIndex> {
        Arc::clone(&self.index.read().unwrap_or_else(PoisonError::into_inner))
    }

    pub fn engine_state(&self) -> EngineState {
        self.engine
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The engine, when the model is loaded.
    pub fn engine(&self) -> Option<Engine> {
        match &*self.engine.read().unwrap_or_else(PoisonError::into_inner) {
            EngineState::Ready(engine) => Some(engine.clone()),
            _ => None,
        }
    }

    /// Starts a new load generation and returns its number.
    pub fn begin_engine_load(&self) -> u64 {
        let generation = self.engine_generation.fetch_add(1, Ordering::SeqCst) + 1;
        self.set_engine_state(generation, EngineState::Loading { progress: 0.0 });
        generation
    }

    /// Whether `generation` is still the newest load.
    pub fn is_current_engine_load(&self, generation: u64) -> bool {
        self.engine_generation.load(Ordering::SeqCst) == generation
    }

    /// Installs `state` if `generation` is still the newest load; returns whether it did.
    pub fn set_engine_state(&self, generation: u64, state: EngineState) -> bool {
        let mut slot = self.engine.write().unwrap_or_else(PoisonError::into_inner);
        if self.engine_generation.load(Ordering::SeqCst) != generation {
            return false;
        }
        *slot = state;
        true
    }

    pub fn model_path(&self) -> Option<PathBuf> {
        self.model_path
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn set_model_path(&self, path: Option<PathBuf>) {
        *self
            .model_path
            .write()
            .unwrap_or_else(PoisonError::into_inner) = path;
    }

    /// Moves a parse that overran the synchronous budget to a blocking worker.
    pub(crate) fn finish_parse_in_background(self: &Arc<Self>, uri: &str, version: i32) {
        let state = Arc::clone(self);
        let uri = uri.to_owned();
        tokio::task::spawn_blocking(move || state.documents.finish_parse(&uri, version));
    }

    /// Counts the lines of `documents` with `engine`'s (remembering) token counter on a blocking
    /// worker, so the first prompt built in each finds them counted: a document just opened, or
    /// every open one when a model finishes loading.
    pub(crate) fn warm_token_counts_in_background(engine: &Engine, documents: Vec<Arc<Document>>) {
        let tokens = engine.token_counter();
        tokio::task::spawn_blocking(move || {
            for document in documents {
                if document.kind != DocumentKind::Binary {
                    context::warm_line_counts(&document.rope, &*tokens, context::MAX_WARM_LINES);
                }
            }
        });
    }

    pub fn record_edit(&self, document: &Document, byte_idx: usize) {
        self.recent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record_edit(&document.uri, &document.rope, byte_idx);
    }

    /// Everything a prompt for `current` may draw on, as of now.
    pub fn context_snapshot(&self, current: Arc<Document>) -> ContextSnapshot {
        ContextSnapshot {
            open: self.documents.all(),
            index: self.index(),
            recent: self
                .recent
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
            current,
        }
    }

    pub fn client_support(&self) -> ClientSupport {
        *self
            .client_support
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub fn set_client_support(&self, support: ClientSupport) {
        *self
            .client_support
            .write()
            .unwrap_or_else(PoisonError::into_inner) = support;
    }

    /// Names a code-action edit handed over to the background, so that a later
    /// `wellspring.applyAction` for it knows it is taken care of.
    pub fn hand_over_action(&self) -> String {
        let id = format!("job-{}", self.next_job_id.fetch_add(1, Ordering::Relaxed));
        let mut handed_over = self
            .handed_over
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        handed_over.retain(|_, since| since.elapsed() < HANDED_OVER_MEMORY);
        handed_over.insert(id.clone(), Instant::now());
        id
    }

    pub(crate) fn refused_edits(&self) -> std::sync::MutexGuard<'_, VecDeque<ComputedEdit>> {
        self.refused_edits
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub fn was_handed_over(&self, id: &str) -> bool {
        self.handed_over
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(id)
    }

    /// Whether `error` differs from the last error shown to the user (and remembers it).
    pub fn should_show_error(&self, error: &str) -> bool {
        let mut last = self
            .last_shown_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if last.as_deref() == Some(error) {
            return false;
        }
        *last = Some(error.to_owned());
        true
    }

    /// Forgets the last shown error after a success, so a recurrence is shown again.
    pub fn clear_shown_error(&self) {
        *self
            .last_shown_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
    }

    pub fn next_chat_id(&self) -> String {
        format!(
            "wellspring-{}",
            self.next_chat_id.fetch_add(1, Ordering::Relaxed)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Panics on another thread, as a handler would, while `hold` has taken some locks.
    fn panic_while(state: &Arc<State>, hold: fn(&State)) {
        let poisoner = Arc::clone(state);
        let outcome = std::thread::spawn(move || hold(&poisoner)).join();
        assert!(outcome.is_err());
    }

    #[test]
    fn a_panic_while_a_lock_is_held_does_not_break_later_requests() {
        let state = Arc::new(State::new(Layers::default()));
        panic_while(&state, |state| {
            let _config = state.config.write();
            let _layers = state.layers.lock();
            panic!("injected panic while configuring")
        });
        panic_while(&state, |state| {
            let _recent = state.recent.lock();
            let _shown = state.last_shown_error.lock();
            let _engine = state.engine.write();
            panic!("injected panic while recording")
        });
        assert!(state.config.is_poisoned() && state.layers.is_poisoned());
        assert!(state.recent.is_poisoned() && state.engine.is_poisoned());

        let config = state
            .update_layers(|layers| {
                layers.did_change_configuration =
                    Some(serde_json::json!({"completion": {"max_tokens": 5}}))
            })
            .expect("the layers still update");
        assert_eq!(config.completion.max_tokens, 5);
        assert_eq!(state.config().completion.max_tokens, 5);
        assert!(state.should_show_error("boom"));
        assert!(!state.should_show_error("boom"));
        let document = Arc::new(Document::new("file:///a.py", "python", 1, "x = 1\n"));
        state.record_edit(&document, 0);
        let snapshot = state.context_snapshot(document);
        assert_eq!(snapshot.current.version, 1);
        assert_eq!(state.engine_state().wire(), ServerState::Disabled);
    }
}
