//! The engine's third home: an inference server the team already runs (llama-server, vLLM, TGI,
//! Ollama, anything OpenAI-compatible), reached over HTTP. The server supplies the tokens; what
//! makes Wellspring's suggestions better than calling it directly stays here: the prompt layout
//! whose tail is the line being typed (so the server's prefix cache keeps hitting), stop rules and
//! the `done_when` check applied as text streams in (closing the stream stops the server), the
//! typed-ahead answer, latest-wins per document, and the figures in `wellspring/stats`, taken from
//! what the server reports.
//!
//! `api.rs` knows the APIs' shapes, `client.rs` the network. Documents and prompt building stay
//! in the language server as for the other homes; what crosses is a rendered prompt.

mod api;
mod client;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};

pub use api::{is_endpoint, EndpointSpec};
use api::{Api, ChatCall, CompletionCall, FimMarkers, ServerFigures};
use client::{CallError, Client, Next, Token};

use super::scheduler::{apply_stops, may_have_completed, Shared};
use super::vocab::{FimTokenTexts, Vocab};
use super::{
    lock, millis, CachedTokenCounter, ChatModelState, ChatOutcome, ChatRequest, Completion,
    CompletionFigures, CompletionRequest, Error, GenerationFigures, ModelCaps, Placement,
    StopReason, TokenCounter,
};
use crate::config::ModelConfig;

/// A text whose tokenization by the server and by the bundled vocabulary must agree before the
/// bundled one counts prompt tokens locally: code, prose, indentation, non-ASCII.
const VOCABULARY_PROBE: &str =
    "fn main() {\n    let naïve = \"日本語\"; // 42\n\treturn x->y;\n}\n";

/// One model behind one endpoint.
#[derive(Debug)]
pub(crate) struct Target {
    spec: EndpointSpec,
    client: Client,
    /// The FIM markers prompts are rendered with (all `None`: prefix-only prompts).
    fim: FimTokenTexts,
    /// Their family, for the log.
    fim_family: &'static str,
    /// Tokens one request's prompt and answer share.
    n_ctx: u32,
    /// llama-server's slots (one per document, so documents keep their caches); 0 elsewhere.
    n_slots: u32,
    /// The model's name as the server reports it.
    model_name: String,
}

/// How prompt tokens are counted, said in `wellspring/serverInfo` and the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Counting {
    /// The bundled Qwen2.5-Coder vocabulary, which tokenized a probe exactly as the server did.
    LocalChecked,
    /// The bundled vocabulary, assumed to be the served model's family (the server has no
    /// tokenizer endpoint).
    LocalAssumed,
    /// The server's `/tokenize`, each text once (the vocabularies differ).
    Server,
}

impl Counting {
    pub fn describe(&self) -> &'static str {
        match self {
            Counting::LocalChecked => {
                "the bundled Qwen2.5-Coder vocabulary (it tokenizes as the server's /tokenize does)"
            }
            Counting::LocalAssumed => {
                "the bundled Qwen2.5-Coder vocabulary (the server has no /tokenize; its model is assumed to be of that family)"
            }
            Counting::Server => "the server's /tokenize",
        }
    }
}

/// A request in flight, which a newer one for its document or its caller going away stops.
#[derive(Default)]
struct Cancel {
    stop: AtomicBool,
    superseded: AtomicBool,
}

/// Sets the stop flag when the caller stops waiting (its future was dropped).
struct StopOnDrop(Arc<Cancel>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop.store(true, Ordering::Relaxed);
    }
}

pub(crate) struct HttpEngine {
    completion: Arc<Target>,
    chat: Arc<Target>,
    pub counting: Counting,
    pub token_counter: Arc<dyn TokenCounter>,
    shared: Shared,
    slots: Mutex<SlotTable>,
    running: Mutex<HashMap<String, Arc<Cancel>>>,
    /// Becomes `Some(reason)` when the endpoint stops answering; a new engine takes over then.
    down: watch::Sender<Option<String>>,
}

/// The bearer token: `WELLSPRING_API_TOKEN`, else the file `model.api_token_file` names.
fn token(config: &ModelConfig) -> Result<Option<Token>, String> {
    if let Some(token) = std::env::var("WELLSPRING_API_TOKEN")
        .ok()
        .map(|token| token.trim().to_owned())
        .filter(|token| !token.is_empty())
    {
        return Ok(Some(Token::new(token)));
    }
    let file = config.api_token_file.trim();
    if file.is_empty() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(file)
        .map_err(|error| format!("cannot read model.api_token_file {file}: {error}"))?;
    let token = text.trim().to_owned();
    if token.is_empty() {
        return Err(format!("model.api_token_file {file} is empty"));
    }
    Ok(Some(Token::new(token)))
}

/// The endpoints of `model.path` and `model.chat_path` (`None`: chat on the completion model).
pub fn endpoints(config: &ModelConfig) -> Result<(EndpointSpec, Option<EndpointSpec>), String> {
    let path = EndpointSpec::parse(&config.path).map_err(|error| format!("model.path: {error}"))?;
    let chat_path = config.chat_path.trim();
    if chat_path.is_empty() {
        return Ok((path, None));
    }
    if !is_endpoint(chat_path) {
        return Err(format!(
            "model.chat_path is {chat_path:?}, a model file, while model.path is an inference server: point chat_path at a server too, or leave it empty"
        ));
    }
    let chat_path =
        EndpointSpec::parse(chat_path).map_err(|error| format!("model.chat_path: {error}"))?;
    Ok((path, Some(chat_path)))
}

fn unreachable(error: &CallError) -> Error {
    Error::Backend(error.to_string())
}

impl Target {
    /// Asks the server about the model: its context, slots, FIM markers and name. Blocking.
    fn probe(
        spec: EndpointSpec,
        config: &ModelConfig,
        n_ctx: u32,
        token: Option<Token>,
    ) -> Result<Target, Error> {
        let client = Client::new(&spec.base_url, token);
        let forced = match config.remote_fim.trim() {
            "" | "auto" => None,
            "none" => Some(None),
            family => Some(Some(api::fim_family(family).ok_or_else(|| {
                Error::Backend(format!(
                    "model.remote_fim is {family:?}; it takes auto, none, qwen, starcoder, deepseek or codellama"
                ))
            })?)),
        };
        let mut target = Target {
            fim: FimTokenTexts::default(),
            fim_family: "none",
            n_ctx,
            n_slots: 0,
            model_name: spec.model.clone().unwrap_or_default(),
            client,
            spec,
        };
        match target.spec.api {
            Api::LlamaServer => {
                let props = target
                    .client
                    .get_json("/props")
                    .map_err(|error| unreachable(&error))?;
                if let Some(n_ctx) = props
                    .pointer("/default_generation_settings/n_ctx")
                    .and_then(Value::as_u64)
                {
                    target.n_ctx = u32::try_from(n_ctx).unwrap_or(u32::MAX);
                }
                target.n_slots = props
                    .get("total_slots")
                    .and_then(Value::as_u64)
                    .map_or(0, |n| u32::try_from(n).unwrap_or(0));
                let model_path = props
                    .get("model_path")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                target.model_name = model_path
                    .rsplit('/')
                    .next()
                    .unwrap_or(model_path)
                    .to_owned();
                let markers = match forced {
                    Some(markers) => markers,
                    None => target.probe_markers()?,
                };
                target.set_markers(markers);
            }
            Api::OpenAi => {
                // `/models` lists what the server serves; a server without it is still usable.
                match target.client.get_json("/models") {
                    Ok(models) => {
                        let listed: Vec<&str> = models
                            .get("data")
                            .and_then(Value::as_array)
                            .map(|data| {
                                data.iter()
                                    .filter_map(|model| model.get("id")?.as_str())
                                    .collect()
                            })
                            .unwrap_or_default();
                        if !listed.is_empty() && !listed.contains(&target.model_name.as_str()) {
                            return Err(Error::Backend(format!(
                                "{} does not serve {:?}; it serves {}",
                                target.spec.base_url,
                                target.model_name,
                                listed.join(", ")
                            )));
                        }
                    }
                    Err(error @ CallError::Unreachable { .. }) => return Err(unreachable(&error)),
                    Err(error) => tracing::info!(%error, "the server lists no models; going on"),
                }
                let markers = forced.unwrap_or_else(|| {
                    api::fim_family_of_name(&target.model_name).or(api::fim_family("qwen"))
                });
                target.set_markers(markers);
            }
            Api::Ollama => {
                let show = target
                    .client
                    .post_json("/api/show", &json!({"model": target.model_name}));
                let details = match show {
                    Ok(show) => show,
                    Err(CallError::Status { status: 404, .. }) => {
                        return Err(Error::Backend(format!(
                            "the Ollama server at {} has no model {:?}: run `ollama pull {}` there",
                            target.spec.base_url, target.model_name, target.model_name
                        )))
                    }
                    Err(error) => return Err(unreachable(&error)),
                };
                let family = details
                    .pointer("/details/family")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                let markers = forced.unwrap_or_else(|| {
                    api::fim_family_of_name(&target.model_name)
                        .or_else(|| api::fim_family_of_name(&family))
                        .or(api::fim_family("qwen"))
                });
                target.set_markers(markers);
            }
        }
        Ok(target)
    }

    /// The first known family whose FIM markers the server's vocabulary has as single tokens.
    fn probe_markers(&self) -> Result<Option<&'static FimMarkers>, Error> {
        for markers in &api::FIM_FAMILIES {
            let text = format!("{}{}{}", markers.prefix, markers.suffix, markers.middle);
            let tokens = self
                .client
                .post_json(
                    "/tokenize",
                    &json!({"content": text, "parse_special": true}),
                )
                .map_err(|error| unreachable(&error))?;
            let n_tokens = tokens
                .get("tokens")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            if n_tokens == 3 {
                return Ok(Some(markers));
            }
        }
        Ok(None)
    }

    fn set_markers(&mut self, markers: Option<&'static FimMarkers>) {
        if let Some(markers) = markers {
            self.fim = markers.texts();
            self.fim_family = markers.family;
        }
    }

    fn caps(&self) -> ModelCaps {
        self.fim.caps(self.n_ctx)
    }
}

/// Counts tokens with the server's `/tokenize`. Blocking; wrapped in a cache, so a keystroke
/// asks only about the text it changed.
struct ServerTokenCounter {
    client: Client,
}

impl TokenCounter for ServerTokenCounter {
    fn count_tokens(&self, text: &str) -> usize {
        let body = json!({"content": text, "parse_special": false});
        match self.client.post_json("/tokenize", &body) {
            Ok(answer) => answer
                .get("tokens")
                .and_then(Value::as_array)
                .map_or(0, Vec::len),
            Err(error) => {
                // A guess on the safe side (code runs about three bytes a token) rather than no
                // prompt at all; the request itself will say what is wrong.
                tracing::debug!(%error, "cannot count tokens on the server");
                text.len().div_ceil(2)
            }
        }
    }
}

/// Which llama-server slot each document uses: the slot its name hashes to when that one is
/// free, else a free one, else the least recently used. Hashing spreads the documents of
/// several windows (each its own language server) over the slots without their talking.
#[derive(Debug, Default)]
struct SlotTable {
    owners: Vec<Option<(String, Instant)>>,
}

impl SlotTable {
    fn new(n_slots: u32) -> SlotTable {
        SlotTable {
            owners: vec![None; n_slots as usize],
        }
    }

    fn slot_for(&mut self, document: &str) -> Option<u32> {
        let n_slots = self.owners.len();
        if n_slots == 0 {
            return None;
        }
        let now = Instant::now();
        let owned = self
            .owners
            .iter()
            .position(|owner| owner.as_ref().is_some_and(|(name, _)| name == document));
        let slot_idx = owned.unwrap_or_else(|| {
            let preferred = (fnv1a(document.as_bytes()) % n_slots as u64) as usize;
            (0..n_slots)
                .map(|offset| (preferred + offset) % n_slots)
                .find(|&slot_idx| self.owners[slot_idx].is_none())
                .unwrap_or_else(|| {
                    (0..n_slots)
                        .min_by_key(|&slot_idx| {
                            self.owners[slot_idx].as_ref().map(|(_, used)| *used)
                        })
                        .expect("at least one slot")
                })
        });
        self.owners[slot_idx] = Some((document.to_owned(), now));
        Some(slot_idx as u32)
    }
}

/// FNV-1a: a hash every process computes alike (std's is seeded per process).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// What streaming one answer gathered.
struct Streamed {
    text: String,
    token_ends: Vec<usize>,
    figures: ServerFigures,
    stop: Option<StopReason>,
}

impl HttpEngine {
    /// Reaches the endpoint(s), learns the model's context, slots and FIM markers, and chooses
    /// how to count tokens. Blocking (network calls): run it on a blocking thread.
    pub(crate) fn connect(
        config: &ModelConfig,
        completion: EndpointSpec,
        chat: Option<EndpointSpec>,
    ) -> Result<HttpEngine, Error> {
        let token = token(config).map_err(Error::Backend)?;
        let completion = Arc::new(Target::probe(
            completion,
            config,
            config.n_ctx,
            token.clone(),
        )?);
        let chat = match chat {
            Some(chat) if chat != completion.spec => {
                Arc::new(Target::probe(chat, config, config.chat_n_ctx, token)?)
            }
            _ => completion.clone(),
        };
        let vocab = Vocab::load_default().map_err(|error| Error::Backend(error.to_string()))?;
        let (counting, token_counter): (Counting, Arc<dyn TokenCounter>) = match completion.spec.api
        {
            Api::LlamaServer => {
                let answer = completion
                    .client
                    .post_json(
                        "/tokenize",
                        &json!({"content": VOCABULARY_PROBE, "parse_special": false}),
                    )
                    .map_err(|error| unreachable(&error))?;
                let server_tokens: Vec<i64> = answer
                    .get("tokens")
                    .and_then(Value::as_array)
                    .map(|tokens| tokens.iter().filter_map(Value::as_i64).collect())
                    .unwrap_or_default();
                let local_tokens: Vec<i64> = vocab
                    .tokens(VOCABULARY_PROBE)
                    .into_iter()
                    .map(i64::from)
                    .collect();
                if server_tokens == local_tokens {
                    (
                        Counting::LocalChecked,
                        Arc::new(CachedTokenCounter::new(vocab)),
                    )
                } else {
                    let counter = ServerTokenCounter {
                        client: completion.client.clone(),
                    };
                    (Counting::Server, Arc::new(CachedTokenCounter::new(counter)))
                }
            }
            Api::OpenAi | Api::Ollama => (
                Counting::LocalAssumed,
                Arc::new(CachedTokenCounter::new(vocab)),
            ),
        };
        tracing::info!(
            endpoint = %completion.spec,
            model = %completion.model_name,
            n_ctx = completion.n_ctx,
            n_slots = completion.n_slots,
            fim = completion.fim_family,
            counting = counting.describe(),
            "connected to the inference server"
        );
        let shared = Shared::default();
        if !Arc::ptr_eq(&chat, &completion) {
            shared.set_chat_model_state(ChatModelState::Ready(chat.spec.to_string().into()));
        }
        let (down, _) = watch::channel(None);
        Ok(HttpEngine {
            slots: Mutex::new(SlotTable::new(completion.n_slots)),
            completion,
            chat,
            counting,
            token_counter,
            shared,
            running: Mutex::default(),
            down,
        })
    }

    pub(crate) fn caps(&self) -> ModelCaps {
        self.completion.caps()
    }

    pub(crate) fn chat_n_ctx(&self) -> u32 {
        self.chat.n_ctx
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    /// The endpoint and model, for status lines.
    pub(crate) fn placement(&self) -> Placement {
        Placement {
            device: self.completion.model_name.clone(),
            endpoint: Some(self.completion.client.base_url().to_owned()),
            ..Placement::cpu(self.completion.spec.api.name())
        }
    }

    pub(crate) fn endpoint(&self) -> String {
        self.completion.spec.to_string()
    }

    /// The served model's name, for status lines.
    pub(crate) fn model_name(&self) -> &str {
        &self.completion.model_name
    }

    /// Resolves with the reason when the endpoint stops answering.
    pub(crate) fn closed(&self) -> impl Future<Output = String> + Send + 'static {
        let mut down = self.down.subscribe();
        async move {
            loop {
                if let Some(reason) = down.borrow_and_update().clone() {
                    return reason;
                }
                if down.changed().await.is_err() {
                    return "the engine was replaced".to_owned();
                }
            }
        }
    }

    fn mark_down(&self, error: &CallError) {
        if matches!(error, CallError::Unreachable { .. }) {
            self.down.send_replace(Some(error.to_string()));
        }
    }

    /// Registers a request for `document`, stopping the one it replaces.
    fn begin(&self, document: &str) -> Arc<Cancel> {
        let cancel = Arc::new(Cancel::default());
        if let Some(previous) = lock(&self.running).insert(document.to_owned(), cancel.clone()) {
            previous.superseded.store(true, Ordering::Relaxed);
            previous.stop.store(true, Ordering::Relaxed);
        }
        cancel
    }

    fn end(&self, document: &str, cancel: &Arc<Cancel>) {
        let mut running = lock(&self.running);
        if running
            .get(document)
            .is_some_and(|current| Arc::ptr_eq(current, cancel))
        {
            running.remove(document);
        }
    }

    /// See `Engine::complete`: the request is registered now (the newest for a document wins),
    /// and streamed on a blocking thread when awaited.
    pub(crate) fn complete(
        self: &Arc<Self>,
        request: CompletionRequest,
    ) -> impl Future<Output = Result<Completion, Error>> + Send + 'static {
        let submitted_at = Instant::now();
        let typed_ahead =
            self.shared
                .typed_ahead_answer(&request.document, &request.prompt, submitted_at);
        let cancel = self.begin(&request.document);
        let engine = self.clone();
        async move {
            if let Some(completion) = typed_ahead {
                engine.end(&request.document, &cancel);
                return Ok(completion);
            }
            let guard = StopOnDrop(cancel.clone());
            let worker = engine.clone();
            let result = tokio::task::spawn_blocking(move || {
                worker.run_completion(&request, &cancel, submitted_at)
            })
            .await
            .unwrap_or_else(|panic| Err(Error::Internal(format!("completion crashed: {panic}"))));
            drop(guard);
            result
        }
    }

    fn run_completion(
        &self,
        request: &CompletionRequest,
        cancel: &Arc<Cancel>,
        submitted_at: Instant,
    ) -> Result<Completion, Error> {
        let target = &self.completion;
        let prompt = request.prompt.render_text(&target.fim);
        let mut stop = request.stop.clone();
        if request.single_line {
            stop.push("\n".to_owned());
        }
        let id_slot = match target.spec.api {
            Api::LlamaServer => lock(&self.slots).slot_for(&request.document),
            Api::OpenAi | Api::Ollama => None,
        };
        let call = CompletionCall {
            prompt: &prompt,
            max_tokens: request.max_tokens,
            stop,
            sampling: request.sampling,
            id_slot,
            t_max_predict_ms: Some(request.time_budget.as_millis() as u64),
            n_ctx: target.n_ctx,
        };
        let (path, body) =
            api::completion_request(target.spec.api, target.spec.model.as_deref(), &call);
        let deadline = submitted_at + request.time_budget;
        let streamed = self.stream(
            target,
            path,
            &body,
            deadline,
            cancel,
            false,
            |text, n_delta| {
                apply_stops(text, request).or_else(|| {
                    let done_when = request.done_when.as_ref()?;
                    (may_have_completed(text, n_delta) && (done_when.0)(text))
                        .then_some(StopReason::SuggestionComplete)
                })
            },
        );
        self.end(&request.document, cancel);
        let streamed = match streamed {
            Ok(streamed) => streamed,
            Err(error) => {
                let mut stats = self.shared.stats();
                match error {
                    Error::Superseded => stats.n_superseded += 1,
                    Error::Stopped => stats.n_abandoned += 1,
                    _ => stats.n_errors += 1,
                }
                return Err(error);
            }
        };
        let n_prompt_local = || self.token_counter.count_tokens(&prompt) as u32;
        let figures = CompletionFigures {
            generation: generation_figures(&streamed, n_prompt_local),
            t_total_ms: millis(submitted_at.elapsed()),
            served_without_inference: false,
            stop: streamed.stop.unwrap_or(StopReason::EndOfGeneration),
            slot: id_slot,
            truncated: false,
        };
        let completion = Completion {
            text: streamed.text,
            token_ends: streamed.token_ends,
            figures,
        };
        self.shared
            .finish_completion(&request.document, &request.prompt, &completion);
        Ok(completion)
    }

    /// Streams one answer from `target`, applying `check` to the text after each chunk (it may
    /// cut the text and end the answer), until the server ends it, the deadline passes, or the
    /// request is stopped.
    #[allow(clippy::too_many_arguments)]
    fn stream(
        &self,
        target: &Target,
        path: &str,
        body: &Value,
        deadline: Instant,
        cancel: &Cancel,
        chat: bool,
        mut check: impl FnMut(&mut String, usize) -> Option<StopReason>,
    ) -> Result<Streamed, Error> {
        let mut streamed = Streamed {
            text: String::new(),
            token_ends: Vec::new(),
            figures: ServerFigures::default(),
            stop: None,
        };
        let mut streamed_error = None;
        let result = target
            .client
            .post_stream(path, body, deadline, &cancel.stop, |line| {
                let chunk = match api::parse_line(target.spec.api, chat, line) {
                    Ok(Some(chunk)) => chunk,
                    Ok(None) => return Next::Read,
                    Err(message) => {
                        streamed_error = Some(message);
                        return Next::Stop;
                    }
                };
                streamed.figures.update(chunk.figures);
                if !chunk.text.is_empty() {
                    streamed.text.push_str(&chunk.text);
                    streamed.token_ends.push(streamed.text.len());
                    if let Some(stop) = check(&mut streamed.text, chunk.text.len()) {
                        streamed.stop = Some(stop);
                        return Next::Stop;
                    }
                }
                // The server keeps to `max_tokens` itself; the stream goes on to its end after the
                // answer is complete, since OpenAI-compatible servers send the usage figures last.
                if chunk.finished || chunk.done {
                    streamed.stop.get_or_insert(if chunk.limit {
                        StopReason::MaxTokens
                    } else {
                        StopReason::EndOfGeneration
                    });
                }
                if chunk.done {
                    return Next::Stop;
                }
                Next::Read
            });
        if let Some(message) = streamed_error {
            return Err(Error::Backend(format!(
                "{}: {message}",
                target.spec.base_url
            )));
        }
        match result {
            Ok(_) if cancel.stop.load(Ordering::Relaxed) && streamed.stop.is_none() => {
                if cancel.superseded.load(Ordering::Relaxed) {
                    Err(Error::Superseded)
                } else {
                    Err(Error::Stopped)
                }
            }
            Ok(_) => Ok(streamed),
            Err(CallError::TimedOut { .. }) => {
                streamed.stop = Some(StopReason::TimeBudget);
                Ok(streamed)
            }
            Err(error) => {
                self.mark_down(&error);
                Err(unreachable(&error))
            }
        }
    }

    /// See `Engine::chat`.
    pub(crate) fn chat(
        self: &Arc<Self>,
        request: ChatRequest,
        deltas: mpsc::UnboundedSender<String>,
    ) -> impl Future<Output = Result<ChatOutcome, Error>> + Send + 'static {
        let cancel = Arc::new(Cancel::default());
        let engine = self.clone();
        async move {
            let guard = StopOnDrop(cancel.clone());
            let worker = engine.clone();
            let result =
                tokio::task::spawn_blocking(move || worker.run_chat(&request, &deltas, &cancel))
                    .await
                    .unwrap_or_else(|panic| Err(Error::Internal(format!("chat crashed: {panic}"))));
            drop(guard);
            result
        }
    }

    fn run_chat(
        &self,
        request: &ChatRequest,
        deltas: &mpsc::UnboundedSender<String>,
        cancel: &Cancel,
    ) -> Result<ChatOutcome, Error> {
        let target = &self.chat;
        let call = ChatCall {
            messages: &request.messages,
            max_tokens: request.max_tokens,
            sampling: request.sampling,
            grammar: request.grammar.as_deref(),
        };
        let (path, body) = api::chat_request(target.spec.api, target.spec.model.as_deref(), &call);
        // A chat has no time budget of its own: the caller stops waiting when the user does.
        let deadline = Instant::now() + Duration::from_secs(3600);
        let mut n_sent = 0;
        let streamed = self.stream(target, path, &body, deadline, cancel, true, |text, _| {
            if deltas.is_closed() {
                return Some(StopReason::EndOfGeneration);
            }
            let _ = deltas.send(text[n_sent..].to_owned());
            n_sent = text.len();
            None
        });
        let streamed = match streamed {
            Ok(streamed) => streamed,
            Err(error) => {
                if !matches!(error, Error::Stopped) {
                    self.shared.stats().n_errors += 1;
                }
                return Err(error);
            }
        };
        let n_prompt_local = || {
            request
                .messages
                .iter()
                .map(|message| self.token_counter.count_tokens(&message.content) as u32)
                .sum()
        };
        let generation = generation_figures(&streamed, n_prompt_local);
        {
            let mut stats = self.shared.stats();
            stats.n_chats += 1;
        }
        tracing::info!(
            n_prompt = generation.n_prompt,
            n_reused = generation.n_reused,
            n_evaluated = generation.n_evaluated,
            n_generated = generation.n_generated,
            stop = ?streamed.stop,
            "chat"
        );
        Ok(ChatOutcome {
            text: streamed.text,
            generation,
            stop: streamed.stop.unwrap_or(StopReason::EndOfGeneration),
        })
    }

    /// Has llama-server evaluate the prompt a completion would use into the document's slot
    /// (`n_predict` 0), so the next keystroke there costs only its line. The other APIs have no
    /// way to fill a cache without generating, so they are not warmed.
    pub(crate) fn warm(self: &Arc<Self>, request: CompletionRequest) {
        // A completion in flight for the document is newer than what would be warmed.
        if self.completion.spec.api != Api::LlamaServer
            || lock(&self.running).contains_key(&request.document)
        {
            return;
        }
        let cancel = self.begin(&request.document);
        let engine = self.clone();
        tokio::task::spawn_blocking(move || {
            let target = &engine.completion;
            let prompt = request.prompt.render_text(&target.fim);
            let call = CompletionCall {
                prompt: &prompt,
                // llama-server generates at least one token whatever `n_predict` says.
                max_tokens: 1,
                stop: Vec::new(),
                sampling: request.sampling,
                id_slot: lock(&engine.slots).slot_for(&request.document),
                t_max_predict_ms: None,
                n_ctx: target.n_ctx,
            };
            let (path, body) = api::completion_request(target.spec.api, None, &call);
            let deadline = Instant::now() + Duration::from_secs(60);
            let warmed = engine.stream(target, path, &body, deadline, &cancel, false, |_, _| None);
            engine.end(&request.document, &cancel);
            if let Ok(warmed) = warmed {
                let mut stats = engine.shared.stats();
                stats.n_warmings += 1;
                stats.n_tokens_warmed += u64::from(warmed.figures.n_evaluated.unwrap_or(0));
            }
        });
    }
}

/// The figures of one answer from what the server reported, with `n_prompt_local` (the prompt
/// counted here) where it reported nothing, as OpenAI-compatible servers do for a stream closed
/// before its end.
fn generation_figures(
    streamed: &Streamed,
    n_prompt_local: impl FnOnce() -> u32,
) -> GenerationFigures {
    let figures = &streamed.figures;
    let (n_prompt, n_reused, n_evaluated) = match (figures.n_evaluated, figures.n_cached) {
        (Some(n_evaluated), n_cached) => {
            let n_cached = n_cached.unwrap_or(0);
            (n_evaluated + n_cached, n_cached, n_evaluated)
        }
        (None, _) => {
            let n_prompt = n_prompt_local();
            (n_prompt, 0, n_prompt)
        }
    };
    GenerationFigures {
        n_prompt,
        n_reused,
        n_evaluated,
        // A chunk with text is a token, near enough, where the server does not count.
        n_generated: figures
            .n_generated
            .unwrap_or(streamed.token_ends.len() as u32),
        n_drafted: 0,
        n_accepted: 0,
        t_prefill_ms: figures.t_prefill_ms.unwrap_or(0.0),
        t_decode_ms: figures.t_decode_ms.unwrap_or(0.0),
    }
}
