//! The shared engine's process: loads the model once, serves every language server that connects
//! to its socket, and exits once no client has been connected for the idle timeout (or at once
//! when its model cannot be loaded, or its socket file was removed).
//!
//! One engine serves one socket: a lock file beside the socket is held for the process's life, so
//! a second engine started for the same configuration sees it and leaves.
//!
//! A team's inference node listens on TCP instead (`--listen tcp:ADDR`), and then every
//! connection must present the node's token; one that does not is refused before it can ask
//! anything.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{mpsc, watch};
use tokio::task::AbortHandle;

use super::protocol::{
    read_message, spawn_writer, EngineFacts, FromEngine, LiveInfo, ReadHalf, ToEngine, WriteHalf,
    PROTOCOL_VERSION,
};
use crate::config::ModelConfig;
use crate::engine::{lock, ChatModel, DoneCheck, Engine, Error};

/// How long the engine waits for a language server's verdict on a completion's text before it
/// goes on generating as if the answer were "not done".
const VERDICT_TIMEOUT: Duration = Duration::from_millis(50);

/// How often the idle timer and the socket file are looked at.
const TICK: Duration = Duration::from_millis(500);

/// Where an engine listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// A Unix socket for this user's language servers.
    Unix(PathBuf),
    /// A TCP address for a team's language servers, which must present `token`.
    Tcp { address: String, token: String },
}

pub struct ServeOptions {
    pub listen: Listen,
    pub model_path: PathBuf,
    pub config: ModelConfig,
    pub chat_model: ChatModel,
    /// Exit this long after the last client left (or after start, if none came); zero: never.
    pub idle_exit: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot prepare the socket directory {}: {source}", path.display())]
    Directory {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen on {}: {source}", path.display())]
    Listen {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the model did not load: {0}")]
    Load(Error),
    #[error("an engine on TCP needs a token of at least {MIN_TOKEN_CHARS} characters (--token-file or WELLSPRING_ENGINE_TOKEN)")]
    Token,
}

/// Where the engine stands, for connections that arrive at any time.
#[derive(Clone)]
enum Phase {
    Loading(f32),
    Ready(Engine, EngineFacts),
    Failed(Error),
}

/// Accepts connections on a Unix socket or a TCP address.
enum Listener {
    Unix {
        listener: UnixListener,
        socket: PathBuf,
        inode: Option<u64>,
        _lock: File,
    },
    Tcp {
        listener: TcpListener,
        token: Arc<str>,
    },
}

impl Listener {
    /// The next connection, as owned halves (reading and writing never wait for each other).
    async fn accept(&self) -> std::io::Result<(ReadHalf, WriteHalf)> {
        match self {
            Listener::Unix { listener, .. } => {
                let (reader, writer) = listener.accept().await?.0.into_split();
                Ok((Box::new(reader), Box::new(writer)))
            }
            Listener::Tcp { listener, .. } => {
                let (stream, peer) = listener.accept().await?;
                tracing::info!(%peer, "TCP connection");
                let _ = stream.set_nodelay(true);
                let (reader, writer) = stream.into_split();
                Ok((Box::new(reader), Box::new(writer)))
            }
        }
    }

    /// The token connections must present; none on a Unix socket, which only this user can open.
    fn token(&self) -> Option<Arc<str>> {
        match self {
            Listener::Unix { .. } => None,
            Listener::Tcp { token, .. } => Some(Arc::clone(token)),
        }
    }

    /// Whether the socket file is still this engine's (a TCP listener always is).
    fn still_ours(&self) -> bool {
        match self {
            Listener::Unix {
                socket,
                inode: ours,
                ..
            } => inode(socket) == *ours,
            Listener::Tcp { .. } => true,
        }
    }

    fn remove_socket(&self) {
        if let Listener::Unix { socket, .. } = self {
            let _ = std::fs::remove_file(socket);
        }
    }
}

/// Serves until idle. Returns `Ok` without serving when another engine already serves the same
/// Unix socket.
pub async fn serve(options: ServeOptions) -> Result<(), ServeError> {
    let listener = match &options.listen {
        Listen::Unix(socket) => {
            let Some(lock) = take_lock(socket)? else {
                tracing::info!(socket = %socket.display(), "another engine serves this socket; leaving");
                return Ok(());
            };
            let listener = listen(socket)?;
            tracing::info!(socket = %socket.display(), model = %options.model_path.display(), pid = std::process::id(), "engine listening");
            Listener::Unix {
                listener,
                socket: socket.clone(),
                inode: inode(socket),
                _lock: lock,
            }
        }
        Listen::Tcp { address, token } => {
            if token.trim().len() < MIN_TOKEN_CHARS {
                return Err(ServeError::Token);
            }
            let listener =
                TcpListener::bind(address)
                    .await
                    .map_err(|source| ServeError::Listen {
                        path: PathBuf::from(address),
                        source,
                    })?;
            tracing::info!(address = %listener.local_addr().map_or_else(|_| address.clone(), |local| local.to_string()), model = %options.model_path.display(), pid = std::process::id(), "engine listening on TCP; connections must present the token");
            Listener::Tcp {
                listener,
                token: Arc::from(token.trim()),
            }
        }
    };

    let (phase_tx, phase_rx) = watch::channel(Phase::Loading(0.0));
    let phase_tx = Arc::new(phase_tx);
    let loading_phase = Arc::clone(&phase_tx);
    let ServeOptions {
        listen: _,
        model_path,
        config,
        chat_model,
        idle_exit,
    } = options;
    tokio::task::spawn_blocking(move || {
        let progress_phase = Arc::clone(&loading_phase);
        let on_progress = Box::new(move |progress: f32| {
            progress_phase.send_if_modified(|phase| match phase {
                Phase::Loading(last) if progress - *last >= 0.01 || progress >= 1.0 => {
                    *last = progress;
                    true
                }
                _ => false,
            });
        });
        let started =
            Engine::start_with_progress(&config, &model_path, chat_model, Some(on_progress));
        loading_phase.send_replace(match started {
            Ok(engine) => {
                let facts = EngineFacts {
                    caps: engine.caps(),
                    placement: engine.placement().clone(),
                    model_path: engine.model_path().to_owned(),
                    n_ctx_chat: engine.chat_n_ctx(),
                    pid: std::process::id(),
                };
                tracing::info!(backend = %facts.placement.backend, "engine ready");
                Phase::Ready(engine, facts)
            }
            Err(error) => {
                tracing::error!(%error, "the engine's model did not load");
                Phase::Failed(error)
            }
        });
    });

    let clients = Arc::new(AtomicU32::new(0));
    let next_connection = AtomicU64::new(1);
    let mut idle_since = Some(Instant::now());
    let mut tick = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(stream) => {
                    clients.fetch_add(1, Ordering::SeqCst);
                    idle_since = None;
                    let connection = next_connection.fetch_add(1, Ordering::Relaxed);
                    let phase = phase_rx.clone();
                    let clients = Arc::clone(&clients);
                    let token = listener.token();
                    tokio::spawn(async move {
                        serve_connection(stream, connection, phase, Arc::clone(&clients), token).await;
                        clients.fetch_sub(1, Ordering::SeqCst);
                    });
                }
                Err(error) => tracing::warn!(%error, "cannot accept a connection"),
            },
            _ = tick.tick() => {
                let n_clients = clients.load(Ordering::SeqCst);
                if n_clients > 0 {
                    idle_since = None;
                } else if idle_since.is_none() {
                    idle_since = Some(Instant::now());
                }
                if let Phase::Failed(error) = &*phase_rx.borrow() {
                    if n_clients == 0 {
                        return Err(ServeError::Load(error.clone()));
                    }
                }
                if !listener.still_ours() {
                    tracing::info!("the socket file was removed or replaced; the engine exits");
                    return Ok(());
                }
                if !idle_exit.is_zero() && idle_since.is_some_and(|since| since.elapsed() >= idle_exit) {
                    tracing::info!(idle_s = idle_exit.as_secs(), "no client for the idle timeout; the engine exits");
                    listener.remove_socket();
                    return Ok(());
                }
            }
        }
    }
}

/// A shorter token is too easy to guess to guard a model on the network.
const MIN_TOKEN_CHARS: usize = 16;

/// Whether the token a client presented is the one required, compared in constant time.
fn token_matches(required: Option<&str>, presented: Option<&str>) -> bool {
    let Some(required) = required else {
        return true;
    };
    let presented = presented.unwrap_or("").as_bytes();
    let required = required.as_bytes();
    let mut difference = u8::from(presented.len() != required.len());
    for (idx, byte) in required.iter().enumerate() {
        difference |= byte ^ presented.get(idx).copied().unwrap_or(0);
    }
    difference == 0
}

/// The lock file beside the socket, held while this process serves it; `None` when another
/// process holds it.
fn take_lock(socket: &Path) -> Result<Option<File>, ServeError> {
    let directory = socket.parent().unwrap_or(Path::new("."));
    let directory_error = |source| ServeError::Directory {
        path: directory.to_owned(),
        source,
    };
    std::fs::create_dir_all(directory).map_err(directory_error)?;
    std::fs::set_permissions(directory, std::fs::Permissions::from_mode(0o700))
        .map_err(directory_error)?;
    let lock_path = socket.with_extension("lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|source| ServeError::Listen {
            path: lock_path.clone(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(source)) => Err(ServeError::Listen {
            path: lock_path,
            source,
        }),
    }
}

/// Binds the socket (removing a stale one left by an engine that died), readable and writable by
/// this user only.
fn listen(socket: &Path) -> Result<UnixListener, ServeError> {
    let listen_error = |source| ServeError::Listen {
        path: socket.to_owned(),
        source,
    };
    match std::fs::remove_file(socket) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(listen_error(error)),
    }
    let listener = UnixListener::bind(socket).map_err(listen_error)?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))
        .map_err(listen_error)?;
    Ok(listener)
}

fn inode(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|metadata| metadata.ino())
}

type Verdicts = Arc<Mutex<HashMap<(u64, u64), std::sync::mpsc::Sender<bool>>>>;
type Tasks = Arc<Mutex<HashMap<u64, AbortHandle>>>;

async fn serve_connection(
    (mut reader, writer): (ReadHalf, WriteHalf),
    connection: u64,
    mut phase: watch::Receiver<Phase>,
    clients: Arc<AtomicU32>,
    token: Option<Arc<str>>,
) {
    let (out, outbox) = mpsc::unbounded_channel::<FromEngine>();
    let writing = spawn_writer(writer, outbox);

    let hello = read_message::<_, ToEngine>(&mut reader).await;
    let client_pid = match hello {
        Ok(Some(ToEngine::Hello {
            protocol: PROTOCOL_VERSION,
            token: presented,
            ..
        })) if !token_matches(token.as_deref(), presented.as_deref()) => {
            tracing::warn!(connection, "refused a connection without the right token");
            let error = Error::Backend(
                "the engine refused the connection: wrong or missing token".to_owned(),
            );
            return refuse(out, writing, error).await;
        }
        Ok(Some(ToEngine::Hello {
            protocol: PROTOCOL_VERSION,
            pid,
            ..
        })) => pid,
        Ok(Some(ToEngine::Hello {
            protocol, version, ..
        })) => {
            let error = Error::Internal(format!(
                "this engine speaks protocol {PROTOCOL_VERSION} (wellspring {}); the client speaks {protocol} (wellspring {version})",
                env!("CARGO_PKG_VERSION")
            ));
            return refuse(out, writing, error).await;
        }
        _ => return,
    };
    tracing::info!(connection, client_pid, "client connected");

    let (engine, facts) = loop {
        let current = phase.borrow_and_update().clone();
        match current {
            Phase::Loading(progress) => {
                let _ = out.send(FromEngine::Loading { progress });
            }
            Phase::Ready(engine, facts) => break (engine, facts),
            Phase::Failed(error) => return refuse(out, writing, error).await,
        }
        if phase.changed().await.is_err() {
            return;
        }
    };
    let _ = out.send(FromEngine::Ready { facts });

    let verdicts: Verdicts = Arc::default();
    let tasks: Tasks = Arc::default();
    let document = |name: &str| format!("{connection}|{name}");
    loop {
        // Many clients, one runtime: a connection with frames waiting gives the others a turn.
        tokio::task::consume_budget().await;
        let message = match read_message::<_, ToEngine>(&mut reader).await {
            Ok(Some(message)) => message,
            Ok(None) => break,
            Err(error) => {
                tracing::warn!(connection, %error, "dropping the client");
                break;
            }
        };
        match message {
            ToEngine::Hello { .. } => {}
            ToEngine::Complete {
                id,
                mut request,
                done_checks,
            } => {
                // Two windows may have the same file open with different text: their requests
                // must not replace each other.
                request.document = document(&request.document);
                request.client = connection as u32;
                if done_checks {
                    request.done_when =
                        Some(remote_done_check(id, out.clone(), Arc::clone(&verdicts)));
                }
                // Submitted here, in the order the client sent them; only the wait is spawned.
                let completion = engine.complete(request);
                let reply = out.clone();
                let running = Arc::clone(&tasks);
                let task = tokio::spawn(async move {
                    let result = completion.await;
                    lock(&running).remove(&id);
                    let _ = reply.send(FromEngine::Completed { id, result });
                });
                lock(&tasks).insert(id, task.abort_handle());
            }
            ToEngine::Verdict { id, check, done } => {
                if let Some(verdict) = lock(&verdicts).remove(&(id, check)) {
                    let _ = verdict.send(done);
                }
            }
            ToEngine::Chat { id, request } => {
                // Submitted here, in the order the client sent them; only the wait is spawned.
                let (deltas, mut delta_rx) = mpsc::unbounded_channel();
                let chat = engine.chat(request, deltas);
                let reply = out.clone();
                let running = Arc::clone(&tasks);
                let task = tokio::spawn(async move {
                    tokio::pin!(chat);
                    let result = loop {
                        tokio::select! {
                            Some(text) = delta_rx.recv() => {
                                let _ = reply.send(FromEngine::ChatDelta { id, text });
                            }
                            result = &mut chat => break result,
                        }
                    };
                    while let Ok(text) = delta_rx.try_recv() {
                        let _ = reply.send(FromEngine::ChatDelta { id, text });
                    }
                    lock(&running).remove(&id);
                    let _ = reply.send(FromEngine::ChatDone { id, result });
                });
                lock(&tasks).insert(id, task.abort_handle());
            }
            ToEngine::Drop { id } => {
                if let Some(task) = lock(&tasks).remove(&id) {
                    task.abort();
                }
            }
            ToEngine::Warm { mut request } => {
                request.document = document(&request.document);
                request.client = connection as u32;
                engine.warm(request);
            }
            ToEngine::Info { id } => {
                if let Ok(info) = engine.info().await {
                    let info = LiveInfo {
                        stats: info.stats,
                        chat_model_state: info.chat_model_state,
                        n_clients: clients.load(Ordering::SeqCst),
                    };
                    let _ = out.send(FromEngine::Info { id, info });
                }
            }
            ToEngine::RecordDiscarded { n_tokens } => engine.record_discarded(n_tokens),
        }
    }
    // The client went away: whatever it asked for is nobody's any more.
    for (_, task) in lock(&tasks).drain() {
        task.abort();
    }
    lock(&verdicts).clear();
    drop(out);
    writing.abort();
    tracing::info!(connection, client_pid, "client disconnected");
}

/// Says why a connection cannot be served, and closes it once that is written.
async fn refuse(
    out: mpsc::UnboundedSender<FromEngine>,
    writing: tokio::task::JoinHandle<()>,
    error: Error,
) {
    let _ = out.send(FromEngine::Failed { error });
    drop(out);
    let _ = writing.await;
}

/// A `done_when` check for the engine thread that asks the language server: it sends the text and
/// waits (briefly) for the verdict. It is asked only at line ends and where a line's indentation
/// becomes known, so the wait is a round trip every few tokens.
fn remote_done_check(
    id: u64,
    out: mpsc::UnboundedSender<FromEngine>,
    verdicts: Verdicts,
) -> DoneCheck {
    let next_check = AtomicU64::new(0);
    DoneCheck::new(move |text| {
        let check = next_check.fetch_add(1, Ordering::Relaxed);
        let (verdict, answer) = std::sync::mpsc::channel();
        lock(&verdicts).insert((id, check), verdict);
        let asked = out
            .send(FromEngine::Check {
                id,
                check,
                text: text.to_owned(),
            })
            .is_ok();
        let done = asked
            && answer.recv_timeout(VERDICT_TIMEOUT).unwrap_or_else(|_| {
                tracing::debug!(id, check, "no verdict in time; generation goes on");
                false
            });
        lock(&verdicts).remove(&(id, check));
        done
    })
}

#[cfg(test)]
mod tests {
    use super::token_matches;

    #[test]
    fn tokens_are_required_only_where_one_is_set_and_must_match_exactly() {
        assert!(token_matches(None, None));
        assert!(token_matches(
            Some("s3cret-token-1234"),
            Some("s3cret-token-1234")
        ));
        assert!(!token_matches(Some("s3cret-token-1234"), None));
        assert!(!token_matches(
            Some("s3cret-token-1234"),
            Some("s3cret-token-123")
        ));
        assert!(!token_matches(
            Some("s3cret-token-1234"),
            Some("s3cret-token-12345")
        ));
        assert!(!token_matches(Some("s3cret-token-1234"), Some("")));
    }
}
