//! Build script: in a `dynamic-backends` build the binary links llama.cpp's and ggml's shared
//! libraries, which the build places beside it (target/PROFILE/, and deps/ for tests); the binary
//! finds them there, wherever that directory is moved, through an `$ORIGIN` run path.
//!
//! ggml's CPU backends, which that build opens at run time, need GCC's OpenMP runtime. Opened
//! libraries look for their dependencies in the system's directories only, and minimal systems
//! lack `libgomp.so.1`; so the binary itself depends on it, found beside it (the portable release
//! carries a copy, scripts/dist.sh) or in the system, and the backends find it already loaded.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_DYNAMIC_BACKENDS").is_some()
        && std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
    {
        println!("cargo:rustc-link-arg=-Wl,-rpath,$ORIGIN");
        println!("cargo:rustc-link-arg=-Wl,--push-state,--no-as-needed,-lgomp,--pop-state");
    }
}
