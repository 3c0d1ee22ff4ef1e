//! `wellspring model …` end to end: the real binary, a 127.0.0.1 server standing in for
//! Hugging Face (found through `HF_ENDPOINT`), and a cache under a temporary `XDG_CACHE_HOME`.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::http_server::{Route, TestServer};
use crate::support::tiny_model;
use anyhow::{ensure, Context as _};

fn wellspring(args: &[&str], endpoint: &str, home: &Path) -> anyhow::Result<Output> {
    run_under(&[], args, endpoint, home)
}

/// Runs the binary with `args` as the last part of the command line `wrapper` (empty: on its
/// own), against the hub at `endpoint`, with `home` as the user's home and cache.
fn run_under(
    wrapper: &[&str],
    args: &[&str],
    endpoint: &str,
    home: &Path,
) -> anyhow::Result<Output> {
    let binary = env!("CARGO_BIN_EXE_wellspring");
    wellspring::cli::bench_soak::command_under(wrapper, binary)
        .args(args)
        .env("HF_ENDPOINT", endpoint)
        .env_remove("HF_TOKEN")
        .env("HOME", home)
        .env("XDG_CACHE_HOME", home.join("cache"))
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("RUST_BACKTRACE", "0")
        .output()
        .with_context(|| format!("cannot run {binary} under {wrapper:?}"))
}

/// A hub serving the tiny model as `hf:acme/coder-GGUF/coder-f16.gguf`, an empty home, and where
/// a pull caches the model.
struct Hub {
    model: Vec<u8>,
    server: TestServer,
    home: tempfile::TempDir,
    spec: &'static str,
    cached: PathBuf,
}

impl Hub {
    fn start() -> anyhow::Result<Hub> {
        let model = std::fs::read(tiny_model())?;
        let server = TestServer::start();
        server.route(
            "/acme/coder-GGUF/resolve/main/coder-f16.gguf",
            Route::file(model.clone()),
        );
        let home = tempfile::tempdir()?;
        let cached = home
            .path()
            .join("cache/wellspring/models/hf/acme/coder-GGUF/main/coder-f16.gguf");
        Ok(Hub {
            model,
            server,
            home,
            spec: "hf:acme/coder-GGUF/coder-f16.gguf",
            cached,
        })
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn pull_path_info_list() -> anyhow::Result<()> {
    let Hub {
        model,
        server,
        home,
        spec,
        cached,
    } = Hub::start()?;

    // Before a pull, `path` refuses to download and says what to run.
    let output = wellspring(&["model", "path", spec], &server.url, home.path())?;
    ensure!(
        !output.status.success(),
        "path without --download succeeded"
    );
    ensure!(
        stderr(&output).contains(&format!(
            "{spec} is not downloaded yet: run `wellspring model pull {spec}`"
        )),
        "stderr: {}",
        stderr(&output)
    );
    ensure!(server.requests().is_empty(), "path touched the network");

    let output = wellspring(&["model", "pull", spec], &server.url, home.path())?;
    ensure!(output.status.success(), "pull failed: {}", stderr(&output));
    assert_eq!(stdout(&output), format!("{}\n", cached.display()));
    assert_eq!(std::fs::read(&cached)?, model);

    let output = wellspring(&["model", "path", spec], &server.url, home.path())?;
    ensure!(output.status.success(), "path failed: {}", stderr(&output));
    assert_eq!(stdout(&output), format!("{}\n", cached.display()));

    // The configured model (--model) is the default spec.
    let output = wellspring(
        &["--model", spec, "model", "info"],
        &server.url,
        home.path(),
    )?;
    ensure!(output.status.success(), "info failed: {}", stderr(&output));
    let info = stdout(&output);
    for line in [
        "architecture:   qwen2",
        "quantization:   F16",
        "context length: 32768",
        "fim tokens:     yes (prefix 151659, suffix 151661, middle 151660)",
        "chat template:  yes",
    ] {
        ensure!(info.contains(line), "missing `{line}` in:\n{info}");
    }
    let n_downloads = server
        .requests()
        .iter()
        .filter(|request| request.method == "GET")
        .count();
    assert_eq!(n_downloads, 1, "only the pull downloads");

    let output = wellspring(&["model", "list"], &server.url, home.path())?;
    ensure!(output.status.success(), "list failed: {}", stderr(&output));
    let list = stdout(&output);
    ensure!(list.contains(spec), "{list}");
    ensure!(list.contains("qwen2.5-coder-1.5b"), "{list}");
    Ok(())
}

#[test]
fn info_on_a_broken_file_names_it() -> anyhow::Result<()> {
    let home = tempfile::tempdir()?;
    let path = home.path().join("notes.gguf");
    std::fs::write(&path, "just some text")?;
    let output = wellspring(
        &["model", "info", &path.display().to_string()],
        "http://127.0.0.1:9",
        home.path(),
    )?;
    ensure!(!output.status.success(), "info on a text file succeeded");
    let message = stderr(&output);
    ensure!(
        message.contains(&format!(
            "{} is not a GGUF file (bad magic)",
            path.display()
        )),
        "stderr: {message}"
    );
    Ok(())
}

#[test]
fn complete_reports_a_bad_position_before_it_loads_a_model() -> anyhow::Result<()> {
    let home = tempfile::tempdir()?;
    let file = home.path().join("main.py");
    std::fs::write(&file, "print('hi')\n")?;
    // A model spec that would fail (or download) if it were resolved: the position must be
    // refused first.
    let missing_model = home.path().join("missing.gguf").display().to_string();
    for (position, expected) in [
        (
            format!("{}:40:1", file.display()),
            "line 40 is past the end of the file",
        ),
        (
            format!("{}:1:99", file.display()),
            "column 99 is past the end of line 1",
        ),
    ] {
        let output = wellspring(
            &["complete", "--model", &missing_model, &position],
            "http://127.0.0.1:9",
            home.path(),
        )?;
        ensure!(!output.status.success(), "{position} succeeded");
        let message = stderr(&output);
        ensure!(message.contains(expected), "stderr: {message}");
        ensure!(
            !message.contains("missing.gguf"),
            "the model was looked at first: {message}"
        );
    }
    Ok(())
}

/// `wellspring model pull` under a file size limit, the nearest thing to a full disk that needs
/// no root: past the limit, writes fail with EFBIG. SIGXFSZ, which would otherwise kill the
/// process at that write, is ignored: `env --ignore-signal` sets that, and `exec` keeps it.
fn pull_with_file_size_limit(
    spec: &str,
    limit_bytes: u64,
    endpoint: &str,
    home: &Path,
) -> anyhow::Result<Output> {
    let limit = format!("--fsize={limit_bytes}");
    run_under(
        &["env", "--ignore-signal=XFSZ", "prlimit", &limit],
        &["model", "pull", spec],
        endpoint,
        home,
    )
}

#[test]
fn a_full_disk_stops_a_pull_with_the_part_kept_and_the_next_pull_resumes() -> anyhow::Result<()> {
    let Hub {
        model,
        server,
        home,
        spec,
        cached,
    } = Hub::start()?;
    let part = cached.with_file_name("coder-f16.gguf.part");
    let limit_bytes = model.len() as u64 / 4;

    let output = pull_with_file_size_limit(spec, limit_bytes, &server.url, home.path())?;
    ensure!(!output.status.success(), "a pull past the limit succeeded");
    let message = stderr(&output);
    ensure!(
        message.contains(&format!(
            "the disk is full: no room left to write {} (",
            part.display()
        )) && message.contains(&format!(
            "free some space and try again, the download resumes from the {limit_bytes} bytes kept"
        )),
        "stderr: {message}"
    );
    assert_eq!(std::fs::metadata(&part)?.len(), limit_bytes);
    assert_eq!(std::fs::read(&part)?, model[..limit_bytes as usize]);
    ensure!(!cached.exists(), "an incomplete download was published");

    let output = wellspring(&["model", "pull", spec], &server.url, home.path())?;
    ensure!(output.status.success(), "pull failed: {}", stderr(&output));
    assert_eq!(std::fs::read(&cached)?, model);
    ensure!(!part.exists(), "the part outlived the download");
    let ranges = server.get_ranges();
    assert_eq!(ranges, vec![None, Some(format!("bytes={limit_bytes}-"))]);
    Ok(())
}
