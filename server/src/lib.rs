//! Wellspring: a language server that keeps a coding model resident and serves completions.
//!
//! The crate is one library with a thin binary (`main.rs`) on top. Each module owns one
//! concern and exposes a small `pub` façade; see `ARCHITECTURE.md` for the map and the
//! invariants that keep the boundaries honest.

pub(crate) mod assist;
pub mod cli;
pub mod config;
pub mod context;
pub mod docs;
pub(crate) mod engine;
pub(crate) mod index;
pub mod lsp;
pub(crate) mod model;
pub mod syntax;
#[cfg(test)]
mod testing;
mod text;
pub mod trim;

pub use engine::{wait_for_llama_threads, LlamaErrors};
