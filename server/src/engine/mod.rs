//! Inference: the only code that sees `llama_cpp_2`.
//!
//! One OS thread owns the model and its contexts for life (`thread`); async callers talk to it
//! through channels via the cloneable `Engine` handle below. Inside the thread, `scheduler`
//! decides what runs next (completions before chat, latest request per document wins),
//! `session` keeps each KV-cache sequence's tokens for prefix reuse, `render` lays out FIM
//! prompts, `generate` runs one generation a step at a time, and `backend` is the seam to
//! llama.cpp (or to a scripted fake in tests).
//!
//! Prompt content is `context/`'s job and model files are `model/`'s; this module takes a
//! `FimPrompt` and a local GGUF path.

mod backend;
mod batching;
mod cpu_share;
mod detok;
mod devices;
mod draft;
mod generate;
pub mod http;
mod llama_log;
mod lookup;
mod memory;
mod pace;
mod plan;
mod prompt;
mod render;
mod scheduler;
pub mod service;
mod session;
mod thread;
pub mod vocab;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::Either;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

pub(crate) use devices::{
    budget_now, devices, model_shape, plan_draft_model, plan_model, PlanError,
};
pub use llama_log::LlamaErrors;
pub(crate) use plan::{kv_name, size, Budget, Plan, Request, Split};
pub use prompt::{CachedTokenCounter, ContextChunk, FimPrompt, ModelCaps, TokenCounter};

use crate::config::{CompletionConfig, ModelConfig};
use scheduler::{ChatJob, Command, CompletionJob, Shared};

/// Waits, for at most `timeout`, until no thread of this process works in llama.cpp (engine
/// threads end once their last handle is dropped and the step under way is done); whether none
/// does. Called before the process exits: exit runs llama.cpp's static destructors, which a
/// thread still in a decode step would crash on.
pub fn wait_for_llama_threads(timeout: std::time::Duration) -> bool {
    thread::LLAMA_THREADS.wait_until_none(timeout)
}

#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize, Deserialize)]
pub enum Error {
    #[error("model file {} does not exist", .0.display())]
    ModelNotFound(PathBuf),
    #[error("{} is not a usable GGUF model: {reason}", path.display())]
    InvalidModel { path: PathBuf, reason: String },
    #[error("cannot load model {}: {reason}", path.display())]
    Load { path: PathBuf, reason: String },
    #[error("inference backend: {0}")]
    Backend(String),
    /// What ran out and what to lower, as one sentence.
    #[error("out of memory: {0}")]
    OutOfMemory(String),
    #[error("a newer request for the same document replaced this one")]
    Superseded,
    /// Every slot is in use and enough requests wait already.
    #[error("the engine is busy; try again")]
    Busy,
    #[error("the engine has stopped")]
    Stopped,
    #[error("invalid grammar: {0}")]
    Grammar(String),
    #[error("cannot apply the chat template: {0}")]
    ChatTemplate(String),
    #[error("prompt of {n_tokens} tokens does not fit the {n_ctx}-token context")]
    PromptTooLong { n_tokens: u32, n_ctx: u32 },
    #[error("the chat model is unavailable: {0}")]
    ChatModelUnavailable(String),
    #[error("internal engine error: {0}")]
    Internal(String),
}

/// Which model chat and code actions run on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ChatModel {
    /// The completion model (one model in memory).
    #[default]
    SameAsCompletion,
    /// A model of its own, loaded beside the completion model.
    File(PathBuf),
    /// A model that has to be found or downloaded first (a download can take minutes): the
    /// chat model's loading thread resolves it, so the completion model never waits for it.
    Resolve(ChatModelResolver),
    /// A separate chat model was configured but cannot be had (for example its download
    /// failed): chat requests fail with this reason, completions are unaffected.
    Unavailable(String),
}

/// Turns a chat model spec (`model.chat_path`) into a local file, downloading it if need be.
#[derive(Clone)]
pub struct ChatModelResolver {
    pub spec: String,
    resolve: Arc<dyn Fn() -> Result<PathBuf, String> + Send + Sync>,
}

impl ChatModelResolver {
    pub fn new(
        spec: impl Into<String>,
        resolve: impl Fn() -> Result<PathBuf, String> + Send + Sync + 'static,
    ) -> ChatModelResolver {
        ChatModelResolver {
            spec: spec.into(),
            resolve: Arc::new(resolve),
        }
    }

    pub(crate) fn resolve(&self) -> Result<PathBuf, String> {
        (self.resolve)().map_err(|error| format!("{}: {error}", self.spec))
    }
}

impl std::fmt::Debug for ChatModelResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ChatModelResolver")
            .field(&self.spec)
            .finish()
    }
}

impl PartialEq for ChatModelResolver {
    fn eq(&self, other: &ChatModelResolver) -> bool {
        self.spec == other.spec
    }
}

impl Eq for ChatModelResolver {}

/// Where the draft model (`model.draft_path`) stands, in the engine's stats.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum DraftModelState {
    /// None configured.
    #[default]
    None,
    /// Being found, downloaded or loaded; completions draft without it meanwhile.
    Loading,
    /// Loaded; the first draft makes its context.
    Ready,
    /// It cannot be had, or cannot draft for the model (why: a vocabulary that differs is found
    /// at the first draft); completions go on without it.
    Unavailable(String),
}

/// Where a separate chat model stands, for `wellspring/serverInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ChatModelState {
    /// Chat runs on the completion model.
    #[default]
    SameAsCompletion,
    /// Being found, downloaded or loaded.
    Loading,
    Ready(PathBuf),
    Unavailable(String),
}

/// How the next token is picked. Temperature 0 means greedy decoding.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SamplingConfig {
    pub temperature: f32,
    pub top_k: i32,
    pub top_p: f32,
    pub seed: u32,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        SamplingConfig {
            temperature: 0.0,
            top_k: 40,
            top_p: 0.95,
            seed: 0,
        }
    }
}

impl From<&CompletionConfig> for SamplingConfig {
    fn from(config: &CompletionConfig) -> Self {
        SamplingConfig {
            temperature: config.temperature,
            top_k: config.top_k,
            top_p: config.top_p,
            seed: 0,
        }
    }
}

/// One fill-in-the-middle completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompletionRequest {
    /// Names the document (its URI); a newer request for the same document replaces this one.
    pub document: String,
    /// Which language server asked, when several share the engine (set by the engine, 0 in
    /// process): slots are shared out fairly between clients.
    #[serde(default)]
    pub client: u32,
    pub prompt: FimPrompt,
    pub max_tokens: u32,
    /// Stop at the end of the line (the cursor is mid-line).
    pub single_line: bool,
    pub stop: Vec<String>,
    /// Wall-clock budget from the call to the answer; the text generated so far is returned when
    /// it runs out.
    pub time_budget: Duration,
    pub sampling: SamplingConfig,
    /// Says whether the text so far is already the whole suggestion (post-processing would cut
    /// everything after it); generation then stops at that token.
    /// Asked in the caller's process: a shared engine sends the text back for the verdict.
    #[serde(skip)]
    pub done_when: Option<DoneCheck>,
}

/// A test on a completion's text so far, asked as tokens arrive: at the end of each line and when
/// a line's indentation becomes known, which is where a suggestion can become complete.
#[derive(Clone)]
pub struct DoneCheck(pub Arc<dyn Fn(&str) -> bool + Send + Sync>);

impl DoneCheck {
    pub fn new(check: impl Fn(&str) -> bool + Send + Sync + 'static) -> DoneCheck {
        DoneCheck(Arc::new(check))
    }
}

impl std::fmt::Debug for DoneCheck {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("DoneCheck")
    }
}

impl PartialEq for DoneCheck {
    fn eq(&self, other: &DoneCheck) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl CompletionRequest {
    /// A request shaped by the user's `[completion]` settings.
    pub fn new(
        document: impl Into<String>,
        prompt: FimPrompt,
        single_line: bool,
        config: &CompletionConfig,
    ) -> CompletionRequest {
        CompletionRequest {
            document: document.into(),
            client: 0,
            prompt,
            max_tokens: config.max_tokens,
            single_line,
            stop: config.stop.clone(),
            time_budget: Duration::from_millis(config.time_budget_ms),
            sampling: SamplingConfig::from(config),
            done_when: None,
        }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StopReason {
    EndOfGeneration,
    EndOfLine,
    StopString,
    MaxTokens,
    TimeBudget,
    /// The slot's share of the context is full.
    ContextFull,
    /// A multi-line completion reached the line below the cursor and began to repeat it.
    SuffixReached,
    /// The request's `done_when` found the suggestion complete.
    SuggestionComplete,
    /// The answer is the rest of an earlier suggestion the user has been typing.
    TypedAhead,
    /// The prompt rendered to no tokens at all (an empty file on a model without FIM tokens).
    EmptyPrompt,
}

/// What one generation (a completion's or a chat's) cost in tokens and time; all zero for an
/// answer found without the model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct GenerationFigures {
    /// Tokens in the rendered prompt.
    pub n_prompt: u32,
    /// Prompt tokens whose KV cache was reused.
    pub n_reused: u32,
    /// Prompt tokens evaluated for this request (generated tokens are not counted here).
    pub n_evaluated: u32,
    pub n_generated: u32,
    /// Tokens drafted (by prompt lookup or the draft model) and checked by the model, and those it agreed with
    /// (speculative decoding; see `generate`).
    #[serde(default)]
    pub n_drafted: u32,
    #[serde(default)]
    pub n_accepted: u32,
    pub t_prefill_ms: f64,
    pub t_decode_ms: f64,
}

/// What one completion cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompletionFigures {
    /// Flattened on the shared engine's socket: the same JSON fields as before the split.
    #[serde(flatten)]
    pub generation: GenerationFigures,
    /// From the call to the answer, queueing included.
    pub t_total_ms: f64,
    pub served_without_inference: bool,
    pub stop: StopReason,
    /// The sequence that served it.
    pub slot: Option<u32>,
    /// The prompt did not fit and was cut.
    pub truncated: bool,
}

impl CompletionFigures {
    /// A suggestion answered without the model (typed ahead, or nothing to ask), after `t_total_ms`.
    pub(crate) fn without_inference(t_total_ms: f64, stop: StopReason) -> CompletionFigures {
        CompletionFigures {
            generation: GenerationFigures::default(),
            t_total_ms,
            served_without_inference: true,
            stop,
            slot: None,
            truncated: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    /// Text to insert at the cursor.
    pub text: String,
    /// Where each generated token's text ends in `text` (before any cut of the text), so the
    /// caller can count the tokens its post-processing throws away.
    pub token_ends: Vec<usize>,
    pub figures: CompletionFigures,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    pub content: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    pub messages: Vec<ChatMessage>,
    pub max_tokens: u32,
    /// A GBNF grammar (root rule `root`) the answer must follow.
    pub grammar: Option<String>,
    pub sampling: SamplingConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatOutcome {
    /// The whole answer (the concatenation of the deltas sent).
    pub text: String,
    #[serde(flatten)]
    pub generation: GenerationFigures,
    pub stop: StopReason,
}

/// Counters since the engine started, and the figures of the latest completions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EngineStats {
    pub n_completions: u64,
    pub n_served_without_inference: u64,
    /// Replaced by a newer request for the same document.
    pub n_superseded: u64,
    /// The caller stopped waiting (for example `$/cancelRequest`).
    pub n_abandoned: u64,
    pub n_errors: u64,
    pub n_chats: u64,
    pub n_tokens_reused: u64,
    pub n_tokens_evaluated: u64,
    pub n_tokens_generated: u64,
    /// Generated tokens that post-processing cut off (see `Engine::record_discarded`).
    pub n_tokens_discarded: u64,
    /// Tokens drafted (by prompt lookup or the draft model) and checked by the model, and those it agreed with,
    /// completions and chats together.
    #[serde(default)]
    pub n_tokens_drafted: u64,
    #[serde(default)]
    pub n_tokens_accepted: u64,
    /// The draft model, when one is configured.
    #[serde(default)]
    pub draft_model: DraftModelState,
    /// Tokens of the completion slots' prompts the draft model has yet to evaluate, caught up
    /// while the engine is idle (as of the last completion or catching-up step).
    #[serde(default)]
    pub n_draft_lag: u64,
    /// Prompt tokens evaluated ahead of a keystroke (see `Engine::warm`).
    pub n_tokens_warmed: u64,
    /// Warmings that ran to the end of their prompt.
    pub n_warmings: u64,
    /// Completions refused because the engine was full (`Error::Busy`).
    pub n_busy: u64,
    /// Steps that evaluated several completions in one batch, the sequences and the tokens in
    /// them.
    pub n_batches: u64,
    pub n_batched_sequences: u64,
    pub n_batched_tokens: u64,
    /// Oldest first, at most `RECENT_FIGURES`.
    pub recent: Vec<CompletionFigures>,
}

/// How many completions `EngineStats::recent` keeps.
pub const RECENT_FIGURES: usize = 128;

impl EngineStats {
    fn record(&mut self, figures: &CompletionFigures) {
        self.n_completions += 1;
        self.n_served_without_inference += u64::from(figures.served_without_inference);
        let generation = &figures.generation;
        self.n_tokens_reused += u64::from(generation.n_reused);
        self.n_tokens_evaluated += u64::from(generation.n_evaluated);
        self.n_tokens_generated += u64::from(generation.n_generated);
        self.n_tokens_drafted += u64::from(generation.n_drafted);
        self.n_tokens_accepted += u64::from(generation.n_accepted);
        if self.recent.len() == RECENT_FIGURES {
            self.recent.remove(0);
        }
        self.recent.push(figures.clone());
    }
}

/// A handle on the engine; clones share it. The engine runs on a thread of this process (it stops
/// when the last handle is dropped) or in a shared engine process reached through a socket.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    runs: Runs,
    caps: ModelCaps,
    token_counter: Arc<dyn TokenCounter>,
    placement: Placement,
    model_path: PathBuf,
    n_ctx_chat: u32,
}

enum Runs {
    /// On a thread of this process.
    InProcess {
        commands: std::sync::mpsc::Sender<Command>,
        shared: Arc<Shared>,
    },
    /// In a shared engine process.
    Shared(Box<service::Remote>),
    /// On an inference server reached over HTTP.
    Http(Arc<http::HttpEngine>),
}

/// Which engine a handle talks to, for `wellspring/serverInfo`.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineInfo {
    /// Whether the model runs in a shared engine process (or in this one).
    pub shared: bool,
    /// The process running the model.
    pub pid: u32,
    /// The shared engine's socket (or `tcp:HOST:PORT`).
    pub socket: Option<String>,
    /// Language servers using the engine (1 in process).
    pub n_clients: u32,
    /// The inference server, for a model served over HTTP.
    pub endpoint: Option<String>,
    pub chat_model_state: ChatModelState,
    pub stats: EngineStats,
}

/// Where the completion model's layers run, for status reports and health checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// `cpu`, or the GPU backend's name in lower case (`cuda`, `vulkan`, `metal`, ...).
    pub backend: String,
    /// The device's description (`NVIDIA H100 80GB HBM3`, `llvmpipe (LLVM 15.0.6, 256 bits)`);
    /// the CPU backend's when nothing is offloaded.
    pub device: String,
    /// Repeating layers whose weights and KV cache live on the device.
    pub n_layers_offloaded: u32,
    pub n_layers: u32,
    /// Device memory the engine took (its free memory before loading minus after the contexts
    /// were made), where the backend reports free memory and something was offloaded.
    pub device_memory_used: Option<u64>,
    pub device_memory_total: Option<u64>,
    /// What the memory plan expected the engine to take on the device (`wellspring doctor`).
    pub device_memory_planned: Option<u64>,
    /// The inference server's URL, for a model served over HTTP (`backend` then names its API
    /// and `device` the model).
    #[serde(default)]
    pub endpoint: Option<String>,
}

impl Placement {
    /// On the CPU, for engines that have no device to tell of (the scripted test backend).
    pub fn cpu(backend: &str) -> Placement {
        Placement {
            backend: backend.to_owned(),
            device: String::new(),
            n_layers_offloaded: 0,
            n_layers: 0,
            device_memory_used: None,
            device_memory_total: None,
            device_memory_planned: None,
            endpoint: None,
        }
    }
}

/// What the engine thread reports once its model is loaded.
pub(crate) struct Started {
    pub caps: ModelCaps,
    pub token_counter: Arc<dyn TokenCounter>,
    pub placement: Placement,
    /// Tokens a chat's prompt and answer share.
    pub n_ctx_chat: u32,
}

impl Engine {
    /// Loads the model at `model_path` on a new engine thread and returns once it is ready.
    /// Blocks for the load (seconds for big models): call it from `spawn_blocking` in async
    /// code. A missing, truncated or non-GGUF file is an `Err`, never a crash.
    pub fn start(config: &ModelConfig, model_path: &Path) -> Result<Engine, Error> {
        Engine::start_with_progress(config, model_path, ChatModel::SameAsCompletion, None)
    }

    /// `start`, with chat and code actions on `chat_model`, calling `on_progress` with the
    /// completion model's load progress in `0.0..=1.0`. A separate chat model loads on a
    /// thread of its own meanwhile; if it fails, chat requests say why and completions go on.
    pub fn start_with_progress(
        config: &ModelConfig,
        model_path: &Path,
        chat_model: ChatModel,
        on_progress: Option<Box<dyn FnMut(f32) + Send>>,
    ) -> Result<Engine, Error> {
        let shared = Arc::new(Shared::default());
        let chat_model = match chat_model {
            ChatModel::File(path) if path == model_path => ChatModel::SameAsCompletion,
            other => other,
        };
        shared.set_chat_model_state(match &chat_model {
            ChatModel::SameAsCompletion => ChatModelState::SameAsCompletion,
            ChatModel::File(_) | ChatModel::Resolve(_) => ChatModelState::Loading,
            ChatModel::Unavailable(reason) => ChatModelState::Unavailable(reason.clone()),
        });
        let (commands, started) = thread::spawn_llama(
            config.clone(),
            model_path.to_owned(),
            chat_model,
            on_progress,
            shared.clone(),
        )?;
        Ok(Engine::from_parts(commands, started, shared, model_path))
    }

    fn from_parts(
        commands: std::sync::mpsc::Sender<Command>,
        started: Started,
        shared: Arc<Shared>,
        model_path: &Path,
    ) -> Engine {
        Engine {
            inner: Arc::new(Inner {
                runs: Runs::InProcess { commands, shared },
                caps: started.caps,
                token_counter: started.token_counter,
                placement: started.placement,
                model_path: model_path.to_owned(),
                n_ctx_chat: started.n_ctx_chat,
            }),
        }
    }

    /// Connects to the shared engine for this configuration (starting it when none runs) and
    /// returns once its model is loaded, reporting the load's progress.
    pub async fn connect_shared(
        launch: &service::Launch<'_>,
        on_progress: Option<Box<dyn FnMut(f32) + Send>>,
    ) -> Result<Engine, Error> {
        let remote = service::connect_or_start(launch, on_progress).await?;
        Ok(Engine::from_remote(remote))
    }

    /// Connects to the engine listening at `endpoint`.
    pub async fn connect(endpoint: &service::Endpoint) -> Result<Engine, Error> {
        Ok(Engine::from_remote(service::connect(endpoint, None).await?))
    }

    /// Reaches the inference server(s) `path` (and `chat_path`, when chat runs elsewhere) name,
    /// reading the model's context and FIM markers from it. Blocking (network calls).
    pub fn connect_http(
        config: &ModelConfig,
        path: http::EndpointSpec,
        chat_path: Option<http::EndpointSpec>,
    ) -> Result<Engine, Error> {
        let engine = http::HttpEngine::connect(config, path, chat_path)?;
        Ok(Engine {
            inner: Arc::new(Inner {
                caps: engine.caps(),
                token_counter: engine.token_counter.clone(),
                placement: engine.placement(),
                model_path: PathBuf::from(engine.model_name()),
                n_ctx_chat: engine.chat_n_ctx(),
                runs: Runs::Http(Arc::new(engine)),
            }),
        })
    }

    /// How prompt tokens are counted for a model served over HTTP; `None` for the other homes,
    /// which count with the model's own vocabulary.
    pub fn token_counting(&self) -> Option<&'static str> {
        match &self.inner.runs {
            Runs::Http(engine) => Some(engine.counting.describe()),
            Runs::InProcess { .. } | Runs::Shared(_) => None,
        }
    }

    fn from_remote(remote: service::Remote) -> Engine {
        Engine {
            inner: Arc::new(Inner {
                caps: remote.facts.caps.clone(),
                token_counter: remote.token_counter.clone(),
                placement: remote.facts.placement.clone(),
                model_path: remote.facts.model_path.clone(),
                n_ctx_chat: remote.facts.n_ctx_chat,
                runs: Runs::Shared(Box::new(remote)),
            }),
        }
    }

    /// Completes `request`. A newer request for the same document makes this one return
    /// `Error::Superseded`; dropping the future stops the work at the next decode step. When the
    /// user has typed the start of the document's last suggestion, the rest of it comes back at
    /// once, without inference.
    ///
    /// The engine takes the request when this is called, not when the future is first polled:
    /// requests keep the order they were made in (the newest for a document wins) even when each
    /// is awaited on a task of its own.
    pub fn complete(
        &self,
        request: CompletionRequest,
    ) -> impl Future<Output = Result<Completion, Error>> + Send + 'static {
        let (commands, shared) = match &self.inner.runs {
            Runs::InProcess { commands, shared } => (commands, shared),
            Runs::Shared(remote) => return Either::Right(Either::Left(remote.complete(request))),
            Runs::Http(engine) => return Either::Right(Either::Right(engine.complete(request))),
        };
        let submitted_at = Instant::now();
        let typed_ahead =
            shared.typed_ahead_answer(&request.document, &request.prompt, submitted_at);
        let Some(completion) = typed_ahead else {
            return Either::Left(Either::Right(submit(commands, move |reply| {
                Command::Complete(CompletionJob {
                    request,
                    reply,
                    submitted_at,
                })
            })));
        };
        // Latest wins here too: whatever still runs for this document is stale.
        let _ = commands.send(Command::Cancel {
            document: request.document.clone(),
        });
        Either::Left(Either::Left(std::future::ready(Ok(completion))))
    }

    /// Generates a chat answer, sending text deltas through `deltas` as they are produced.
    /// Completions keep priority: they run between the chat's decode steps. Dropping the future
    /// (or the delta receiver) stops generation. Like `complete`, the request is taken when this
    /// is called.
    pub fn chat(
        &self,
        request: ChatRequest,
        deltas: mpsc::UnboundedSender<String>,
    ) -> impl Future<Output = Result<ChatOutcome, Error>> + Send + 'static {
        match &self.inner.runs {
            Runs::InProcess { commands, .. } => Either::Left(submit(commands, move |reply| {
                Command::Chat(ChatJob {
                    request,
                    deltas,
                    reply,
                })
            })),
            Runs::Shared(remote) => Either::Right(Either::Left(remote.chat(request, deltas))),
            Runs::Http(engine) => Either::Right(Either::Right(engine.chat(request, deltas))),
        }
    }

    pub fn caps(&self) -> ModelCaps {
        self.inner.caps.clone()
    }

    /// Counts tokens with the model's own vocabulary; usable from any thread.
    pub fn token_counter(&self) -> Arc<dyn TokenCounter> {
        self.inner.token_counter.clone()
    }

    /// Tokens a chat's prompt and answer share (the chat context's size).
    pub fn chat_n_ctx(&self) -> u32 {
        self.inner.n_ctx_chat
    }

    /// The engine's counters; a shared engine's count every client's work.
    pub async fn stats(&self) -> EngineStats {
        self.info().await.map(|info| info.stats).unwrap_or_default()
    }

    /// Which engine this is and how it is doing.
    pub async fn info(&self) -> Result<EngineInfo, Error> {
        match &self.inner.runs {
            Runs::InProcess { shared, .. } => Ok(EngineInfo {
                shared: false,
                pid: std::process::id(),
                socket: None,
                n_clients: 1,
                endpoint: None,
                chat_model_state: shared.chat_model_state(),
                stats: shared.stats().clone(),
            }),
            Runs::Shared(remote) => {
                let live = remote.info().await?;
                Ok(EngineInfo {
                    shared: true,
                    pid: remote.facts.pid,
                    socket: Some(remote.endpoint.to_string()),
                    n_clients: live.n_clients,
                    endpoint: None,
                    chat_model_state: live.chat_model_state,
                    stats: live.stats,
                })
            }
            Runs::Http(engine) => Ok(EngineInfo {
                shared: false,
                pid: std::process::id(),
                socket: None,
                n_clients: 1,
                endpoint: Some(engine.endpoint()),
                chat_model_state: engine.shared().chat_model_state(),
                stats: engine.shared().stats().clone(),
            }),
        }
    }

    /// Evaluates the prompt `request` would use into a slot while the engine has nothing else to
    /// do, so that the next keystroke in that document costs only what changed. Completions
    /// preempt it; a newer warming or completion for the same document replaces it. Returns at
    /// once.
    pub fn warm(&self, request: CompletionRequest) {
        match &self.inner.runs {
            Runs::InProcess { commands, .. } => {
                let _ = commands.send(Command::Warm(request));
            }
            Runs::Shared(remote) => remote.warm(request),
            Runs::Http(engine) => engine.warm(request),
        }
    }

    /// Counts generated tokens that the caller's post-processing threw away.
    pub fn record_discarded(&self, n_tokens: u32) {
        match &self.inner.runs {
            Runs::InProcess { shared, .. } => {
                shared.stats().n_tokens_discarded += u64::from(n_tokens);
            }
            Runs::Shared(remote) => remote.record_discarded(n_tokens),
            Runs::Http(engine) => {
                engine.shared().stats().n_tokens_discarded += u64::from(n_tokens);
            }
        }
    }

    /// "cpu", or the GPU backend in use ("cuda", "metal", "vulkan", …).
    pub fn backend_name(&self) -> &str {
        &self.inner.placement.backend
    }

    /// Where the model's layers run.
    pub fn placement(&self) -> &Placement {
        &self.inner.placement
    }

    pub fn model_path(&self) -> &Path {
        &self.inner.model_path
    }

    /// For a shared engine: resolves when it is gone for good (its process ended or the
    /// connection broke), with the reason; for an inference server, when it stops answering.
    /// The future holds no handle, so waiting on it keeps neither the engine nor its connection
    /// alive. `None` for an engine in this process.
    pub fn stopped(&self) -> Option<impl Future<Output = String> + Send + 'static> {
        match &self.inner.runs {
            Runs::InProcess { .. } => None,
            Runs::Shared(remote) => Some(Either::Left(remote.closed())),
            Runs::Http(engine) => Some(Either::Right(engine.closed())),
        }
    }
}

/// Hands a command carrying a reply channel to the engine thread now, and returns the wait for
/// its answer.
fn submit<T: Send + 'static>(
    commands: &std::sync::mpsc::Sender<Command>,
    command: impl FnOnce(oneshot::Sender<Result<T, Error>>) -> Command,
) -> impl Future<Output = Result<T, Error>> + Send + 'static {
    let (reply, answer) = oneshot::channel();
    let sent = commands.send(command(reply));
    async move {
        sent.map_err(|_| Error::Stopped)?;
        answer.await.map_err(|_| Error::Stopped)?
    }
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// `Mutex` poisoning only follows a panic that already failed its request; the data inside is
/// plain counters and caches, still usable.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod llama_tests;
#[cfg(test)]
mod tests;
