//! Loading the model in the background and telling the client how it goes: `wellspring/status`
//! notifications while it loads, one `window/showMessage` if it fails. The server serves
//! everything else (without completions) meanwhile, and keeps running whatever the model file is.

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tower_lsp_server::ls_types::MessageType;
use tower_lsp_server::Client;

use super::convert;
use super::ext::{BuiltinOffer, ModelOffer, Status, StatusParams};
use super::progress::Progress;
use super::state::{EngineState, State};
use crate::config::EngineMode;
use crate::engine::service::{self, Launch};
use crate::engine::{http, ChatModel, ChatModelResolver, Engine};
use crate::model;

/// Sends the current state as a `wellspring/status` notification.
pub(crate) async fn send_status(
    client: &Client,
    state: &State,
    message: Option<String>,
    last_latency_ms: Option<f64>,
) {
    let engine_state = state.engine_state();
    let model = state.model_path().and_then(|path| {
        path.file_name()
            .map(|name| name.to_string_lossy().into_owned())
    });
    let mut fim = None;
    let mut offer = None;
    let (progress, device, default_message) = match &engine_state {
        EngineState::Disabled => (None, None, "completions are off".to_owned()),
        EngineState::NoModel(offered) => {
            offer = Some(offered.clone());
            (
                None,
                None,
                format!(
                    "no model yet: the default, {} (about {}), is not downloaded; choose a model",
                    offered.description,
                    describe_bytes(offered.bytes)
                ),
            )
        }
        EngineState::Loading { progress } => (
            Some(*progress),
            None,
            format!("loading model ({:.0}%)", progress * 100.0),
        ),
        EngineState::Ready(engine) => {
            let has_fim = engine.caps().has_fim;
            fim = Some(has_fim);
            let mut ready = format!(
                "ready on {}",
                convert::describe_placement(engine.placement())
            );
            if !has_fim {
                ready.push_str(
                    "; the model has no fill-in-the-middle tokens, so completions continue the text before the cursor only (choose a FIM-trained base model)",
                );
            }
            (None, Some(convert::device(engine.placement())), ready)
        }
        EngineState::Failed(error) => (None, None, error.clone()),
    };
    let backend = device.as_ref().map(|device| device.backend.clone());
    let params = StatusParams {
        state: engine_state.wire(),
        message: message.unwrap_or(default_message),
        progress,
        model,
        backend,
        device,
        last_latency_ms,
        fim,
        offer,
    };
    client.send_notification::<Status>(params).await;
}

/// "1.6 GB", "491 MB": a download's size as people read it.
pub(crate) fn describe_bytes(bytes: u64) -> String {
    if bytes >= 1_000_000_000 {
        format!("{:.1} GB", bytes as f64 / 1e9)
    } else {
        format!("{:.0} MB", bytes as f64 / 1e6)
    }
}

/// A shared engine that stops this many times in a row, each within `STABLE_FOR` of starting,
/// is not started again: something about the model or the machine makes it crash.
const MAX_RESTARTS: u32 = 3;
const STABLE_FOR: Duration = Duration::from_secs(60);

/// Resolves the configured model and (re)starts the engine on it, in the background.
pub(crate) fn load(client: Client, state: Arc<State>) {
    load_attempt(client, state, 0, None);
}

/// `load`, the `restarts`-th time in a row after the shared engine stopped (`why` says how).
fn load_attempt(client: Client, state: Arc<State>, restarts: u32, why: Option<String>) {
    let config = state.config();
    let spec = config.model.path.trim().to_owned();
    let generation = state.begin_engine_load();
    if spec.is_empty() {
        state.set_engine_state(generation, EngineState::Disabled);
        tokio::spawn(async move { send_status(&client, &state, None, None).await });
        return;
    }
    if http::is_endpoint(&spec) {
        connect_endpoint(client, state, generation, why);
        return;
    }
    tokio::spawn(async move {
        send_status(
            &client,
            &state,
            Some(why.unwrap_or_else(|| format!("resolving model {spec}"))),
            None,
        )
        .await;
        let (progress_tx, mut progress_rx) = mpsc::unbounded_channel::<f32>();
        let progress_state = Arc::clone(&state);
        let progress_client = client.clone();
        // Clients without the shims' status bar see the load as work-done progress.
        let load_progress = Progress::start_on(
            &client,
            state.client_support().work_done_progress,
            "Wellspring: loading the model",
            None,
        );
        let reporter = tokio::spawn(async move {
            let mut last_reported = -1.0_f32;
            while let Some(progress) = progress_rx.recv().await {
                // One notification per 5% is plenty for a status bar.
                if progress - last_reported < 0.05 && progress < 1.0 {
                    continue;
                }
                last_reported = progress;
                if progress_state.set_engine_state(generation, EngineState::Loading { progress }) {
                    load_progress.report(&format!("{:.0}%", progress * 100.0));
                    send_status(&progress_client, &progress_state, None, None).await;
                }
            }
            load_progress
        });
        let model_spec = config.model.path.clone();
        let download_progress = progress_tx.clone();
        // The default model is downloaded only when the user asks (the editor offers it); any
        // model the user configured is theirs to fetch.
        let needs_consent =
            model_spec.trim() == model::DEFAULT_MODEL && !state.default_download_approved();
        let resolved = tokio::task::spawn_blocking(move || {
            resolve_model_with(&model_spec, !needs_consent, move |fraction| {
                // The download is the first half of loading.
                let _ = download_progress.send(0.5 * fraction);
            })
        })
        .await;
        let resolved = match resolved {
            Ok(Err(model::Error::NotCached { .. })) if needs_consent => {
                drop(progress_tx);
                if let Ok(load_progress) = reporter.await {
                    load_progress
                        .finish("waiting for a model to be chosen")
                        .await;
                }
                if state.set_engine_state(generation, EngineState::NoModel(default_offer())) {
                    tracing::info!(
                        "no model is configured and the default one is not downloaded; waiting for the user to choose"
                    );
                    send_status(&client, &state, None, None).await;
                }
                return;
            }
            Ok(resolved) => resolved.map_err(|error| error.to_string()),
            Err(panic) => Err(format!("resolving the model crashed: {panic}")),
        };
        let loaded = match resolved {
            Err(error) => {
                drop(progress_tx);
                Err(error)
            }
            Ok(path) => {
                // Moved into the load, so the reporter ends when the load does.
                let on_progress = Box::new(move |progress: f32| {
                    let _ = progress_tx.send(progress);
                });
                state.set_model_path(Some(path.clone()));
                match config.engine.mode {
                    EngineMode::InProcess => {
                        let model_config = config.model.clone();
                        tokio::task::spawn_blocking(move || {
                            let chat_model = chat_model(&model_config.chat_path);
                            Engine::start_with_progress(
                                &model_config,
                                &path,
                                chat_model,
                                Some(on_progress),
                            )
                            .map_err(|error| error.to_string())
                        })
                        .await
                        .unwrap_or_else(|panic| Err(format!("model loading crashed: {panic}")))
                    }
                    EngineMode::Shared => match service::remote_endpoint(&config.engine) {
                        Err(error) => Err(error),
                        Ok(remote) => {
                            let launch = Launch {
                                config: &config.model,
                                engine: &config.engine,
                                model_path: &path,
                                log_file: config.log.file.as_deref(),
                                remote,
                            };
                            Engine::connect_shared(&launch, Some(on_progress))
                                .await
                                .map_err(|error| error.to_string())
                        }
                    },
                }
            }
        };
        let load_progress = reporter.await.ok();
        if let Some(load_progress) = load_progress {
            let last = match &loaded {
                Ok(_) => "ready".to_owned(),
                Err(error) => format!("failed: {error}"),
            };
            load_progress.finish(&last).await;
        }
        match loaded {
            Ok(engine) => {
                tracing::info!(model = %engine.model_path().display(), backend = engine.backend_name(), "model loaded");
                let stopped = engine.stopped();
                if state.set_engine_state(generation, EngineState::Ready(engine.clone())) {
                    State::warm_token_counts_in_background(&engine, state.documents.all());
                    send_status(&client, &state, None, None).await;
                    if let Some(stopped) = stopped {
                        watch_for_stop(client, state, stopped, generation, restarts);
                    }
                }
            }
            Err(error) => {
                tracing::error!("cannot load the model: {error}");
                let shown = format!(
                    "Wellspring: {error}. Completions are off until the model setting is fixed."
                );
                fail(&client, &state, generation, error, shown).await;
            }
        }
    });
}

/// The longest wait between attempts at reaching an inference server that does not answer.
const MAX_RECONNECT_WAIT: Duration = Duration::from_secs(30);

/// Connects to the inference server `model.path` names (and `model.chat_path`'s, when chat runs
/// elsewhere), trying again with backoff while it does not answer: the status says so meanwhile,
/// and completions come back on their own when it does. When a ready server stops answering,
/// the same loop starts again.
fn connect_endpoint(client: Client, state: Arc<State>, generation: u64, why: Option<String>) {
    let config = state.config();
    tokio::spawn(async move {
        let specs = http::endpoints(&config.model);
        let (path, chat_path) = match specs {
            Ok(specs) => specs,
            Err(error) => {
                let shown = format!("Wellspring: {error}");
                fail(&client, &state, generation, error, shown).await;
                return;
            }
        };
        let connecting = why.unwrap_or_else(|| format!("connecting to {path}"));
        if state.set_engine_state(generation, EngineState::Loading { progress: 0.0 }) {
            send_status(&client, &state, Some(connecting), None).await;
        }
        let mut wait = Duration::from_secs(1);
        let mut told_user = false;
        loop {
            if !state.is_current_engine_load(generation) {
                return;
            }
            let model_config = config.model.clone();
            let (attempt_path, attempt_chat_path) = (path.clone(), chat_path.clone());
            let connected = tokio::task::spawn_blocking(move || {
                Engine::connect_http(&model_config, attempt_path, attempt_chat_path)
            })
            .await
            .unwrap_or_else(|panic| Err(crate::engine::Error::Internal(panic.to_string())));
            match connected {
                Ok(engine) => {
                    tracing::info!(
                        endpoint = %path,
                        model = %engine.model_path().display(),
                        counting = engine.token_counting().unwrap_or_default(),
                        "the inference server is ready"
                    );
                    state.set_model_path(Some(engine.model_path().to_owned()));
                    let stopped = engine.stopped();
                    if state.set_engine_state(generation, EngineState::Ready(engine.clone())) {
                        State::warm_token_counts_in_background(&engine, state.documents.all());
                        send_status(&client, &state, None, None).await;
                        if told_user {
                            client
                                .show_message(
                                    MessageType::INFO,
                                    format!("Wellspring: {path} answers again"),
                                )
                                .await;
                        }
                        if let Some(stopped) = stopped {
                            reconnect_when_down(client.clone(), state.clone(), generation, stopped);
                        }
                    }
                    return;
                }
                Err(error) => {
                    let message = format!("{error}; trying again in {} s", wait.as_secs());
                    tracing::warn!("{message}");
                    if state.set_engine_state(generation, EngineState::Failed(message.clone())) {
                        send_status(&client, &state, None, None).await;
                        if !told_user {
                            told_user = true;
                            let shown = format!(
                                "Wellspring: {error}. Completions resume when the server answers."
                            );
                            client.show_message(MessageType::WARNING, shown).await;
                        }
                    }
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(MAX_RECONNECT_WAIT);
                }
            }
        }
    });
}

/// Connects to the inference server again (the same load) once it stops answering, unless a newer
/// load replaced this one meanwhile.
fn reconnect_when_down(
    client: Client,
    state: Arc<State>,
    generation: u64,
    stopped: impl Future<Output = String> + Send + 'static,
) {
    tokio::spawn(async move {
        let reason = stopped.await;
        if state.is_current_engine_load(generation) {
            tracing::warn!(%reason, "the inference server stopped answering");
            let why = format!("{reason}; reconnecting");
            connect_endpoint(client, state, generation, Some(why));
        }
    });
}

/// Starts a new shared engine when this one stops (its process died, or was stopped by hand),
/// unless a newer load replaced it meanwhile. Documents live in this process, so nothing is lost;
/// the status says what happened.
fn watch_for_stop(
    client: Client,
    state: Arc<State>,
    stopped: impl Future<Output = String> + Send + 'static,
    generation: u64,
    restarts: u32,
) {
    tokio::spawn(async move {
        let ready_at = Instant::now();
        let reason = stopped.await;
        if !state.is_current_engine_load(generation) {
            return;
        }
        let restarts = if ready_at.elapsed() >= STABLE_FOR {
            1
        } else {
            restarts + 1
        };
        if restarts > MAX_RESTARTS {
            let error = format!(
                "the shared engine stopped {MAX_RESTARTS} times in a row ({reason}); completions are off until the server restarts"
            );
            tracing::error!("{error}");
            let shown = format!("Wellspring: {error}");
            fail(&client, &state, generation, error, shown).await;
            return;
        }
        tracing::warn!(%reason, restarts, "the shared engine stopped; starting a new one");
        let why = format!("the engine stopped ({reason}); starting a new one");
        load_attempt(client, state, restarts, Some(why));
    });
}

/// Puts load `generation` in the error state (unless a newer load replaced it) and tells the
/// user once, with `shown`.
async fn fail(client: &Client, state: &State, generation: u64, error: String, shown: String) {
    if state.set_engine_state(generation, EngineState::Failed(error)) {
        send_status(client, state, None, None).await;
        client.show_message(MessageType::ERROR, shown).await;
    }
}

/// The separate chat model, when `model.chat_path` names one. It is resolved (downloaded if
/// need be) on the chat model's own loading thread, so completions never wait for it; failing to
/// get it leaves completions alone, and chat requests report the reason instead.
pub(crate) fn chat_model(spec: &str) -> ChatModel {
    let spec = spec.trim().to_owned();
    if spec.is_empty() {
        return ChatModel::SameAsCompletion;
    }
    ChatModel::Resolve(ChatModelResolver::new(spec.clone(), move || {
        let last_logged = AtomicU32::new(0);
        resolve_model(&spec, move |fraction| {
            // A line per tenth: this download has no status bar of its own.
            let tenth = (fraction * 10.0) as u32;
            if tenth > last_logged.swap(tenth, Ordering::Relaxed) {
                tracing::info!("downloading the chat model: {}%", tenth * 10);
            }
        })
    }))
}

/// Turns a model spec into a local, validated GGUF, downloading it when it is not cached yet;
/// `on_progress` gets the download's completed fraction.
pub(crate) fn resolve_model(
    spec: &str,
    on_progress: impl Fn(f32) + Send + Sync + 'static,
) -> Result<PathBuf, String> {
    resolve_model_with(spec, true, on_progress).map_err(|error| error.to_string())
}

/// [`resolve_model`], downloading only when `allow_download` is set (else a model that is not
/// cached gives [`model::Error::NotCached`] and the network is not touched).
fn resolve_model_with(
    spec: &str,
    allow_download: bool,
    on_progress: impl Fn(f32) + Send + Sync + 'static,
) -> Result<PathBuf, model::Error> {
    let on_progress = move |report: model::Progress| {
        if let Some(total_bytes) = report.total_bytes.filter(|total| *total > 0) {
            on_progress(report.done_bytes as f32 / total_bytes as f32);
        }
    };
    let options = model::ResolveOptions {
        progress: Some(Arc::new(on_progress)),
        allow_download,
        ..model::ResolveOptions::default()
    };
    model::resolve(spec, &options).map(|resolved| resolved.path)
}

/// What a server with no model offers: the default model, and the built-in ones.
pub(crate) fn default_offer() -> ModelOffer {
    ModelOffer {
        spec: model::DEFAULT_MODEL.to_owned(),
        description: model::DEFAULT_MODEL_DESCRIPTION.to_owned(),
        bytes: model::DEFAULT_MODEL_BYTES,
        builtins: model::BUILTIN_MODELS
            .iter()
            .map(|builtin| BuiltinOffer {
                name: builtin.name.to_owned(),
                description: builtin.description.to_owned(),
                bytes: builtin.file_bytes,
            })
            .collect(),
    }
}
