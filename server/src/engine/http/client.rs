//! The network side of an inference server: one HTTP agent per endpoint (TLS through rustls with
//! the system's trust store, keep-alive connections, timeouts), the bearer token, JSON calls, and
//! streamed answers read line by line until the caller has enough or gives up.
//!
//! Blocking: callers run it on blocking threads. Closing a stream is how a request is cancelled,
//! so llama-server (which notices the closed connection) stops generating too. Nothing here
//! knows the APIs' shapes (`api.rs`) or the engine's rules (`mod.rs`).

use std::io::{BufRead, BufReader, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A JSON call (a probe, a tokenization) that takes longer than this failed.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// No byte of a streamed answer for this long means the server is stuck (a long prompt on a busy
/// server takes a while before its first token).
const STREAM_READ_TIMEOUT: Duration = Duration::from_secs(120);
/// Attempts at a request whose connection failed before any answer, and the wait before the
/// first retry (doubled each time): a keep-alive connection the server closed meanwhile fails
/// once and works on a fresh one.
const MAX_ATTEMPTS: u32 = 3;
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
/// Most bytes one streamed line may have.
const MAX_LINE_BYTES: usize = 4 << 20;
const MAX_JSON_BYTES: u64 = 16 << 20;

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// No connection could be made, or it broke: the server is down or unreachable.
    #[error("cannot reach {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// The server answered with an error status.
    #[error("{url} answered {status}: {message}")]
    Status {
        url: String,
        status: u16,
        message: String,
    },
    /// The deadline passed.
    #[error("{url} did not answer in time")]
    TimedOut { url: String },
    /// The answer was not what the API promises.
    #[error("unexpected answer from {url}: {reason}")]
    Protocol { url: String, reason: String },
}

/// A secret that never shows in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    pub fn new(token: String) -> Token {
        Token(token)
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Token(…)")
    }
}

/// Talks to one server.
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    base_url: String,
    token: Option<Token>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Client")
            .field("base_url", &self.base_url)
            .field("token", &self.token)
            .finish()
    }
}

/// What the line handler wants next.
pub enum Next {
    Read,
    /// Enough: close the stream.
    Stop,
}

impl Client {
    pub fn new(base_url: &str, token: Option<Token>) -> Client {
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::PlatformVerifier)
            .build();
        let agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .http_status_as_error(false)
            // Requests go to the configured endpoint and nowhere else: no redirects, and no
            // proxy from the environment.
            .max_redirects(0)
            .proxy(None)
            .user_agent(concat!("wellspring/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Client {
            agent,
            base_url: base_url.to_owned(),
            token,
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// GETs `path` and reads its JSON answer.
    pub fn get_json(&self, path: &str) -> Result<Value, CallError> {
        let url = self.url(path);
        let response = self.attempt(&url, Instant::now() + CALL_TIMEOUT, |deadline| {
            self.authorize(self.agent.get(&url))
                .config()
                .timeout_global(Some(deadline))
                .build()
                .call()
        })?;
        read_json(&url, response)
    }

    /// POSTs `body` to `path` and reads its JSON answer.
    pub fn post_json(&self, path: &str, body: &Value) -> Result<Value, CallError> {
        let url = self.url(path);
        let response = self.attempt(&url, Instant::now() + CALL_TIMEOUT, |deadline| {
            self.authorize(self.agent.post(&url))
                .config()
                .timeout_global(Some(deadline))
                .build()
                .send_json(body)
        })?;
        read_json(&url, response)
    }

    /// POSTs `body` to `path` and hands each line of the streamed answer to `on_line` until it
    /// says stop, the stream ends, `cancelled` is set (checked between lines) or `deadline`
    /// passes. Returns whether the stream was read to its end.
    pub fn post_stream(
        &self,
        path: &str,
        body: &Value,
        deadline: Instant,
        cancelled: &AtomicBool,
        mut on_line: impl FnMut(&str) -> Next,
    ) -> Result<bool, CallError> {
        let url = self.url(path);
        let response = self.attempt(&url, deadline, |remaining| {
            self.authorize(self.agent.post(&url))
                .config()
                .timeout_global(Some(remaining))
                .timeout_per_read(Some(STREAM_READ_TIMEOUT))
                .build()
                .send_json(body)
        })?;
        let status = response.status().as_u16();
        if status >= 300 {
            return Err(status_error(&url, status, response));
        }
        // Dropping the reader closes the connection (a stream read part-way is never reused).
        let mut reader = BufReader::new(response.into_body().into_reader());
        let mut line = Vec::new();
        loop {
            if cancelled.load(Ordering::Relaxed) {
                return Ok(false);
            }
            line.clear();
            let n_bytes = (&mut reader)
                .take(MAX_LINE_BYTES as u64)
                .read_until(b'\n', &mut line)
                .map_err(|error| read_error(&url, &error))?;
            if n_bytes == 0 {
                return Ok(true);
            }
            if cancelled.load(Ordering::Relaxed) {
                return Ok(false);
            }
            let text = String::from_utf8_lossy(&line);
            if let Next::Stop = on_line(&text) {
                return Ok(false);
            }
        }
    }

    fn authorize<B>(&self, request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.token {
            Some(Token(token)) => request.header("Authorization", format!("Bearer {token}")),
            None => request,
        }
    }

    /// Runs `send` (given the time left) until it gets an answer, retrying with backoff while the
    /// connection fails before any answer and time is left.
    fn attempt(
        &self,
        url: &str,
        deadline: Instant,
        send: impl Fn(Duration) -> Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<ureq::http::Response<ureq::Body>, CallError> {
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 1;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(CallError::TimedOut {
                    url: url.to_owned(),
                });
            }
            match send(remaining) {
                Ok(response) => return Ok(response),
                Err(error) => {
                    let error = transport_error(url, &error);
                    let retry = matches!(error, CallError::Unreachable { .. })
                        && attempt < MAX_ATTEMPTS
                        && Instant::now() + backoff < deadline;
                    if !retry {
                        return Err(error);
                    }
                    tracing::debug!(%error, attempt, "retrying");
                    std::thread::sleep(backoff);
                    backoff *= 2;
                    attempt += 1;
                }
            }
        }
    }
}

fn read_json(url: &str, response: ureq::http::Response<ureq::Body>) -> Result<Value, CallError> {
    let status = response.status().as_u16();
    if status >= 300 {
        return Err(status_error(url, status, response));
    }
    response
        .into_body()
        .into_with_config()
        .limit(MAX_JSON_BYTES)
        .read_json()
        .map_err(|error| CallError::Protocol {
            url: url.to_owned(),
            reason: error.to_string(),
        })
}

fn status_error(url: &str, status: u16, response: ureq::http::Response<ureq::Body>) -> CallError {
    let body = response
        .into_body()
        .into_with_config()
        .limit(64 * 1024)
        .read_to_string()
        .unwrap_or_default();
    let mut message = super::api::error_message(body.trim());
    if message.is_empty() {
        message = match status {
            401 | 403 => "the token was refused (WELLSPRING_API_TOKEN or model.api_token_file)".to_owned(),
            404 => "no such endpoint or model".to_owned(),
            300..=399 => "the server redirects elsewhere, and requests go nowhere but the configured endpoint: configure the URL it redirects to".to_owned(),
            _ => "no reason given".to_owned(),
        };
    }
    CallError::Status {
        url: url.to_owned(),
        status,
        message,
    }
}

fn transport_error(url: &str, error: &ureq::Error) -> CallError {
    match error {
        ureq::Error::Timeout(_) => CallError::TimedOut {
            url: url.to_owned(),
        },
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => CallError::TimedOut {
            url: url.to_owned(),
        },
        ureq::Error::Io(_)
        | ureq::Error::ConnectionFailed
        | ureq::Error::HostNotFound
        | ureq::Error::Tls(_)
        | ureq::Error::Rustls(_) => CallError::Unreachable {
            url: url.to_owned(),
            reason: error.to_string(),
        },
        other => CallError::Protocol {
            url: url.to_owned(),
            reason: other.to_string(),
        },
    }
}

fn read_error(url: &str, error: &std::io::Error) -> CallError {
    let timed_out = error.kind() == std::io::ErrorKind::TimedOut
        || error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<ureq::Error>())
            .is_some_and(|inner| matches!(inner, ureq::Error::Timeout(_)));
    if timed_out {
        CallError::TimedOut {
            url: url.to_owned(),
        }
    } else {
        CallError::Unreachable {
            url: url.to_owned(),
            reason: error.to_string(),
        }
    }
}
