// Wellspring's custom protocol, mirroring server/src/lsp/ext.rs and docs/lsp-extensions.md.
// Keep the three in step; nothing else in the extension spells a `wellspring/` method name.

import * as lc from "vscode-languageclient";

/** The settings object of `initializationOptions` and `workspace/didChangeConfiguration`. */
export interface Settings {
  model?: { path?: string; n_gpu_layers?: number; n_ctx?: number };
  completion?: {
    enabled?: boolean;
    max_tokens?: number;
    debounce_ms?: number;
    disabled_languages?: string[];
  };
  engine?: { mode?: "shared" | "in_process" };
}

export type ServerState = "loading" | "ready" | "error" | "disabled" | "noModel";

export interface StatusParams {
  state: ServerState;
  /** One line for a status bar. */
  message: string;
  /** 0..1 while loading. */
  progress?: number;
  /** Model file name. */
  model?: string;
  /** "cpu", "cuda", "metal", "vulkan", … */
  backend?: string;
  /** The device, once the model is loaded. */
  device?: DeviceInfo;
  /** The last completion's total time. */
  lastLatencyMs?: number;
  /** Once the model is loaded: whether it has fill-in-the-middle tokens. */
  fim?: boolean;
  /** With state "noModel": what the server can download. */
  offer?: ModelOffer;
}

/** What a server with no model offers (state "noModel"); it downloads nothing until asked. */
export interface ModelOffer {
  /** The default model, as model.path takes it. */
  spec: string;
  description: string;
  /** The download's approximate size. */
  bytes: number;
  /** Built-in models, chosen by setting model.path to the name. */
  builtins: { name: string; description: string; bytes: number }[];
}

/** Server → client, whenever the model or a request changes state. */
export const status = new lc.NotificationType<StatusParams>("wellspring/status");

/** The device the completion model's layers run on. */
export interface DeviceInfo {
  /** "cpu", "cuda", "vulkan", "metal", "rocm". */
  backend: string;
  /** The device's description, e.g. "NVIDIA H100 80GB HBM3". */
  name: string;
  /** Repeating layers on the device, out of `layers`. */
  layersOffloaded: number;
  layers: number;
  /** Device memory the engine took while loading, in bytes, where the backend reports it. */
  memoryUsed: number | null;
  /** The device's memory, in bytes. */
  memoryTotal: number | null;
  /** What the memory plan expected the engine to take on the device, in bytes. */
  memoryPlanned: number | null;
}

export interface ServerInfoResult {
  version: string;
  positionEncoding: string;
  openDocuments: number;
  state: ServerState;
  /** The resolved model file, once known. */
  model: string | null;
  /** The separate chat and code-action model, once loaded. */
  chatModel: string | null;
  /** Where the chat model stands; "same" when chat runs on `model`, null while no engine runs. */
  chatModelState: "same" | "loading" | "ready" | "unavailable" | null;
  /** Why the separate chat model is unavailable. */
  chatModelError: string | null;
  /** Where the draft model (model.draft_path) stands; "none" when none is configured, null while no engine runs. */
  draftModelState: "none" | "loading" | "ready" | "unavailable" | null;
  /** Why the draft model is unavailable; completions go on without it. */
  draftModelError: string | null;
  backend: string;
  /** The device the completion model's layers run on; null while no engine runs. */
  device: DeviceInfo | null;
  /** Where the model runs; null while no engine runs. */
  engine: {
    /** "shared": one engine process for every window; "in_process": inside this server. */
    mode: "shared" | "in_process";
    /** The process holding the model; windows sharing an engine report the same. */
    pid: number;
    socket: string | null;
    /** Language servers using the engine now. */
    clients: number;
    /** The inference server the model runs on (`model.path` names one); absent otherwise. */
    endpoint?: string;
    /** How prompt tokens are counted for a model on an inference server; absent otherwise. */
    tokenCounting?: string;
  } | null;
  /** Whether the completion model has fill-in-the-middle tokens; null while no engine runs. */
  fim: boolean | null;
  /** The server's own executable. */
  binary: string | null;
  /** With state "noModel": what the server can download. */
  offer: ModelOffer | null;
}

/** Client → server health check. */
export const serverInfo = new lc.RequestType0<ServerInfoResult, void>("wellspring/serverInfo");

/** One completion's figures, as `wellspring/stats` reports them. */
/** Why a completion's generation stopped. */
export type StopReason =
  | "EndOfGeneration"
  | "EndOfLine"
  | "StopString"
  | "MaxTokens"
  | "TimeBudget"
  | "ContextFull"
  | "SuffixReached"
  | "SuggestionComplete"
  | "TypedAhead"
  | "EmptyPrompt";

export interface CompletionFigures {
  nPrompt: number;
  nReused: number;
  nEvaluated: number;
  nGenerated: number;
  /** Tokens drafted by prompt lookup and checked by the model, and those it agreed with. */
  nDrafted: number;
  nAccepted: number;
  tPrefillMs: number;
  tDecodeMs: number;
  tTotalMs: number;
  servedWithoutInference: boolean;
  stop: StopReason;
}

export interface StatsResult {
  nCompletions: number;
  nServedWithoutInference: number;
  nSuperseded: number;
  nAbandoned: number;
  nErrors: number;
  nChats: number;
  nTokensReused: number;
  nTokensEvaluated: number;
  nTokensGenerated: number;
  nTokensDiscarded: number;
  nTokensWarmed: number;
  /** Speculative decoding: tokens drafted by prompt lookup and checked, and those accepted. */
  nTokensDrafted: number;
  nTokensAccepted: number;
  /** Oldest first. */
  recent: CompletionFigures[];
}

/** Client → server: the engine's counters and the latest completions' figures. */
export const stats = new lc.RequestType0<StatsResult, void>("wellspring/stats");

export interface DocumentStateParams {
  uri: string;
}

export interface DocumentStateResult {
  version: number;
  text: string;
  /** The grammar in use, or null when the document is not parsed. */
  language: string | null;
  kind: "text" | "tooLargeToParse" | "binary";
  /** The syntax tree, when there is one: every node's kind, field, byte range and points, a line each. */
  tree: string | null;
}

/** Client → server: the server's copy of a document (for checks that both sides agree). */
export const documentState = new lc.RequestType<DocumentStateParams, DocumentStateResult, void>("wellspring/documentState");

/** The user is looking at this position; the server evaluates its prompt while idle. */
export const warm = new lc.NotificationType<lc.TextDocumentPositionParams>("wellspring/warm");

export interface ChatMessage {
  role: "user" | "assistant";
  content: string;
}

/** Arguments of the `wellspring.chat` command. */
export interface ChatArgs {
  /** Chosen by the client; names the stream. */
  chatId: string;
  textDocument: lc.TextDocumentIdentifier;
  /** The selection (may be empty). */
  range: lc.Range;
  question: string;
  history?: ChatMessage[];
}

/** The `wellspring.chat` command's result: the whole answer. */
export interface ChatResult {
  chatId: string;
  text: string;
  /** What was left out of the conversation to fit the model's context, if anything. */
  notice?: string;
}

export interface ChatProgressParams {
  chatId: string;
  /** Present on a stream's first notification. */
  title?: string;
  /** Text to append. */
  delta: string;
  /** True on the last notification of the stream. */
  done: boolean;
  /** On the first notification: what was left out of the conversation to fit the model's context. */
  notice?: string;
}

/** Server → client: one piece of a streamed chat answer, in order. */
export const chatProgress = new lc.NotificationType<ChatProgressParams>("wellspring/chatProgress");

/** Arguments of the `wellspring.instruct` command; it returns the applied `WorkspaceEdit`. */
export interface InstructArgs {
  textDocument: lc.TextDocumentIdentifier;
  range: lc.Range;
  instruction: string;
}

/** Arguments of `wellspring.explain` and of the client-side `wellspring.instructPrompt`. */
export interface RangeArgs {
  textDocument: lc.TextDocumentIdentifier;
  range: lc.Range;
}

/** The `data` of an unresolved Wellspring code action, and the argument of `wellspring.applyAction`. */
export interface CodeActionData {
  action: "fix" | "document" | "tests" | "simplify";
  uri: string;
  range: lc.Range;
  /** The document version the range refers to. */
  version: number;
  diagnostics?: string[];
  /** `range` as bytes of that version, so the server can move it past later edits. */
  byteRange?: [number, number];
  /** Set when `codeAction/resolve` answered before the model was done: the job to apply. */
  job?: string;
}

/** Server commands (run through `workspace/executeCommand`). */
export const CHAT_COMMAND = "wellspring.chat";
export const EXPLAIN_COMMAND = "wellspring.explain";
export const INSTRUCT_COMMAND = "wellspring.instruct";
export const APPLY_ACTION_COMMAND = "wellspring.applyAction";
/** Downloads and loads the model a "noModel" status offered; no arguments. */
export const DOWNLOAD_MODEL_COMMAND = "wellspring.downloadModel";
/** Client command named by the "Edit with instruction…" code action. */
export const INSTRUCT_PROMPT_COMMAND = "wellspring.instructPrompt";
