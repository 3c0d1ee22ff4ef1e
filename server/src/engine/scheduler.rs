//! What the engine thread does next. Completions run before chat (a chat advances one decode
//! step only while no completion is waiting), a newer completion for a document replaces the
//! older one, callers that went away are dropped between steps, and the last suggestion of each
//! document is remembered so typing into it needs no inference.
//!
//! The scheduler is driven by `thread` (commands in, `step()` until idle) and by tests directly,
//! which is what makes cancellation and preemption testable without timing.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::backend::Backend;
use super::batching::BatchTuner;
use super::draft::{DraftSource, Drafting, MakeDraftBackend, MAX_LAG_WHILE_TYPING};
use super::generate::{Event, Generation};
use super::pace::{PromptPace, MIN_CHUNK};
use super::render::{render, take_back_line_head_tokens, Rendered, TokenCache};
use super::session::Sessions;
use super::{
    lock, millis, ChatModelState, ChatOutcome, ChatRequest, Completion, CompletionFigures,
    CompletionRequest, EngineStats, Error, FimPrompt, StopReason,
};

pub(crate) struct CompletionJob {
    pub request: CompletionRequest,
    pub reply: oneshot::Sender<Result<Completion, Error>>,
    pub submitted_at: Instant,
}

pub(crate) struct ChatJob {
    pub request: ChatRequest,
    pub deltas: mpsc::UnboundedSender<String>,
    pub reply: oneshot::Sender<Result<ChatOutcome, Error>>,
}

pub(crate) enum Command {
    Complete(CompletionJob),
    Chat(ChatJob),
    /// Evaluate the prompt a completion would use into a slot, so the next keystroke there
    /// costs only its line; nothing is generated and nobody waits for it.
    Warm(CompletionRequest),
    /// Drop whatever runs or waits for this document.
    Cancel {
        document: String,
    },
}

/// State shared between the engine thread and its handles.
#[derive(Default)]
pub(crate) struct Shared {
    stats: Mutex<EngineStats>,
    typed_ahead: Mutex<TypedAhead>,
    chat_model: Mutex<ChatModelState>,
}

impl Shared {
    pub(crate) fn chat_model_state(&self) -> ChatModelState {
        lock(&self.chat_model).clone()
    }

    pub(crate) fn set_chat_model_state(&self, state: ChatModelState) {
        *lock(&self.chat_model) = state;
    }

    pub(crate) fn stats(&self) -> MutexGuard<'_, EngineStats> {
        lock(&self.stats)
    }

    pub(crate) fn typed_ahead(&self) -> MutexGuard<'_, TypedAhead> {
        lock(&self.typed_ahead)
    }

    /// The rest of the document's last suggestion when `prompt` types into it, answered without
    /// the model, logged and counted; whatever home the engine has.
    pub(crate) fn typed_ahead_answer(
        &self,
        document: &str,
        prompt: &FimPrompt,
        submitted_at: Instant,
    ) -> Option<Completion> {
        let text = self.typed_ahead().lookup(document, prompt)?;
        let completion = Completion {
            text,
            token_ends: Vec::new(),
            figures: CompletionFigures::without_inference(
                millis(submitted_at.elapsed()),
                StopReason::TypedAhead,
            ),
        };
        tracing::info!(document = %document, "completion served from the typed-ahead suggestion");
        self.stats().record(&completion.figures);
        Some(completion)
    }

    /// Logs a completion's figures, remembers its text for typing ahead, and counts it; whatever
    /// home the engine has.
    pub(crate) fn finish_completion(
        &self,
        document: &str,
        prompt: &FimPrompt,
        completion: &Completion,
    ) {
        let figures = &completion.figures;
        tracing::info!(
            document = %document,
            n_prompt = figures.generation.n_prompt,
            n_reused = figures.generation.n_reused,
            n_evaluated = figures.generation.n_evaluated,
            n_generated = figures.generation.n_generated,
            n_drafted = figures.generation.n_drafted,
            n_accepted = figures.generation.n_accepted,
            t_prefill_ms = figures.generation.t_prefill_ms,
            t_decode_ms = figures.generation.t_decode_ms,
            t_total_ms = figures.t_total_ms,
            stop = ?figures.stop,
            "completion"
        );
        self.typed_ahead()
            .remember(document, prompt, &completion.text);
        self.stats().record(figures);
    }
}

/// The last suggestion per document, for answering keystrokes that type into it.
#[derive(Debug, Default)]
pub(crate) struct TypedAhead {
    suggestions: HashMap<String, Suggestion>,
    /// Documents, most recent last; bounds the map.
    order: VecDeque<String>,
}

#[derive(Debug)]
struct Suggestion {
    /// The prompt it answered, with an empty `line_head`.
    context: FimPrompt,
    line_head: String,
    text: String,
}

const TYPED_AHEAD_DOCUMENTS: usize = 32;

/// While the user is typing (a document asked for or got a completion less than `TYPING_PAUSE`
/// ago), a chat's prompt is evaluated in chunks of what fits a short step (`pace`), so a
/// keystroke never waits behind a long chat prefill step; afterwards chunks go back to the full
/// batch size. This many tokens until a step has been measured.
const CHAT_CHUNK_WHILE_TYPING: usize = 32;
const TYPING_PAUSE: Duration = Duration::from_secs(2);

fn without_line_head(prompt: &FimPrompt) -> FimPrompt {
    FimPrompt {
        line_head: String::new(),
        ..prompt.clone()
    }
}

impl TypedAhead {
    pub(crate) fn remember(&mut self, document: &str, prompt: &FimPrompt, text: &str) {
        if text.is_empty() {
            self.forget(document);
            return;
        }
        self.order.retain(|known| known != document);
        self.order.push_back(document.to_owned());
        if self.order.len() > TYPED_AHEAD_DOCUMENTS {
            if let Some(oldest) = self.order.pop_front() {
                self.suggestions.remove(&oldest);
            }
        }
        self.suggestions.insert(
            document.to_owned(),
            Suggestion {
                context: without_line_head(prompt),
                line_head: prompt.line_head.clone(),
                text: text.to_owned(),
            },
        );
    }

    pub(crate) fn forget(&mut self, document: &str) {
        self.suggestions.remove(document);
        self.order.retain(|known| known != document);
    }

    /// The rest of the document's suggestion when `prompt` is the prompt it answered with a
    /// prefix of the suggestion typed onto the line head; `None` when there is nothing left.
    pub(crate) fn lookup(&self, document: &str, prompt: &FimPrompt) -> Option<String> {
        let suggestion = self.suggestions.get(document)?;
        let typed = prompt.line_head.strip_prefix(&suggestion.line_head)?;
        let rest = suggestion.text.strip_prefix(typed)?;
        let same_context = prompt.prefix == suggestion.context.prefix
            && prompt.suffix == suggestion.context.suffix
            && prompt.path == suggestion.context.path
            && prompt.repo_name == suggestion.context.repo_name
            && prompt.extra == suggestion.context.extra;
        (same_context && !rest.is_empty()).then(|| rest.to_owned())
    }
}

struct RunningCompletion<S> {
    job: CompletionJob,
    generation: Generation<S>,
    /// The batched step (`Scheduler::n_batch_steps`, from 1) that last took its token or a
    /// chunk of its prompt, 0 before any: when the decoding sequences take turns, the one that
    /// waited longest goes next, and a long prompt joins one step in `LONG_PROMPT_EVERY`.
    last_batched: u64,
    text: String,
    token_ends: Vec<usize>,
    truncated: bool,
}

/// A prompt being evaluated ahead of the keystroke that will need it.
struct RunningWarm<S> {
    request: CompletionRequest,
    generation: Generation<S>,
}

/// While other completions are in flight, or other documents typed lately, a prompt is
/// evaluated in chunks of what fits a short step (`pace`), so each step (everyone's next token,
/// another window's keystroke) stays short. This many tokens until a step has been measured.
const PREFILL_CHUNK_WHILE_OTHERS_TYPE: usize = 32;

/// While other completions decode, a prompt of more than `MIN_CHUNK` tokens joins one step in
/// this many. With every step carrying a chunk, another typist's keystroke (a token and a short
/// answer, nine steps) took 1.3 to 1.7 s beside a long prompt on 2 CPU cores instead of 0.25 s
/// (docs/benchmarks.md).
const LONG_PROMPT_EVERY: u64 = 4;

/// Completions waiting for a slot, per slot, beyond which a new one is refused as busy rather
/// than queued (each document has one at most; this bounds the rest).
const MAX_QUEUED_PER_SLOT: usize = 4;

/// Warming evaluates its prompt in chunks of what fits a short step (`pace`), so a keystroke that
/// arrives meanwhile waits for one short step at most before it takes the engine. This many
/// tokens until a step has been measured.
const WARM_CHUNK: usize = 64;

struct RunningChat<S> {
    job: ChatJob,
    generation: Generation<S>,
    text: String,
}

/// Creates the chat side's backend, and what makes its draft model's context when it has one:
/// `Ok(None)` while its model is still being fetched or loaded (asked again later, never waited
/// for), an error when it cannot be had.
pub(crate) type MakeChatBackend<'m, B> =
    Box<dyn FnMut() -> Result<Option<(B, Option<MakeDraftBackend<'m, B>>)>, Error> + 'm>;

/// The chat side: its own context (created on first use) so chat never evicts completion slots.
enum ChatSide<'m, B: Backend> {
    NotStarted(MakeChatBackend<'m, B>),
    Ready {
        backend: B,
        sessions: Sessions,
        drafting: Drafting<'m, B>,
        /// The chat context's measured pace of evaluation.
        pace: PromptPace,
    },
    Failed(Error),
}

pub(crate) struct Scheduler<'m, B: Backend> {
    backend: B,
    sessions: Sessions,
    /// Speculative decoding on the completion context: how much of a draft to check, and the
    /// draft model.
    drafting: Drafting<'m, B>,
    token_cache: TokenCache,
    queue: VecDeque<CompletionJob>,
    /// Completions in flight, each in a slot of its own; stepped together, one batch a step.
    running: Vec<RunningCompletion<B::Sampler>>,
    /// Whether the decoding completions go into one step together or take turns.
    batching: BatchTuner,
    /// Batched steps so far.
    n_batch_steps: u64,
    /// The completion context's measured pace of evaluation, which sizes prompt chunks while
    /// others wait.
    pace: PromptPace,
    chat: ChatSide<'m, B>,
    chat_queue: VecDeque<ChatJob>,
    chat_running: Option<RunningChat<B::Sampler>>,
    /// Documents to warm, at most one request each, oldest first.
    warm_queue: VecDeque<CompletionRequest>,
    warming: Option<RunningWarm<B::Sampler>>,
    /// Documents that asked for or got a completion less than `TYPING_PAUSE` ago, with when
    /// they last did: their next keystroke may come at any moment.
    typing: Vec<(String, Instant)>,
    shared: Arc<Shared>,
}

impl<'m, B: Backend> Scheduler<'m, B> {
    /// `make_chat_backend` creates the chat context once a chat arrives and its model is there;
    /// `make_draft_backend`, the draft model's context for completions, once its model is there.
    pub(crate) fn new(
        backend: B,
        make_chat_backend: MakeChatBackend<'m, B>,
        make_draft_backend: Option<MakeDraftBackend<'m, B>>,
        shared: Arc<Shared>,
    ) -> Scheduler<'m, B> {
        Scheduler {
            sessions: Sessions::new(backend.n_seq()),
            drafting: Drafting::new(
                &backend,
                make_draft_backend,
                "completions",
                MAX_LAG_WHILE_TYPING,
            ),
            backend,
            token_cache: TokenCache::default(),
            queue: VecDeque::new(),
            running: Vec::new(),
            batching: BatchTuner::default(),
            n_batch_steps: 0,
            pace: PromptPace::default(),
            chat: ChatSide::NotStarted(make_chat_backend),
            chat_queue: VecDeque::new(),
            chat_running: None,
            warm_queue: VecDeque::new(),
            warming: None,
            typing: Vec::new(),
            shared,
        }
    }

    /// Tells the batch tuner what a decode-only step of `n_sequences` took, as a measured one
    /// would (the fake backend's steps are not measured).
    #[cfg(test)]
    pub(crate) fn record_batch_step(&mut self, n_sequences: usize, ms: f64) {
        self.batching.record(n_sequences, ms);
    }

    /// Tells the prompt pace what a step of `n_tokens` took, as a measured one would.
    #[cfg(test)]
    pub(crate) fn record_prompt_pace(&mut self, n_tokens: usize, ms: f64) {
        self.pace.record(n_tokens, ms);
    }

    /// What the completion context's slot `slot_idx` holds, by its bookkeeping.
    #[cfg(test)]
    pub(crate) fn slot_tokens(&self, slot_idx: usize) -> Vec<super::backend::Token> {
        self.sessions.slots[slot_idx].tokens.clone()
    }

    pub(crate) fn is_idle(&self) -> bool {
        self.nothing_waited_for() && self.draft_lagging_slot().is_none()
    }

    /// Whether nothing is left but catching the draft model up, which nobody waits for: an
    /// engine whose callers are gone stops rather than finishing it.
    pub(crate) fn nothing_waited_for(&self) -> bool {
        self.queue.is_empty()
            && self.running.is_empty()
            && self.chat_queue.is_empty()
            && self.chat_running.is_none()
            && self.warm_queue.is_empty()
            && self.warming.is_none()
    }

    /// The most recently used completion slot whose prompt the draft model has yet to catch up
    /// with. A slot's generated tokens are left alone: the next keystroke's prompt usually drops
    /// them, and a completion that keeps them catches up with them itself.
    fn draft_lagging_slot(&self) -> Option<usize> {
        let DraftSource::Ready(model) = &self.drafting.model else {
            return None;
        };
        let slots = &self.sessions.slots;
        (0..slots.len())
            .filter(|&idx| model.lag(slots[idx].seq, slots[idx].prompt_tokens()) > 0)
            .max_by_key(|&idx| slots[idx].last_used)
    }

    /// Whether the engine, idle, should look again soon whether the draft model has arrived: it
    /// is on its way, and a slot holds a prompt to catch it up with.
    pub(crate) fn waits_for_draft_model(&self) -> bool {
        matches!(self.drafting.model, DraftSource::Pending(..))
            && (self.sessions.slots.iter()).any(|slot| !slot.prompt_tokens().is_empty())
    }

    /// While idle: takes the draft model if it has arrived (making its context), so that it
    /// catches up with the slots before the next keystroke, which then drafts, rather than
    /// after it.
    pub(crate) fn poll_draft_model(&mut self) {
        if matches!(self.drafting.model, DraftSource::Pending(..)) {
            let n_seq = self.backend.n_seq();
            self.drafting.model.get(n_seq);
            self.record_draft_lag();
        }
    }

    /// With nothing else to do: a batch of the draft model's catching up with a slot.
    fn step_draft_catch_up(&mut self) {
        self.poll_draft_model();
        let Some(slot_idx) = self.draft_lagging_slot() else {
            return;
        };
        if let DraftSource::Ready(model) = &mut self.drafting.model {
            let slot = &self.sessions.slots[slot_idx];
            model.catch_up(slot.seq, slot.prompt_tokens());
        }
        self.record_draft_lag();
    }

    /// Puts how far the draft model lags behind the completion slots in the stats.
    fn record_draft_lag(&self) {
        if let DraftSource::Ready(model) = &self.drafting.model {
            let lag: usize = (self.sessions.slots.iter())
                .map(|slot| model.lag(slot.seq, slot.prompt_tokens()))
                .sum();
            self.shared.stats().n_draft_lag = lag as u64;
        }
    }

    /// While idle: lets the contexts look at the machine's load (`Backend::watch_load`); true
    /// while either wants to be called again.
    pub(crate) fn watch_load(&mut self) -> bool {
        let completion = self.backend.watch_load();
        let draft = self.drafting.model.watch_load();
        let chat = match &mut self.chat {
            ChatSide::Ready {
                backend, drafting, ..
            } => backend.watch_load() | drafting.model.watch_load(),
            _ => false,
        };
        completion || draft || chat
    }

    /// Whether the only work left is chats waiting for their model to arrive: nothing to step,
    /// but the chat model has to be asked again now and then.
    pub(crate) fn waits_for_chat_model(&self) -> bool {
        self.queue.is_empty()
            && self.running.is_empty()
            && self.chat_running.is_none()
            && self.warm_queue.is_empty()
            && self.warming.is_none()
            && !self.chat_queue.is_empty()
            && matches!(self.chat, ChatSide::NotStarted(_))
    }

    pub(crate) fn submit(&mut self, command: Command) {
        match command {
            Command::Complete(job) => {
                self.mark_typing(&job.request.document, job.submitted_at);
                self.cancel_document(&job.request.document);
                if self.queue.len() >= MAX_QUEUED_PER_SLOT * self.backend.n_seq() as usize {
                    self.shared.stats().n_busy += 1;
                    let _ = job.reply.send(Err(Error::Busy));
                    return;
                }
                self.queue.push_back(job);
            }
            Command::Chat(job) => self.chat_queue.push_back(job),
            Command::Warm(request) => {
                // The newest position in a document is the one worth warming.
                self.forget_warming(&request.document);
                self.warm_queue.push_back(request);
            }
            Command::Cancel { document } => self.cancel_document(&document),
        }
    }

    /// Drops the document's warming, queued or running; what it evaluated stays in its slot.
    fn forget_warming(&mut self, document: &str) {
        self.warm_queue.retain(|queued| queued.document != document);
        if self
            .warming
            .as_ref()
            .is_some_and(|warming| warming.request.document == document)
        {
            self.warming = None;
        }
    }

    fn cancel_document(&mut self, document: &str) {
        // A keystroke's own prompt replaces any warming of its document, and reuses what it
        // evaluated.
        self.forget_warming(document);
        let mut n_superseded = 0;
        for running in self
            .running
            .extract_if(.., |running| running.job.request.document == document)
        {
            let _ = running.job.reply.send(Err(Error::Superseded));
            n_superseded += 1;
        }
        for job in extract(&mut self.queue, |job| job.request.document == document) {
            let _ = job.reply.send(Err(Error::Superseded));
            n_superseded += 1;
        }
        self.shared.stats().n_superseded += n_superseded;
    }

    /// Runs one step of the most urgent work: at most one `evaluate`.
    pub(crate) fn step(&mut self) {
        self.drop_abandoned();
        let mut started = false;
        while self.running.len() < self.backend.n_seq() as usize {
            let Some(job) = self.queue.pop_front() else {
                break;
            };
            // The completion may take the warming's slot; warming starts again afterwards,
            // reusing whatever of its prompt is still cached.
            if let Some(warming) = self.warming.take() {
                self.warm_queue.push_front(warming.request);
            }
            self.start_completion(job);
            started = true;
        }
        if started {
            // The first prefill chunk runs in the next step, after a fresh look at the inbox.
            return;
        }
        match self.running.len() {
            0 => {}
            1 => {
                self.step_completion();
                return;
            }
            _ => {
                self.step_batch();
                return;
            }
        }
        if self.warming.is_none() {
            if let Some(request) = self.warm_queue.pop_front() {
                self.start_warming(request);
            }
        }
        if self.warming.is_some() {
            self.step_warming();
            return;
        }
        if self.chat_running.is_none() && !self.chat_queue.is_empty() && self.chat_side_settled() {
            let job = self.chat_queue.pop_front().expect("checked just above");
            self.start_chat(job);
            return;
        }
        if self.chat_running.is_some() {
            self.step_chat();
            return;
        }
        self.step_draft_catch_up();
    }

    fn drop_abandoned(&mut self) {
        let mut n_abandoned = extract(&mut self.queue, |job| job.reply.is_closed()).len();
        n_abandoned += self
            .running
            .extract_if(.., |running| running.job.reply.is_closed())
            .count();
        n_abandoned += extract(&mut self.chat_queue, |job| job.reply.is_closed()).len();
        if self
            .chat_running
            .as_ref()
            .is_some_and(|running| running.job.reply.is_closed() || running.job.deltas.is_closed())
        {
            self.chat_running = None;
            n_abandoned += 1;
        }
        self.shared.stats().n_abandoned += n_abandoned as u64;
    }

    /// The tokens `request` evaluates, and the text token healing took back from its end.
    fn prepare(&mut self, request: &CompletionRequest) -> (Rendered, Vec<u8>) {
        let n_ctx = self.backend.n_ctx_per_seq() as usize;
        let reserve = (request.max_tokens as usize).clamp(1, n_ctx / 2);
        let mut rendered = render(
            &self.backend,
            &mut self.token_cache,
            &request.prompt,
            n_ctx - reserve,
        );
        let healed = if self.backend.heals_last_token() {
            take_back_line_head_tokens(&self.backend, &mut rendered)
        } else {
            Vec::new()
        };
        (rendered, healed)
    }

    fn start_completion(&mut self, job: CompletionJob) {
        let request = &job.request;
        let (rendered, healed) = self.prepare(&job.request);
        if rendered.tokens.is_empty() {
            let completion = Completion {
                text: String::new(),
                token_ends: Vec::new(),
                figures: CompletionFigures::without_inference(
                    millis(job.submitted_at.elapsed()),
                    StopReason::EmptyPrompt,
                ),
            };
            self.finish_completion(job, completion);
            return;
        }
        let sampler = match self.backend.new_sampler(&request.sampling, None) {
            Ok(sampler) => sampler,
            Err(error) => {
                self.shared.stats().n_errors += 1;
                let _ = job.reply.send(Err(error));
                return;
            }
        };
        let busy: Vec<usize> = self
            .running
            .iter()
            .map(|running| running.generation.slot_idx)
            .collect();
        let slot_idx =
            self.sessions
                .choose_for(request.client, &request.document, &rendered.tokens, &busy);
        let placement = self.sessions.place(
            &mut self.backend,
            slot_idx,
            (request.client, &request.document),
            &rendered.tokens,
        );
        self.running.push(RunningCompletion {
            generation: Generation::new(placement, rendered.tokens, sampler).with_healing(healed),
            job,
            last_batched: 0,
            text: String::new(),
            token_ends: Vec::new(),
            truncated: rendered.truncated,
        });
    }

    fn start_warming(&mut self, request: CompletionRequest) {
        let (rendered, _) = self.prepare(&request);
        if rendered.tokens.is_empty() {
            return;
        }
        let sampler = match self.backend.new_sampler(&request.sampling, None) {
            Ok(sampler) => sampler,
            Err(error) => {
                tracing::warn!(document = %request.document, %error, "cannot warm");
                return;
            }
        };
        let slot_idx =
            self.sessions
                .choose_for(request.client, &request.document, &rendered.tokens, &[]);
        // Already cached (the last keystroke's prompt, a second warming): nothing to do, and
        // placing it would take its last token back out of the cache to evaluate it again.
        if self.sessions.slots[slot_idx]
            .tokens
            .starts_with(&rendered.tokens)
        {
            return;
        }
        let placement = self.sessions.place(
            &mut self.backend,
            slot_idx,
            (request.client, &request.document),
            &rendered.tokens,
        );
        self.warming = Some(RunningWarm {
            generation: Generation::new(placement, rendered.tokens, sampler),
            request,
        });
    }

    /// Evaluates the next chunk of the warming prompt; done once the whole prompt is cached.
    fn step_warming(&mut self) {
        let warming = self.warming.as_mut().expect("called while warming");
        let n_evaluated_before = warming.generation.n_evaluated;
        let max_chunk = self.pace.chunk(self.backend.n_batch() as usize, WARM_CHUNK);
        let stepped = step_paced(
            &mut warming.generation,
            &mut self.backend,
            (&mut self.sessions, &mut self.drafting),
            &mut self.pace,
            max_chunk,
        );
        self.shared.stats().n_tokens_warmed +=
            u64::from(warming.generation.n_evaluated - n_evaluated_before);
        match stepped {
            Ok(Event::Prefilled) if !warming.generation.is_prefilled() => {}
            Ok(_) => {
                let warming = self.warming.take().expect("still warming");
                let generation = &warming.generation;
                self.shared.stats().n_warmings += 1;
                tracing::info!(
                    document = %warming.request.document,
                    n_prompt = generation.n_prompt,
                    n_reused = generation.n_reused,
                    n_evaluated = generation.n_evaluated,
                    t_prefill_ms = millis(generation.t_prefill),
                    "warmed"
                );
            }
            Err(error) => {
                let warming = self.warming.take().expect("still warming");
                tracing::warn!(document = %warming.request.document, %error, "warming failed");
            }
        }
    }

    /// One completion in flight: its generation steps alone, its prompt a whole batch a step
    /// unless other documents typed lately (their next keystroke would wait for the step).
    fn step_completion(&mut self) {
        let running = &self.running[0];
        // Only a prompt is chunked: a decoding step does not look at the others at all.
        let max_chunk = if !running.generation.is_prefilled()
            && self.typing_besides(Some(&running.job.request.document))
        {
            self.pace.chunk(
                self.backend.n_batch() as usize,
                PREFILL_CHUNK_WHILE_OTHERS_TYPE,
            )
        } else {
            usize::MAX
        };
        let event = step_paced(
            &mut self.running[0].generation,
            &mut self.backend,
            (&mut self.sessions, &mut self.drafting),
            &mut self.pace,
            max_chunk,
        );
        self.completion_event(0, event);
    }

    /// Notes that `document` asked for or got a completion `at`, and forgets documents that did
    /// neither for `TYPING_PAUSE`.
    fn mark_typing(&mut self, document: &str, at: Instant) {
        self.typing
            .retain(|(other, then)| other != document && then.elapsed() < TYPING_PAUSE);
        self.typing.push((document.to_owned(), at));
    }

    /// Whether documents other than `document` (any document, for `None`) asked for or got a
    /// completion less than `TYPING_PAUSE` ago.
    fn typing_besides(&self, document: Option<&str>) -> bool {
        self.typing
            .iter()
            .any(|(other, at)| Some(other.as_str()) != document && at.elapsed() < TYPING_PAUSE)
    }

    /// Several completions in flight: the next token (or prompt chunk) of each goes into one
    /// batch, evaluated in one pass over the weights, and each samples from its own logits.
    fn step_batch(&mut self) {
        let started = Instant::now();
        let mut events: Vec<(usize, Result<Event, Error>)> = Vec::new();
        // A generation whose prompt a single step just finished takes its token from the logits
        // that step left; it joins the batch from the next step on.
        for (idx, running) in self.running.iter_mut().enumerate() {
            if running.generation.samples_next() {
                events.push((idx, Ok(running.generation.sample(&mut self.backend))));
            }
        }
        let sampled: Vec<usize> = events.iter().map(|(idx, _)| *idx).collect();
        // Tokens being decoded go first (one each); prompts share what is left of a short step
        // (`pace`), the shortest first: a keystroke's few tokens go before a long prompt, which
        // takes the rest, so a long prompt stalls neither everyone's next token nor a prompt of
        // a token or two about to decode, and several long prompts go one after another.
        let decoding = |running: &RunningCompletion<B::Sampler>| running.generation.is_prefilled();
        let mut order: Vec<usize> = (0..self.running.len())
            .filter(|idx| !sampled.contains(idx))
            .collect();
        order.sort_by_key(|idx| {
            let running = &self.running[*idx];
            (
                !decoding(running),
                running.generation.n_prompt_left(&self.sessions),
            )
        });
        // While others decode, a long prompt joins one step in `LONG_PROMPT_EVERY`: the short
        // answers in flight finish first (most of what a keystroke costs), and the long prompt
        // still moves on, in steps no longer than the pace allows.
        if order.iter().any(|idx| decoding(&self.running[*idx])) {
            let step = self.n_batch_steps + 1;
            order.retain(|idx| {
                let running = &self.running[*idx];
                running.generation.n_prompt_left(&self.sessions) <= MIN_CHUNK
                    || running.last_batched == 0
                    || step.saturating_sub(running.last_batched) >= LONG_PROMPT_EVERY
            });
        }
        // Only decoding, a token each: together, or in turns when that is faster here (see
        // `batching`), the one that waited longest first.
        let decode_only =
            sampled.is_empty() && order.iter().all(|idx| decoding(&self.running[*idx]));
        if decode_only {
            let n_together = self.batching.sequences_per_step(order.len());
            if n_together < order.len() {
                order.sort_by_key(|idx| self.running[*idx].last_batched);
                order.truncate(n_together);
            }
        }
        self.n_batch_steps += 1;
        let mut room = self.backend.n_batch() as usize;
        let mut prompt_room = self.pace.chunk(room, PREFILL_CHUNK_WHILE_OTHERS_TYPE);
        let mut inputs = Vec::new();
        // Which completion each input is, whether it was decoding, and how many tokens it has.
        let mut owners = Vec::new();
        for idx in order {
            let generation = &self.running[idx].generation;
            let was_decoding = generation.is_prefilled();
            let max_tokens = if was_decoding {
                room
            } else {
                prompt_room.min(room)
            };
            if max_tokens == 0 {
                // No room left in this step: the next one takes it.
                continue;
            }
            match generation.next_input(&self.backend, &self.sessions, max_tokens) {
                Err(stop) => events.push((idx, Ok(Event::End(stop)))),
                Ok(None) => {}
                Ok(Some(input)) if input.tokens.len() <= room => {
                    let n_tokens = input.tokens.len();
                    room -= n_tokens;
                    if !was_decoding {
                        prompt_room = prompt_room.saturating_sub(n_tokens);
                    }
                    owners.push((idx, was_decoding, n_tokens));
                    inputs.push(input);
                }
                // No room left in this batch: the next step takes it.
                Ok(Some(_)) => {}
            }
        }
        if !inputs.is_empty() {
            {
                let mut stats = self.shared.stats();
                stats.n_batches += 1;
                stats.n_batched_sequences += inputs.len() as u64;
                stats.n_batched_tokens += owners.iter().map(|(_, _, n)| *n as u64).sum::<u64>();
            }
            let evaluated = self.backend.evaluate_batch(&inputs);
            drop(inputs);
            match evaluated {
                Err(error) => {
                    for (idx, _, _) in &owners {
                        let slot_idx = self.running[*idx].generation.slot_idx;
                        self.sessions.reset(&mut self.backend, slot_idx);
                        events.push((*idx, Err(error.clone())));
                    }
                }
                Ok(()) => {
                    for (input_idx, (idx, _, n_tokens)) in owners.iter().enumerate() {
                        let generation = &mut self.running[*idx].generation;
                        let sample_now = generation.evaluated(&mut self.sessions, *n_tokens)
                            || generation.samples_next();
                        let event = if sample_now {
                            self.backend.select_output(input_idx);
                            generation.sample(&mut self.backend)
                        } else {
                            Event::Prefilled
                        };
                        events.push((*idx, Ok(event)));
                    }
                }
            }
        }
        let elapsed = started.elapsed();
        let ms = elapsed.as_secs_f64() * 1000.0;
        let n_tokens: usize = owners.iter().map(|(_, _, n)| n).sum();
        tracing::trace!(n_sequences = owners.len(), n_tokens, ms, "batched step");
        if !owners.is_empty() && self.backend.tunes_by_step_times() {
            if decode_only {
                self.batching.record(owners.len(), ms);
            }
            self.pace.record(n_tokens, ms);
        }
        for (idx, was_decoding, _) in &owners {
            let running = &mut self.running[*idx];
            running.generation.add_time(elapsed, *was_decoding);
            running.last_batched = self.n_batch_steps;
        }
        // Highest index first, so finishing one (which removes it) leaves the others in place.
        events.sort_by_key(|(idx, _)| std::cmp::Reverse(*idx));
        for (idx, event) in events {
            self.completion_event(idx, event);
        }
    }

    /// Applies what one step did to completion `idx`: text and stop rules, and the answer once
    /// it is done (which removes it from `running`).
    fn completion_event(&mut self, idx: usize, event: Result<Event, Error>) {
        let running = &mut self.running[idx];
        let request = &running.job.request;
        let stop = match event {
            Err(error) => {
                let running = self.running.remove(idx);
                self.shared.stats().n_errors += 1;
                tracing::warn!(document = %running.job.request.document, %error, "completion failed");
                let _ = running.job.reply.send(Err(error));
                return;
            }
            Ok(Event::End(stop)) => Some(stop),
            Ok(Event::Prefilled) => None,
            Ok(Event::Text(delta)) => {
                running.text.push_str(&delta);
                running.token_ends.push(running.text.len());
                apply_stops(&mut running.text, request)
                    .or_else(|| {
                        let done_when = request.done_when.as_ref()?;
                        (may_have_completed(&running.text, delta.len())
                            && (done_when.0)(&running.text))
                        .then_some(StopReason::SuggestionComplete)
                    })
                    .or_else(|| {
                        (running.generation.n_generated >= request.max_tokens)
                            .then_some(StopReason::MaxTokens)
                    })
            }
        };
        let stop = stop.or_else(|| {
            (running.job.submitted_at.elapsed() >= request.time_budget)
                .then_some(StopReason::TimeBudget)
        });
        if let Some(stop) = stop {
            let running = self.running.remove(idx);
            let generation = &running.generation;
            let figures = CompletionFigures {
                generation: generation.figures(),
                t_total_ms: millis(running.job.submitted_at.elapsed()),
                served_without_inference: false,
                stop,
                slot: Some(self.sessions.slots[generation.slot_idx].seq),
                truncated: running.truncated,
            };
            if generation.n_dropped_bytes() > 0 {
                tracing::debug!(
                    n_bytes = generation.n_dropped_bytes(),
                    "dropped an unfinished character at the end of a completion"
                );
            }
            let completion = Completion {
                text: running.text,
                token_ends: running.token_ends,
                figures,
            };
            self.finish_completion(running.job, completion);
        }
    }

    fn finish_completion(&mut self, job: CompletionJob, completion: Completion) {
        self.record_draft_lag();
        // Its next keystroke is likely soon: a typist reads the answer and types on.
        self.mark_typing(&job.request.document, Instant::now());
        self.shared
            .finish_completion(&job.request.document, &job.request.prompt, &completion);
        let _ = job.reply.send(Ok(completion));
    }

    /// Creates the chat backend if its model is there; false while the model is still coming.
    fn chat_side_settled(&mut self) -> bool {
        if let ChatSide::NotStarted(make) = &mut self.chat {
            self.chat = match make() {
                Ok(None) => return false,
                Ok(Some((backend, make_draft))) => ChatSide::Ready {
                    sessions: Sessions::new(1),
                    // Chats are long and nobody waits on them token by token: they catch
                    // the draft model up as they go.
                    drafting: Drafting::new(&backend, make_draft, "chats", usize::MAX),
                    pace: PromptPace::default(),
                    backend,
                },
                Err(error) => ChatSide::Failed(error),
            };
        }
        true
    }

    fn chat_backend(&mut self) -> Result<(&mut B, &mut Sessions), Error> {
        match &mut self.chat {
            ChatSide::Ready {
                backend, sessions, ..
            } => Ok((backend, sessions)),
            ChatSide::Failed(error) => Err(error.clone()),
            ChatSide::NotStarted(_) => unreachable!("chats start only once the chat side settled"),
        }
    }

    fn start_chat(&mut self, job: ChatJob) {
        match self.prepare_chat(&job.request) {
            Ok(generation) => {
                self.chat_running = Some(RunningChat {
                    job,
                    generation,
                    text: String::new(),
                })
            }
            Err(error) => {
                self.shared.stats().n_errors += 1;
                let _ = job.reply.send(Err(error));
            }
        }
    }

    fn prepare_chat(&mut self, request: &ChatRequest) -> Result<Generation<B::Sampler>, Error> {
        let (backend, sessions) = self.chat_backend()?;
        let text = backend.apply_chat_template(&request.messages)?;
        let tokens = backend.tokenize(&text, true);
        let n_ctx = backend.n_ctx_per_seq();
        if tokens.is_empty() || tokens.len() as u32 + 1 > n_ctx {
            return Err(Error::PromptTooLong {
                n_tokens: tokens.len() as u32,
                n_ctx,
            });
        }
        let sampler = backend.new_sampler(&request.sampling, request.grammar.as_deref())?;
        let placement = sessions.place(backend, 0, (0, "chat"), &tokens);
        Ok(Generation::new(placement, tokens, sampler))
    }

    fn step_chat(&mut self) {
        // Only a prompt is chunked: a decoding step does not look at the typists at all.
        let prefilling =
            (self.chat_running.as_ref()).is_some_and(|running| !running.generation.is_prefilled());
        let typing = prefilling && self.typing_besides(None);
        let ChatSide::Ready {
            backend,
            sessions,
            drafting,
            pace,
        } = &mut self.chat
        else {
            unreachable!("a chat runs only once its backend is ready")
        };
        let running = self
            .chat_running
            .as_mut()
            .expect("called with a running chat");
        let max_chunk = if typing {
            pace.chunk(backend.n_batch() as usize, CHAT_CHUNK_WHILE_TYPING)
        } else {
            usize::MAX
        };
        let stop = match step_paced(
            &mut running.generation,
            backend,
            (sessions, drafting),
            pace,
            max_chunk,
        ) {
            Err(error) => {
                let running = self.chat_running.take().expect("still running");
                self.shared.stats().n_errors += 1;
                let _ = running.job.reply.send(Err(error));
                return;
            }
            Ok(Event::Prefilled) => None,
            Ok(Event::End(stop)) => Some(stop),
            Ok(Event::Text(delta)) => {
                if !delta.is_empty() {
                    running.text.push_str(&delta);
                    let _ = running.job.deltas.send(delta);
                }
                (running.generation.n_generated >= running.job.request.max_tokens)
                    .then_some(StopReason::MaxTokens)
            }
        };
        if let Some(stop) = stop {
            let running = self.chat_running.take().expect("still running");
            let generation = running.generation;
            {
                let mut stats = self.shared.stats();
                stats.n_chats += 1;
                stats.n_tokens_drafted += u64::from(generation.n_drafted);
                stats.n_tokens_accepted += u64::from(generation.n_accepted);
            }
            tracing::info!(
                n_prompt = generation.n_prompt,
                n_reused = generation.n_reused,
                n_evaluated = generation.n_evaluated,
                n_generated = generation.n_generated,
                n_drafted = generation.n_drafted,
                n_accepted = generation.n_accepted,
                stop = ?stop,
                "chat"
            );
            let _ = running.job.reply.send(Ok(ChatOutcome {
                text: running.text,
                generation: generation.figures(),
                stop,
            }));
        }
    }

    /// After a panic inside a step: fail everything in flight and forget all cache contents,
    /// which may no longer match the bookkeeping.
    pub(crate) fn recover(&mut self, message: &str) {
        self.warm_queue.clear();
        self.warming = None;
        let error = Error::Internal(message.to_owned());
        for running in self.running.drain(..) {
            let _ = running.job.reply.send(Err(error.clone()));
        }
        if let Some(running) = self.chat_running.take() {
            let _ = running.job.reply.send(Err(error.clone()));
        }
        for slot_idx in 0..self.sessions.slots.len() {
            self.sessions.reset(&mut self.backend, slot_idx);
        }
        if let ChatSide::Ready {
            backend, sessions, ..
        } = &mut self.chat
        {
            sessions.reset(backend, 0);
        }
        self.shared.stats().n_errors += 1;
    }
}

/// Steps `generation` with prompt chunks of at most `max_chunk` tokens, and tells `pace` what a
/// step of its prompt took where the backend's steps are worth measuring.
fn step_paced<B: Backend>(
    generation: &mut Generation<B::Sampler>,
    backend: &mut B,
    contexts: (&mut Sessions, &mut Drafting<'_, B>),
    pace: &mut PromptPace,
    max_chunk: usize,
) -> Result<Event, Error> {
    // Decoding steps are not measured: they would only read the clock for nothing.
    let started = (!generation.is_prefilled() && backend.tunes_by_step_times()).then(Instant::now);
    let n_evaluated_before = generation.n_evaluated;
    let event = generation.step(backend, contexts, max_chunk);
    if let Some(started) = started {
        let n_tokens = generation.n_evaluated.saturating_sub(n_evaluated_before) as usize;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        tracing::trace!(n_tokens, ms, "prompt step");
        pace.record(n_tokens, ms);
    }
    event
}

/// The first non-blank line below the cursor's line, which a multi-line completion must not
/// write again.
fn next_suffix_line(suffix: &str) -> Option<&str> {
    suffix
        .split('\n')
        .skip(1)
        .map(str::trim_end)
        .find(|line| !line.trim().is_empty())
}

/// Whether the token that just added `n_delta_bytes` to `text` ended a line or gave the line
/// being written its first character that is not a space: the only places a suggestion can
/// become complete, so the request's `done_when` is asked there and nowhere else.
pub(crate) fn may_have_completed(text: &str, n_delta_bytes: usize) -> bool {
    let delta_start = text.len().saturating_sub(n_delta_bytes);
    let Some(delta) = text.get(delta_start..) else {
        return true;
    };
    if delta.contains('\n') {
        return true;
    }
    let line_start = text.rfind('\n').map_or(0, |newline| newline + 1);
    text[line_start..]
        .find(|character: char| !character.is_whitespace())
        .is_some_and(|offset| line_start + offset >= delta_start)
}

/// Cuts `text` at the first end of line (single-line requests), stop string, or complete line
/// that repeats the line below the cursor (models often write the suffix out again), and says
/// which.
pub(crate) fn apply_stops(text: &mut String, request: &CompletionRequest) -> Option<StopReason> {
    let mut cut: Option<(usize, StopReason)> = None;
    if request.single_line {
        if let Some(byte_offset) = text.find('\n') {
            cut = Some((byte_offset, StopReason::EndOfLine));
        }
    } else if let Some(suffix_line) = next_suffix_line(&request.prompt.suffix) {
        let mut line_start = 0;
        for line in text.split_inclusive('\n') {
            let line_end = line_start + line.len();
            if line.ends_with('\n') && line.trim_end() == suffix_line {
                // Drop the newline before the repeated line too.
                cut = Some((line_start.saturating_sub(1), StopReason::SuffixReached));
                break;
            }
            line_start = line_end;
        }
    }
    for stop in request.stop.iter().filter(|stop| !stop.is_empty()) {
        if let Some(byte_offset) = text.find(stop.as_str()) {
            if cut.is_none_or(|(earliest, _)| byte_offset < earliest) {
                cut = Some((byte_offset, StopReason::StopString));
            }
        }
    }
    let (byte_offset, reason) = cut?;
    text.truncate(byte_offset);
    Some(reason)
}

/// Removes and returns the items matching `predicate`, keeping the others in order.
fn extract<T>(items: &mut VecDeque<T>, predicate: impl Fn(&T) -> bool) -> Vec<T> {
    let mut kept = VecDeque::with_capacity(items.len());
    let mut removed = Vec::new();
    for item in items.drain(..) {
        if predicate(&item) {
            removed.push(item);
        } else {
            kept.push_back(item);
        }
    }
    *items = kept;
    removed
}
