//! `wellspring engine`: runs the shared engine in the foreground. Language servers start it
//! themselves when none runs (with the flags below filled in); run it by hand to watch its log,
//! or to keep a model loaded while no editor is open.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;

use crate::config::{Config, ModelConfig};
use crate::engine::service::{self, server};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The socket to listen on (default: the one language servers with this configuration use).
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// The model file, already resolved (default: `model.path`, resolved and downloaded if need be).
    #[arg(long, value_name = "PATH")]
    pub model_file: Option<PathBuf>,
    /// The `[model]` settings as JSON (default: those of the configuration).
    #[arg(long, value_name = "JSON", hide = true)]
    pub model_config: Option<String>,
    /// Exit this long after the last client left (default: `engine.idle_exit_seconds`; 0: never).
    #[arg(long, value_name = "SECONDS")]
    pub idle_exit_seconds: Option<u64>,
    /// Serve a team's language servers on TCP (`tcp:ADDR:PORT`) instead of this user's socket;
    /// every connection must present the token.
    #[arg(long, value_name = "tcp:ADDR:PORT")]
    pub listen: Option<String>,
    /// A file holding the token TCP clients must present (`WELLSPRING_ENGINE_TOKEN` overrides it).
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<String>,
}

pub async fn run(config: &Config, args: Args) -> anyhow::Result<()> {
    let model_config: ModelConfig = match &args.model_config {
        Some(json) => serde_json::from_str(json).context("invalid --model-config")?,
        None => config.model.clone(),
    };
    let model_path = match &args.model_file {
        Some(path) => path.clone(),
        None => {
            let spec = model_config.path.clone();
            if crate::engine::http::is_endpoint(&spec) {
                anyhow::bail!(
                    "{spec} is a model on an inference server, which needs no engine of Wellspring's: point the editors' model.path at it (docs/teams.md)"
                );
            }
            tokio::task::spawn_blocking(move || {
                crate::lsp::engine_loader::resolve_model(&spec, |_| {})
            })
            .await?
            .map_err(anyhow::Error::msg)?
        }
    };
    let listen = match &args.listen {
        Some(listen) => {
            let Some(address) = listen.strip_prefix("tcp:") else {
                anyhow::bail!("--listen takes tcp:ADDR:PORT, not {listen:?}");
            };
            let token_file = args
                .token_file
                .clone()
                .unwrap_or_else(|| config.engine.token_file.clone());
            server::Listen::Tcp {
                address: address.to_owned(),
                token: service::token(&token_file).map_err(anyhow::Error::msg)?,
            }
        }
        None => server::Listen::Unix(args.socket.unwrap_or_else(|| {
            service::socket_path(
                &service::socket_dir(&config.engine),
                &model_path,
                &model_config,
            )
        })),
    };
    let idle_exit = Duration::from_secs(
        args.idle_exit_seconds
            .unwrap_or(config.engine.idle_exit_seconds),
    );
    match &listen {
        server::Listen::Unix(socket) => {
            eprintln!(
                "wellspring engine: {} on {}",
                model_path.display(),
                socket.display()
            )
        }
        server::Listen::Tcp { address, .. } => {
            eprintln!(
                "wellspring engine: {} on tcp:{address}",
                model_path.display()
            )
        }
    }
    let chat_model = crate::lsp::engine_loader::chat_model(&model_config.chat_path);
    server::serve(server::ServeOptions {
        listen,
        model_path,
        config: model_config,
        chat_model,
        idle_exit,
    })
    .await?;
    Ok(())
}
