//! A framing guard between the client's byte streams and tower-lsp-server.
//!
//! tower-lsp-server ends its read loop at the first message it cannot decode (the framed
//! reader it uses stops after an error), which would turn one malformed message into a dead
//! server. So we frame the client's stream ourselves, answer malformed messages with a JSON-RPC
//! `ParseError` or `InvalidRequest` response, and forward only well-formed ones. Outgoing frames
//! are re-framed too, so our own error responses never interleave with a half-written message.

use std::io;

use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tower_lsp_server::jsonrpc;

use super::ext;

/// Messages larger than this are discarded with an error rather than buffered.
const MAX_MESSAGE_BYTES: usize = 512 * 1024 * 1024;
const DUPLEX_BUFFER_BYTES: usize = 1 << 20;
/// How long the server may go on writing after the client hung up.
const HANG_UP_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// One thing read off the wire.
#[derive(Debug, PartialEq)]
pub enum Incoming {
    /// A well-formed JSON-RPC message, ready to forward.
    Message(Vec<u8>),
    /// Something to answer with an error response instead of forwarding.
    Malformed {
        id: Value,
        code: i64,
        message: String,
    },
}

/// Reads frames (`Content-Length: N\r\n\r\n` + body) and classifies each one.
pub struct FrameReader<R> {
    reader: BufReader<R>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(input: R) -> Self {
        FrameReader {
            reader: BufReader::new(input),
        }
    }

    /// The next frame, or `None` at end of input.
    pub async fn next(&mut self) -> io::Result<Option<Incoming>> {
        let mut content_len: Option<usize> = None;
        let mut line = Vec::new();
        loop {
            line.clear();
            if self.reader.read_until(b'\n', &mut line).await? == 0 {
                return Ok(None);
            }
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end_matches(['\r', '\n']);
            if text.is_empty() {
                match content_len {
                    Some(_) => break,
                    // Blank lines between messages are harmless.
                    None => continue,
                }
            }
            let Some((name, value)) = text.split_once(':') else {
                tracing::warn!("skipping garbage on the input stream: {:?}", truncate(text));
                content_len = None;
                continue;
            };
            if name.trim().eq_ignore_ascii_case("content-length") {
                match value.trim().parse::<usize>() {
                    Ok(len) => content_len = Some(len),
                    Err(_) => {
                        return Ok(Some(Incoming::Malformed {
                            id: Value::Null,
                            code: -32700,
                            message: format!("invalid Content-Length header {:?}", value.trim()),
                        }))
                    }
                }
            }
        }
        let content_len = content_len.expect("loop only breaks with a length");
        if content_len > MAX_MESSAGE_BYTES {
            let mut discard = (&mut self.reader).take(content_len as u64);
            tokio::io::copy(&mut discard, &mut tokio::io::sink()).await?;
            return Ok(Some(Incoming::Malformed {
                id: Value::Null,
                code: -32700,
                message: format!(
                    "message of {content_len} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit"
                ),
            }));
        }
        let mut body = vec![0; content_len];
        self.reader.read_exact(&mut body).await?;
        Ok(Some(classify(body)))
    }
}

fn truncate(text: &str) -> &str {
    match text.char_indices().nth(80) {
        Some((byte_idx, _)) => &text[..byte_idx],
        None => text,
    }
}

fn valid_id(id: &Value) -> bool {
    id.is_null() || id.is_string() || id.as_i64().is_some()
}

/// Checks a body against the JSON-RPC shapes tower-lsp-server can decode.
pub fn classify(body: Vec<u8>) -> Incoming {
    // Almost every message is a request or notification the framework decodes as one: decoding it
    // as the framework does is then the whole check, and the body is parsed once here, not twice
    // (this runs on every keystroke's `didChange`). Anything else takes the path below, which
    // says what is wrong with it.
    let is_object = body
        .iter()
        .find(|byte| !byte.is_ascii_whitespace())
        .is_some_and(|byte| *byte == b'{');
    if is_object {
        if let Ok(FrameworkMessage::Request(request)) =
            serde_json::from_slice::<FrameworkMessage>(&body)
        {
            // An empty method is what the framework makes of a missing one; methods without
            // params may need theirs removed.
            let method = request.method();
            if !method.is_empty() && !METHODS_WITHOUT_PARAMS.contains(&method) {
                return Incoming::Message(body);
            }
        }
    }
    let value: Value = match serde_json::from_slice(&body) {
        Ok(value) => value,
        Err(error) => {
            return Incoming::Malformed {
                id: Value::Null,
                code: -32700,
                message: format!("parse error: {error}"),
            }
        }
    };
    let invalid = |id: Value, message: &str| Incoming::Malformed {
        id,
        code: -32600,
        message: format!("invalid request: {message}"),
    };
    let Some(object) = value.as_object() else {
        return invalid(Value::Null, "a message must be a JSON object");
    };
    let id = object.get("id").cloned();
    let reply_id = id.clone().filter(valid_id).unwrap_or(Value::Null);
    if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return invalid(reply_id, "\"jsonrpc\" must be \"2.0\"");
    }
    if id.as_ref().is_some_and(|id| !valid_id(id)) {
        return invalid(Value::Null, "\"id\" must be an integer, a string or null");
    }
    let body = match object.get("method") {
        Some(Value::String(method)) => without_empty_params(method, object).unwrap_or(body),
        Some(_) => return invalid(reply_id, "\"method\" must be a string"),
        None => {
            let is_response =
                id.is_some() && (object.contains_key("result") || object.contains_key("error"));
            if !is_response {
                return invalid(reply_id, "neither a request, a notification nor a response");
            }
            body
        }
    };
    // The framework decodes with derived deserialisers, which refuse what `Value` takes silently
    // (a key given twice, an error object of the wrong shape), and it reads a request that also
    // carries a result or an error as a response, which nobody answers. Decoding as it does is
    // the only way to be sure it never sees a body it stops at or misreads.
    let is_request = object.contains_key("method");
    match (
        serde_json::from_slice::<FrameworkMessage>(&body),
        is_request,
    ) {
        (Ok(FrameworkMessage::Request(_)), true) | (Ok(FrameworkMessage::Response(_)), false) => {
            Incoming::Message(body)
        }
        (Ok(FrameworkMessage::Response(_)), true) => {
            invalid(reply_id, "a request cannot carry a result or an error")
        }
        (Ok(FrameworkMessage::Request(_)), false) | (Err(_), _) => invalid(
            reply_id,
            "a key appears twice, or a member has the wrong type",
        ),
    }
}

/// tower-lsp-server's own message type (private to it), declared as it declares it, so the guard
/// decodes a body exactly as the framework will. Only which variant decodes matters.
#[derive(Deserialize)]
#[serde(untagged)]
#[allow(dead_code)]
enum FrameworkMessage {
    Response(jsonrpc::Response),
    Request(jsonrpc::Request),
}

/// Methods that take no params. Clients send `{}`, `[]` or `null` for them as often as nothing,
/// and tower-lsp-server refuses anything but nothing or `null` ("Unexpected params").
const METHODS_WITHOUT_PARAMS: [&str; 4] = ["shutdown", "exit", ext::SERVER_INFO, ext::STATS];

/// The message again without its params, when it is for a method without params and they are
/// empty.
fn without_empty_params(method: &str, object: &serde_json::Map<String, Value>) -> Option<Vec<u8>> {
    let empty = match object.get("params")? {
        Value::Object(params) => params.is_empty(),
        Value::Array(params) => params.is_empty(),
        _ => false,
    };
    if !empty || !METHODS_WITHOUT_PARAMS.contains(&method) {
        return None;
    }
    let mut object = object.clone();
    object.remove("params");
    Some(serde_json::to_vec(&object).expect("a JSON object serialises"))
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut framed = format!("Content-Length: {}\r\n\r\n", body.len()).into_bytes();
    framed.extend_from_slice(body);
    framed
}

/// Runs `serve` (tower-lsp-server over in-memory pipes) behind the framing guard.
pub(crate) async fn guarded<I, O, F, Fut>(input: I, output: O, serve: F)
where
    I: AsyncRead + Unpin,
    O: AsyncWrite + Unpin,
    F: FnOnce(tokio::io::DuplexStream, tokio::io::DuplexStream) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let (mut to_server, server_input) = tokio::io::duplex(DUPLEX_BUFFER_BYTES);
    let (server_output, from_server) = tokio::io::duplex(DUPLEX_BUFFER_BYTES);
    let (error_tx, mut error_rx) = mpsc::unbounded_channel::<Vec<u8>>();

    let read_client = async move {
        let mut frames = FrameReader::new(input);
        loop {
            match frames.next().await {
                Ok(Some(Incoming::Message(body))) => {
                    if to_server.write_all(&frame(&body)).await.is_err() {
                        break;
                    }
                }
                Ok(Some(Incoming::Malformed { id, code, message })) => {
                    tracing::warn!("answering a malformed message: {message}");
                    let response = json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}});
                    let body = serde_json::to_vec(&response).expect("a JSON value serialises");
                    if error_tx.send(frame(&body)).is_err() {
                        break;
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    tracing::warn!("client input failed: {error}");
                    break;
                }
            }
        }
        // Closing the server's input ends its read loop, which stops the server.
        drop(to_server);
    };

    let write_client = async move {
        let mut output = output;
        let mut frames = FrameReader::new(from_server);
        let mut errors_open = true;
        loop {
            let framed = tokio::select! {
                next = frames.next() => match next {
                    Ok(Some(Incoming::Message(body))) => frame(&body),
                    Ok(Some(Incoming::Malformed { message, .. })) => {
                        tracing::error!("server produced a malformed message: {message}");
                        continue;
                    }
                    // The server has stopped (after `exit`, or because its input ended).
                    Ok(None) | Err(_) => break,
                },
                error = error_rx.recv(), if errors_open => match error {
                    Some(framed) => framed,
                    None => { errors_open = false; continue; }
                },
            };
            if output.write_all(&framed).await.is_err() || output.flush().await.is_err() {
                tracing::info!("client output closed");
                break;
            }
        }
    };

    // The session ends when the server stops and its output is written. The client reader is
    // abandoned then: after `exit` the client may keep its end open, and waiting for it to hang
    // up would keep the process alive.
    let server_and_output = async {
        tokio::join!(serve(server_input, server_output), write_client);
    };
    tokio::pin!(server_and_output);
    tokio::pin!(read_client);
    tokio::select! {
        () = &mut server_and_output => {}
        () = &mut read_client => {
            // The client hung up. Whatever is still being answered (a chat the model is writing,
            // say) has no one to read it; tower-lsp-server would wait for it all the same.
            if tokio::time::timeout(HANG_UP_GRACE, &mut server_and_output).await.is_err() {
                tracing::info!("the client hung up with requests in flight; stopping without them");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read_all(bytes: &[u8]) -> Vec<Incoming> {
        let mut frames = FrameReader::new(bytes);
        let mut all = Vec::new();
        while let Some(frame) = frames.next().await.unwrap() {
            all.push(frame);
        }
        all
    }

    fn codes(frames: &[Incoming]) -> Vec<i64> {
        frames
            .iter()
            .map(|frame| match frame {
                Incoming::Message(_) => 0,
                Incoming::Malformed { code, .. } => *code,
            })
            .collect()
    }

    #[tokio::test]
    async fn classifies_each_kind_of_bad_message_and_keeps_going() {
        let mut stream = Vec::new();
        for body in [
            r#"{"jsonrpc":"2.0","method":"initialized","params":{}}"#,
            "{bad}",
            r#"[1,2]"#,
            r#"{"jsonrpc":"1.0","id":3,"method":"x"}"#,
            r#"{"jsonrpc":"2.0","id":{"a":1},"method":"x"}"#,
            r#"{"jsonrpc":"2.0","id":4}"#,
            r#"{"jsonrpc":"2.0","id":5,"result":null}"#,
        ] {
            stream.extend(frame(body.as_bytes()));
        }
        stream.extend(b"garbage line\r\nContent-Length: x\r\n\r\n");
        stream.extend(frame(br#"{"jsonrpc":"2.0","method":"exit"}"#));
        let frames = read_all(&stream).await;
        assert_eq!(
            codes(&frames),
            vec![0, -32700, -32600, -32600, -32600, -32600, 0, -32700, 0]
        );
        let Incoming::Malformed { id, .. } = &frames[3] else {
            panic!()
        };
        assert_eq!(id, &json!(3));
    }

    /// Found by the fuzz target `transport_classify`: a key given twice stopped the server, and a
    /// request that also carried a result was read as a response and never answered.
    #[test]
    fn bodies_the_framework_would_stop_at_or_misread_are_answered_here() {
        for (body, expected_id) in [
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"x","method":"x"}"#,
                json!(1),
            ),
            (
                r#"{"jsonrpc":"2.0","jsonrpc":"2.0","method":"x"}"#,
                json!(null),
            ),
            (
                r#"{"jsonrpc":"2.0","id":2,"method":"x","result":null}"#,
                json!(2),
            ),
            (
                r#"{"jsonrpc":"2.0","id":3,"method":"x","error":{"code":1,"message":"m"}}"#,
                json!(3),
            ),
            (r#"{"jsonrpc":"2.0","id":4,"error":5}"#, json!(4)),
            (
                r#"{"jsonrpc":"2.0","id":5,"error":{"code":1,"message":"m","code":2}}"#,
                json!(5),
            ),
        ] {
            let Incoming::Malformed { id, code, .. } = classify(body.as_bytes().to_vec()) else {
                panic!("{body} was forwarded")
            };
            assert_eq!((id, code), (expected_id, -32600), "{body}");
        }
        // Duplicates inside params are the handler's business: `Value` keeps the last one.
        let body = r#"{"jsonrpc":"2.0","id":6,"method":"x","params":{"a":1,"a":2}}"#;
        assert!(matches!(
            classify(body.as_bytes().to_vec()),
            Incoming::Message(_)
        ));
    }
}
