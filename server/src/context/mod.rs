//! Prompt builder: a pure function from a snapshot of the editor state, a cursor and a token
//! budget to the prompt the engine evaluates, plus the tree-sitter clean-up of what comes back.
//!
//! Invariant: nothing here does IO, reads a clock or touches a global; the same snapshot, cursor,
//! budget and token counter always give the same prompt, byte for byte (the compiled queries in
//! `syntax` are the one cache here, and they are constants). The counter the engine passes in
//! remembers counts by text (`engine::CachedTokenCounter`), which changes how fast a count comes
//! back, never its value. Filling the workspace index from disk is `index/`'s job; rendering the
//! prompt to tokens is the engine's.

mod build;
mod ledger;
mod neighbourhood;
mod postprocess;
mod snapshot;
mod symbols;

#[cfg(test)]
mod tests;

pub use build::{build, Budget, BuiltPrompt, Section};
pub use neighbourhood::{warm_line_counts, MAX_WARM_LINES};
pub use postprocess::{done_check, postprocess};
pub use snapshot::{display_path, ContextSnapshot, RecentChunk, RecentChunks, RecentKind};
