//! Subcommands other than `serve`: each file implements one, called from `main.rs`.

pub mod bench;
pub mod bench_contention;
pub mod bench_context;
pub mod bench_quality;
pub mod bench_soak;
pub mod bench_speculative;
pub mod bench_users;
pub mod complete;
pub mod doctor;
pub mod engine;
pub mod model;
pub mod prompt;
