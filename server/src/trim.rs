//! Gives memory the allocator holds but no longer uses back to the system, once a minute.
//!
//! While someone types, the language server allocates and frees tens of thousands of small blocks
//! a second (JSON messages, prompt text, syntax trees; `heaptrack` counted 67,000 calls a second
//! in the soak benchmark), on several threads. glibc's allocator keeps freed blocks in per-thread
//! arenas and returns to the system only what lies at the top of the main heap, so the resident
//! size crept up by 0.6 to 1.3 MiB a minute while the live heap stayed flat (70 MiB at its peak).
//! `malloc_trim(0)` releases the free pages of every arena; once a minute it costs a few
//! milliseconds of one thread. The shared engine runs it too, for llama.cpp's allocations.
//!
//! The language server also keeps to one arena ([`one_arena`]): freed blocks spread over one
//! arena per thread leave more pages holding a single live block, which no trim can give back. In
//! a 6-minute soak side by side the server grew 1.2 MiB with one arena against 3.3 MiB without,
//! over the same 150 s after warm-up. Its threads mostly wait on the client and the engine; what
//! sharing one arena's lock costs a keystroke was not measured (`bench keystrokes` would show it).
//!
//! Since then Rust's own allocations go to mimalloc (`main.rs`), and the server's glibc heap holds
//! little besides the tokenizer's vocabulary that llama.cpp loads; this module still looks after
//! what llama.cpp allocates, in the server and above all in the engine.

use std::time::Duration;

/// How often freed memory is handed back.
const EVERY: Duration = Duration::from_secs(60);

/// Makes glibc's allocator serve every thread from one arena. Call it first thing, before other
/// threads start. Does nothing where the C library is not glibc.
pub fn one_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only sets a parameter of the allocator; called before any other thread
        // exists, nothing can be allocating concurrently.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
}

/// Starts a thread that hands freed memory back to the system every [`EVERY`], for the life of
/// the process. Does nothing where the C library is not glibc.
pub fn release_freed_memory_periodically() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let spawned = std::thread::Builder::new()
            .name("trim".to_owned())
            .spawn(|| loop {
                std::thread::sleep(EVERY);
                // SAFETY: malloc_trim only walks the allocator's own free lists under its locks;
                // it takes no pointer and is safe to call from any thread at any time.
                unsafe {
                    libc::malloc_trim(0);
                }
            });
        if let Err(error) = spawned {
            tracing::warn!("cannot start the memory trimming thread: {error}");
        }
    }
}
