//! The GGUF header reader on the tiny test model and on hand-made good and broken files.

use std::path::Path;

use super::GgufBuilder;
use crate::model::gguf::{SpecialTokens, TensorBytes};
use crate::model::{inspect, GgufSummary};
use crate::testing::tiny_model;

/// Writes `bytes` to a file in a fresh directory and inspects it. Errors come back as their
/// message with the directory replaced by `$DIR`.
fn check_bytes(bytes: &[u8]) -> Result<GgufSummary, String> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("model.gguf");
    std::fs::write(&path, bytes).expect("write test file");
    check_path(&path, dir.path())
}

fn check_path(path: &Path, dir: &Path) -> Result<GgufSummary, String> {
    inspect(path).map_err(|error| {
        error
            .to_string()
            .replace(&dir.display().to_string(), "$DIR")
    })
}

fn check_error(bytes: &[u8], expected: &str) {
    match check_bytes(bytes) {
        Ok(summary) => panic!("expected `{expected}`, got {summary:?}"),
        Err(message) => assert_eq!(message, expected),
    }
}

#[test]
fn tiny_model_summary() {
    let path = tiny_model();
    let summary = inspect(&path).expect("the tiny model is a valid GGUF");
    assert_eq!(summary.version, 3);
    assert_eq!(summary.architecture.as_deref(), Some("qwen2"));
    assert_eq!(summary.name.as_deref(), Some("random-tiny"));
    assert_eq!(summary.file_type_name(), Some("F16"));
    assert_eq!(summary.n_ctx_train, Some(32768));
    assert_eq!(summary.n_vocab, Some(151_936));
    assert_eq!(summary.n_tensors, 26);
    assert!(summary.has_chat_template);
    // The Qwen2.5 vocabulary's special tokens, by id.
    assert_eq!(
        summary.special_tokens,
        SpecialTokens {
            fim_prefix: Some(151_659),
            fim_middle: Some(151_660),
            fim_suffix: Some(151_661),
            fim_pad: Some(151_662),
            repo_name: Some(151_663),
            file_sep: Some(151_664),
        }
    );
    assert!(summary.has_fim());
    assert!(summary.has_repo_fim());
    let file_bytes = std::fs::metadata(&path).expect("stat").len();
    assert_eq!(summary.file_bytes, file_bytes);
    assert!(summary.tensor_data_bytes > 0 && summary.tensor_data_bytes < file_bytes);
    // Its shape: 2 layers, 64 wide, one head, a feed-forward of 128.
    assert_eq!(
        (
            summary.n_layer,
            summary.n_embd,
            summary.n_head,
            summary.n_head_kv
        ),
        (Some(2), Some(64), Some(1), Some(1))
    );
    assert_eq!(summary.n_ff, Some(128));
    assert_eq!((summary.n_embd_head_k, summary.n_expert), (None, None));
    // Per block: four 64 × 64 and three 64 × 128 F16 matrices, three biases and two norms in
    // F32. The embedding is F16, the output norm F32, and there is no output matrix (tied).
    let block_bytes = 4 * 64 * 64 * 2 + 3 * 64 * 128 * 2 + 5 * 64 * 4;
    assert_eq!(
        summary.tensor_bytes,
        TensorBytes {
            blocks: vec![block_bytes; 2],
            token_embd: 151_936 * 64 * 2,
            output: 64 * 4,
            has_output_weight: false,
        }
    );
}

#[test]
fn shape_and_tensor_bytes_by_place() {
    // A Qwen3-MoE-like header: heads 128 wide although 2048 / 32 is 64.
    let bytes = GgufBuilder::new()
        .string("general.architecture", "qwen3moe")
        .u32("qwen3moe.block_count", 2)
        .u32("qwen3moe.embedding_length", 2048)
        .u32("qwen3moe.attention.head_count", 32)
        .u32("qwen3moe.attention.head_count_kv", 4)
        .u32("qwen3moe.attention.key_length", 128)
        .u32("qwen3moe.attention.value_length", 128)
        .u32("qwen3moe.expert_count", 128)
        .u32("qwen3moe.expert_used_count", 8)
        .u32("qwen3moe.expert_feed_forward_length", 768)
        .tensor("token_embd.weight", &[64, 3], 8)
        .tensor("blk.0.attn_q.weight", &[64, 2], 8)
        .tensor("blk.1.attn_q.weight", &[64, 2], 8)
        .tensor("blk.1.ffn_norm.weight", &[64], 0)
        // 100 bytes of a type the reader lacks, then padding to the next 32-byte boundary.
        .tensor_of_unknown_type("blk.0.ffn_gate_exps.weight", &[64, 4], 100)
        .tensor("output_norm.weight", &[64], 0)
        .tensor("output.weight", &[64, 3], 8)
        .tensor("rope_freqs.weight", &[8], 0)
        .build();
    let summary = check_bytes(&bytes).expect("valid file");
    assert_eq!(summary.n_layer, Some(2));
    assert_eq!(summary.n_embd, Some(2048));
    assert_eq!((summary.n_head, summary.n_head_kv), (Some(32), Some(4)));
    assert_eq!(
        (summary.n_embd_head_k, summary.n_embd_head_v),
        (Some(128), Some(128))
    );
    assert_eq!(
        (summary.n_expert, summary.n_expert_used, summary.n_ff_expert),
        (Some(128), Some(8), Some(768))
    );
    assert_eq!(summary.n_ff, None);
    assert_eq!(
        summary.tensor_bytes,
        TensorBytes {
            // Q8_0 rows of 64 are 2 blocks of 34 bytes; the unknown tensor runs to the next
            // tensor's start, 128 bytes on.
            blocks: vec![2 * 68 + 128, 2 * 68 + 64 * 4],
            token_embd: 3 * 68,
            // The output matrix, its norm, and the rope table no block owns.
            output: 3 * 68 + 64 * 4 + 8 * 4,
            has_output_weight: true,
        }
    );
}

#[test]
fn a_hostile_block_index_is_not_a_block() {
    let bytes = GgufBuilder::model(8)
        .tensor("blk.4000000000.attn_q.weight", &[8], 0)
        .tensor("blk.x.attn_q.weight", &[8], 0)
        .build();
    let summary = check_bytes(&bytes).expect("valid file");
    assert!(summary.tensor_bytes.blocks.is_empty());
    assert_eq!(summary.tensor_bytes.output, 3 * 32);
}

#[test]
fn truncated_copy_of_tiny_model() {
    let bytes = std::fs::read(tiny_model()).expect("read the tiny model");
    let full_bytes = bytes.len();
    let cut_bytes = full_bytes - 1000;
    check_error(
        &bytes[..cut_bytes],
        &format!(
            "$DIR/model.gguf is truncated: tensor data needs {full_bytes} bytes but the file has {cut_bytes}"
        ),
    );
    // Cut inside the vocabulary: the header itself is incomplete.
    check_error(
        &bytes[..100_000],
        "$DIR/model.gguf is truncated: the file ends inside the GGUF header, at byte 100000",
    );
}

#[test]
fn not_gguf_files() {
    check_error(b"", "$DIR/model.gguf is empty (0 bytes), not a GGUF file");
    check_error(
        b"GG",
        "$DIR/model.gguf is not a GGUF file (only 2 bytes long)",
    );
    check_error(
        b"<!doctype html><title>404</title>",
        "$DIR/model.gguf is not a GGUF file (bad magic)",
    );
    check_error(
        b"GGUF\x01\0\0\0rest",
        "$DIR/model.gguf uses GGUF version 1; only versions 2 and 3 are supported",
    );
    check_error(
        b"GGUF\0\0\0\x03rest",
        "$DIR/model.gguf is not a GGUF file (it is a big-endian GGUF; llama.cpp loads little-endian files only)",
    );
    check_error(
        b"GGUF\x03\0\0\0\x01\0\0\0",
        "$DIR/model.gguf is truncated: the file ends inside the GGUF header, at byte 12",
    );
}

#[test]
fn missing_file_and_directory() {
    let dir = tempfile::tempdir().expect("temp dir");
    assert_eq!(
        check_path(&dir.path().join("absent.gguf"), dir.path()),
        Err("model file $DIR/absent.gguf does not exist".to_owned())
    );
    assert_eq!(
        check_path(dir.path(), dir.path()),
        Err("$DIR is not a GGUF file (it is a directory)".to_owned())
    );
}

#[test]
fn hand_made_model() {
    let bytes = GgufBuilder::model(1000)
        .f32("qwen2.rope.freq_base", 1e6)
        .nested_ints("test.nested", &[&[1, 2, 3], &[], &[4]])
        .string("tokenizer.chat_template", "{{ messages }}")
        .tensor("other", &[64, 2], 8)
        .build();
    let summary = check_bytes(&bytes).expect("valid file");
    assert_eq!(summary.architecture.as_deref(), Some("qwen2"));
    assert_eq!(summary.name.as_deref(), Some("test model"));
    assert_eq!(summary.file_type_name(), Some("F32"));
    assert_eq!(summary.n_ctx_train, Some(4096));
    assert_eq!(summary.n_vocab, Some(6));
    assert_eq!(summary.n_tensors, 2);
    assert_eq!(summary.n_params, 1000 + 128);
    assert!(summary.has_chat_template);
    assert!(summary.has_fim());
    assert!(summary.has_repo_fim());
    assert_eq!(summary.special_tokens.fim_prefix, Some(2));
    assert_eq!(summary.special_tokens.fim_middle, Some(3));
    assert_eq!(summary.special_tokens.fim_suffix, Some(4));
    assert_eq!(summary.special_tokens.repo_name, None);
    // 4000 bytes of F32 (a multiple of 32, so no padding), then 4 blocks of Q8_0.
    assert_eq!(summary.tensor_data_bytes, 4000 + 4 * 34);
}

#[test]
fn version_2_and_custom_alignment() {
    let bytes = GgufBuilder::model(10)
        .version(2)
        .u32("general.alignment", 64)
        .tensor("second", &[3], 0)
        .build();
    let summary = check_bytes(&bytes).expect("valid file");
    assert_eq!(summary.version, 2);
    assert_eq!(summary.tensor_data_bytes, 64 + 12);
}

#[test]
fn metadata_token_ids_win_over_token_texts() {
    let bytes = GgufBuilder::model(10)
        .u32("tokenizer.ggml.fim_pre_token_id", 0)
        .u32("tokenizer.ggml.fim_sep_token_id", 1)
        .build();
    let summary = check_bytes(&bytes).expect("valid file");
    assert_eq!(summary.special_tokens.fim_prefix, Some(0));
    assert_eq!(summary.special_tokens.file_sep, Some(1));
    assert_eq!(summary.special_tokens.fim_suffix, Some(4));
}

#[test]
fn model_without_fim_tokens() {
    let bytes = GgufBuilder::new()
        .string("general.architecture", "llama")
        .strings("tokenizer.ggml.tokens", &["<s>", "</s>", "hello"])
        .tensor("weight", &[8], 0)
        .build();
    let summary = check_bytes(&bytes).expect("valid file");
    assert!(!summary.has_fim());
    assert!(!summary.has_chat_template);
    assert_eq!(summary.n_ctx_train, None);
    assert_eq!(summary.name, None);
}

#[test]
fn corrupt_headers() {
    check_error(
        &GgufBuilder::model(10).build_with_offsets(Some(vec![3])),
        "$DIR/model.gguf is a corrupt GGUF file: tensor `weight` starts at offset 3, which is not aligned to 32 bytes",
    );
    check_error(
        &GgufBuilder::new().string("general.architecture", "qwen2").build(),
        "$DIR/model.gguf is a corrupt GGUF file: it has no tensors (a vocabulary-only file cannot generate text)",
    );
    // Key "k", value type 99.
    let mut unknown_type = Vec::new();
    unknown_type.extend_from_slice(&1u64.to_le_bytes());
    unknown_type.extend_from_slice(b"k");
    unknown_type.extend_from_slice(&99u32.to_le_bytes());
    check_error(
        &GgufBuilder::model(10).raw_entry(&unknown_type).build(),
        "$DIR/model.gguf is a corrupt GGUF file: metadata key `k` has unknown value type 99",
    );
    check_error(
        &GgufBuilder::model(10).u32("general.alignment", 48).build(),
        "$DIR/model.gguf is a corrupt GGUF file: general.alignment is not a power of two",
    );
    check_error(
        &GgufBuilder::new().tensor("odd", &[33], 8).build(),
        "$DIR/model.gguf is a corrupt GGUF file: tensor `odd` has a row of 33 elements, not a multiple of its block size 32",
    );
}

#[test]
fn hostile_lengths_do_not_allocate() {
    // A string that claims to be 2^60 bytes long, and an array that claims 2^60 strings: both
    // must fail as truncated instead of allocating or looping.
    let mut huge_string = Vec::new();
    huge_string.extend_from_slice(&1u64.to_le_bytes());
    huge_string.extend_from_slice(b"k");
    huge_string.extend_from_slice(&8u32.to_le_bytes());
    huge_string.extend_from_slice(&(1u64 << 60).to_le_bytes());
    let message = check_bytes(&GgufBuilder::model(10).raw_entry(&huge_string).build())
        .expect_err("huge string");
    assert!(
        message.contains("is truncated: the file ends inside the GGUF header"),
        "{message}"
    );

    let mut huge_array = Vec::new();
    huge_array.extend_from_slice(&1u64.to_le_bytes());
    huge_array.extend_from_slice(b"k");
    huge_array.extend_from_slice(&9u32.to_le_bytes());
    huge_array.extend_from_slice(&8u32.to_le_bytes());
    huge_array.extend_from_slice(&(1u64 << 60).to_le_bytes());
    let message = check_bytes(&GgufBuilder::model(10).raw_entry(&huge_array).build())
        .expect_err("huge array");
    assert!(
        message.contains("is truncated: the file ends inside the GGUF header"),
        "{message}"
    );
}

#[test]
fn every_prefix_of_a_small_file_is_rejected() {
    let bytes = GgufBuilder::model(16).build();
    for cut_bytes in 0..bytes.len() {
        assert!(
            check_bytes(&bytes[..cut_bytes]).is_err(),
            "a file cut to {cut_bytes} of {} bytes was accepted",
            bytes.len()
        );
    }
    assert!(check_bytes(&bytes).is_ok());
}
