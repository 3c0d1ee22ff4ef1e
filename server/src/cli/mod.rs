//! Subcommands other than `serve`: each file implements one, called from `main.rs`.

pub mod bench;
pub mod complete;
pub mod prompt;
