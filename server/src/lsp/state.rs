//! Server-wide state shared by all handlers: documents, configuration, negotiated encoding.

use std::path::PathBuf;
use std::sync::{Mutex, RwLock};

use crate::config::{Config, Layers};
use crate::docs::DocumentStore;

use super::convert::PositionEncoding;

pub struct State {
    pub documents: DocumentStore,
    encoding: RwLock<PositionEncoding>,
    layers: Mutex<Layers>,
    config: RwLock<Config>,
    workspace_roots: RwLock<Vec<PathBuf>>,
}

impl State {
    /// `layers` holds the file and CLI layers; the client's layers arrive later.
    pub fn new(layers: Layers) -> State {
        let config = layers.resolve().unwrap_or_else(|error| {
            tracing::error!("{error}; using defaults");
            Config::default()
        });
        State {
            documents: DocumentStore::new(),
            encoding: RwLock::new(PositionEncoding::Utf16),
            layers: Mutex::new(layers),
            config: RwLock::new(config),
            workspace_roots: RwLock::new(Vec::new()),
        }
    }

    pub fn encoding(&self) -> PositionEncoding {
        *self
            .encoding
            .read()
            .expect("encoding lock is never poisoned")
    }

    pub fn set_encoding(&self, encoding: PositionEncoding) {
        *self
            .encoding
            .write()
            .expect("encoding lock is never poisoned") = encoding;
    }

    pub fn config(&self) -> Config {
        self.config
            .read()
            .expect("config lock is never poisoned")
            .clone()
    }

    /// Replaces one client layer and re-resolves; on error the previous config stays in force.
    pub fn update_layers(
        &self,
        update: impl FnOnce(&mut Layers),
    ) -> Result<Config, crate::config::Error> {
        let mut layers = self.layers.lock().expect("layers lock is never poisoned");
        let mut candidate = layers.clone();
        update(&mut candidate);
        let config = candidate.resolve()?;
        *layers = candidate;
        *self.config.write().expect("config lock is never poisoned") = config.clone();
        Ok(config)
    }

    pub fn workspace_roots(&self) -> Vec<PathBuf> {
        self.workspace_roots
            .read()
            .expect("roots lock is never poisoned")
            .clone()
    }

    pub fn set_workspace_roots(&self, roots: Vec<PathBuf>) {
        *self
            .workspace_roots
            .write()
            .expect("roots lock is never poisoned") = roots;
    }
}
