//! Plumbing tests on the real llama.cpp backend with the tiny random-weight model: loading,
//! KV-cache reuse between keystrokes, clean errors for bad files, chat streaming, grammars and
//! cancellation. The model's text is noise, so nothing here depends on what it says.

use std::path::PathBuf;
use tokio::sync::mpsc;

use super::*;
use crate::config::ModelConfig;
use crate::testing::tiny_model as tiny_model_path;

fn test_config() -> ModelConfig {
    ModelConfig {
        n_ctx: 1024,
        n_slots: 2,
        n_batch: 128,
        n_threads: 2,
        chat_n_ctx: 2048,
        ..ModelConfig::default()
    }
}

fn start() -> Engine {
    Engine::start(&test_config(), &tiny_model_path()).expect("the tiny model loads")
}

fn prompt(line_head: &str) -> FimPrompt {
    FimPrompt {
        repo_name: Some("demo".into()),
        extra: vec![ContextChunk {
            path: "src/util.rs".into(),
            label: "definition".into(),
            text: "pub fn add(a: i32, b: i32) -> i32 {\n    a + b\n}\n".into(),
        }],
        path: "src/main.rs".into(),
        prefix: "use util::add;\n\nfn main() {\n".into(),
        suffix: "\n    println!(\"{total}\");\n}\n".into(),
        line_head: line_head.into(),
    }
}

fn request(document: &str, prompt: FimPrompt) -> CompletionRequest {
    CompletionRequest {
        document: document.into(),
        prompt,
        max_tokens: 4,
        single_line: false,
        stop: Vec::new(),
        time_budget: Duration::from_secs(600),
        sampling: SamplingConfig::default(),
        client: 0,
        done_when: None,
    }
}

#[tokio::test]
async fn keystroke_after_a_completion_reuses_the_cache() {
    let engine = tokio::task::spawn_blocking(start).await.unwrap();
    let caps = engine.caps();
    assert!(caps.has_fim && caps.has_file_sep && caps.has_repo_name);
    assert_eq!(caps.n_ctx_per_slot, 512);
    assert!(engine.token_counter().count_tokens("fn main() {}") > 2);
    assert!(!engine.backend_name().is_empty());

    let first = engine
        .complete(request("file:///main.rs", prompt("    let total = add")))
        .await
        .unwrap();
    let figures = &first.figures;
    assert_eq!(figures.generation.n_reused, 0);
    assert_eq!(figures.generation.n_evaluated, figures.generation.n_prompt);
    assert!(figures.generation.n_generated >= 1);

    // Type one character the suggestion does not start with, so the model has to run.
    let typed = if first.text.starts_with('(') {
        "["
    } else {
        "("
    };
    let second = engine
        .complete(request(
            "file:///main.rs",
            prompt(&format!("    let total = add{typed}")),
        ))
        .await
        .unwrap();
    let figures = &second.figures;
    assert!(!figures.served_without_inference);
    assert!(figures.generation.n_evaluated <= 3, "{figures:?}");
    assert!(
        figures.generation.n_reused + 3 >= first.figures.generation.n_prompt,
        "{figures:?}"
    );
    assert_eq!(
        figures.generation.n_reused + figures.generation.n_evaluated,
        figures.generation.n_prompt
    );
    assert_eq!(engine.stats().await.n_completions, 2);
}

#[tokio::test]
async fn a_slot_filled_to_the_last_position_stops_cleanly() {
    let config = ModelConfig {
        n_ctx: 512,
        ..test_config()
    };
    let engine = tokio::task::spawn_blocking(move || Engine::start(&config, &tiny_model_path()))
        .await
        .unwrap()
        .unwrap();
    let huge = FimPrompt {
        prefix: "let value = compute(1, 2, 3);\n".repeat(400),
        suffix: "}\n".repeat(400),
        ..prompt("    ")
    };
    for document in ["file:///a.rs", "file:///b.rs"] {
        let mut request = request(document, huge.clone());
        request.max_tokens = 10_000;
        let completion = engine.complete(request).await.unwrap();
        let figures = &completion.figures;
        assert!(figures.truncated);
        // Half of the slot's 256 positions are kept for generation, which runs until they are
        // used up (unless the model happens to end the text first).
        assert!(figures.generation.n_prompt <= 128, "{figures:?}");
        if figures.stop == StopReason::ContextFull {
            assert_eq!(
                figures.generation.n_prompt + figures.generation.n_generated,
                256 + 1
            );
        } else {
            assert_eq!(figures.stop, StopReason::EndOfGeneration);
        }
    }
    // Both slots are full; the engine still answers.
    let after = engine
        .complete(request("file:///c.rs", prompt("    let")))
        .await
        .unwrap();
    assert!(after.figures.generation.n_generated >= 1);
}

#[test]
fn broken_model_files_are_errors_not_crashes() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config();
    let check = |path: &Path| {
        Engine::start(&config, path)
            .err()
            .expect("not a usable model")
    };

    let missing = dir.path().join("missing.gguf");
    assert_eq!(check(&missing), Error::ModelNotFound(missing.clone()));

    let bytes = std::fs::read(tiny_model_path()).unwrap();
    let truncated = dir.path().join("truncated.gguf");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let error = check(&truncated);
    assert!(
        matches!(&error, Error::InvalidModel { reason, .. } if reason.contains("truncated")),
        "{error}"
    );

    let text = dir.path().join("notes.gguf");
    std::fs::write(&text, "these are not weights\n").unwrap();
    assert!(matches!(check(&text), Error::InvalidModel { .. }));

    let empty = dir.path().join("empty.gguf");
    std::fs::write(&empty, "").unwrap();
    assert!(matches!(check(&empty), Error::InvalidModel { .. }));

    // A GGUF header with no tensors and an unknown architecture: no model can come of it, and
    // whichever check notices first (ours or llama.cpp's) must say so without crashing.
    let mut header = Vec::new();
    header.extend_from_slice(b"GGUF");
    header.extend_from_slice(&3u32.to_le_bytes());
    header.extend_from_slice(&0u64.to_le_bytes());
    header.extend_from_slice(&1u64.to_le_bytes());
    let key = "general.architecture";
    header.extend_from_slice(&(key.len() as u64).to_le_bytes());
    header.extend_from_slice(key.as_bytes());
    header.extend_from_slice(&8u32.to_le_bytes());
    header.extend_from_slice(&8u64.to_le_bytes());
    header.extend_from_slice(b"nonsense");
    let hollow = dir.path().join("hollow.gguf");
    std::fs::write(&hollow, &header).unwrap();
    let error = check(&hollow);
    assert!(
        matches!(&error, Error::InvalidModel { .. } | Error::Load { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("hollow.gguf"), "{error}");
}

/// A copy of the tiny model in `dir` with the bytes `from` (which occur exactly once) replaced by
/// `to`, of the same length: the layout is untouched, so the file passes the GGUF header check.
fn patched_model(dir: &Path, name: &str, from: &[u8], to: &[u8]) -> PathBuf {
    assert_eq!(from.len(), to.len());
    let mut bytes = std::fs::read(tiny_model_path()).unwrap();
    let found: Vec<usize> = bytes
        .windows(from.len())
        .enumerate()
        .filter(|(_, window)| *window == from)
        .map(|(at, _)| at)
        .collect();
    assert_eq!(found.len(), 1, "{} occurrences", found.len());
    bytes[found[0]..found[0] + to.len()].copy_from_slice(to);
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// The `general.architecture` entry of the tiny model with `value` (5 bytes) as its value.
fn architecture_entry(value: &[u8; 5]) -> Vec<u8> {
    let key = b"general.architecture";
    let mut entry = (key.len() as u64).to_le_bytes().to_vec();
    entry.extend_from_slice(key);
    entry.extend_from_slice(&8u32.to_le_bytes());
    entry.extend_from_slice(&5u64.to_le_bytes());
    entry.extend_from_slice(value);
    entry
}

#[test]
fn a_gguf_that_passes_our_check_but_not_llama_cpp_is_a_load_error() {
    let dir = tempfile::tempdir().unwrap();
    let unknown = patched_model(
        dir.path(),
        "unknown-architecture.gguf",
        &architecture_entry(b"qwen2"),
        &architecture_entry(b"qwenx"),
    );
    // The tensor is renamed, so the one llama.cpp looks for is missing.
    let missing = patched_model(
        dir.path(),
        "missing-tensor.gguf",
        b"output_norm.weight",
        b"output_norm.weighx",
    );
    for (path, architecture) in [(unknown, "qwenx"), (missing, "qwen2")] {
        let summary = crate::model::inspect(&path).expect("our header check passes");
        assert_eq!(summary.architecture.as_deref(), Some(architecture));
        let error = Engine::start(&test_config(), &path)
            .err()
            .expect("llama.cpp refuses it");
        assert!(matches!(error, Error::Load { .. }), "{error}");
        let message = error.to_string();
        assert!(
            message.starts_with(&format!("cannot load model {}: ", path.display())),
            "{message}"
        );
        assert!(message.contains("llama.cpp rejected it"), "{message}");
    }
    // The engine still loads a good model afterwards.
    assert!(Engine::start(&test_config(), &tiny_model_path()).is_ok());
}

#[test]
fn a_context_bigger_than_memory_is_refused_with_what_to_lower() {
    let config = ModelConfig {
        n_ctx: 4_000_000_000,
        n_slots: 2,
        n_gpu_layers: 0,
        ..test_config()
    };
    let error = Engine::start(&config, &tiny_model_path())
        .err()
        .expect("no machine has the memory for this KV cache");
    let message = error.to_string();
    assert!(matches!(error, Error::OutOfMemory(_)), "{message}");
    assert!(
        message.starts_with("out of memory: a context of 4000000000 tokens needs at least "),
        "{message}"
    );
    assert!(
        message.contains("lower model.n_ctx or model.n_slots (the KV cache grows with both)"),
        "{message}"
    );
    let chat = ModelConfig {
        chat_n_ctx: 4_000_000_000,
        n_gpu_layers: 0,
        ..test_config()
    };
    let engine = Engine::start(&chat, &tiny_model_path()).expect("the completion context fits");
    let (deltas, _received) = mpsc::unbounded_channel();
    let error = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(engine.chat(chat_request(4, None), deltas))
        .expect_err("the chat context does not fit");
    assert!(
        error.to_string().contains("lower model.chat_n_ctx"),
        "{error}"
    );
}

fn chat_request(max_tokens: u32, grammar: Option<&str>) -> ChatRequest {
    ChatRequest {
        messages: vec![
            ChatMessage {
                role: "system".into(),
                content: "You answer briefly.".into(),
            },
            ChatMessage {
                role: "user".into(),
                content: "Is this code correct?".into(),
            },
        ],
        max_tokens,
        grammar: grammar.map(str::to_owned),
        sampling: SamplingConfig::default(),
    }
}

#[tokio::test]
async fn chat_streams_follows_grammars_and_stops_when_cancelled() {
    let engine = tokio::task::spawn_blocking(start).await.unwrap();

    let (deltas_tx, mut deltas) = mpsc::unbounded_channel();
    let outcome = engine.chat(chat_request(8, None), deltas_tx).await.unwrap();
    let mut streamed = String::new();
    while let Ok(delta) = deltas.try_recv() {
        streamed += &delta;
    }
    assert_eq!(streamed, outcome.text);
    assert!(outcome.generation.n_generated >= 1 && outcome.generation.n_generated <= 8);
    assert!(outcome.generation.n_prompt > 10);

    let (deltas_tx, _deltas) = mpsc::unbounded_channel();
    let grammar = "root ::= \"yes\" | \"no\"";
    let outcome = engine
        .chat(chat_request(16, Some(grammar)), deltas_tx)
        .await
        .unwrap();
    assert!(
        ["yes", "no"].contains(&outcome.text.as_str()),
        "{outcome:?}"
    );

    let (deltas_tx, _deltas) = mpsc::unbounded_channel();
    let bad = engine
        .chat(chat_request(16, Some("root ::= (")), deltas_tx)
        .await;
    assert!(matches!(bad, Err(Error::Grammar(_))), "{bad:?}");

    // A long chat, dropped after its first delta.
    let (deltas_tx, mut deltas) = mpsc::unbounded_channel();
    let chatting = engine.clone();
    let task =
        tokio::spawn(async move { chatting.chat(chat_request(100_000, None), deltas_tx).await });
    deltas.recv().await.expect("a first delta");
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    // The engine is free again: a completion is answered, and the chat counts as abandoned.
    let completion = engine
        .complete(request("file:///main.rs", prompt("    let")))
        .await
        .unwrap();
    assert!(completion.figures.generation.n_generated >= 1);
    assert_eq!(engine.stats().await.n_abandoned, 1);
}

/// The tiny model, loaded directly, for tests of the llama.cpp backend itself.
fn tiny_model() -> llama_cpp_2::model::LlamaModel {
    super::backend::llama::load_model(&tiny_model_path(), &test_config(), None)
        .expect("the tiny model loads")
}

/// A backend of one 512-token sequence on `model`.
fn one_sequence(model: &llama_cpp_2::model::LlamaModel) -> super::backend::llama::LlamaCpp<'_> {
    let shape = super::backend::llama::ContextShape {
        n_ctx: 512,
        n_seq: 1,
        n_ctx_setting: "model.n_ctx",
    };
    let texts = std::sync::Arc::new(super::backend::llama::TokenTexts::of(model));
    super::backend::llama::LlamaCpp::new(model, texts, &test_config(), shape).expect("a context")
}

/// `adapt_threads` reaches llama.cpp: the context pointer recovered from llama-cpp-2's `Debug`
/// form reads back the configured counts, and counts set through it take effect without
/// changing what the model computes. A new llama-cpp-2 that prints something else fails here.
/// On the CPU: with every layer on a GPU the counts are left alone.
#[cfg(target_os = "linux")]
#[test]
fn thread_counts_change_on_a_live_context() {
    use super::backend::llama::{load_model, ContextShape, LlamaCpp, TokenTexts};
    use super::backend::Backend;

    let on_cpu = ModelConfig {
        n_gpu_layers: 0,
        ..test_config()
    };
    let model = load_model(&tiny_model_path(), &on_cpu, None).expect("the tiny model loads");
    let texts = std::sync::Arc::new(TokenTexts::of(&model));
    let shape = ContextShape {
        n_ctx: 512,
        n_seq: 1,
        n_ctx_setting: "model.n_ctx",
    };
    let mut backend = LlamaCpp::new(&model, texts.clone(), &on_cpu, shape).expect("a context");
    assert_eq!(backend.context_threads(), Some((2, 2)));
    let prompt = backend.tokenize("fn main() {\n    let x = ", false);
    let greedy = |backend: &mut LlamaCpp<'_>| {
        backend.clear(0);
        backend.evaluate(0, 0, &prompt).expect("evaluates");
        let mut sampler = backend
            .new_sampler(&SamplingConfig::default(), None)
            .expect("a greedy sampler");
        backend.sample(&mut sampler)
    };
    let on_two = greedy(&mut backend);
    backend.set_context_threads(1, 1);
    assert_eq!(backend.context_threads(), Some((1, 1)));
    assert_eq!(greedy(&mut backend), on_two);

    let fixed = ModelConfig {
        adapt_threads: false,
        ..on_cpu
    };
    let without = LlamaCpp::new(&model, texts, &fixed, shape).expect("a context");
    assert_eq!(without.context_threads(), None);
}

/// Token healing on the real vocabulary: whatever the (random) logits say, the token picked
/// under a prefix starts with that prefix or is a start of it, for a prefix that is one token
/// (`uint`) and one that several tokens could begin (`ui`).
#[test]
fn sampling_under_a_prefix_only_picks_tokens_that_fit_it() {
    use super::backend::Backend;

    let model = tiny_model();
    let mut backend = one_sequence(&model);
    let prompt = backend.tokenize("fn main() {\n    let x: ", false);
    backend.evaluate(0, 0, &prompt).expect("evaluates");
    for prefix in ["uint", "ui", " x"] {
        let mut sampler = backend
            .new_sampler(&SamplingConfig::default(), None)
            .expect("a greedy sampler");
        let token = backend.sample_with_prefix(&mut sampler, prefix.as_bytes());
        let piece = backend.piece(token);
        assert!(
            !piece.is_empty()
                && (piece.starts_with(prefix.as_bytes()) || prefix.as_bytes().starts_with(&piece)),
            "{prefix:?} -> {:?}",
            String::from_utf8_lossy(&piece)
        );
    }
    // ` as` + `ser` spell the start of ` assert`, one token of its own; nothing longer starts
    // with the whole indented line.
    assert_eq!(
        backend
            .tokenize("        asser", false)
            .iter()
            .map(|token| String::from_utf8_lossy(&backend.piece(*token)).into_owned())
            .collect::<Vec<_>>(),
        ["       ", " as", "ser"]
    );
    assert!(backend.extends_to_a_longer_token(b" asser"));
    assert!(backend.extends_to_a_longer_token(b"ser"));
    assert!(!backend.extends_to_a_longer_token(b"        asser"));
    assert!(!backend.extends_to_a_longer_token(b"zzzzqqqq"));
}

/// Greedy decoding picks its token straight from the logits; it must pick what llama.cpp's own
/// greedy sampler picks, with and without a healing prefix, at every step of a generation.
#[test]
fn the_greedy_fast_path_picks_what_llama_cpp_picks() {
    use super::backend::llama::Sampling;
    use super::backend::Backend;
    use llama_cpp_2::sampling::LlamaSampler;

    let model = tiny_model();
    let mut backend = one_sequence(&model);
    let mut tokens = backend.tokenize("fn main() {\n    let total = ", false);
    backend.evaluate(0, 0, &tokens).expect("evaluates");
    let mut fast = backend
        .new_sampler(&SamplingConfig::default(), None)
        .expect("a greedy sampler");
    assert!(matches!(fast, Sampling::Greedy));
    let mut reference = Sampling::Chain(LlamaSampler::chain_simple([LlamaSampler::greedy()]));
    // Under a healing prefix, both pick the first of the highest logits among all tokens that
    // fit, found here by a scan of the whole vocabulary.
    let logits = backend.last_logits().to_vec();
    for prefix in ["a", "ad", " x", "tot", "\n"] {
        let prefix = prefix.as_bytes();
        let mut expected: Option<(usize, f32)> = None;
        for (token_idx, &logit) in logits.iter().enumerate() {
            let piece = backend.piece(token_idx as i32);
            let fits =
                !piece.is_empty() && (piece.starts_with(prefix) || prefix.starts_with(&piece));
            if fits && expected.is_none_or(|(_, best)| logit > best) {
                expected = Some((token_idx, logit));
            }
        }
        let expected = expected.expect("some token fits").0 as i32;
        assert_eq!(backend.sample_with_prefix(&mut fast, prefix), expected);
        assert_eq!(backend.sample_with_prefix(&mut reference, prefix), expected);
    }
    for _ in 0..16 {
        let token = backend.sample(&mut fast);
        assert_eq!(token, backend.sample(&mut reference));
        backend
            .evaluate(0, tokens.len() as u32, &[token])
            .expect("evaluates");
        tokens.push(token);
    }
}

#[tokio::test]
async fn a_separate_chat_model_answers_chat_and_a_broken_one_leaves_completions_alone() {
    let dir = tempfile::tempdir().unwrap();
    // A copy, so the engine cannot tell it is the completion model and loads it on its own.
    let chat_copy = dir.path().join("chat.gguf");
    std::fs::copy(tiny_model_path(), &chat_copy).unwrap();
    let broken = dir.path().join("broken.gguf");
    std::fs::write(&broken, "these are not weights\n").unwrap();
    let start_with = |chat_model: ChatModel| {
        let config = test_config();
        tokio::task::spawn_blocking(move || {
            Engine::start_with_progress(&config, &tiny_model_path(), chat_model, None)
                .expect("the completion model loads whatever the chat model is")
        })
    };

    let engine = start_with(ChatModel::File(chat_copy.clone()))
        .await
        .unwrap();
    let (deltas_tx, _deltas) = mpsc::unbounded_channel();
    let outcome = engine.chat(chat_request(4, None), deltas_tx).await.unwrap();
    assert!(
        outcome.generation.n_generated >= 1 && outcome.generation.n_prompt > 10,
        "{outcome:?}"
    );
    assert_eq!(
        engine.info().await.unwrap().chat_model_state,
        ChatModelState::Ready(chat_copy.clone())
    );

    // A chat model still downloading: completions are served meanwhile, the chat waits for it.
    let (downloaded_tx, downloaded_rx) = std::sync::mpsc::channel::<()>();
    let downloaded_rx = std::sync::Mutex::new(downloaded_rx);
    let resolved_copy = chat_copy.clone();
    let engine = start_with(ChatModel::Resolve(ChatModelResolver::new(
        "hf:someone/chat",
        move || {
            let _ = downloaded_rx.lock().unwrap().recv();
            Ok(resolved_copy.clone())
        },
    )))
    .await
    .unwrap();
    let (deltas_tx, _deltas) = mpsc::unbounded_channel();
    let chat_engine = engine.clone();
    let chat =
        tokio::spawn(async move { chat_engine.chat(chat_request(4, None), deltas_tx).await });
    let completion = engine
        .complete(request("file:///main.rs", prompt("    let")))
        .await
        .unwrap();
    assert!(completion.figures.generation.n_generated >= 1);
    assert_eq!(
        engine.info().await.unwrap().chat_model_state,
        ChatModelState::Loading
    );
    assert!(!chat.is_finished());
    downloaded_tx.send(()).unwrap();
    let outcome = chat.await.unwrap().unwrap();
    assert!(outcome.generation.n_generated >= 1, "{outcome:?}");
    assert_eq!(
        engine.info().await.unwrap().chat_model_state,
        ChatModelState::Ready(chat_copy)
    );

    let failing_download =
        ChatModelResolver::new("hf:someone/gone", || Err("download failed: 404".to_owned()));
    for (chat_model, expected) in [
        (ChatModel::File(broken), "broken.gguf"),
        (
            ChatModel::Unavailable("download failed".into()),
            "download failed",
        ),
        (
            ChatModel::Resolve(failing_download),
            "hf:someone/gone: download failed: 404",
        ),
    ] {
        let engine = start_with(chat_model).await.unwrap();
        let (deltas_tx, _deltas) = mpsc::unbounded_channel();
        let error = engine
            .chat(chat_request(4, None), deltas_tx)
            .await
            .unwrap_err();
        assert!(
            matches!(&error, Error::ChatModelUnavailable(reason) if reason.contains(expected)),
            "{error}"
        );
        let completion = engine
            .complete(request("file:///main.rs", prompt("    let")))
            .await
            .unwrap();
        assert!(completion.figures.generation.n_generated >= 1);
        assert!(
            matches!(engine.info().await.unwrap().chat_model_state, ChatModelState::Unavailable(reason) if reason.contains(expected))
        );
    }
}

/// Completions decoded together in one batch read each its own logits: on fixed prompts they
/// write what each writes alone. Batched matrix products may round differently from one-row
/// ones, so the test asks for the first token of every completion and for at least 3 of the 4
/// whole texts to agree.
#[tokio::test]
async fn completions_decoded_together_write_what_each_writes_alone() {
    let documents = [
        "file:///a.rs",
        "file:///b.rs",
        "file:///c.rs",
        "file:///d.rs",
    ];
    let line_heads = [
        "    let total = add",
        "    let x",
        "    println!(",
        "    for i in",
    ];
    let requests = || {
        documents
            .iter()
            .zip(line_heads)
            .map(|(document, line_head)| CompletionRequest {
                max_tokens: 12,
                ..request(document, prompt(line_head))
            })
            .collect::<Vec<_>>()
    };
    let config = ModelConfig {
        n_slots: 4,
        n_ctx: 2048,
        ..test_config()
    };
    let alone = {
        let engine = Engine::start(&config, &tiny_model_path()).unwrap();
        let mut texts = Vec::new();
        for request in requests() {
            texts.push(engine.complete(request).await.unwrap());
        }
        assert_eq!(engine.stats().await.n_batches, 0);
        texts
    };
    let engine = Engine::start(&config, &tiny_model_path()).unwrap();
    let together = futures::future::join_all(
        requests()
            .into_iter()
            .map(|request| engine.complete(request)),
    )
    .await;
    let stats = engine.stats().await;
    // Some steps carried several sequences (where taking turns measures faster, others one).
    assert!(
        stats.n_batches > 0 && stats.n_batched_sequences > stats.n_batches,
        "{stats:?}"
    );
    let mut n_same = 0;
    for (alone, together) in alone.iter().zip(together) {
        let together = together.unwrap();
        assert_eq!(
            alone.token_ends.first().map(|end| &alone.text[..*end]),
            together
                .token_ends
                .first()
                .map(|end| &together.text[..*end]),
        );
        n_same += usize::from(alone.text == together.text);
    }
    assert!(n_same >= 3, "{n_same} of 4 texts agree");
}

/// Greedy completions with every layer offloaded write what the CPU writes, on fixed prompts.
/// A GPU backend computes in other orders and precisions than the CPU (f16 accumulators,
/// fused kernels), and the tiny model's random logits have near ties, so a text may part ways
/// after a few tokens: the test asks for the first token of at least 7 of the 8 completions and
/// for at least 5 of the 8 whole texts (12 tokens each) to agree. Without a GPU both engines run
/// on the CPU and all 8 must agree. `WELLSPRING_TEST_BACKEND` (`vulkan` in CI's offload job)
/// names the backend the offloaded engine must be on, with every layer offloaded.
#[tokio::test]
async fn offloaded_layers_write_what_the_cpu_writes() {
    let line_heads = [
        "    let total = add",
        "    let x",
        "    println!(",
        "    for i in",
        "    if total >",
        "    let name = String::",
        "    match ",
        "    return ",
    ];
    let completions = |n_gpu_layers: i32| async move {
        let config = ModelConfig {
            n_gpu_layers,
            ..test_config()
        };
        let engine = Engine::start(&config, &tiny_model_path()).unwrap();
        let mut texts = Vec::new();
        for (i, line_head) in line_heads.iter().enumerate() {
            let request = CompletionRequest {
                max_tokens: 12,
                ..request(&format!("file:///{i}.rs"), prompt(line_head))
            };
            let completion = engine.complete(request).await.unwrap();
            let first = completion
                .token_ends
                .first()
                .map(|end| completion.text[..*end].to_owned());
            texts.push((first, completion.text));
        }
        (engine.placement().clone(), texts)
    };
    let (cpu, on_cpu) = completions(0).await;
    assert_eq!(cpu.backend, "cpu");
    assert_eq!(cpu.n_layers_offloaded, 0);
    let (offloaded, on_device) = completions(-1).await;
    if let Some(expected) = std::env::var_os("WELLSPRING_TEST_BACKEND") {
        assert_eq!(offloaded.backend, expected.to_string_lossy());
        assert!(offloaded.n_layers > 0);
        assert_eq!(offloaded.n_layers_offloaded, offloaded.n_layers);
    }
    let n_same_first = on_cpu
        .iter()
        .zip(&on_device)
        .filter(|(cpu, device)| cpu.0 == device.0)
        .count();
    let n_same_text = on_cpu
        .iter()
        .zip(&on_device)
        .filter(|(cpu, device)| cpu.1 == device.1)
        .count();
    let summary = format!(
        "on {:?}: {n_same_first} of 8 first tokens and {n_same_text} of 8 texts agree with the CPU's\ncpu:    {on_cpu:?}\ndevice: {on_device:?}",
        offloaded.device
    );
    eprintln!("{summary}");
    if offloaded.backend == "cpu" {
        assert_eq!(n_same_text, 8, "{summary}");
    } else {
        assert!(n_same_first >= 7 && n_same_text >= 5, "{summary}");
    }
}

/// Speculative decoding by prompt lookup writes what plain decoding writes: on fixed prompts
/// with long answers (the tiny model's noise falls into loops that drafts pick up), an engine
/// that drafts and one that does not give the same texts. Checking a draft evaluates several
/// positions in one batch, whose products may round differently from one-row ones, so the test
/// asks for at least 3 of the 4 texts to agree, and for drafts to have been checked at all.
#[tokio::test]
async fn drafted_decoding_writes_what_plain_decoding_writes() {
    let line_heads = [
        "    let total = add",
        "    let x",
        "    println!(",
        "    for i in",
    ];
    let answers = |lookup_draft: u32| async move {
        let config = ModelConfig {
            lookup_draft,
            ..test_config()
        };
        let engine = Engine::start(&config, &tiny_model_path()).unwrap();
        let mut texts = Vec::new();
        for (idx, line_head) in line_heads.iter().enumerate() {
            let request = CompletionRequest {
                max_tokens: 48,
                ..request(&format!("file:///{idx}.rs"), prompt(line_head))
            };
            texts.push(engine.complete(request).await.unwrap().text);
        }
        (texts, engine.stats().await)
    };
    let (plain, plain_stats) = answers(0).await;
    let (drafted, stats) = answers(8).await;
    assert_eq!(plain_stats.n_tokens_drafted, 0);
    assert!(stats.n_tokens_drafted > 0, "no draft was checked");
    let n_same = plain.iter().zip(&drafted).filter(|(a, b)| a == b).count();
    assert!(
        n_same >= 3,
        "{n_same} of 4 texts agree\nplain:   {plain:?}\ndrafted: {drafted:?}"
    );
}

/// A draft model writes what plain decoding writes: the tiny model drafting for itself (the
/// same vocabulary, and the same choices but for rounding) on fixed prompts with long answers.
/// The scheduler is driven here step by step, so that the draft model's catching up while idle
/// happens between a file's first completion and the keystroke after it, as typing pauses. As
/// above, at least 3 of the 4 texts agree.
#[test]
fn a_draft_model_writes_what_plain_decoding_writes() {
    use super::backend::llama::{load_model, ContextShape, LlamaCpp, TokenTexts};
    use super::draft::MakeDraftBackend;
    use super::scheduler::{Command, CompletionJob, Scheduler, Shared};
    use std::sync::Arc;

    let line_heads = [
        "    let total = add",
        "    let x",
        "    println!(",
        "    for i in",
    ];
    let config = ModelConfig {
        lookup_draft: 0,
        draft_path: tiny_model_path().display().to_string(),
        ..test_config()
    };
    let shape = ContextShape {
        n_ctx: config.n_ctx,
        n_seq: config.n_slots,
        n_ctx_setting: "model.n_ctx",
    };
    let model = load_model(&tiny_model_path(), &config, None).expect("the tiny model loads");
    let draft = load_model(&tiny_model_path(), &config, None).expect("the tiny model loads");
    let context = |model, config: &ModelConfig| {
        let texts = Arc::new(TokenTexts::of(model));
        LlamaCpp::new(model, texts, config, shape).expect("a context")
    };
    let answers = |drafting: bool| {
        let make_draft: Option<MakeDraftBackend<'_, LlamaCpp<'_>>> = drafting.then(|| {
            let draft_config = ModelConfig {
                draft_path: String::new(),
                ..config.clone()
            };
            let mut backend = Some(context(&draft, &draft_config));
            Box::new(move || Ok(backend.take())) as MakeDraftBackend<'_, LlamaCpp<'_>>
        });
        let plain_config = ModelConfig {
            draft_path: if drafting {
                config.draft_path.clone()
            } else {
                String::new()
            },
            ..config.clone()
        };
        let shared = Arc::new(Shared::default());
        let mut scheduler = Scheduler::new(
            context(&model, &plain_config),
            Box::new(|| Ok(None)),
            make_draft,
            shared.clone(),
        );
        let mut complete = |document: &str, line_head: &str| {
            let (reply, mut answer) = tokio::sync::oneshot::channel();
            scheduler.submit(Command::Complete(CompletionJob {
                request: CompletionRequest {
                    max_tokens: 48,
                    ..request(document, prompt(line_head))
                },
                reply,
                submitted_at: std::time::Instant::now(),
            }));
            while !scheduler.is_idle() {
                scheduler.step();
            }
            answer.try_recv().unwrap().unwrap().text
        };
        let mut texts = Vec::new();
        for (idx, line_head) in line_heads.iter().enumerate() {
            let document = format!("file:///{idx}.rs");
            // The file's first completion, then a keystroke.
            complete(&document, &line_head[..line_head.len() - 1]);
            texts.push(complete(&document, line_head));
        }
        let stats = shared.stats().clone();
        (texts, stats)
    };
    let (plain, plain_stats) = answers(false);
    let (drafted, stats) = answers(true);
    assert_eq!(plain_stats.n_tokens_drafted, 0);
    assert!(stats.n_tokens_drafted > 0, "the draft model never drafted");
    assert!(
        stats.n_tokens_accepted * 2 > stats.n_tokens_drafted,
        "a model drafting for itself was agreed with {} times in {}",
        stats.n_tokens_accepted,
        stats.n_tokens_drafted
    );
    let n_same = plain.iter().zip(&drafted).filter(|(a, b)| a == b).count();
    assert!(
        n_same >= 3,
        "{n_same} of 4 texts agree\nplain:   {plain:?}\ndrafted: {drafted:?}"
    );
}
