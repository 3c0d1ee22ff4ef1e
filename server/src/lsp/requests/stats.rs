//! `wellspring/stats`: the engine's counters and recent completion figures.

use tower_lsp_server::jsonrpc::Result;

use super::engine_unavailable;
use crate::lsp::ext::{CompletionFiguresResult, StatsResult};
use crate::lsp::{convert, Server};

pub(crate) async fn handle(server: &Server) -> Result<StatsResult> {
    let engine = server
        .state
        .engine()
        .ok_or_else(|| engine_unavailable(server))?;
    let stats = engine.stats().await;
    Ok(StatsResult {
        n_completions: stats.n_completions,
        n_served_without_inference: stats.n_served_without_inference,
        n_superseded: stats.n_superseded,
        n_abandoned: stats.n_abandoned,
        n_errors: stats.n_errors,
        n_chats: stats.n_chats,
        n_tokens_reused: stats.n_tokens_reused,
        n_tokens_evaluated: stats.n_tokens_evaluated,
        n_tokens_generated: stats.n_tokens_generated,
        n_tokens_discarded: stats.n_tokens_discarded,
        n_tokens_warmed: stats.n_tokens_warmed,
        n_tokens_drafted: stats.n_tokens_drafted,
        n_tokens_accepted: stats.n_tokens_accepted,
        recent: stats
            .recent
            .iter()
            .map(|figures| {
                let generation = &figures.generation;
                CompletionFiguresResult {
                    n_prompt: generation.n_prompt,
                    n_reused: generation.n_reused,
                    n_evaluated: generation.n_evaluated,
                    n_generated: generation.n_generated,
                    n_drafted: generation.n_drafted,
                    n_accepted: generation.n_accepted,
                    t_prefill_ms: generation.t_prefill_ms,
                    t_decode_ms: generation.t_decode_ms,
                    t_total_ms: figures.t_total_ms,
                    served_without_inference: figures.served_without_inference,
                    stop: convert::stop(figures.stop),
                }
            })
            .collect(),
    })
}
