//! The engine thread: loads the model, owns it and its contexts for life (a `LlamaContext` is not
//! `Sync` and borrows the model), and runs the scheduler: commands in, one step at a time,
//! blocking only when there is nothing to do.
//!
//! A panic inside a step fails the requests in flight and resets the caches; the thread keeps
//! serving. Aborts inside llama.cpp cannot be caught, which is why model files are checked
//! before loading.

use std::cell::OnceCell;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::backend::llama::{self, ContextShape, LlamaCpp, TokenTexts, VocabCounter};
use super::backend::Backend;
use super::draft::MakeDraftBackend;
use super::scheduler::{Command, MakeChatBackend, Scheduler, Shared};
use super::{
    budget_now, model_shape, plan, plan_model, Budget, CachedTokenCounter, ChatModel,
    ChatModelState, DraftModelState, Error, ModelCaps, PlanError, Request, Started,
};
use crate::config::ModelConfig;

/// Threads that work in llama.cpp (engine threads, and the threads that load a chat or draft
/// model), counted so that the process can wait for them before it exits: exit runs llama.cpp's,
/// ggml's and the GPU driver's static destructors, and a thread still inside a decode step or a
/// load then crashes the process (seen at the end of `bench keystrokes --with-chat`, whose chat
/// engine was still answering).
pub(crate) struct LiveThreads {
    n_live: Mutex<usize>,
    ended: Condvar,
}

/// One thread counted in `LiveThreads`, for as long as it is held: taken before the thread is
/// spawned (so a wait that starts meanwhile counts it) and moved into it.
pub(crate) struct LiveThread<'a>(&'a LiveThreads);

impl LiveThreads {
    pub(crate) const fn new() -> LiveThreads {
        LiveThreads {
            n_live: Mutex::new(0),
            ended: Condvar::new(),
        }
    }

    pub(crate) fn enter(&self) -> LiveThread<'_> {
        *self
            .n_live
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) += 1;
        LiveThread(self)
    }

    /// Waits until no thread is counted, for at most `timeout`; whether none is.
    pub(crate) fn wait_until_none(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut n_live = self
            .n_live
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        while *n_live > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            n_live = self
                .ended
                .wait_timeout(n_live, left)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
        true
    }
}

impl Drop for LiveThread<'_> {
    fn drop(&mut self) {
        let mut n_live = self
            .0
            .n_live
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *n_live -= 1;
        self.0.ended.notify_all();
    }
}

/// This process's threads in llama.cpp.
pub(crate) static LLAMA_THREADS: LiveThreads = LiveThreads::new();

/// Spawns a thread named `name` that works in llama.cpp, counted in `LLAMA_THREADS` from before
/// it starts until it ends.
fn spawn_llama_thread<T: Send + 'static>(
    name: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<T>> {
    let live = LLAMA_THREADS.enter();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let _live = live;
            work()
        })
}

/// Starts the engine thread on a llama.cpp model and waits until it is loaded.
pub(crate) fn spawn_llama(
    config: ModelConfig,
    model_path: PathBuf,
    chat_model: ChatModel,
    on_progress: Option<Box<dyn FnMut(f32) + Send>>,
    shared: Arc<Shared>,
) -> Result<(Sender<Command>, Started), Error> {
    let (commands, inbox) = mpsc::channel();
    let (started_tx, started_rx) = mpsc::channel();
    spawn_llama_thread("wellspring-engine", move || {
        // The devices' free memory is read once, before anything loads, and a separate chat
        // model is planned on what the completion model's plan leaves of it.
        let budget = budget_now(&config);
        let chat_on_same_model = chat_model == ChatModel::SameAsCompletion;
        let request = Request::completion(&config, chat_on_same_model);
        let (planned, chat_budget, planned_device_bytes) =
            match plan_model(&model_path, &request, &budget) {
                Ok(plan) => {
                    tracing::info!("memory plan: {}", plan.summary());
                    for note in &plan.notes {
                        tracing::warn!("memory plan: {note}");
                    }
                    let device_bytes = plan.on_gpu().then(|| plan.device_bytes());
                    (plan.apply(&config), budget.after(&plan), device_bytes)
                }
                Err(PlanError::Refused(message)) => {
                    let _ = started_tx.send(Err(Error::OutOfMemory(message)));
                    return;
                }
                // Loading the file reports what is wrong with it.
                Err(PlanError::Model(_)) => (config.clone(), budget, None),
                Err(error @ PlanError::Unplannable(_)) => {
                    tracing::warn!("no memory plan, loading as configured: {error}");
                    (config.clone(), budget, None)
                }
            };
        let (chat_loading, left_for_draft) = load_chat_model(
            chat_model,
            &model_path,
            &config,
            chat_budget,
            shared.clone(),
        );
        // The draft model is resolved (a download, say) while the model loads, and planned
        // and loaded once it has: on what the models leave, without taking memory from under
        // the model's load or competing with it for the disk.
        let (completion_ready, completion_ready_rx) = mpsc::channel();
        let draft_loading = load_draft_model(
            &config,
            DraftTurn {
                completion_ready: completion_ready_rx,
                left: left_for_draft,
            },
            shared.clone(),
        );
        let config = planned;
        let device_free_before = llama::device_memory_free(&config);
        let model = match llama::load_model(&model_path, &config, on_progress) {
            Ok(model) => Arc::new(model),
            Err(error) => {
                let _ = started_tx.send(Err(error));
                return;
            }
        };
        let shape = ContextShape {
            n_ctx: config.n_ctx,
            n_seq: config.n_slots.max(1),
            n_ctx_setting: "model.n_ctx",
        };
        // Token healing's and drafting's table of token texts (tens of milliseconds for 151k
        // tokens): built now, not inside the first keystroke's decode step, and shared with
        // a chat context over the same model.
        let texts = Arc::new(TokenTexts::of(&model));
        let backend = match LlamaCpp::new(&model, Arc::clone(&texts), &config, shape) {
            Ok(backend) => backend,
            Err(error) => {
                let _ = started_tx.send(Err(error));
                return;
            }
        };
        let special = backend.special_tokens();
        let started = Started {
            caps: ModelCaps {
                has_fim: special.fim().is_some(),
                has_file_sep: special.fim().is_some() && special.file_sep.is_some(),
                has_repo_name: special.fim().is_some()
                    && special.file_sep.is_some()
                    && special.repo_name.is_some(),
                n_ctx_per_slot: backend.n_ctx_per_seq(),
            },
            token_counter: Arc::new(CachedTokenCounter::new(VocabCounter(model.clone()))),
            placement: llama::placement(&model, &config, device_free_before, planned_device_bytes),
            n_ctx_chat: config.chat_n_ctx,
        };
        tracing::info!(
            backend = %started.placement.backend,
            device = %started.placement.device,
            n_layers_offloaded = started.placement.n_layers_offloaded,
            device_memory_used = ?started.placement.device_memory_used,
            n_slots = backend.n_seq(),
            n_ctx_per_slot = backend.n_ctx_per_seq(),
            has_fim = started.caps.has_fim,
            "model ready"
        );
        if started_tx.send(Ok(started)).is_err() {
            return;
        }
        let _ = completion_ready.send(config.clone());
        let chat_shape = ContextShape {
            n_ctx: config.chat_n_ctx,
            n_seq: 1,
            n_ctx_setting: "model.chat_n_ctx",
        };
        // Declared before the scheduler so the chat and draft contexts can borrow their
        // models for as long as the scheduler lives.
        let chat_model_slot = OnceCell::new();
        let draft_load = draft_loading.map(DraftLoad::new);
        let make_draft = draft_load.as_ref().map(|load| {
            make_draft_backend(
                load,
                (&model, Arc::clone(&texts)),
                (&config, shape),
                DraftFor::Completions(shared.clone()),
            )
        });
        let draft_load_ref = draft_load.as_ref();
        let model_ref = &model;
        let chat_model_ref = &chat_model_slot;
        let config_ref = &config;
        let mut chat_loading = chat_loading;
        let make_chat: MakeChatBackend<'_, LlamaCpp> = Box::new(move || {
            let (chat_model, chat_config, chat_texts) = match &mut chat_loading {
                ChatLoading::Same => (&**model_ref, config_ref, Arc::clone(&texts)),
                ChatLoading::Failed(reason) => {
                    return Err(Error::ChatModelUnavailable(reason.clone()))
                }
                ChatLoading::Pending(loaded) => match loaded.try_recv() {
                    Err(TryRecvError::Empty) => return Ok(None),
                    Err(TryRecvError::Disconnected) => {
                        return Err(Error::ChatModelUnavailable(
                            "its loading thread ended without a result".to_owned(),
                        ))
                    }
                    Ok(Err(reason)) => return Err(Error::ChatModelUnavailable(reason)),
                    Ok(Ok(LoadedChat::SameAsCompletion)) => {
                        (&**model_ref, config_ref, Arc::clone(&texts))
                    }
                    Ok(Ok(LoadedChat::Model(loaded, chat_config))) => {
                        let (model, config) = chat_model_ref.get_or_init(|| (loaded, chat_config));
                        (model, config, Arc::new(TokenTexts::of(model)))
                    }
                },
            };
            // Chats draft with the draft model too, when its vocabulary fits the chat
            // model's and its plan had room for a chat context; whether it drafts at all is
            // for the completions' side to report.
            let make_chat_draft = draft_load_ref.map(|load| {
                make_draft_backend(
                    load,
                    (chat_model, Arc::clone(&chat_texts)),
                    (chat_config, chat_shape),
                    DraftFor::Chats,
                )
            });
            LlamaCpp::new(chat_model, chat_texts, chat_config, chat_shape)
                .map(|backend| Some((backend, make_chat_draft)))
        });
        run(
            Scheduler::new(backend, make_chat, make_draft, shared),
            inbox,
        );
    })
    .map_err(|error| Error::Internal(format!("cannot spawn the engine thread: {error}")))?;
    let started = started_rx.recv().map_err(|_| {
        Error::Internal("the engine thread ended while loading the model".to_owned())
    })??;
    Ok((commands, started))
}

/// Where the chat model stands while the completion model loads.
enum ChatLoading {
    Same,
    Pending(Receiver<Result<LoadedChat, String>>),
    Failed(String),
}

/// What the chat model's loading thread delivers.
enum LoadedChat {
    /// The model and the settings its plan chose for it.
    Model(llama_cpp_2::model::LlamaModel, ModelConfig),
    /// The spec resolved to the completion model's own file: one model serves both.
    SameAsCompletion,
}

/// What the models loaded before it leave a draft model of the memory budget.
enum LeftForDraft {
    /// Known at once: there is no separate chat model.
    Known(Budget),
    /// Sent once the separate chat model is planned; when nothing comes (it is not loaded, or
    /// loaded unplanned), the budget before it.
    AfterChat(Receiver<Budget>, Budget),
}

impl LeftForDraft {
    fn wait(self) -> Budget {
        match self {
            LeftForDraft::Known(budget) => budget,
            LeftForDraft::AfterChat(planned, before) => planned.recv().unwrap_or(before),
        }
    }
}

/// Starts getting a separate chat model on a thread of its own: resolving it (which may mean a
/// download) and loading it. The completion model is ready as soon as it can be, and a missing
/// or broken chat model never holds completions back. The outcome goes to `shared` for
/// `wellspring/serverInfo` as well. Also returns what the chat model's plan leaves of `budget`.
fn load_chat_model(
    chat_model: ChatModel,
    completion_model: &Path,
    config: &ModelConfig,
    budget: Budget,
    shared: Arc<Shared>,
) -> (ChatLoading, LeftForDraft) {
    let find_file: Box<dyn FnOnce() -> Result<PathBuf, String> + Send> = match chat_model {
        ChatModel::SameAsCompletion => return (ChatLoading::Same, LeftForDraft::Known(budget)),
        ChatModel::Unavailable(reason) => {
            return (ChatLoading::Failed(reason), LeftForDraft::Known(budget))
        }
        ChatModel::File(path) => Box::new(move || Ok(path)),
        ChatModel::Resolve(resolver) => Box::new(move || resolver.resolve()),
    };
    let (left_tx, left_rx) = mpsc::channel();
    let left = LeftForDraft::AfterChat(left_rx, budget.clone());
    let (loaded_tx, loaded_rx) = mpsc::channel();
    let config = config.clone();
    let completion_model = completion_model.to_owned();
    let spawned = spawn_llama_thread("wellspring-chat-model", move || {
        let loaded = find_file().and_then(|path| {
            if path == completion_model {
                return Ok((path, LoadedChat::SameAsCompletion));
            }
            let config = match plan_model(&path, &Request::chat(&config), &budget) {
                Ok(plan) => {
                    tracing::info!("chat model memory plan: {}", plan.summary());
                    let _ = left_tx.send(budget.after(&plan));
                    plan.apply(&config)
                }
                Err(PlanError::Refused(message)) => {
                    return Err(Error::OutOfMemory(message).to_string())
                }
                Err(PlanError::Model(_)) => config,
                Err(error @ PlanError::Unplannable(_)) => {
                    tracing::warn!("no memory plan for the chat model: {error}");
                    config
                }
            };
            llama::load_model(&path, &config, None)
                .map(|model| (path, LoadedChat::Model(model, config)))
                .map_err(|error| error.to_string())
        });
        let loaded = match loaded {
            Ok((path, model)) => {
                tracing::info!(path = %path.display(), "chat model loaded");
                shared.set_chat_model_state(match model {
                    LoadedChat::Model(..) => ChatModelState::Ready(path),
                    LoadedChat::SameAsCompletion => ChatModelState::SameAsCompletion,
                });
                Ok(model)
            }
            Err(reason) => {
                tracing::error!("cannot get the chat model: {reason}");
                shared.set_chat_model_state(ChatModelState::Unavailable(reason.clone()));
                Err(reason)
            }
        };
        let _ = loaded_tx.send(loaded);
    });
    let loading = match spawned {
        Ok(_) => ChatLoading::Pending(loaded_rx),
        Err(error) => ChatLoading::Failed(format!("cannot spawn its loading thread: {error}")),
    };
    (loading, left)
}

/// What the draft model's loading thread waits for before it plans and loads.
struct DraftTurn {
    /// The model's settings as its plan applied them, sent once it is loaded and its context
    /// made; nothing comes when it fails.
    completion_ready: Receiver<ModelConfig>,
    /// What the model and a separate chat model leave of the memory.
    left: LeftForDraft,
}

/// The draft model as planned and loaded.
struct LoadedDraft {
    model: llama_cpp_2::model::LlamaModel,
    /// Whether its plan had room for a chat context too.
    drafts_for_chats: bool,
}

/// Starts getting the draft model `config.draft_path` names on a thread of its own: resolving it
/// (which may mean a download) at once, then, when `turn` comes, planning it on what the models
/// leave (its contexts shaped like theirs, `config.n_gpu_layers` as configured) and loading it.
/// `None` when no draft model is configured. Completions never wait for it: they draft from the
/// prompt alone until it is there.
fn load_draft_model(
    config: &ModelConfig,
    turn: DraftTurn,
    shared: Arc<Shared>,
) -> Option<Receiver<Result<LoadedDraft, String>>> {
    let spec = config.draft_path.trim().to_owned();
    if spec.is_empty() {
        return None;
    }
    shared.stats().draft_model = DraftModelState::Loading;
    let (loaded_tx, loaded_rx) = mpsc::channel();
    let n_gpu_layers = config.n_gpu_layers;
    let loader_shared = shared.clone();
    let spawned = spawn_llama_thread("wellspring-draft-model", move || {
        let options = crate::model::ResolveOptions {
            allow_download: true,
            ..crate::model::ResolveOptions::default()
        };
        let loaded = crate::model::resolve(&spec, &options)
            .map_err(|error| format!("{spec}: {error}"))
            .and_then(|resolved| {
                // The header is read once, now: a file that is no model is reported at once,
                // not after the model's load.
                let shape = match model_shape(&resolved.path) {
                    Err(PlanError::Model(error)) => return Err(format!("{spec}: {error}")),
                    shape => shape,
                };
                let planned = turn
                    .completion_ready
                    .recv()
                    .map_err(|_| "the model did not load".to_owned())?;
                let budget = turn.left.wait();
                let request = Request::draft(&planned, n_gpu_layers);
                let as_configured = ModelConfig {
                    n_gpu_layers,
                    ..planned.clone()
                };
                let planned = shape.and_then(|shape| {
                    plan::plan_draft(&shape, &budget, &request).map_err(PlanError::Refused)
                });
                let (config, drafts_for_chats) = match planned {
                    Ok(plan) => {
                        tracing::info!("draft model memory plan: {}", plan.summary());
                        for note in &plan.notes {
                            tracing::warn!("draft model memory plan: {note}");
                        }
                        (plan.apply(&as_configured), plan.chat_n_ctx.is_some())
                    }
                    Err(PlanError::Refused(message)) => {
                        return Err(format!("{spec} does not fit beside the model: {message}"))
                    }
                    Err(error) => {
                        tracing::warn!(
                            "no memory plan for the draft model, loading as configured: {error}"
                        );
                        (as_configured, true)
                    }
                };
                llama::load_model(&resolved.path, &config, None)
                    .map(|model| LoadedDraft {
                        model,
                        drafts_for_chats,
                    })
                    .map_err(|error| format!("{spec}: {error}"))
            });
        match &loaded {
            Ok(_) => {
                tracing::info!(spec = %spec, "draft model loaded");
                loader_shared.stats().draft_model = DraftModelState::Ready;
            }
            Err(reason) => {
                loader_shared.stats().draft_model = DraftModelState::Unavailable(reason.clone());
            }
        }
        let _ = loaded_tx.send(loaded);
    });
    match spawned {
        Ok(_) => Some(loaded_rx),
        Err(error) => {
            let reason = format!("cannot spawn its loading thread: {error}");
            tracing::error!("no draft model: {reason}");
            shared.stats().draft_model = DraftModelState::Unavailable(reason);
            None
        }
    }
}

/// The draft model as its loading thread delivers it, kept for as long as the scheduler lives
/// and lent to every context that drafts with it.
struct DraftLoad {
    loading: Receiver<Result<LoadedDraft, String>>,
    model: OnceCell<Result<LoadedDraft, String>>,
}

impl DraftLoad {
    fn new(loading: Receiver<Result<LoadedDraft, String>>) -> DraftLoad {
        DraftLoad {
            loading,
            model: OnceCell::new(),
        }
    }

    /// The model once it is there (`None` until then), or why it cannot be had.
    fn get(&self) -> Option<Result<&LoadedDraft, String>> {
        if self.model.get().is_none() {
            let delivered = match self.loading.try_recv() {
                Err(TryRecvError::Empty) => return None,
                Err(TryRecvError::Disconnected) => {
                    Err("its loading thread ended without a result".to_owned())
                }
                Ok(delivered) => delivered,
            };
            let _ = self.model.set(delivered);
        }
        self.model
            .get()
            .map(|delivered| delivered.as_ref().map_err(Clone::clone))
    }
}

/// Which context of the model a draft model's context drafts for.
enum DraftFor {
    /// The completion context; the outcome goes to the stats for `wellspring/serverInfo`.
    Completions(Arc<Shared>),
    /// The chat context, when the draft model's plan had room for one.
    Chats,
}

/// A draft model's context for one context of the model, made once `load` has the draft model:
/// checked against that model's vocabulary (`texts`) and shaped like its context (`shape`, a
/// sequence per slot).
fn make_draft_backend<'m>(
    load: &'m DraftLoad,
    (model, texts): (&'m llama_cpp_2::model::LlamaModel, Arc<TokenTexts>),
    (config, shape): (&'m ModelConfig, ContextShape),
    drafts_for: DraftFor,
) -> MakeDraftBackend<'m, LlamaCpp<'m>> {
    let for_chats = matches!(drafts_for, DraftFor::Chats);
    let make = move || -> Result<Option<LlamaCpp<'m>>, String> {
        let loaded = match load.get() {
            None => return Ok(None),
            Some(loaded) => loaded?,
        };
        if for_chats && !loaded.drafts_for_chats {
            return Err("its chat context does not fit beside the models".to_owned());
        }
        let draft = &loaded.model;
        let draft_texts = TokenTexts::of(draft);
        if let Some(mismatch) = texts.draft_mismatch(&draft_texts) {
            return Err(format!("it cannot draft for this model: {mismatch}"));
        }
        if llama::special_tokens(draft) != llama::special_tokens(model) {
            return Err(
                "it cannot draft for this model: their FIM and control tokens differ".to_owned(),
            );
        }
        let draft_config = ModelConfig {
            lookup_draft: 0,
            draft_path: String::new(),
            ..config.clone()
        };
        LlamaCpp::new(draft, Arc::new(draft_texts), &draft_config, shape)
            .map(Some)
            .map_err(|error| format!("its context: {error}"))
    };
    Box::new(move || {
        let made = make();
        if let DraftFor::Completions(shared) = &drafts_for {
            match &made {
                Ok(None) => {}
                Ok(Some(_)) => shared.stats().draft_model = DraftModelState::Ready,
                Err(reason) => {
                    shared.stats().draft_model = DraftModelState::Unavailable(reason.clone());
                }
            }
        }
        made
    })
}

/// How often chats waiting for their model look again whether it has arrived.
const CHAT_MODEL_POLL: Duration = Duration::from_millis(50);
/// How often an idle engine looks again whether the draft model has arrived.
const DRAFT_MODEL_POLL: Duration = Duration::from_millis(50);

/// The loop: take every waiting command, then advance the work by one step.
pub(crate) fn run<B: Backend>(mut scheduler: Scheduler<'_, B>, inbox: Receiver<Command>) {
    let mut connected = true;
    loop {
        if !connected && scheduler.nothing_waited_for() {
            return;
        }
        if scheduler.is_idle() {
            if !connected {
                return;
            }
            // While the draft model is on its way with prompts to catch it up with, or a context
            // wants to watch the load, wake up to let them (`Duration::MAX` waits for good).
            let watching = scheduler.watch_load();
            let wait = if scheduler.waits_for_draft_model() {
                DRAFT_MODEL_POLL
            } else if watching {
                super::cpu_share::INTERVAL
            } else {
                Duration::MAX
            };
            match inbox.recv_timeout(wait) {
                Ok(command) => scheduler.submit(command),
                Err(RecvTimeoutError::Timeout) => {
                    scheduler.poll_draft_model();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            }
        } else if scheduler.waits_for_chat_model() {
            // Nothing to step until the chat model arrives; new commands still wake the loop.
            if !connected {
                std::thread::sleep(CHAT_MODEL_POLL);
            } else {
                match inbox.recv_timeout(CHAT_MODEL_POLL) {
                    Ok(command) => scheduler.submit(command),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => connected = false,
                }
            }
        }
        loop {
            match inbox.try_recv() {
                Ok(command) => scheduler.submit(command),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    connected = false;
                    break;
                }
            }
        }
        let stepped = std::panic::catch_unwind(AssertUnwindSafe(|| scheduler.step()));
        if let Err(panic) = stepped {
            let message = panic
                .downcast_ref::<&str>()
                .map(|message| message.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".to_owned());
            tracing::error!(%message, "engine step panicked; caches reset");
            scheduler.recover(&message);
        }
    }
}

#[cfg(test)]
pub(crate) fn spawn_fake(
    backend: super::backend::fake::Fake,
    chat_backend: super::backend::fake::Fake,
    shared: Arc<Shared>,
) -> Sender<Command> {
    let (commands, inbox) = mpsc::channel();
    std::thread::spawn(move || {
        let mut chat_backend = Some(chat_backend);
        let make_chat = Box::new(move || Ok(chat_backend.take().map(|backend| (backend, None))));
        run(Scheduler::new(backend, make_chat, None, shared), inbox);
    });
    commands
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_for_live_threads_ends_when_the_last_one_does() {
        let threads = LiveThreads::new();
        assert!(threads.wait_until_none(Duration::ZERO));
        let held = threads.enter();
        assert!(!threads.wait_until_none(Duration::ZERO));
        std::thread::scope(|scope| {
            // Counted before it starts, as the engine's threads are.
            let live = threads.enter();
            scope.spawn(move || drop(live));
            drop(held);
            assert!(threads.wait_until_none(Duration::from_secs(600)));
        });
    }
}
