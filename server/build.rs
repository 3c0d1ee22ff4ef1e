//! Build script: in a `dynamic-backends` build the binary links llama.cpp's and ggml's shared
//! libraries, which the build places beside it (target/PROFILE/, and deps/ for tests); the binary
//! finds them there, wherever that directory is moved, through an `$ORIGIN` run path.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_DYNAMIC_BACKENDS").is_some()
        && std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
    {
        println!("cargo:rustc-link-arg=-Wl,-rpath,$ORIGIN");
    }
}
