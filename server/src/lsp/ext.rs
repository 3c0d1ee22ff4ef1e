//! Custom methods and notifications (`wellspring/…`). Documented in `docs/lsp-extensions.md`
//! and mirrored in `editors/vscode/src/lsp_ext.ts`; a test hashes this file so the three stay
//! in step.

use serde::{Deserialize, Serialize};
use tower_lsp_server::ls_types::notification::Notification;
use tower_lsp_server::ls_types::{Range, TextDocumentIdentifier};

/// `wellspring/serverInfo` request: what the server is running.
pub const SERVER_INFO: &str = "wellspring/serverInfo";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServerInfoResult {
    pub version: String,
    pub position_encoding: String,
    pub open_documents: usize,
    pub state: ServerState,
    /// The resolved model file, once known.
    pub model: Option<String>,
    /// The separate chat and code-action model, once it is loaded (`null` until then, and when
    /// chat runs on `model`).
    pub chat_model: Option<String>,
    /// Where the chat model stands; `null` while no engine runs.
    pub chat_model_state: Option<ChatModelStateResult>,
    /// Why the separate chat model is unavailable.
    pub chat_model_error: Option<String>,
    /// Where the draft model (`model.draft_path`) stands; `null` while no engine runs.
    pub draft_model_state: Option<DraftModelStateResult>,
    /// Why the draft model is unavailable.
    pub draft_model_error: Option<String>,
    pub backend: String,
    /// The device the completion model's layers run on; `null` while no engine runs.
    pub device: Option<DeviceResult>,
    /// Where the model runs; `null` while no engine runs.
    pub engine: Option<EngineInfoResult>,
    /// Whether the completion model has fill-in-the-middle tokens; `null` while no engine runs.
    /// Without them completions continue the text before the cursor only.
    pub fim: Option<bool>,
    /// The server's own executable, for health checks that say which binary is in use.
    pub binary: Option<String>,
    /// The model the server would download when asked (state `noModel` only).
    pub offer: Option<ModelOffer>,
}

/// Where the server's model stands, as `wellspring/status` and `wellspring/serverInfo` say.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum ServerState {
    Loading,
    Ready,
    /// The model failed to load; the message says why.
    Error,
    /// No model is configured, or completions are turned off.
    Disabled,
    /// No model was configured and the default one is not downloaded (see [`ModelOffer`]).
    NoModel,
}

impl ServerState {
    /// The wire name, for messages: what serde writes.
    pub fn name(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|value| value.as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

/// Where the separate chat and code-action model stands.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum ChatModelStateResult {
    /// Chat runs on the completion model.
    Same,
    Loading,
    Ready,
    Unavailable,
}

/// Where the draft model for speculative decoding stands.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum DraftModelStateResult {
    /// None is configured.
    None,
    Loading,
    Ready,
    /// It cannot be had, or cannot draft for the model; completions go on without it.
    Unavailable,
}

/// Where the model runs.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum EngineMode {
    /// An engine process every window shares.
    Shared,
    /// An engine inside this server.
    InProcess,
}

/// What a server without a model offers (state `noModel`): no model was configured and the
/// default one is not downloaded yet. The server downloads nothing until the client sends
/// `wellspring.downloadModel` or configures a model.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ModelOffer {
    /// The default model's spec, as `model.path` takes it.
    pub spec: String,
    pub description: String,
    /// The download's approximate size in bytes.
    pub bytes: u64,
    /// Built-in models the user may choose instead (setting `model.path` to the name).
    pub builtins: Vec<BuiltinOffer>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BuiltinOffer {
    pub name: String,
    pub description: String,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeviceResult {
    /// `"cpu"`, or the GPU backend: `"cuda"`, `"vulkan"`, `"metal"`, `"rocm"`.
    pub backend: String,
    /// The device's description, e.g. `"NVIDIA H100 80GB HBM3"`.
    pub name: String,
    /// Repeating layers on the device, out of `layers`.
    pub layers_offloaded: u32,
    pub layers: u32,
    /// Device memory the engine took while loading, in bytes, where the backend reports it.
    pub memory_used: Option<u64>,
    /// The device's memory, in bytes.
    pub memory_total: Option<u64>,
    /// What the memory plan expected the engine to take on the device, in bytes.
    pub memory_planned: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EngineInfoResult {
    pub mode: EngineMode,
    /// The process that holds the model.
    pub pid: u32,
    /// The shared engine's socket.
    pub socket: Option<String>,
    /// Language servers using the engine now.
    pub clients: u32,
    /// The inference server the model runs on (`model.path` names one); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// How prompt tokens are counted for a model on an inference server; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_counting: Option<String>,
}

/// `wellspring/status` notification: the engine's state, for status bars.
pub enum Status {}

impl Notification for Status {
    type Params = StatusParams;
    const METHOD: &'static str = "wellspring/status";
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StatusParams {
    pub state: ServerState,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// The device, once the model is loaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_latency_ms: Option<f64>,
    /// Whether the model has fill-in-the-middle tokens, once it is loaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fim: Option<bool>,
    /// With state `noModel`: what the server can download.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offer: Option<ModelOffer>,
}

/// `textDocument/inlineCompletion` (LSP 3.18), served as a custom method by tower-lsp-server 0.23.
pub const INLINE_COMPLETION: &str = "textDocument/inlineCompletion";

/// `wellspring/stats` request: the engine's counters and the latest completions' figures.
pub const STATS: &str = "wellspring/stats";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CompletionFiguresResult {
    pub n_prompt: u32,
    pub n_reused: u32,
    pub n_evaluated: u32,
    pub n_generated: u32,
    /// Tokens drafted by prompt lookup and checked by the model, and those it agreed with.
    pub n_drafted: u32,
    pub n_accepted: u32,
    pub t_prefill_ms: f64,
    pub t_decode_ms: f64,
    pub t_total_ms: f64,
    pub served_without_inference: bool,
    pub stop: StopResult,
}

/// Why a completion's generation stopped. The names are the wire's, as they have always been.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum StopResult {
    EndOfGeneration,
    EndOfLine,
    StopString,
    MaxTokens,
    TimeBudget,
    /// The slot's share of the context is full.
    ContextFull,
    /// A multi-line completion reached the line below the cursor and began to repeat it.
    SuffixReached,
    /// The suggestion was found complete.
    SuggestionComplete,
    /// The answer is the rest of an earlier suggestion the user has been typing.
    TypedAhead,
    /// The prompt rendered to no tokens at all.
    EmptyPrompt,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StatsResult {
    pub n_completions: u64,
    pub n_served_without_inference: u64,
    pub n_superseded: u64,
    pub n_abandoned: u64,
    pub n_errors: u64,
    pub n_chats: u64,
    pub n_tokens_reused: u64,
    pub n_tokens_evaluated: u64,
    pub n_tokens_generated: u64,
    /// Generated tokens that post-processing cut off.
    pub n_tokens_discarded: u64,
    /// Prompt tokens evaluated ahead of keystrokes (`wellspring/warm`).
    pub n_tokens_warmed: u64,
    /// Speculative decoding: tokens drafted by prompt lookup and checked by the model, and those
    /// it agreed with (completions and chats).
    pub n_tokens_drafted: u64,
    pub n_tokens_accepted: u64,
    /// Oldest first.
    pub recent: Vec<CompletionFiguresResult>,
}

/// Commands the server executes (`workspace/executeCommand`).
pub const COMMAND_CHAT: &str = "wellspring.chat";
pub const COMMAND_EXPLAIN: &str = "wellspring.explain";
pub const COMMAND_INSTRUCT: &str = "wellspring.instruct";
pub const COMMAND_APPLY_ACTION: &str = "wellspring.applyAction";
/// Downloads and loads the model a `noModel` status offered; no arguments. Answers once the
/// download has started; `wellspring/status` reports its progress.
pub const COMMAND_DOWNLOAD_MODEL: &str = "wellspring.downloadModel";
/// A client-side command: the client asks for an instruction, then runs `wellspring.instruct`.
pub const COMMAND_INSTRUCT_PROMPT: &str = "wellspring.instructPrompt";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ChatHistoryMessage {
    pub role: String,
    pub content: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ChatArgs {
    pub chat_id: String,
    pub text_document: TextDocumentIdentifier,
    pub range: Range,
    pub question: String,
    #[serde(default)]
    pub history: Vec<ChatHistoryMessage>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ChatResult {
    pub chat_id: String,
    pub text: String,
    /// What was left out of the conversation to fit the model's context, if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice: Option<String>,
}

/// `wellspring/chatProgress` notification: one piece of a streamed answer.
pub enum ChatProgress {}

impl Notification for ChatProgress {
    type Params = ChatProgressParams;
    const METHOD: &'static str = "wellspring/chatProgress";
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ChatProgressParams {
    pub chat_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    pub delta: String,
    pub done: bool,
    /// On a stream's first notification: what was left out of the conversation to fit the
    /// model's context (the oldest turns, related code, part of the selection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice: Option<String>,
}

/// Arguments of `wellspring.explain` and `wellspring.instructPrompt`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RangeArgs {
    pub text_document: TextDocumentIdentifier,
    pub range: Range,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InstructArgs {
    pub text_document: TextDocumentIdentifier,
    pub range: Range,
    pub instruction: String,
}

/// The `data` of an unresolved Wellspring code action, and the argument of
/// `wellspring.applyAction`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CodeActionData {
    /// `fix`, `document`, `tests` or `simplify`.
    pub action: String,
    pub uri: String,
    pub range: Range,
    /// The document version the range refers to.
    pub version: i32,
    #[serde(default)]
    pub diagnostics: Vec<String>,
    /// `range` as bytes of that version, so the server can move it when the document changes
    /// before the action runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub byte_range: Option<(usize, usize)>,
    /// Set when `codeAction/resolve` answered before the model was done: the running job whose
    /// edit `wellspring.applyAction` applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
}

/// `wellspring/documentState` request: the server's copy of a document, so a client (or a test)
/// can check that both sides agree after a run of edits.
pub const DOCUMENT_STATE: &str = "wellspring/documentState";

/// Notification, client → server, with `TextDocumentPositionParams`: the user is looking at this
/// position (a file opened or focused, the cursor moved to another line); the engine evaluates
/// the prompt a completion there would use while it is idle.
pub const WARM: &str = "wellspring/warm";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DocumentStateParams {
    pub uri: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DocumentStateResult {
    pub version: i32,
    pub text: String,
    /// The grammar in use, or null when the document is not parsed.
    pub language: Option<String>,
    /// `text`, `tooLargeToParse` or `binary`.
    pub kind: String,
    /// The syntax tree, when there is one: every node's kind, field, byte range and points, a line
    /// each (`syntax::node_listing`).
    pub tree: Option<String>,
}
