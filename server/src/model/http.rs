//! Blocking HTTP for model acquisition: resumable file downloads into `.part` files and small
//! JSON fetches, with errors that say which host or URL failed and what to check.
//!
//! Everything here runs on the calling thread (the LSP layer calls `resolve` through
//! `spawn_blocking`). Where files end up and when they count as complete is decided by the
//! callers; this module only fills `.part` files.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;
use std::time::Duration;

use super::progress::{ProgressCallback, ProgressStage, Reporter};
use super::Error;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// No byte for this long means the transfer is stuck.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
const COPY_BUFFER_BYTES: usize = 256 * 1024;
/// JSON documents (PyPI metadata) are small; anything bigger is not what we asked for.
const MAX_JSON_BYTES: u64 = 16 << 20;

/// The system's trust store (not a bundled copy) decides which servers are trusted, so a
/// corporate or proxy CA installed on the machine works as it does for pip and curl.
pub(crate) fn agent() -> ureq::Agent {
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::PlatformVerifier)
        .build();
    ureq::Agent::config_builder()
        .tls_config(tls)
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_recv_response(Some(READ_TIMEOUT))
        .timeout_per_read(Some(READ_TIMEOUT))
        .http_status_as_error(false)
        .max_redirects(10)
        // Hugging Face redirects renamed repos within its own host; the token must follow.
        // Redirects to other hosts (its CDN) carry signed URLs and get no token.
        .redirect_auth_headers(ureq::config::RedirectAuthHeaders::SameHost)
        .user_agent(concat!("wellspring/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// What to tell the user when the server answers with an error status.
pub(crate) struct StatusHints {
    /// For 404: which names to check.
    pub(crate) not_found: &'static str,
    /// For 401 and 403.
    pub(crate) forbidden: &'static str,
}

impl StatusHints {
    fn error(&self, status: u16, url: &str) -> Error {
        let hint = match status {
            404 => self.not_found,
            401 | 403 => self.forbidden,
            500..=599 => "the server failed; try again later",
            _ => "unexpected answer from the server",
        };
        Error::HttpStatus {
            status,
            url: url.to_owned(),
            hint: hint.to_owned(),
        }
    }
}

/// One file to fetch.
pub(crate) struct Download<'a> {
    pub(crate) url: &'a str,
    pub(crate) bearer_token: Option<&'a str>,
    pub(crate) hints: StatusHints,
    /// Shown in progress reports.
    pub(crate) label: &'a str,
    pub(crate) progress: Option<ProgressCallback>,
    pub(crate) progress_bar: bool,
}

/// The host part of a URL, for "cannot reach HOST" messages.
fn host_of(url: &str) -> &str {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    after_scheme
        .split(['/', '?', '#'])
        .next()
        .unwrap_or(after_scheme)
}

fn transport_error(url: &str, error: ureq::Error) -> Error {
    Error::Unreachable {
        host: host_of(url).to_owned(),
        detail: error.to_string(),
    }
}

/// Fetches `url` and parses it as JSON.
pub(crate) fn get_json(
    agent: &ureq::Agent,
    url: &str,
    hints: &StatusHints,
) -> Result<serde_json::Value, Error> {
    let mut response = agent
        .get(url)
        .header("Accept", "application/json")
        .call()
        .map_err(|error| transport_error(url, error))?;
    let status = response.status().as_u16();
    if status != 200 {
        return Err(hints.error(status, url));
    }
    let text = response
        .body_mut()
        .with_config()
        .limit(MAX_JSON_BYTES)
        .read_to_string()
        .map_err(|error| Error::BadResponse {
            url: url.to_owned(),
            detail: error.to_string(),
        })?;
    serde_json::from_str(&text).map_err(|error| Error::BadResponse {
        url: url.to_owned(),
        detail: format!("invalid JSON: {error}"),
    })
}

/// What a server says about a file before sending it.
#[derive(Debug, Default)]
pub(crate) struct LinkedFile {
    /// Lowercase hex.
    pub(crate) sha256: Option<String>,
    pub(crate) file_bytes: Option<u64>,
}

/// Asks for `url` with `HEAD`, without following redirects, and reads Hugging Face's
/// `X-Linked-Etag` (the sha256 of an LFS file) and `X-Linked-Size`. Servers that send neither
/// give an empty `LinkedFile`; "not found" and "forbidden" are errors.
pub(crate) fn head_linked(
    agent: &ureq::Agent,
    url: &str,
    bearer_token: Option<&str>,
    hints: &StatusHints,
) -> Result<LinkedFile, Error> {
    let mut request = agent.head(url).config().max_redirects(0).build();
    if let Some(token) = bearer_token {
        request = request.header("Authorization", &format!("Bearer {token}"));
    }
    let response = request
        .call()
        .map_err(|error| transport_error(url, error))?;
    let status = response.status().as_u16();
    match status {
        401 | 403 | 404 => return Err(hints.error(status, url)),
        // A server without HEAD (or with a passing hiccup) just gives no metadata; the GET
        // that follows reports real trouble.
        400..=599 => return Ok(LinkedFile::default()),
        _ => {}
    }
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
    };
    let sha256 = header("x-linked-etag")
        .map(|etag| etag.trim_start_matches("W/").trim_matches('"'))
        .filter(|etag| etag.len() == 64 && etag.bytes().all(|byte| byte.is_ascii_hexdigit()))
        .map(str::to_ascii_lowercase);
    let file_bytes = header("x-linked-size").and_then(|size| size.parse().ok());
    Ok(LinkedFile { sha256, file_bytes })
}

/// Downloads `download.url` into `part_path`, continuing from the bytes already there when the
/// server supports HTTP ranges. Returns the file's size. On error the bytes received so far stay
/// in `part_path`, so the next call resumes.
pub(crate) fn download_to_part(
    agent: &ureq::Agent,
    download: &Download<'_>,
    part_path: &Path,
) -> Result<u64, Error> {
    let cache_error = |source: io::Error| Error::Cache {
        path: part_path.to_path_buf(),
        source,
    };
    let mut have_bytes = match std::fs::metadata(part_path) {
        Ok(metadata) => metadata.len(),
        Err(error) if error.kind() == io::ErrorKind::NotFound => 0,
        Err(error) => return Err(cache_error(error)),
    };
    // At most two rounds: a resume the server refuses is retried once from the start.
    for _round in 0..2 {
        let mut request = agent.get(download.url);
        if let Some(token) = download.bearer_token {
            request = request.header("Authorization", &format!("Bearer {token}"));
        }
        if have_bytes > 0 {
            request = request.header("Range", &format!("bytes={have_bytes}-"));
        }
        let mut response = request
            .call()
            .map_err(|error| transport_error(download.url, error))?;
        let status = response.status().as_u16();
        let content_bytes = response
            .headers()
            .get("content-length")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<u64>().ok());
        let (file, total_bytes) = match status {
            206 if have_bytes > 0 => {
                let content_range = response
                    .headers()
                    .get("content-range")
                    .and_then(|value| value.to_str().ok())
                    .and_then(parse_content_range);
                match content_range {
                    Some((start_bytes, total_bytes)) if start_bytes == have_bytes => {
                        let file = OpenOptions::new()
                            .append(true)
                            .open(part_path)
                            .map_err(cache_error)?;
                        let total_bytes =
                            total_bytes.or(content_bytes.map(|n_bytes| have_bytes + n_bytes));
                        (file, total_bytes)
                    }
                    // A range we did not ask for: start again from nothing.
                    _ => {
                        have_bytes = 0;
                        continue;
                    }
                }
            }
            200 => {
                // The server ignored the range (or there was none): overwrite.
                have_bytes = 0;
                let file = File::create(part_path).map_err(cache_error)?;
                (file, content_bytes)
            }
            416 if have_bytes > 0 => {
                // The part is longer than the file (it changed upstream): start again.
                File::create(part_path).map_err(cache_error)?;
                have_bytes = 0;
                continue;
            }
            _ => return Err(download.hints.error(status, download.url)),
        };
        let mut reporter = Reporter::start(
            download.progress.clone(),
            download.progress_bar,
            ProgressStage::Downloading,
            download.label,
            have_bytes,
            total_bytes,
        );
        let mut reader = response.body_mut().as_reader();
        let done_bytes = copy_body(&mut reader, file, part_path, &mut reporter, have_bytes)
            .map_err(|failure| match failure {
                CopyFailure::Read { done_bytes, error } => Error::Interrupted {
                    url: download.url.to_owned(),
                    done_bytes,
                    detail: error.to_string(),
                },
                CopyFailure::Write(error) => write_error(part_path, error),
            })?;
        if let Some(total_bytes) = total_bytes {
            if done_bytes != total_bytes {
                return Err(Error::Interrupted {
                    url: download.url.to_owned(),
                    done_bytes,
                    detail: format!("expected {total_bytes} bytes"),
                });
            }
        }
        reporter.finish();
        return Ok(done_bytes);
    }
    Err(Error::BadResponse {
        url: download.url.to_owned(),
        detail: "the server did not honour the byte range it was asked for".into(),
    })
}

/// A write into `part_path` that failed. A full disk (or quota, or file size limit) says so,
/// and how much stays for the next attempt to resume from; anything else is a cache error.
fn write_error(part_path: &Path, error: io::Error) -> Error {
    // ENOSPC, EFBIG and EDQUOT: there was no room for more bytes, though those written so far
    // are sound.
    let full = matches!(
        error.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::FileTooLarge | io::ErrorKind::QuotaExceeded
    );
    if !full {
        return Error::Cache {
            path: part_path.to_path_buf(),
            source: error,
        };
    }
    Error::DiskFull {
        path: part_path.to_path_buf(),
        kept_bytes: std::fs::metadata(part_path).map_or(0, |metadata| metadata.len()),
        source: error,
    }
}

enum CopyFailure {
    Read { done_bytes: u64, error: io::Error },
    Write(io::Error),
}

fn copy_body(
    reader: &mut impl Read,
    mut file: File,
    part_path: &Path,
    reporter: &mut Reporter,
    mut done_bytes: u64,
) -> Result<u64, CopyFailure> {
    let mut buffer = vec![0u8; COPY_BUFFER_BYTES];
    loop {
        let n_read = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(n_read) => n_read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => {
                // Keep what arrived so the next attempt resumes from it.
                let _ = file.flush();
                return Err(CopyFailure::Read { done_bytes, error });
            }
        };
        file.write_all(&buffer[..n_read])
            .map_err(CopyFailure::Write)?;
        done_bytes += n_read as u64;
        reporter.advance(n_read as u64);
    }
    file.sync_all().map_err(CopyFailure::Write)?;
    tracing::debug!(path = %part_path.display(), done_bytes, "download complete");
    Ok(done_bytes)
}

/// Parses `bytes START-END/TOTAL` (TOTAL may be `*`) into (START, TOTAL).
fn parse_content_range(value: &str) -> Option<(u64, Option<u64>)> {
    let range = value.trim().strip_prefix("bytes ")?;
    let (span, total) = range.split_once('/')?;
    let (start, _end) = span.split_once('-')?;
    let start_bytes = start.trim().parse().ok()?;
    let total_bytes = match total.trim() {
        "*" => None,
        total => Some(total.parse().ok()?),
    };
    Some((start_bytes, total_bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range() {
        assert_eq!(
            parse_content_range("bytes 100-199/200"),
            Some((100, Some(200)))
        );
        assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, None)));
        assert_eq!(parse_content_range("items 5-9/10"), None);
        assert_eq!(parse_content_range("bytes x-9/10"), None);
    }

    #[test]
    fn writes_without_room_say_the_disk_is_full() {
        let dir = tempfile::tempdir().expect("temp dir");
        let part = dir.path().join("model.gguf.part");
        std::fs::write(&part, [0u8; 1234]).expect("write part");
        let check = |error: io::Error, expected: &str| {
            let message = write_error(&part, error).to_string();
            assert_eq!(
                message,
                expected.replace("PART", &part.display().to_string())
            );
        };
        check(
            io::Error::from_raw_os_error(28),
            "the disk is full: no room left to write PART (No space left on device (os error 28)); free some space and try again, the download resumes from the 1234 bytes kept",
        );
        check(
            io::Error::from(io::ErrorKind::QuotaExceeded),
            "the disk is full: no room left to write PART (quota exceeded); free some space and try again, the download resumes from the 1234 bytes kept",
        );
        check(
            io::Error::from(io::ErrorKind::PermissionDenied),
            "cannot write to the model cache at PART: permission denied",
        );
    }

    #[test]
    fn host() {
        assert_eq!(
            host_of("https://huggingface.co/a/b/resolve/main/c.gguf"),
            "huggingface.co"
        );
        assert_eq!(host_of("http://127.0.0.1:8080"), "127.0.0.1:8080");
    }
}
