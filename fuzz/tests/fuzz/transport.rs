//! The framing guard (`server/src/lsp/transport.rs`): `classify` on message bodies and
//! `FrameReader` on whole input streams, fed in chunks of random sizes.
//!
//! The guard exists so that no input stops the server, and tower-lsp-server stops reading at the
//! first body it cannot decode. So the central property is that every body the guard forwards
//! decodes the way tower-lsp-server decodes it, and as the kind of message the guard took it for:
//! a request the framework took for a response would never be answered.

use std::pin::Pin;
use std::task::{Context, Poll};

use proptest::collection::vec;
use proptest::prelude::*;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, ReadBuf};
use tower_lsp_server::jsonrpc;
use wellspring::lsp::fuzzing::{classify, FrameReader, Incoming};
use wellspring_fuzz::gen::{self, Bytes};
use wellspring_fuzz::{fuzz, Limits};

/// tower-lsp-server's own message type (`jsonrpc::Message`, private to it), declared the same way,
/// so a body decodes here exactly as it does there.
#[derive(Deserialize)]
#[serde(untagged)]
enum FrameworkMessage {
    Response(jsonrpc::Response),
    Request(jsonrpc::Request),
}

/// Methods a body may name: the server's own and some it does not have.
const METHODS: &[&str] = &[
    "initialize",
    "initialized",
    "shutdown",
    "exit",
    "textDocument/didOpen",
    "textDocument/inlineCompletion",
    "wellspring/serverInfo",
    "wellspring/stats",
    "$/cancelRequest",
    "",
    "x",
];

fn id_value() -> BoxedStrategy<Value> {
    prop_oneof![
        6 => gen::edge_integer().prop_map(Value::from),
        2 => "[a-z0-9-]{0,8}".prop_map(Value::from),
        1 => Just(Value::Null),
        1 => any::<u64>().prop_map(Value::from),
        1 => any::<f64>().prop_map(Value::from),
        1 => gen::json_value(),
    ]
    .boxed()
}

fn entry_value(key: &'static str) -> BoxedStrategy<Value> {
    match key {
        "jsonrpc" => prop_oneof![
            8 => Just(json!("2.0")),
            1 => Just(json!("1.0")),
            1 => gen::json_leaf(),
        ]
        .boxed(),
        "id" => id_value().boxed(),
        "method" => prop_oneof![
            8 => prop::sample::select(METHODS).prop_map(Value::from),
            1 => gen::json_leaf(),
        ]
        .boxed(),
        "error" => prop_oneof![
            4 => (gen::edge_integer(), gen::text(3))
                .prop_map(|(code, message)| json!({"code": code, "message": message})),
            1 => gen::json_value(),
        ]
        .boxed(),
        _ => gen::json_value().boxed(),
    }
}

/// A top-level key and its value; the same key may come twice in a body.
fn entry() -> BoxedStrategy<(&'static str, Value)> {
    prop::sample::select(vec![
        "jsonrpc", "id", "method", "params", "result", "error", "x",
    ])
    .prop_flat_map(|key| entry_value(key).prop_map(move |value| (key, value)))
    .boxed()
}

/// The keys of a request, a notification, a response or an error response.
fn template() -> BoxedStrategy<Vec<&'static str>> {
    prop::sample::select(vec![
        vec!["jsonrpc", "id", "method", "params"],
        vec!["jsonrpc", "method", "params"],
        vec!["jsonrpc", "id", "method"],
        vec!["jsonrpc", "id", "result"],
        vec!["jsonrpc", "id", "error"],
    ])
    .boxed()
}

/// An object body written key by key, so it can hold duplicate keys (which `serde_json::Value`
/// would merge), with some entries added, repeated or dropped.
fn object_body() -> BoxedStrategy<Bytes> {
    template()
        .prop_flat_map(|keys| {
            let values: Vec<_> = keys.iter().map(|key| entry_value(key)).collect();
            (
                Just(keys),
                values,
                vec(entry(), 0..3),
                prop::option::of(any::<usize>()),
            )
        })
        .prop_map(|(keys, values, extra, dropped)| {
            let mut entries: Vec<(&str, Value)> = keys.into_iter().zip(values).collect();
            entries.extend(extra);
            if let Some(dropped) = dropped {
                entries.remove(dropped % entries.len());
            }
            let fields: Vec<String> = entries
                .iter()
                .map(|(key, value)| format!("{}:{value}", json!(key)))
                .collect();
            Bytes(format!("{{{}}}", fields.join(",")).into_bytes())
        })
        .boxed()
}

/// A message body: mostly object bodies, also any JSON and any bytes.
fn body() -> BoxedStrategy<Bytes> {
    prop_oneof![
        8 => object_body(),
        2 => gen::json_value().prop_map(|value| Bytes(value.to_string().into_bytes())),
        1 => vec(any::<u8>(), 0..40).prop_map(Bytes),
        1 => gen::text(6).prop_map(|text| Bytes(text.into_bytes())),
    ]
    .boxed()
}

/// Checks one verdict of `classify` against how tower-lsp-server would decode the body.
fn check_verdict(body: &[u8], verdict: &Incoming) -> Result<(), TestCaseError> {
    match verdict {
        Incoming::Message(forwarded) => {
            let text = std::str::from_utf8(forwarded);
            prop_assert!(text.is_ok(), "a forwarded body must be UTF-8");
            let original: Value = serde_json::from_slice(body)
                .map_err(|error| TestCaseError::fail(error.to_string()))?;
            let decoded = serde_json::from_slice::<FrameworkMessage>(forwarded);
            prop_assert!(
                decoded.is_ok(),
                "forwarded a body tower-lsp-server cannot decode (it stops reading then): {}: {}",
                String::from_utf8_lossy(forwarded),
                decoded
                    .err()
                    .map(|error| error.to_string())
                    .unwrap_or_default()
            );
            let id = original.get("id").cloned();
            match (decoded.expect("checked above"), original.get("method")) {
                (FrameworkMessage::Request(request), Some(method)) => {
                    prop_assert_eq!(Some(request.method()), method.as_str());
                    let request_id = request.id().map(|id| serde_json::to_value(id).unwrap());
                    prop_assert_eq!(request_id, id);
                }
                (FrameworkMessage::Response(response), None) => {
                    prop_assert_eq!(Some(serde_json::to_value(response.id()).unwrap()), id);
                }
                (FrameworkMessage::Request(_), None) => {
                    return Err(TestCaseError::fail(format!(
                        "forwarded a response the framework reads as a request: {}",
                        String::from_utf8_lossy(forwarded)
                    )))
                }
                (FrameworkMessage::Response(_), Some(_)) => {
                    return Err(TestCaseError::fail(format!(
                        "forwarded a request the framework reads as a response, so it is never \
                         answered: {}",
                        String::from_utf8_lossy(forwarded)
                    )))
                }
            }
        }
        Incoming::Malformed { id, code, .. } => {
            prop_assert!(
                id.is_null() || id.is_string() || id.as_i64().is_some(),
                "an error response needs an id the client can match: {id}"
            );
            prop_assert!([-32700, -32600].contains(code), "unexpected code {code}");
        }
    }
    Ok(())
}

/// A reader that hands out its bytes in chunks of the given sizes, in turn, so frames straddle
/// every buffer boundary.
struct Chunked {
    bytes: Vec<u8>,
    position: usize,
    chunk_sizes: Vec<usize>,
    n_reads: usize,
}

impl AsyncRead for Chunked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let chunk_size = this.chunk_sizes[this.n_reads % this.chunk_sizes.len()];
        this.n_reads += 1;
        let end = (this.position + chunk_size)
            .min(this.bytes.len())
            .min(this.position + buf.remaining());
        buf.put_slice(&this.bytes[this.position..end]);
        this.position = end;
        Poll::Ready(Ok(()))
    }
}

/// One item of an input stream and what the reader must make of it.
#[derive(Debug, Clone)]
enum Item {
    /// A frame with optional extra headers before and after its length.
    Frame {
        headers_before: Vec<String>,
        length_name: &'static str,
        headers_after: Vec<String>,
        body: Bytes,
    },
    /// A line that is not a header (no colon), which the reader skips.
    Junk(Bytes),
    /// A blank line between messages.
    Blank(&'static str),
    /// A frame whose length is not a number.
    BadLength(String),
}

/// How a stream ends.
#[derive(Debug, Clone)]
enum Ending {
    Clean,
    /// A frame whose body stops short of its length.
    Truncated(usize),
    /// A frame longer than the reader accepts.
    Oversized,
}

fn extra_header() -> BoxedStrategy<String> {
    prop_oneof![
        Just("Content-Type: application/vscode-jsonrpc; charset=utf-8".to_owned()),
        Just("Content-Type: application/vscode-jsonrpc; charset=latin1".to_owned()),
        Just("content-type:".to_owned()),
        "X-[A-Za-z]{1,6}: [ -~]{0,10}",
    ]
    .boxed()
}

fn frame() -> BoxedStrategy<Item> {
    let length_name = prop::sample::select(vec![
        "Content-Length",
        "content-length",
        "CONTENT-LENGTH",
        " Content-Length ",
    ]);
    let headers = || vec(extra_header(), 0..2);
    (headers(), length_name, headers(), body())
        .prop_map(
            |(headers_before, length_name, headers_after, body)| Item::Frame {
                headers_before,
                length_name,
                headers_after,
                body,
            },
        )
        .boxed()
}

fn item() -> BoxedStrategy<Item> {
    let junk_byte = any::<u8>().prop_filter("no line end or colon", |byte| {
        *byte != b'\n' && *byte != b':'
    });
    let bad_length = prop::sample::select(vec![
        "",
        "-1",
        "1e3",
        "twelve",
        "18446744073709551616",
        "0x10",
    ]);
    prop_oneof![
        8 => frame(),
        1 => vec(junk_byte, 1..20).prop_map(|line| Item::Junk(Bytes(line))),
        1 => prop::sample::select(vec!["\r\n", "\n"]).prop_map(Item::Blank),
        1 => bad_length.prop_map(|length| Item::BadLength(length.to_owned())),
    ]
    .boxed()
}

fn ending() -> BoxedStrategy<Ending> {
    prop_oneof![
        6 => Just(Ending::Clean),
        1 => (1..64_usize).prop_map(Ending::Truncated),
        1 => Just(Ending::Oversized),
    ]
    .boxed()
}

/// The bytes of `items`, and the verdicts the reader must give for them.
fn encode(items: &[Item]) -> (Vec<u8>, Vec<Incoming>) {
    let mut bytes = Vec::new();
    let mut expected = Vec::new();
    for item in items {
        match item {
            Item::Frame {
                headers_before,
                length_name,
                headers_after,
                body,
            } => {
                for header in headers_before {
                    bytes.extend(format!("{header}\r\n").as_bytes());
                }
                bytes.extend(format!("{length_name}: {}\r\n", body.0.len()).as_bytes());
                for header in headers_after {
                    bytes.extend(format!("{header}\r\n").as_bytes());
                }
                bytes.extend(b"\r\n");
                bytes.extend(&body.0);
                expected.push(classify(body.0.clone()));
            }
            Item::Junk(line) => {
                bytes.extend(&line.0);
                bytes.push(b'\n');
            }
            Item::Blank(line) => bytes.extend(line.as_bytes()),
            Item::BadLength(length) => {
                bytes.extend(format!("Content-Length: {length}\r\n\r\n").as_bytes());
                expected.push(Incoming::Malformed {
                    id: Value::Null,
                    code: -32700,
                    message: String::new(),
                });
            }
        }
    }
    (bytes, expected)
}

/// Two verdicts agree when they forward the same body, or answer with the same id and code (the
/// message text is for people).
fn same_verdict(got: &Incoming, expected: &Incoming) -> bool {
    match (got, expected) {
        (Incoming::Message(got), Incoming::Message(expected)) => got == expected,
        (
            Incoming::Malformed { id, code, .. },
            Incoming::Malformed {
                id: expected_id,
                code: expected_code,
                ..
            },
        ) => id == expected_id && code == expected_code,
        _ => false,
    }
}

#[test]
fn classify_forwards_only_what_the_framework_decodes_as_the_same_kind() {
    fuzz("transport_classify", Limits::FAST, body(), |_| {
        |body: Bytes| {
            let verdict = classify(body.0.clone());
            check_verdict(&body.0, &verdict)
        }
    });
}

#[test]
fn frame_reader_yields_each_frame_in_order_whatever_the_chunking() {
    let strategy = (vec(item(), 0..8), ending(), vec(1..64_usize, 1..4));
    fuzz("transport_frames", Limits::FAST, strategy, |_| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime");
        move |(items, ending, chunk_sizes): (Vec<Item>, Ending, Vec<usize>)| {
            let (mut bytes, mut expected) = encode(&items);
            let mut expect_error = false;
            match ending {
                Ending::Clean => {}
                Ending::Truncated(missing) => {
                    bytes.extend(format!("Content-Length: {}\r\n\r\n{{", missing + 1).as_bytes());
                    expect_error = true;
                }
                Ending::Oversized => {
                    bytes.extend(b"Content-Length: 1000000000\r\n\r\n{\"jsonrpc\"");
                    expected.push(Incoming::Malformed {
                        id: Value::Null,
                        code: -32700,
                        message: String::new(),
                    });
                }
            }
            let reader = Chunked {
                bytes,
                position: 0,
                chunk_sizes,
                n_reads: 0,
            };
            let mut frames = FrameReader::new(reader);
            let mut got = Vec::new();
            let end = runtime.block_on(async {
                loop {
                    match frames.next().await {
                        Ok(Some(incoming)) => got.push(incoming),
                        Ok(None) => return Ok(()),
                        Err(error) => return Err(error),
                    }
                }
            });
            prop_assert_eq!(got.len(), expected.len(), "got {:?}", got);
            for (got, expected) in got.iter().zip(&expected) {
                prop_assert!(
                    same_verdict(got, expected),
                    "got {:?}, expected {:?}",
                    got,
                    expected
                );
            }
            prop_assert_eq!(end.is_err(), expect_error, "end of input: {:?}", end);
            Ok(())
        }
    });
}

#[test]
fn frame_reader_survives_any_bytes() {
    // Byte soup with real frames mixed in, so the reader also resynchronises mid-stream.
    let piece = prop_oneof![
        vec(any::<u8>(), 0..24).prop_map(Bytes),
        body().prop_map(|Bytes(body)| {
            let mut framed = format!("Content-Length: {}\r\n\r\n", body.len()).into_bytes();
            framed.extend(body);
            Bytes(framed)
        }),
        prop::sample::select(vec!["\r\n", "Content-Length:", ": 5\r\n", "\r\n\r\n"])
            .prop_map(|text| Bytes(text.as_bytes().to_vec())),
    ];
    let strategy = (vec(piece, 0..10), vec(1..32_usize, 1..3));
    fuzz("transport_soup", Limits::FAST, strategy, |_| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime");
        move |(pieces, chunk_sizes): (Vec<Bytes>, Vec<usize>)| {
            let reader = Chunked {
                bytes: pieces.into_iter().flat_map(|piece| piece.0).collect(),
                position: 0,
                chunk_sizes,
                n_reads: 0,
            };
            let mut frames = FrameReader::new(reader);
            runtime.block_on(async {
                while let Ok(Some(incoming)) = frames.next().await {
                    if let Incoming::Message(body) = &incoming {
                        check_verdict(body, &incoming)?;
                    } else {
                        check_verdict(b"", &incoming)?;
                    }
                }
                Ok(())
            })
        }
    });
}
