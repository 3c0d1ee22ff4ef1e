//! The shared engine: one engine process per user and model configuration, which every editor
//! window's language server reaches through a Unix socket, so a model is loaded once however many
//! windows are open.
//!
//! The socket lives in the user's runtime directory (mode 0700 directory, 0600 socket) and is
//! named after everything that shapes the engine (the binary, the model file, the model settings),
//! so windows configured alike share an engine and any difference gets an engine of its own. The
//! first language server to need it starts `wellspring engine` detached; the engine exits after
//! an idle timeout with no client. `protocol` says what crosses the socket, `server` is the
//! engine's side, `client` the language server's.

mod client;
pub mod protocol;
pub mod server;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

pub use client::Endpoint;
pub(crate) use client::{connect, Remote};

use crate::config::{EngineConfig, ModelConfig};
use crate::engine::Error;

/// How long a language server waits for an engine it started to listen (it binds its socket
/// before loading the model, so this is process start-up only).
const START_TIMEOUT: Duration = Duration::from_secs(30);
const START_POLL: Duration = Duration::from_millis(20);

/// The directory shared engines' sockets and logs go to.
pub fn socket_dir(config: &EngineConfig) -> PathBuf {
    if !config.socket_dir.trim().is_empty() {
        return PathBuf::from(config.socket_dir.trim());
    }
    match std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|dir| dir.is_absolute())
    {
        Some(runtime) => runtime.join("wellspring"),
        None => std::env::temp_dir().join(format!("wellspring-{}", current_uid())),
    }
}

fn current_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    // The owner of a file this process just may create is this process's user; /proc/self is
    // owned by the process's effective user.
    std::fs::metadata("/proc/self").map_or(0, |metadata| metadata.uid())
}

/// The socket of the engine for this model file and these settings, run by this binary.
pub fn socket_path(dir: &Path, model_path: &Path, config: &ModelConfig) -> PathBuf {
    let mut hasher = Sha256::new();
    hasher.update(protocol::PROTOCOL_VERSION.to_le_bytes());
    hasher.update(env!("CARGO_PKG_VERSION").as_bytes());
    // A rebuilt or upgraded binary gets an engine of its own; the old one idles out.
    if let Ok(exe) = std::env::current_exe() {
        hasher.update(exe.as_os_str().as_encoded_bytes());
        if let Ok(modified) = std::fs::metadata(&exe).and_then(|metadata| metadata.modified()) {
            hasher.update(format!("{modified:?}").as_bytes());
        }
    }
    hasher.update(model_path.as_os_str().as_encoded_bytes());
    hasher.update(serde_json::to_vec(config).unwrap_or_default());
    let digest = hasher.finalize();
    let key: String = digest[..8]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    dir.join(format!("engine-{key}.sock"))
}

/// The token a team's engine requires: `WELLSPRING_ENGINE_TOKEN`, else the file named.
pub fn token(token_file: &str) -> Result<String, String> {
    if let Some(token) = std::env::var("WELLSPRING_ENGINE_TOKEN")
        .ok()
        .filter(|token| !token.trim().is_empty())
    {
        return Ok(token.trim().to_owned());
    }
    let token_file = token_file.trim();
    if token_file.is_empty() {
        return Err(
            "no engine token: set WELLSPRING_ENGINE_TOKEN or engine.token_file (--token-file)"
                .to_owned(),
        );
    }
    std::fs::read_to_string(token_file)
        .map(|token| token.trim().to_owned())
        .map_err(|error| format!("cannot read the engine token file {token_file}: {error}"))
}

/// `engine.remote` as an endpoint: `None` when empty, an error when it is not `tcp:HOST:PORT` or
/// no token is to be had.
pub fn remote_endpoint(config: &EngineConfig) -> Result<Option<Endpoint>, String> {
    let remote = config.remote.trim();
    if remote.is_empty() {
        return Ok(None);
    }
    let Some(address) = remote
        .strip_prefix("tcp:")
        .filter(|address| address.contains(':'))
    else {
        return Err(format!(
            "engine.remote must be tcp:HOST:PORT, not {remote:?}"
        ));
    };
    Ok(Some(Endpoint::Tcp {
        address: address.to_owned(),
        token: token(&config.token_file)?,
    }))
}

/// How a language server reaches its shared engine.
pub struct Launch<'a> {
    pub config: &'a ModelConfig,
    pub engine: &'a EngineConfig,
    pub model_path: &'a Path,
    /// Where the engine's log goes when this server starts it (its socket's name with `.log`
    /// otherwise).
    pub log_file: Option<&'a Path>,
    /// A team's engine to use instead of one on this machine.
    pub remote: Option<Endpoint>,
}

/// Connects to the shared engine for this configuration, starting it first when none runs.
/// Reports the model's load progress while it loads.
pub(crate) async fn connect_or_start(
    launch: &Launch<'_>,
    on_progress: Option<Box<dyn FnMut(f32) + Send>>,
) -> Result<Remote, Error> {
    if let Some(endpoint) = &launch.remote {
        return connect(endpoint, on_progress).await;
    }
    let socket = socket_path(&socket_dir(launch.engine), launch.model_path, launch.config);
    if accepts_connections(&socket) {
        tracing::info!(socket = %socket.display(), "using the running shared engine");
        return connect(&Endpoint::Unix(socket), on_progress).await;
    }
    let log = launch
        .log_file
        .map_or_else(|| socket.with_extension("log"), Path::to_owned);
    let mut child = start_engine(
        launch.config,
        launch.model_path,
        &socket,
        launch.engine.idle_exit_seconds,
        &log,
    )?;
    tracing::info!(socket = %socket.display(), pid = child.id(), log = %log.display(), "started a shared engine");
    wait_until_listening(&socket, &mut child, &log).await?;
    // Reap the engine when it exits while this server still runs; otherwise init does.
    std::thread::spawn(move || {
        let _ = child.wait();
    });
    connect(&Endpoint::Unix(socket), on_progress).await
}

/// Waits until the engine `child` started listens on `socket` (it binds before loading its
/// model), or says why it will not.
pub async fn wait_until_listening(
    socket: &Path,
    child: &mut std::process::Child,
    log: &Path,
) -> Result<(), Error> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if accepts_connections(socket) {
            return Ok(());
        }
        // An engine that exited at once either found another one serving the socket (which
        // shows up here shortly) or could not start at all.
        if let Ok(Some(status)) = child.try_wait() {
            if !status.success() {
                return Err(Error::Backend(format!(
                    "the shared engine exited at start ({status}); its log is {}",
                    log.display()
                )));
            }
        }
        if Instant::now() >= deadline {
            return Err(Error::Backend(format!(
                "the shared engine did not listen on {} within {} s; its log is {}",
                socket.display(),
                START_TIMEOUT.as_secs(),
                log.display()
            )));
        }
        tokio::time::sleep(START_POLL).await;
    }
}

/// Starts `wellspring engine` on `socket`, detached from this process's group so that the editor
/// stopping this server leaves the engine to its other clients.
pub fn start_engine(
    config: &ModelConfig,
    model_path: &Path,
    socket: &Path,
    idle_exit_seconds: u64,
    log: &Path,
) -> Result<std::process::Child, Error> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe()
        .map_err(|error| Error::Internal(format!("cannot find this program's path: {error}")))?;
    if let Some(dir) = socket.parent() {
        create_private_dir(dir)?;
    }
    let config = serde_json::to_string(config)
        .map_err(|error| Error::Internal(format!("cannot pass the model settings: {error}")))?;
    let mut command = Command::new(exe);
    command
        .arg("engine")
        .arg("--socket")
        .arg(socket)
        .arg("--model-file")
        .arg(model_path)
        .arg("--model-config")
        .arg(config)
        .arg("--idle-exit-seconds")
        .arg(idle_exit_seconds.to_string())
        .arg("--log-file")
        .arg(log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    command
        .spawn()
        .map_err(|error| Error::Backend(format!("cannot start the shared engine: {error}")))
}

fn create_private_dir(dir: &Path) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)))
        .map_err(|error| {
            Error::Backend(format!(
                "cannot prepare the engine socket directory {}: {error}",
                dir.display()
            ))
        })
}

/// Whether something accepts connections at a socket path (the connection is closed at once).
fn accepts_connections(socket: &Path) -> bool {
    std::os::unix::net::UnixStream::connect(socket).is_ok()
}
