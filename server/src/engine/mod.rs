//! Inference: the only code that sees `llama_cpp_2`.
//!
//! One OS thread owns the model and its context for life (a `LlamaContext` is not `Send`);
//! async callers talk to it through channels.

mod prompt;
pub mod vocab;

pub use prompt::{ContextChunk, FimPrompt, ModelCaps, TokenCounter};
