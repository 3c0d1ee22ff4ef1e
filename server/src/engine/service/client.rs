//! A language server's connection to a shared engine: requests go out as messages, answers come
//! back matched by id, and a completion's `done_when` check is answered here, in the process that
//! has the document.
//!
//! Tokens are counted locally with the model's vocabulary (loaded without its weights), so
//! building a prompt never waits for the socket.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpStream, UnixStream};
use tokio::sync::{mpsc, oneshot, watch};

use super::protocol::{
    read_message, spawn_writer, write_message, EngineFacts, FromEngine, LiveInfo, ReadHalf,
    ToEngine, WriteHalf, PROTOCOL_VERSION,
};
use crate::engine::vocab::Vocab;
use crate::engine::{
    lock, CachedTokenCounter, ChatOutcome, ChatRequest, Completion, CompletionRequest, DoneCheck,
    Error, TokenCounter,
};

enum Pending {
    Completion {
        reply: oneshot::Sender<Result<Completion, Error>>,
        done_when: Option<DoneCheck>,
    },
    Chat {
        deltas: mpsc::UnboundedSender<String>,
        reply: oneshot::Sender<Result<ChatOutcome, Error>>,
    },
    Info {
        reply: oneshot::Sender<Result<LiveInfo, Error>>,
    },
}

impl Pending {
    /// Answers the request with `error` (the connection ended).
    fn fail(self, error: Error) {
        let _ = match self {
            Pending::Completion { reply, .. } => reply.send(Err(error)).is_ok(),
            Pending::Chat { reply, .. } => reply.send(Err(error)).is_ok(),
            Pending::Info { reply } => reply.send(Err(error)).is_ok(),
        };
    }
}

type PendingMap = Arc<Mutex<HashMap<u64, Pending>>>;

pub(crate) struct Remote {
    outgoing: mpsc::UnboundedSender<ToEngine>,
    pending: PendingMap,
    next_id: AtomicU64,
    pub facts: EngineFacts,
    pub token_counter: Arc<dyn TokenCounter>,
    pub endpoint: Endpoint,
    /// Becomes `Some(reason)` when the connection ends.
    closed: watch::Receiver<Option<String>>,
    /// The connection's reader and writer, stopped (closing the socket) when this is dropped:
    /// the reader keeps a sender for verdicts, so neither would end on its own.
    tasks: [tokio::task::AbortHandle; 2],
}

impl Drop for Remote {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Where an engine listens, from a language server's side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Unix(PathBuf),
    /// `host:port` of a team's engine, and the token it requires.
    Tcp {
        address: String,
        token: String,
    },
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(socket) => write!(formatter, "{}", socket.display()),
            Endpoint::Tcp { address, .. } => write!(formatter, "tcp:{address}"),
        }
    }
}

/// Connects to the engine at `endpoint`, waits until its model is loaded (reporting its progress)
/// and returns the connection.
pub(crate) async fn connect(
    endpoint: &Endpoint,
    mut on_progress: Option<Box<dyn FnMut(f32) + Send>>,
) -> Result<Remote, Error> {
    let cannot = |error: std::io::Error| {
        Error::Backend(format!(
            "cannot connect to the engine at {endpoint}: {error}"
        ))
    };
    // Owned halves, not `tokio::io::split`'s: reading and writing never wait for each other.
    let (mut reader, mut writer, token): (ReadHalf, WriteHalf, Option<String>) = match endpoint {
        Endpoint::Unix(socket) => {
            let (reader, writer) = UnixStream::connect(socket)
                .await
                .map_err(cannot)?
                .into_split();
            (Box::new(reader), Box::new(writer), None)
        }
        Endpoint::Tcp { address, token } => {
            let stream = TcpStream::connect(address).await.map_err(cannot)?;
            let _ = stream.set_nodelay(true);
            let (reader, writer) = stream.into_split();
            (Box::new(reader), Box::new(writer), Some(token.clone()))
        }
    };
    let lost = |error: String| Error::Backend(format!("the engine connection failed: {error}"));
    write_message(
        &mut writer,
        &ToEngine::Hello {
            protocol: PROTOCOL_VERSION,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            pid: std::process::id(),
            token,
        },
    )
    .await
    .map_err(|error| lost(error.to_string()))?;
    let facts = loop {
        match read_message::<_, FromEngine>(&mut reader).await {
            Ok(Some(FromEngine::Loading { progress })) => {
                if let Some(on_progress) = on_progress.as_mut() {
                    on_progress(progress);
                }
            }
            Ok(Some(FromEngine::Ready { facts })) => break facts,
            Ok(Some(FromEngine::Failed { error })) => return Err(error),
            Ok(Some(other)) => {
                return Err(lost(format!("unexpected message before ready: {other:?}")))
            }
            Ok(None) => {
                return Err(lost(
                    "the engine closed the connection while loading".into(),
                ))
            }
            Err(error) => return Err(lost(error.to_string())),
        }
    };
    let model_path = facts.model_path.clone();
    let vocab = tokio::task::spawn_blocking(move || {
        // The engine's own model file when this machine has it; an engine on another machine
        // has its model out of reach, and prompts are then counted with the bundled
        // Qwen2.5-Coder vocabulary (exact for that family, close for others).
        if model_path.is_file() {
            Vocab::load(&model_path)
        } else {
            tracing::info!(model = %model_path.display(), "the engine's model is not on this machine; counting tokens with the bundled Qwen2.5-Coder vocabulary");
            Vocab::load_default()
        }
    })
    .await
    .map_err(|error| Error::Internal(format!("loading the vocabulary crashed: {error}")))?
    .map_err(|error| Error::Backend(error.to_string()))?;
    let token_counter: Arc<dyn TokenCounter> = Arc::new(CachedTokenCounter::new(vocab));

    let (outgoing, outbox) = mpsc::unbounded_channel::<ToEngine>();
    let (closed_tx, closed) = watch::channel(None);
    let pending: PendingMap = Arc::default();
    let writing = spawn_writer(writer, outbox);

    let reader_pending = Arc::clone(&pending);
    let answers = outgoing.clone();
    let reading = tokio::spawn(async move {
        let reason = loop {
            match read_message::<_, FromEngine>(&mut reader).await {
                Ok(Some(message)) => {
                    dispatch(message, &reader_pending, &answers);
                    // A chat streams faster than it is read: without this the loop would keep
                    // its worker thread while frames are waiting, and hold up the editor's
                    // requests on this process's other tasks.
                    tokio::task::consume_budget().await;
                }
                Ok(None) => break "the engine closed the connection".to_owned(),
                Err(error) => break error.to_string(),
            }
        };
        // Everything still waiting learns that the engine is gone.
        for (_, pending) in lock(&reader_pending).drain() {
            pending.fail(Error::Stopped);
        }
        closed_tx.send_if_modified(|closed| {
            closed.get_or_insert(reason);
            true
        });
    });

    Ok(Remote {
        outgoing,
        pending,
        next_id: AtomicU64::new(1),
        facts,
        token_counter,
        endpoint: endpoint.clone(),
        closed,
        tasks: [reading.abort_handle(), writing.abort_handle()],
    })
}

fn dispatch(message: FromEngine, pending: &PendingMap, answers: &mpsc::UnboundedSender<ToEngine>) {
    match message {
        FromEngine::Check { id, check, text } => {
            let done_when = match lock(pending).get(&id) {
                Some(Pending::Completion { done_when, .. }) => done_when.clone(),
                _ => None,
            };
            let done = done_when.is_some_and(|done_when| (done_when.0)(&text));
            let _ = answers.send(ToEngine::Verdict { id, check, done });
        }
        FromEngine::Completed { id, result } => {
            if let Some(Pending::Completion { reply, .. }) = lock(pending).remove(&id) {
                let _ = reply.send(result);
            }
        }
        FromEngine::ChatDelta { id, text } => {
            if let Some(Pending::Chat { deltas, .. }) = lock(pending).get(&id) {
                let _ = deltas.send(text);
            }
        }
        FromEngine::ChatDone { id, result } => {
            if let Some(Pending::Chat { reply, .. }) = lock(pending).remove(&id) {
                let _ = reply.send(result);
            }
        }
        FromEngine::Info { id, info } => {
            if let Some(Pending::Info { reply }) = lock(pending).remove(&id) {
                let _ = reply.send(Ok(info));
            }
        }
        FromEngine::Loading { .. } | FromEngine::Ready { .. } | FromEngine::Failed { .. } => {}
    }
}

/// Sends `Drop` for a request whose caller stopped waiting (its future was dropped).
struct DropGuard {
    outgoing: mpsc::UnboundedSender<ToEngine>,
    pending: PendingMap,
    id: u64,
    armed: bool,
}

impl Drop for DropGuard {
    fn drop(&mut self) {
        if self.armed {
            lock(&self.pending).remove(&self.id);
            let _ = self.outgoing.send(ToEngine::Drop { id: self.id });
        }
    }
}

impl Remote {
    /// Sends request `message(id)` now, so requests reach the engine in the order they were made,
    /// and returns the wait for its answer; dropping that future tells the engine to stop.
    fn request<T: Send + 'static>(
        &self,
        pending: impl FnOnce(oneshot::Sender<Result<T, Error>>) -> Pending,
        message: impl FnOnce(u64) -> ToEngine,
    ) -> impl Future<Output = Result<T, Error>> + Send + 'static {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (reply, answer) = oneshot::channel();
        lock(&self.pending).insert(id, pending(reply));
        let guard = DropGuard {
            outgoing: self.outgoing.clone(),
            pending: Arc::clone(&self.pending),
            id,
            armed: true,
        };
        let sent = self.send(message(id));
        async move {
            // The whole guard moves in (not just the field set below), so it lives as long as
            // the wait.
            let mut guard = guard;
            sent?;
            let result = answer.await.map_err(|_| Error::Stopped)?;
            guard.armed = false;
            result
        }
    }

    fn send(&self, message: ToEngine) -> Result<(), Error> {
        if self.closed.borrow().is_some() {
            return Err(Error::Stopped);
        }
        self.outgoing.send(message).map_err(|_| Error::Stopped)
    }

    pub(crate) fn complete(
        &self,
        request: CompletionRequest,
    ) -> impl Future<Output = Result<Completion, Error>> + Send + 'static {
        let done_when = request.done_when.clone();
        self.request(
            |reply| Pending::Completion { reply, done_when },
            |id| ToEngine::Complete {
                id,
                done_checks: request.done_when.is_some(),
                request,
            },
        )
    }

    pub(crate) fn chat(
        &self,
        request: ChatRequest,
        deltas: mpsc::UnboundedSender<String>,
    ) -> impl Future<Output = Result<ChatOutcome, Error>> + Send + 'static {
        self.request(
            |reply| Pending::Chat { deltas, reply },
            |id| ToEngine::Chat { id, request },
        )
    }

    pub(crate) fn warm(&self, request: CompletionRequest) {
        let _ = self.send(ToEngine::Warm { request });
    }

    pub(crate) fn record_discarded(&self, n_tokens: u32) {
        let _ = self.send(ToEngine::RecordDiscarded { n_tokens });
    }

    pub(crate) fn info(&self) -> impl Future<Output = Result<LiveInfo, Error>> + Send + 'static {
        self.request(|reply| Pending::Info { reply }, |id| ToEngine::Info { id })
    }

    /// Resolves when the connection to the engine ends, with why; holds no part of the
    /// connection, so waiting on it keeps nothing open.
    pub(crate) fn closed(&self) -> impl Future<Output = String> + Send + 'static {
        let mut closed = self.closed.clone();
        async move {
            loop {
                if let Some(reason) = closed.borrow_and_update().clone() {
                    return reason;
                }
                if closed.changed().await.is_err() {
                    return "the engine connection ended".to_owned();
                }
            }
        }
    }
}
