//! `initialized`: start loading the model and indexing the workspace, both in the background.

use std::sync::Arc;

use crate::index::ScanConfig;
use crate::lsp::{engine_loader, Server};

pub(crate) async fn handle(server: &Server) {
    tracing::info!("client initialized");
    engine_loader::load(server.client.clone(), Arc::clone(&server.state));
    start_index_scan(server);
}

/// Walks the workspace once (respecting `.gitignore`) to fill the definitions index.
pub(crate) fn start_index_scan(server: &Server) {
    let config = server.state.config();
    let index = server.state.index();
    if !config.context.index_workspace || index.root().is_none() {
        return;
    }
    let scan_config = ScanConfig {
        max_files: config.context.max_indexed_files as usize,
        ..ScanConfig::default()
    };
    tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        match index.scan(&scan_config) {
            Ok(stats) => tracing::info!(
                n_files_indexed = stats.n_files_indexed,
                n_files_skipped = stats.n_files_skipped,
                t_ms = started.elapsed().as_millis() as u64,
                "workspace indexed"
            ),
            Err(error) => tracing::warn!("workspace index: {error}"),
        }
    });
}
