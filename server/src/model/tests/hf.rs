//! `hf:` specs against a 127.0.0.1 server standing in for Hugging Face.

use std::net::TcpListener;

use super::http_server::{Route, SeenRequest, TestServer};
use super::{files_under, options, recorder, GgufBuilder};
use crate::model::progress::ProgressStage;
use crate::model::{resolve, Error, ModelSource, ResolveOptions};

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Hugging Face's headers for an LFS file: its sha256 (quoted) and size.
fn linked(bytes: &[u8], sha256: &str) -> Vec<(String, String)> {
    vec![
        ("X-Linked-Etag".to_owned(), format!("\"{sha256}\"")),
        ("X-Linked-Size".to_owned(), bytes.len().to_string()),
    ]
}

const SPEC: &str = "hf:owner/repo/model-q8_0.gguf";
const URL_PATH: &str = "/owner/repo/resolve/main/model-q8_0.gguf";
const CACHED: &str = "hf/owner/repo/main/model-q8_0.gguf";

/// A GGUF big enough to arrive in several reads (about 1.2 MB).
fn model_bytes() -> Vec<u8> {
    GgufBuilder::model(300_000).build()
}

fn setup(route: Route) -> (TestServer, tempfile::TempDir, ResolveOptions) {
    let server = TestServer::start();
    server.route(URL_PATH, route);
    let cache = tempfile::tempdir().expect("temp dir");
    let options = ResolveOptions {
        allow_download: true,
        hf_endpoint: Some(server.url.clone()),
        ..options(cache.path())
    };
    (server, cache, options)
}

fn head(path: &str) -> SeenRequest {
    SeenRequest {
        method: "HEAD".into(),
        ..plain_get(path)
    }
}

fn plain_get(path: &str) -> SeenRequest {
    SeenRequest {
        method: "GET".into(),
        path: path.to_owned(),
        range: None,
        authorization: None,
    }
}

#[test]
fn download_then_cache_hit() {
    let bytes = model_bytes();
    let (server, cache, mut options) = setup(Route::file(bytes.clone()));
    let (callback, seen) = recorder();
    options.progress = Some(callback);

    let resolved = resolve(SPEC, &options).expect("download works");
    assert_eq!(resolved.path, cache.path().join(CACHED));
    assert_eq!(std::fs::read(&resolved.path).expect("read"), bytes);
    assert_eq!(resolved.summary.architecture.as_deref(), Some("qwen2"));
    assert!(matches!(
        resolved.source,
        ModelSource::HuggingFace {
            downloaded: true,
            ..
        }
    ));
    assert_eq!(server.requests(), vec![head(URL_PATH), plain_get(URL_PATH)]);
    assert_eq!(files_under(cache.path()), vec![CACHED.to_owned()]);

    let reports = seen.lock().expect("progress lock").clone();
    let total_bytes = bytes.len() as u64;
    let first = reports.first().expect("a first report");
    let last = reports.last().expect("a last report");
    assert_eq!(
        (first.done_bytes, first.total_bytes),
        (0, Some(total_bytes))
    );
    assert_eq!(
        (last.done_bytes, last.total_bytes),
        (total_bytes, Some(total_bytes))
    );
    assert_eq!(first.label, "model-q8_0.gguf");
    assert!(reports
        .iter()
        .all(|report| report.stage == ProgressStage::Downloading));
    assert!(reports
        .windows(2)
        .all(|pair| pair[0].done_bytes <= pair[1].done_bytes));

    // Second resolve: from the cache, without a request, even with downloads off.
    options.allow_download = false;
    let again = resolve(SPEC, &options).expect("cache hit");
    assert_eq!(again.path, resolved.path);
    assert!(matches!(
        again.source,
        ModelSource::HuggingFace {
            downloaded: false,
            ..
        }
    ));
    assert_eq!(server.requests().len(), 2);
}

#[test]
fn resumes_a_partial_download() {
    let bytes = model_bytes();
    let (server, cache, mut options) = setup(Route::file(bytes.clone()));
    let part = cache.path().join(format!("{CACHED}.part"));
    std::fs::create_dir_all(part.parent().expect("has parent")).expect("mkdir");
    std::fs::write(&part, &bytes[..100_000]).expect("write part");
    let (callback, seen) = recorder();
    options.progress = Some(callback);

    let resolved = resolve(SPEC, &options).expect("resumed download works");
    assert_eq!(std::fs::read(&resolved.path).expect("read"), bytes);
    assert_eq!(
        server.requests(),
        vec![
            head(URL_PATH),
            SeenRequest {
                range: Some("bytes=100000-".into()),
                ..plain_get(URL_PATH)
            }
        ]
    );
    let reports = seen.lock().expect("progress lock").clone();
    assert_eq!(
        reports.first().map(|report| report.done_bytes),
        Some(100_000)
    );
    assert!(!part.exists());
}

#[test]
fn interrupted_download_resumes_on_the_next_call() {
    let bytes = model_bytes();
    let route = Route {
        cut_first_response_at: Some(400_000),
        ..Route::file(bytes.clone())
    };
    let (server, cache, options) = setup(route);

    let error = resolve(SPEC, &options).expect_err("the connection drops");
    assert!(matches!(error, Error::Interrupted { .. }), "{error}");
    let message = error.to_string();
    assert!(
        message.starts_with(&format!(
            "download of {}{URL_PATH} stopped after ",
            server.url
        )),
        "{message}"
    );
    assert!(
        message.ends_with("(the next attempt resumes from there)"),
        "{message}"
    );
    let part = cache.path().join(format!("{CACHED}.part"));
    let kept_bytes = std::fs::metadata(&part).expect("the part stays").len();
    assert!(kept_bytes > 0 && kept_bytes <= 400_000, "{kept_bytes}");

    let resolved = resolve(SPEC, &options).expect("second attempt completes");
    assert_eq!(std::fs::read(&resolved.path).expect("read"), bytes);
    let requests = server.requests();
    assert_eq!(requests.len(), 4, "{requests:?}");
    assert_eq!(requests[3].range, Some(format!("bytes={kept_bytes}-")));
}

#[test]
fn server_without_ranges_restarts_from_zero() {
    let bytes = model_bytes();
    let route = Route {
        honour_range: false,
        ..Route::file(bytes.clone())
    };
    let (_server, cache, options) = setup(route);
    let part = cache.path().join(format!("{CACHED}.part"));
    std::fs::create_dir_all(part.parent().expect("has parent")).expect("mkdir");
    std::fs::write(&part, b"stale bytes that must not survive").expect("write part");

    let resolved = resolve(SPEC, &options).expect("download works");
    assert_eq!(std::fs::read(&resolved.path).expect("read"), bytes);
}

#[test]
fn missing_file_is_a_clear_404() {
    let (server, cache, options) = setup(Route::file(model_bytes()));
    let error = resolve("hf:owner/repo/missing.gguf", &options).expect_err("404");
    assert_eq!(
        error.to_string(),
        format!(
            "HTTP 404 for {}/owner/repo/resolve/main/missing.gguf: check the repo and file name",
            server.url
        )
    );
    assert_eq!(files_under(cache.path()), Vec::<String>::new());
}

#[test]
fn not_cached_without_download_touches_no_network() {
    let (server, _cache, mut options) = setup(Route::file(model_bytes()));
    options.allow_download = false;
    let error = resolve(SPEC, &options).expect_err("not cached");
    assert_eq!(
        error.to_string(),
        format!("{SPEC} is not downloaded yet: run `wellspring model pull {SPEC}`")
    );
    assert_eq!(server.requests(), vec![]);
}

#[test]
fn a_download_that_is_not_gguf_is_not_kept() {
    let route = Route {
        content_type: "text/html",
        ..Route::file(b"<html>sign in to continue</html>".to_vec())
    };
    let (server, cache, options) = setup(route);
    let error = resolve(SPEC, &options).expect_err("not a gguf");
    assert_eq!(
        error.to_string(),
        format!(
            "the file downloaded from {}{URL_PATH} was deleted because it is unusable: {} is not a GGUF file (bad magic)",
            server.url,
            cache.path().join(format!("{CACHED}.part")).display()
        )
    );
    assert_eq!(files_under(cache.path()), Vec::<String>::new());
}

#[test]
fn token_and_revision() {
    let bytes = model_bytes();
    let server = TestServer::start();
    server.route(
        "/owner/repo/resolve/v1.0/sub/dir/model.gguf",
        Route::file(bytes),
    );
    let cache = tempfile::tempdir().expect("temp dir");
    let options = ResolveOptions {
        allow_download: true,
        hf_endpoint: Some(format!("{}/", server.url)),
        hf_token: Some("secret".into()),
        ..options(cache.path())
    };
    let resolved = resolve("hf:owner/repo/sub/dir/model.gguf@v1.0", &options).expect("download");
    assert_eq!(
        resolved.path,
        cache.path().join("hf/owner/repo/v1.0/sub/dir/model.gguf")
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert!(requests
        .iter()
        .all(|request| request.authorization.as_deref() == Some("Bearer secret")));
    let listed = crate::model::cached_models(&options).expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].spec, "hf:owner/repo/sub/dir/model.gguf@v1.0");
    assert!(listed[0].complete);
}

#[test]
fn unreachable_host() {
    // A port that was just free: nothing listens there.
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address").port()
    };
    let cache = tempfile::tempdir().expect("temp dir");
    let options = ResolveOptions {
        allow_download: true,
        hf_endpoint: Some(format!("http://127.0.0.1:{port}")),
        ..options(cache.path())
    };
    let message = resolve(SPEC, &options).expect_err("refused").to_string();
    assert!(
        message.starts_with(&format!("cannot reach 127.0.0.1:{port}: ")),
        "{message}"
    );
}

#[test]
fn a_download_holds_a_lock_other_processes_see_and_waits_for_theirs() {
    let bytes = model_bytes();
    let (server, cache, options) = setup(Route::file(bytes.clone()));
    let cached = cache.path().join(CACHED);
    let lock_path = crate::model::cache::lock_path(cache.path(), &cached);
    // The lock is the operating system's, on a file of its own: another process opening that
    // file cannot take it while this one holds it.
    let held = crate::model::cache::download_lock(cache.path(), &cached).expect("locked");
    let other = std::fs::File::open(&lock_path).expect("the lock file is there");
    assert!(matches!(
        other.try_lock(),
        Err(std::fs::TryLockError::WouldBlock)
    ));
    drop(held);
    other.try_lock().expect("free once dropped");

    // Another process is downloading (it holds the lock): this one waits for it, then finds the
    // file it wrote, and asks the server for nothing.
    let waiter = std::thread::spawn({
        let options = options.clone();
        move || resolve(SPEC, &options)
    });
    std::fs::create_dir_all(cached.parent().expect("has parent")).expect("mkdir");
    // It writes a `.part` file and renames it, as a download does.
    let part = cache.path().join(format!("{CACHED}.part"));
    std::fs::write(&part, &bytes).expect("the other process's download");
    std::fs::rename(&part, &cached).expect("renamed");
    drop(other);
    let resolved = waiter.join().expect("no panic").expect("resolved");
    assert_eq!(resolved.path, cached);
    assert!(matches!(
        resolved.source,
        ModelSource::HuggingFace {
            downloaded: false,
            ..
        }
    ));
    assert_eq!(server.requests(), Vec::<SeenRequest>::new());
    // The lock stays out of the list of cached models.
    let listed = crate::model::cached_models(&options).expect("list");
    assert_eq!(listed.len(), 1, "{listed:?}");
}

#[test]
fn list_shows_partial_downloads() {
    let cache = tempfile::tempdir().expect("temp dir");
    let part = cache.path().join(format!("{CACHED}.part"));
    std::fs::create_dir_all(part.parent().expect("has parent")).expect("mkdir");
    std::fs::write(&part, b"12345").expect("write part");
    let listed = crate::model::cached_models(&options(cache.path())).expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].spec, SPEC);
    assert_eq!(listed[0].file_bytes, 5);
    assert!(!listed[0].complete);
}

#[test]
fn follows_redirects_to_a_cdn_and_keeps_the_range() {
    let bytes = model_bytes();
    let server = TestServer::start();
    // Like Hugging Face: /resolve/ answers with a redirect to a signed CDN URL. The CDN is
    // another host (localhost vs 127.0.0.1), so the token must not follow.
    let cdn_url = server.url.replace("127.0.0.1", "localhost");
    server.route(
        URL_PATH,
        Route {
            headers: linked(&bytes, &sha256_hex(&bytes)),
            ..Route::redirect(format!("{cdn_url}/cdn/blob?signature=x"))
        },
    );
    server.route("/cdn/blob", Route::file(bytes.clone()));
    let cache = tempfile::tempdir().expect("temp dir");
    let options = ResolveOptions {
        allow_download: true,
        hf_endpoint: Some(server.url.clone()),
        hf_token: Some("secret".into()),
        ..options(cache.path())
    };
    let part = cache.path().join(format!("{CACHED}.part"));
    std::fs::create_dir_all(part.parent().expect("has parent")).expect("mkdir");
    std::fs::write(&part, &bytes[..5000]).expect("write part");

    let resolved = resolve(SPEC, &options).expect("download through the redirect");
    assert_eq!(std::fs::read(&resolved.path).expect("read"), bytes);
    let range = Some("bytes=5000-".to_owned());
    assert_eq!(
        server.requests(),
        vec![
            SeenRequest {
                authorization: Some("Bearer secret".into()),
                ..head(URL_PATH)
            },
            SeenRequest {
                range: range.clone(),
                authorization: Some("Bearer secret".into()),
                ..plain_get(URL_PATH)
            },
            SeenRequest {
                range,
                ..plain_get("/cdn/blob")
            },
        ]
    );
}

#[test]
fn announced_checksum_mismatch_deletes_the_download() {
    let bytes = model_bytes();
    let wrong = "ab".repeat(32);
    let route = Route {
        headers: linked(&bytes, &wrong),
        ..Route::file(bytes.clone())
    };
    let (server, cache, options) = setup(route);
    let error = resolve(SPEC, &options).expect_err("checksum mismatch");
    assert_eq!(
        error.to_string(),
        format!(
            "checksum mismatch for {}{URL_PATH}: expected sha256 {wrong}, got {}",
            server.url,
            sha256_hex(&bytes)
        )
    );
    assert_eq!(files_under(cache.path()), Vec::<String>::new());
}

#[test]
fn complete_part_with_announced_size_is_not_fetched_again() {
    let bytes = model_bytes();
    let route = Route {
        headers: linked(&bytes, &sha256_hex(&bytes)),
        ..Route::file(bytes.clone())
    };
    let (server, cache, options) = setup(route);
    let part = cache.path().join(format!("{CACHED}.part"));
    std::fs::create_dir_all(part.parent().expect("has parent")).expect("mkdir");
    std::fs::write(&part, &bytes).expect("write part");

    let resolved = resolve(SPEC, &options).expect("verified and renamed");
    assert_eq!(std::fs::read(&resolved.path).expect("read"), bytes);
    assert_eq!(server.requests(), vec![head(URL_PATH)]);
}
