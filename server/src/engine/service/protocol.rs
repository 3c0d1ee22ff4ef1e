//! What crosses the socket between a language server and a shared engine: length-prefixed JSON
//! messages, one per frame.
//!
//! Prompts, generated text, figures and chat deltas cross it; documents and syntax trees never
//! do. A completion's `done_when` check stays in the language server: the engine sends the text
//! so far (`Check`) at the points where a suggestion can become complete, and the language
//! server answers with its verdict.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::engine::{
    ChatModelState, ChatOutcome, ChatRequest, Completion, CompletionRequest, EngineStats, Error,
    ModelCaps,
};

/// Bumped whenever a message changes shape; both sides must agree.
pub(crate) const PROTOCOL_VERSION: u32 = 1;

/// A frame longer than this is a broken peer, not a message (a 32k-token prompt is ~130 KiB).
const MAX_FRAME_BYTES: u32 = 64 * 1024 * 1024;

/// From a language server to the engine.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum ToEngine {
    /// The first message on a connection.
    Hello {
        protocol: u32,
        version: String,
        pid: u32,
        /// Required by an engine listening on TCP.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
    },
    Complete {
        id: u64,
        request: CompletionRequest,
        /// The language server has a `done_when` check and answers `Check` messages.
        done_checks: bool,
    },
    /// The answer to a `Check`.
    Verdict {
        id: u64,
        check: u64,
        done: bool,
    },
    Chat {
        id: u64,
        request: ChatRequest,
    },
    /// The language server stopped waiting for request `id`.
    Drop {
        id: u64,
    },
    Warm {
        request: CompletionRequest,
    },
    Info {
        id: u64,
    },
    RecordDiscarded {
        n_tokens: u32,
    },
}

/// From the engine to a language server.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum FromEngine {
    /// The model is loading; `progress` in `0.0..=1.0`.
    Loading {
        progress: f32,
    },
    Ready {
        facts: EngineFacts,
    },
    /// The engine cannot serve (its model did not load, or the client does not speak its
    /// protocol); it closes the connection after this.
    Failed {
        error: Error,
    },
    /// Is the completion `id` complete with this text? Answered with `Verdict`.
    Check {
        id: u64,
        check: u64,
        text: String,
    },
    Completed {
        id: u64,
        result: Result<Completion, Error>,
    },
    ChatDelta {
        id: u64,
        text: String,
    },
    ChatDone {
        id: u64,
        result: Result<ChatOutcome, Error>,
    },
    Info {
        id: u64,
        info: LiveInfo,
    },
}

/// What a client learns once, when the engine is ready.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineFacts {
    pub caps: ModelCaps,
    pub placement: crate::engine::Placement,
    pub model_path: PathBuf,
    pub n_ctx_chat: u32,
    /// The engine process.
    pub pid: u32,
}

/// What changes while the engine runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveInfo {
    pub stats: EngineStats,
    pub chat_model_state: ChatModelState,
    /// Language servers connected now.
    pub n_clients: u32,
}

/// A connection's halves, owned (reading and writing never wait for each other), over a Unix
/// socket or TCP.
pub(crate) type ReadHalf = Box<dyn AsyncRead + Send + Unpin>;
pub(crate) type WriteHalf = Box<dyn AsyncWrite + Send + Unpin>;

/// Writes what `outbox` receives to `writer`, in order, until the outbox closes or a write fails
/// (a broken connection, which the reading side sees too).
pub(crate) fn spawn_writer<M: Serialize + Send + Sync + 'static>(
    mut writer: WriteHalf,
    mut outbox: mpsc::UnboundedReceiver<M>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(message) = outbox.recv().await {
            if write_message(&mut writer, &message).await.is_err() {
                break;
            }
        }
    })
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum FrameError {
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("a frame of {0} bytes is over the limit")]
    TooLong(u32),
    #[error("undecodable message: {0}")]
    Decode(#[from] serde_json::Error),
}

/// Writes one message as a frame: its length (4 bytes, little-endian), then its JSON.
pub(crate) async fn write_message<W: AsyncWriteExt + Unpin>(
    writer: &mut W,
    message: &impl Serialize,
) -> Result<(), FrameError> {
    let body = serde_json::to_vec(message)?;
    let length = u32::try_from(body.len())
        .ok()
        .filter(|length| *length <= MAX_FRAME_BYTES)
        .ok_or(FrameError::TooLong(u32::MAX))?;
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&length.to_le_bytes());
    frame.extend_from_slice(&body);
    writer.write_all(&frame).await?;
    Ok(())
}

/// Reads one message; `Ok(None)` at a clean end of the stream.
pub(crate) async fn read_message<R: AsyncReadExt + Unpin, T: for<'de> Deserialize<'de>>(
    reader: &mut R,
) -> Result<Option<T>, FrameError> {
    let mut length = [0u8; 4];
    match reader.read_exact(&mut length).await {
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(error.into()),
    }
    let length = u32::from_le_bytes(length);
    if length > MAX_FRAME_BYTES {
        return Err(FrameError::TooLong(length));
    }
    let mut body = vec![0u8; length as usize];
    reader.read_exact(&mut body).await?;
    Ok(Some(serde_json::from_slice(&body)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{
        CompletionFigures, FimPrompt, GenerationFigures, SamplingConfig, StopReason,
    };
    use std::time::Duration;

    #[tokio::test]
    async fn messages_survive_the_round_trip_and_the_stream_ends_cleanly() {
        let (mut left, mut right) = tokio::io::duplex(1 << 16);
        let request = CompletionRequest {
            document: "file:///a.rs".to_owned(),
            prompt: FimPrompt {
                prefix: "fn main() {\n".to_owned(),
                line_head: "    let ✓ = ".to_owned(),
                ..FimPrompt::default()
            },
            max_tokens: 16,
            single_line: false,
            stop: vec!["\n\n".to_owned()],
            time_budget: Duration::from_millis(1500),
            sampling: SamplingConfig::default(),
            client: 0,
            done_when: None,
        };
        write_message(
            &mut left,
            &ToEngine::Complete {
                id: 7,
                request: request.clone(),
                done_checks: true,
            },
        )
        .await
        .unwrap();
        drop(left);
        match read_message::<_, ToEngine>(&mut right).await.unwrap() {
            Some(ToEngine::Complete {
                id: 7,
                request: received,
                done_checks: true,
            }) => assert_eq!(received, request),
            other => panic!("unexpected {other:?}"),
        }
        assert!(read_message::<_, ToEngine>(&mut right)
            .await
            .unwrap()
            .is_none());
    }

    /// The figures cross the socket with the generation's counters flat beside the completion's
    /// own: the fields an engine of the release before `GenerationFigures` wrote.
    #[test]
    fn completion_figures_keep_their_flat_fields_on_the_socket() {
        let figures = CompletionFigures {
            generation: GenerationFigures {
                n_prompt: 90,
                n_reused: 80,
                n_evaluated: 10,
                n_generated: 16,
                n_drafted: 6,
                n_accepted: 4,
                t_prefill_ms: 1.5,
                t_decode_ms: 20.25,
            },
            t_total_ms: 23.0,
            served_without_inference: false,
            stop: StopReason::MaxTokens,
            slot: Some(1),
            truncated: false,
        };
        let json = serde_json::to_value(&figures).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "n_prompt": 90, "n_reused": 80, "n_evaluated": 10, "n_generated": 16,
                "n_drafted": 6, "n_accepted": 4, "t_prefill_ms": 1.5, "t_decode_ms": 20.25,
                "t_total_ms": 23.0, "served_without_inference": false, "stop": "MaxTokens",
                "slot": 1, "truncated": false
            })
        );
        assert_eq!(
            serde_json::from_value::<CompletionFigures>(json).unwrap(),
            figures
        );
        // Without the drafting counters (an engine from before speculative decoding).
        let older = serde_json::json!({
            "n_prompt": 3, "n_reused": 0, "n_evaluated": 3, "n_generated": 1,
            "t_prefill_ms": 0.5, "t_decode_ms": 0.5, "t_total_ms": 1.0,
            "served_without_inference": false, "stop": "EndOfGeneration", "slot": null,
            "truncated": false
        });
        let read = serde_json::from_value::<CompletionFigures>(older).unwrap();
        assert_eq!(
            (read.generation.n_evaluated, read.generation.n_drafted),
            (3, 0)
        );
    }

    #[test]
    fn a_chat_outcome_keeps_its_flat_fields_on_the_socket() {
        let outcome = ChatOutcome {
            text: "ok".to_owned(),
            generation: GenerationFigures {
                n_prompt: 12,
                n_generated: 2,
                ..GenerationFigures::default()
            },
            stop: StopReason::EndOfGeneration,
        };
        let json = serde_json::to_value(&outcome).unwrap();
        assert_eq!(json["n_prompt"], 12);
        assert_eq!(json["n_generated"], 2);
        assert!(json.get("generation").is_none(), "{json}");
        assert_eq!(
            serde_json::from_value::<ChatOutcome>(json).unwrap(),
            outcome
        );
    }

    #[tokio::test]
    async fn an_oversized_frame_is_an_error_not_an_allocation() {
        let (mut left, mut right) = tokio::io::duplex(64);
        left.write_all(&u32::MAX.to_le_bytes()).await.unwrap();
        let read = read_message::<_, ToEngine>(&mut right).await;
        assert!(
            matches!(read, Err(FrameError::TooLong(u32::MAX))),
            "{read:?}"
        );
    }
}
