//! Tests of the memory plan over real model shapes (Qwen2.5-Coder 0.5B to 32B and
//! Qwen3-Coder-30B-A3B, from their published configs) on cards of 8 to 80 GiB.
//!
//! The expected figures in the tables were computed apart from the planner: by a separate
//! script that applies the rules of the module doc to the same shapes (bytes per layer from the
//! parameter counts below, KV bytes per token from the heads, compute buffers from the
//! vocabulary and widths). A worked row: Qwen2.5-Coder-7B at Q8_0 (8.5 bits a weight) has
//! 28 blocks of 233 M weights (247.6 MB each) and an output layer of 579 MB; on an 8 GiB card
//! (7.5 GiB after 512 MiB of headroom) with 4 slots of 2048 tokens and a chat context of 4096,
//! every layer takes 247.6 MB of weights plus 12 288 tokens × 2 KiB of F16 KV (24 MiB), and the
//! output layer and the two contexts' compute buffers (2 × 418 MB) come first, so 24 blocks fit:
//! `n_gpu_layers = 25`.

use super::*;
use crate::config::ModelConfig;
use crate::engine::memory::Limit;

const GIB: u64 = 1 << 30;

/// A model's weights, per part, from its shape and bits per weight.
struct Weights {
    block_params: u64,
    embedding_params: u64,
    output_params: u64,
}

fn bytes(params: u64, bits_per_weight: f64) -> u64 {
    (params as f64 * bits_per_weight / 8.0) as u64
}

/// A dense Qwen2.5-Coder: attention with biases on q, k and v, a gated feed-forward, two norms.
fn qwen25(
    name: &str,
    (n_embd, n_layer, n_head, n_head_kv, n_ff, n_vocab): (u64, u32, u64, u64, u64, u64),
    tied: bool,
    bits_per_weight: f64,
) -> ModelShape {
    let n_embd_head = n_embd / n_head;
    let n_embd_kv = n_head_kv * n_embd_head;
    let weights = Weights {
        block_params: (n_embd * n_embd + n_embd)
            + 2 * (n_embd * n_embd_kv + n_embd_kv)
            + n_embd * n_embd
            + 2 * n_embd
            + 3 * n_embd * n_ff,
        embedding_params: n_vocab * n_embd,
        // The output matrix (or, tied, the copy llama.cpp makes of the embedding) and its norm.
        output_params: n_vocab * n_embd + n_embd,
    };
    let stored_output = if tied { n_embd } else { weights.output_params };
    shape(
        name,
        &weights,
        bits_per_weight,
        (n_layer, n_embd, n_head, n_vocab, n_ff),
        KvShape {
            n_layer: u64::from(n_layer),
            n_head_kv,
            n_embd_head_k: n_embd_head,
            n_embd_head_v: n_embd_head,
        },
        u64::from(n_layer) * weights.block_params + weights.embedding_params + stored_output,
    )
}

/// Qwen3-Coder-30B-A3B: 48 layers of 32 query heads and 4 KV heads of 128 (not 2048 / 32), a
/// router and 128 experts of 768, 8 of them used per token.
fn qwen3_coder_30b_a3b(bits_per_weight: f64) -> ModelShape {
    let (n_embd, n_layer, n_head, n_head_kv, n_embd_head) = (2048, 48, 32, 4, 128);
    let (n_expert, n_expert_used, n_ff_expert, n_vocab) = (128, 8, 768, 151_936);
    let weights = Weights {
        block_params: n_embd * n_head * n_embd_head
            + 2 * n_embd * n_head_kv * n_embd_head
            + n_head * n_embd_head * n_embd
            + 2 * n_embd_head
            + 2 * n_embd
            + n_embd * n_expert
            + n_expert * 3 * n_embd * n_ff_expert,
        embedding_params: n_vocab * n_embd,
        output_params: n_vocab * n_embd + n_embd,
    };
    shape(
        "Qwen3-Coder-30B-A3B",
        &weights,
        bits_per_weight,
        (
            n_layer,
            n_embd,
            n_head,
            n_vocab,
            n_expert_used * n_ff_expert,
        ),
        KvShape {
            n_layer: u64::from(n_layer),
            n_head_kv,
            n_embd_head_k: n_embd_head,
            n_embd_head_v: n_embd_head,
        },
        u64::from(n_layer) * weights.block_params
            + weights.embedding_params
            + weights.output_params,
    )
}

fn shape(
    name: &str,
    weights: &Weights,
    bits_per_weight: f64,
    (n_layer, n_embd, n_head, n_vocab, n_ff): (u32, u64, u64, u64, u64),
    kv: KvShape,
    n_params: u64,
) -> ModelShape {
    ModelShape {
        name: name.to_owned(),
        n_layer,
        n_embd,
        n_head,
        kv,
        n_vocab,
        n_ff,
        n_params,
        block_bytes: vec![bytes(weights.block_params, bits_per_weight); n_layer as usize],
        input_bytes: bytes(weights.embedding_params, bits_per_weight),
        output_bytes: bytes(weights.output_params, bits_per_weight),
    }
}

const Q8_0: f64 = 8.5;
const Q4_K_M: f64 = 4.85;

/// The shapes by the names the tables use.
fn model(name: &str) -> ModelShape {
    let qwen = |shape, tied, bits| qwen25(&format!("Qwen2.5-Coder-{name}"), shape, tied, bits);
    match name {
        "0.5B Q8_0" => qwen((896, 24, 14, 2, 4864, 151_936), true, Q8_0),
        "1.5B Q8_0" => qwen((1536, 28, 12, 2, 8960, 151_936), true, Q8_0),
        "3B Q8_0" => qwen((2048, 36, 16, 2, 11008, 151_936), true, Q8_0),
        "7B Q8_0" => qwen((3584, 28, 28, 4, 18944, 152_064), false, Q8_0),
        "7B Q4_K_M" => qwen((3584, 28, 28, 4, 18944, 152_064), false, Q4_K_M),
        "14B Q8_0" => qwen((5120, 48, 40, 8, 13824, 152_064), false, Q8_0),
        "32B Q8_0" => qwen((5120, 64, 40, 8, 27648, 152_064), false, Q8_0),
        "32B Q4_K_M" => qwen((5120, 64, 40, 8, 27648, 152_064), false, Q4_K_M),
        "30B-A3B Q4_K_M" => qwen3_coder_30b_a3b(Q4_K_M),
        other => panic!("no shape for {other}"),
    }
}

fn gpu(name: &str, gib: u64) -> Device {
    Device {
        name: name.to_owned(),
        description: format!("Test GPU {gib} GiB"),
        backend: "CUDA".to_owned(),
        kind: DeviceKind::Gpu,
        free_bytes: gib * GIB,
        total_bytes: gib * GIB,
    }
}

fn cpu() -> Device {
    Device {
        name: "CPU".to_owned(),
        description: "Test CPU".to_owned(),
        backend: "CPU".to_owned(),
        kind: DeviceKind::Cpu,
        free_bytes: 64 * GIB,
        total_bytes: 64 * GIB,
    }
}

/// A machine with a GPU of `gpu_gib` (none for 0) and `host_gib` of host memory available.
fn machine(gpu_gib: u64, host_gib: u64) -> Budget {
    let mut devices = vec![cpu()];
    if gpu_gib > 0 {
        devices.push(gpu("CUDA0", gpu_gib));
    }
    Budget::new(
        &devices,
        Some(Available {
            bytes: host_gib * GIB,
            limit: Limit::Ram,
        }),
    )
}

/// The `[model]` settings the tables try.
#[derive(Clone, Copy)]
struct Settings {
    kv_cache_type: KvCacheType,
    n_slots: u32,
    n_ctx: u32,
}

/// The defaults: 4 slots sharing 8192 tokens, F16.
const DEFAULT: Settings = Settings {
    kv_cache_type: KvCacheType::F16,
    n_slots: 4,
    n_ctx: 8192,
};
/// 4 slots of 8192 tokens each.
const LONG: Settings = Settings {
    n_ctx: 4 * 8192,
    ..DEFAULT
};
const LONG_AUTO: Settings = Settings {
    kv_cache_type: KvCacheType::Auto,
    ..LONG
};
/// 4 slots of 32768 tokens each, the KV type left to the plan.
const HUGE_AUTO: Settings = Settings {
    kv_cache_type: KvCacheType::Auto,
    n_slots: 4,
    n_ctx: 4 * 32768,
};

fn request(settings: Settings) -> Request {
    Request {
        n_gpu_layers: -1,
        n_slots: settings.n_slots,
        n_ctx: settings.n_ctx,
        chat_n_ctx: Some(4096),
        kv_cache_type: settings.kv_cache_type,
        n_batch: 512,
        flash_attention: FlashAttention::Auto,
        mmap: false,
    }
}

/// `n_gpu_layers kv slotsxtokens`, with ` nochat` when the chat context was left out, or
/// `refused`.
fn outcome(model: &ModelShape, budget: &Budget, request: &Request) -> String {
    describe(plan(model, budget, request), request)
}

/// `outcome`'s words for what planning `request` gave.
fn describe(planned: Result<Plan, String>, request: &Request) -> String {
    match planned {
        Ok(plan) => format!(
            "{} {} {}x{}{}",
            plan.n_gpu_layers,
            kv_name(plan.kv_cache_type),
            plan.n_slots,
            plan.n_ctx_per_slot,
            if plan.chat_n_ctx.is_none() && request.chat_n_ctx.is_some() {
                " nochat"
            } else {
                ""
            }
        ),
        Err(_) => "refused".to_owned(),
    }
}

#[test]
fn plans_real_model_shapes_on_8_to_80_gib_cards() {
    // Each row: the model, the settings, the outcome on cards of 8, 12, 16, 24 and 80 GiB with
    // 64 GiB of host memory. All layers is n_layer + 1 (the output layer counts as one).
    let table: &[(&str, Settings, [&str; 5])] = &[
        (
            "0.5B Q8_0",
            DEFAULT,
            [
                "25 f16 4x2048",
                "25 f16 4x2048",
                "25 f16 4x2048",
                "25 f16 4x2048",
                "25 f16 4x2048",
            ],
        ),
        (
            "0.5B Q8_0",
            LONG,
            [
                "25 f16 4x8192",
                "25 f16 4x8192",
                "25 f16 4x8192",
                "25 f16 4x8192",
                "25 f16 4x8192",
            ],
        ),
        (
            "0.5B Q8_0",
            LONG_AUTO,
            [
                "25 f16 4x8192",
                "25 f16 4x8192",
                "25 f16 4x8192",
                "25 f16 4x8192",
                "25 f16 4x8192",
            ],
        ),
        (
            "1.5B Q8_0",
            DEFAULT,
            [
                "29 f16 4x2048",
                "29 f16 4x2048",
                "29 f16 4x2048",
                "29 f16 4x2048",
                "29 f16 4x2048",
            ],
        ),
        (
            "1.5B Q8_0",
            LONG,
            [
                "29 f16 4x8192",
                "29 f16 4x8192",
                "29 f16 4x8192",
                "29 f16 4x8192",
                "29 f16 4x8192",
            ],
        ),
        (
            "1.5B Q8_0",
            LONG_AUTO,
            [
                "29 f16 4x8192",
                "29 f16 4x8192",
                "29 f16 4x8192",
                "29 f16 4x8192",
                "29 f16 4x8192",
            ],
        ),
        (
            "3B Q8_0",
            DEFAULT,
            [
                "37 f16 4x2048",
                "37 f16 4x2048",
                "37 f16 4x2048",
                "37 f16 4x2048",
                "37 f16 4x2048",
            ],
        ),
        (
            "3B Q8_0",
            LONG,
            [
                "37 f16 4x8192",
                "37 f16 4x8192",
                "37 f16 4x8192",
                "37 f16 4x8192",
                "37 f16 4x8192",
            ],
        ),
        (
            "3B Q8_0",
            LONG_AUTO,
            [
                "37 f16 4x8192",
                "37 f16 4x8192",
                "37 f16 4x8192",
                "37 f16 4x8192",
                "37 f16 4x8192",
            ],
        ),
        (
            "7B Q8_0",
            DEFAULT,
            [
                "25 f16 4x2048",
                "29 f16 4x2048",
                "29 f16 4x2048",
                "29 f16 4x2048",
                "29 f16 4x2048",
            ],
        ),
        (
            "7B Q8_0",
            LONG,
            [
                "21 f16 4x8192",
                "29 f16 4x8192",
                "29 f16 4x8192",
                "29 f16 4x8192",
                "29 f16 4x8192",
            ],
        ),
        (
            "7B Q8_0",
            LONG_AUTO,
            [
                "21 f16 4x8192",
                "29 f16 4x8192",
                "29 f16 4x8192",
                "29 f16 4x8192",
                "29 f16 4x8192",
            ],
        ),
        (
            "7B Q4_K_M",
            DEFAULT,
            [
                "29 f16 4x2048",
                "29 f16 4x2048",
                "29 f16 4x2048",
                "29 f16 4x2048",
                "29 f16 4x2048",
            ],
        ),
        (
            "7B Q4_K_M",
            LONG,
            [
                "29 f16 4x8192",
                "29 f16 4x8192",
                "29 f16 4x8192",
                "29 f16 4x8192",
                "29 f16 4x8192",
            ],
        ),
        (
            "7B Q4_K_M",
            LONG_AUTO,
            [
                "29 f16 4x8192",
                "29 f16 4x8192",
                "29 f16 4x8192",
                "29 f16 4x8192",
                "29 f16 4x8192",
            ],
        ),
        (
            "14B Q8_0",
            DEFAULT,
            [
                "19 f16 4x2048",
                "31 f16 4x2048",
                "43 f16 4x2048",
                "49 f16 4x2048",
                "49 f16 4x2048",
            ],
        ),
        (
            "14B Q8_0",
            LONG,
            [
                "15 f16 4x8192",
                "24 f16 4x8192",
                "34 f16 4x8192",
                "49 f16 4x8192",
                "49 f16 4x8192",
            ],
        ),
        (
            "14B Q8_0",
            LONG_AUTO,
            [
                "15 f16 4x8192",
                "24 f16 4x8192",
                "49 q4_0 1x7168",
                "49 f16 4x8192",
                "49 f16 4x8192",
            ],
        ),
        (
            "32B Q8_0",
            DEFAULT,
            [
                "12 f16 4x2048",
                "19 f16 4x2048",
                "26 f16 4x2048",
                "40 f16 4x2048",
                "65 f16 4x2048",
            ],
        ),
        (
            "32B Q8_0",
            LONG,
            [
                "10 f16 4x8192",
                "16 f16 4x8192",
                "22 f16 4x8192",
                "34 f16 4x8192",
                "65 f16 4x8192",
            ],
        ),
        (
            "32B Q8_0",
            LONG_AUTO,
            [
                "10 f16 4x8192",
                "16 f16 4x8192",
                "22 f16 4x8192",
                "34 f16 4x8192",
                "65 f16 4x8192",
            ],
        ),
        (
            "32B Q4_K_M",
            DEFAULT,
            [
                "20 f16 4x2048",
                "32 f16 4x2048",
                "44 f16 4x2048",
                "65 f16 4x2048",
                "65 f16 4x2048",
            ],
        ),
        (
            "32B Q4_K_M",
            LONG,
            [
                "15 f16 4x8192",
                "25 f16 4x8192",
                "34 f16 4x8192",
                "52 f16 4x8192",
                "65 f16 4x8192",
            ],
        ),
        (
            "32B Q4_K_M",
            LONG_AUTO,
            [
                "15 f16 4x8192",
                "25 f16 4x8192",
                "34 f16 4x8192",
                "65 q4_0 4x8192",
                "65 f16 4x8192",
            ],
        ),
        (
            "30B-A3B Q4_K_M",
            DEFAULT,
            [
                "18 f16 4x2048",
                "29 f16 4x2048",
                "39 f16 4x2048",
                "49 f16 4x2048",
                "49 f16 4x2048",
            ],
        ),
        (
            "30B-A3B Q4_K_M",
            LONG,
            [
                "16 f16 4x8192",
                "26 f16 4x8192",
                "35 f16 4x8192",
                "49 f16 4x8192",
                "49 f16 4x8192",
            ],
        ),
        (
            "30B-A3B Q4_K_M",
            LONG_AUTO,
            [
                "16 f16 4x8192",
                "26 f16 4x8192",
                "35 f16 4x8192",
                "49 f16 4x8192",
                "49 f16 4x8192",
            ],
        ),
        (
            "0.5B Q8_0",
            HUGE_AUTO,
            [
                "25 f16 4x32768",
                "25 f16 4x32768",
                "25 f16 4x32768",
                "25 f16 4x32768",
                "25 f16 4x32768",
            ],
        ),
        (
            "1.5B Q8_0",
            HUGE_AUTO,
            [
                "29 f16 4x32768",
                "29 f16 4x32768",
                "29 f16 4x32768",
                "29 f16 4x32768",
                "29 f16 4x32768",
            ],
        ),
        (
            "3B Q8_0",
            HUGE_AUTO,
            [
                "37 q8_0 4x32768",
                "37 f16 4x32768",
                "37 f16 4x32768",
                "37 f16 4x32768",
                "37 f16 4x32768",
            ],
        ),
        (
            "7B Q8_0",
            HUGE_AUTO,
            [
                "13 f16 4x32768",
                "29 q4_0 4x32768",
                "29 f16 4x32768",
                "29 f16 4x32768",
                "29 f16 4x32768",
            ],
        ),
        (
            "7B Q4_K_M",
            HUGE_AUTO,
            [
                "29 q4_0 4x32768",
                "29 q8_0 4x32768",
                "29 f16 4x32768",
                "29 f16 4x32768",
                "29 f16 4x32768",
            ],
        ),
        (
            "14B Q8_0",
            HUGE_AUTO,
            [
                "8 f16 4x32768",
                "13 f16 4x32768",
                "49 q4_0 1x7168",
                "49 q4_0 4x32768",
                "49 f16 4x32768",
            ],
        ),
        (
            "32B Q8_0",
            HUGE_AUTO,
            [
                "6 f16 4x32768",
                "10 f16 4x32768",
                "14 f16 4x32768",
                "22 f16 4x32768",
                "65 f16 4x32768",
            ],
        ),
        (
            "32B Q4_K_M",
            HUGE_AUTO,
            [
                "8 f16 4x32768",
                "13 f16 4x32768",
                "18 f16 4x32768",
                "65 q4_0 1x32768",
                "65 f16 4x32768",
            ],
        ),
        (
            "30B-A3B Q4_K_M",
            HUGE_AUTO,
            [
                "11 f16 4x32768",
                "18 f16 4x32768",
                "24 f16 4x32768",
                "49 q4_0 4x32768",
                "49 f16 4x32768",
            ],
        ),
    ];
    let mut failures = Vec::new();
    for (name, settings, expected) in table {
        let shape = model(name);
        for (gpu_gib, expected) in [8, 12, 16, 24, 80].into_iter().zip(expected) {
            let got = outcome(&shape, &machine(gpu_gib, 64), &request(*settings));
            if got != *expected {
                failures.push(format!(
                    "{name} on {gpu_gib} GiB, {} slots sharing {} tokens, {:?}: expected {expected}, got {got}",
                    settings.n_slots, settings.n_ctx, settings.kv_cache_type
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn plans_with_little_host_memory_refuse_or_shrink() {
    // Each row: the outcomes without a GPU, then with an 8 GiB card; each with 4, 8, 16 and
    // 32 GiB of host memory; each of those with DEFAULT, then HUGE_AUTO.
    let table: &[(&str, [&str; 16])] = &[
        (
            "0.5B Q8_0",
            [
                "0 f16 4x2048",
                "0 f16 4x32768",
                "0 f16 4x2048",
                "0 f16 4x32768",
                "0 f16 4x2048",
                "0 f16 4x32768",
                "0 f16 4x2048",
                "0 f16 4x32768",
                "25 f16 4x2048",
                "25 f16 4x32768",
                "25 f16 4x2048",
                "25 f16 4x32768",
                "25 f16 4x2048",
                "25 f16 4x32768",
                "25 f16 4x2048",
                "25 f16 4x32768",
            ],
        ),
        (
            "1.5B Q8_0",
            [
                "0 f16 4x2048",
                "0 q4_0 4x32768",
                "0 f16 4x2048",
                "0 f16 4x32768",
                "0 f16 4x2048",
                "0 f16 4x32768",
                "0 f16 4x2048",
                "0 f16 4x32768",
                "29 f16 4x2048",
                "29 f16 4x32768",
                "29 f16 4x2048",
                "29 f16 4x32768",
                "29 f16 4x2048",
                "29 f16 4x32768",
                "29 f16 4x2048",
                "29 f16 4x32768",
            ],
        ),
        (
            "3B Q8_0",
            [
                "0 f16 4x2048 nochat",
                "0 q4_0 1x29952 nochat",
                "0 f16 4x2048",
                "0 q8_0 4x32768",
                "0 f16 4x2048",
                "0 f16 4x32768",
                "0 f16 4x2048",
                "0 f16 4x32768",
                "37 f16 4x2048",
                "37 q8_0 4x32768",
                "37 f16 4x2048",
                "37 q8_0 4x32768",
                "37 f16 4x2048",
                "37 q8_0 4x32768",
                "37 f16 4x2048",
                "37 q8_0 4x32768",
            ],
        ),
        (
            "7B Q8_0",
            [
                "refused",
                "refused",
                "refused",
                "0 q4_0 1x4864 nochat",
                "0 f16 4x2048",
                "0 f16 4x32768",
                "0 f16 4x2048",
                "0 f16 4x32768",
                "25 f16 4x2048",
                "21 q4_0 4x32768",
                "25 f16 4x2048",
                "17 q8_0 4x32768",
                "25 f16 4x2048",
                "13 f16 4x32768",
                "25 f16 4x2048",
                "13 f16 4x32768",
            ],
        ),
        (
            "7B Q4_K_M",
            [
                "refused",
                "refused",
                "0 f16 4x2048",
                "0 q4_0 4x32768",
                "0 f16 4x2048",
                "0 f16 4x32768",
                "0 f16 4x2048",
                "0 f16 4x32768",
                "29 f16 4x2048",
                "29 q4_0 4x32768",
                "29 f16 4x2048",
                "29 q4_0 4x32768",
                "29 f16 4x2048",
                "29 q4_0 4x32768",
                "29 f16 4x2048",
                "29 q4_0 4x32768",
            ],
        ),
        (
            "14B Q8_0",
            [
                "refused",
                "refused",
                "refused",
                "refused",
                "refused",
                "0 q4_0 1x7936",
                "0 f16 4x2048",
                "0 q8_0 4x32768",
                "refused",
                "refused",
                "refused",
                "23 q4_0 1x5120 nochat",
                "19 f16 4x2048",
                "15 q4_0 4x32768",
                "19 f16 4x2048",
                "11 q8_0 4x32768",
            ],
        ),
        (
            "32B Q8_0",
            [
                "refused",
                "refused",
                "refused",
                "refused",
                "refused",
                "refused",
                "refused",
                "refused",
                "refused",
                "refused",
                "refused",
                "refused",
                "refused",
                "refused",
                "12 f16 4x2048",
                "11 q4_0 2x32768",
            ],
        ),
        (
            "32B Q4_K_M",
            [
                "refused",
                "refused",
                "refused",
                "refused",
                "refused",
                "refused",
                "0 f16 4x2048",
                "0 q4_0 4x32768",
                "refused",
                "refused",
                "refused",
                "refused",
                "20 f16 4x2048",
                "20 q4_0 1x32768",
                "20 f16 4x2048",
                "12 q8_0 4x32768",
            ],
        ),
        (
            "30B-A3B Q4_K_M",
            [
                "refused",
                "refused",
                "refused",
                "refused",
                "refused",
                "refused",
                "0 f16 4x2048",
                "0 f16 4x32768",
                "refused",
                "refused",
                "refused",
                "refused",
                "18 f16 4x2048",
                "16 q4_0 4x32768",
                "18 f16 4x2048",
                "11 f16 4x32768",
            ],
        ),
    ];
    let mut failures = Vec::new();
    for (name, expected) in table {
        let shape = model(name);
        let mut expected = expected.iter();
        for gpu_gib in [0, 8] {
            for host_gib in [4, 8, 16, 32] {
                for settings in [DEFAULT, HUGE_AUTO] {
                    let expected = expected.next().expect("16 outcomes a row");
                    let got = outcome(&shape, &machine(gpu_gib, host_gib), &request(settings));
                    if got != *expected {
                        failures.push(format!(
                            "{name}, {gpu_gib} GiB card, {host_gib} GiB host, {:?} x {}: expected {expected}, got {got}",
                            settings.kv_cache_type, settings.n_ctx
                        ));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_model_bigger_than_the_card_is_partly_offloaded_and_says_what_would_fit() {
    let plan = plan(&model("32B Q8_0"), &machine(24, 64), &request(DEFAULT)).unwrap();
    assert_eq!((plan.n_gpu_layers, plan.n_layers_offloaded()), (40, 39));
    assert_eq!(
        plan.notes,
        vec![
            "Qwen2.5-Coder-32B Q8_0 needs 32.4 GiB for its weights; this 24 GiB card holds n_gpu_layers = 40 of 65 (the rest on the CPU), or a Q4_K_M quantization fully"
        ]
    );
    // The 25 blocks left on the CPU and the input embedding are in host memory; the output
    // layer went to the GPU first.
    assert_eq!(plan.weights.host_bytes, 25 * 518_080_576 + 827_228_160);
    assert_eq!(plan.weights.device_bytes, 39 * 518_080_576 + 827_233_600);
    // 24 GiB less 5 % (1.2 GiB) of headroom.
    assert_eq!(plan.headroom_bytes, 24 * GIB / 100 * 5);
    assert!(plan.device_bytes() <= 24 * GIB - plan.headroom_bytes);
}

#[test]
fn an_explicit_layer_count_that_does_not_fit_is_refused_with_the_most_that_fits() {
    let refused = plan(
        &model("32B Q8_0"),
        &machine(24, 64),
        &Request {
            n_gpu_layers: 65,
            ..request(DEFAULT)
        },
    )
    .unwrap_err();
    assert!(refused.starts_with("n_gpu_layers = 65 puts "), "{refused}");
    assert!(
        refused.ends_with(" on the GPU but this 24 GiB card has 22.8 GiB free after 1.2 GiB of headroom: n_gpu_layers = 40 fits (the rest on the CPU), and -1 picks as many as fit"),
        "{refused}"
    );
    // A count that fits is taken as it is, and more than the model has means all of them.
    let explicit = |n_gpu_layers| Request {
        n_gpu_layers,
        ..request(DEFAULT)
    };
    let plan_with = |n_gpu_layers| {
        plan(
            &model("32B Q8_0"),
            &machine(24, 64),
            &explicit(n_gpu_layers),
        )
        .map(|plan| plan.n_gpu_layers)
    };
    assert_eq!(plan_with(30), Ok(30));
    assert_eq!(plan_with(0), Ok(0));
    let small = plan(&model("1.5B Q8_0"), &machine(24, 64), &explicit(1000)).unwrap();
    assert_eq!(small.n_gpu_layers, 29);
}

#[test]
fn a_context_too_big_for_the_host_says_what_to_lower_and_what_fits() {
    let refused = |n_ctx| {
        plan(
            &model("7B Q8_0"),
            &machine(0, 16),
            &Request {
                n_ctx,
                ..request(DEFAULT)
            },
        )
        .unwrap_err()
    };
    // 16 GiB less 7.5 GiB of weights (both copies of the embedding on the CPU), 2 × 418 MB of
    // compute buffers and 1.2 MB of logits leave 8.25 GB for 56 KiB a token (F16) or 29.75 KiB
    // (Q8_0), the chat context's 4096 tokens included.
    let message = refused(4 * 65536);
    assert!(
        message.starts_with("a context of 262144 tokens needs at least "),
        "{message}"
    );
    assert!(
        message.contains(" of available memory once the weights (7.5 GiB) are in: lower model.n_ctx or model.n_slots (the KV cache grows with both), or use a smaller model; "),
        "{message}"
    );
    assert!(
        message.ends_with("; 2 slots of 65536 tokens fit at kv_cache_type = \"f16\", or kv_cache_type = \"q8_0\" holds the configured context"),
        "{message}"
    );
    // One slot too big: the most one slot can have, in steps of 256 tokens.
    let message = refused(4 * 262_144);
    assert!(
        message.ends_with("; 1 slot of 139776 tokens fits at kv_cache_type = \"f16\""),
        "{message}"
    );
}

#[test]
fn weights_bigger_than_the_host_are_refused() {
    let refused = plan(&model("32B Q8_0"), &machine(0, 16), &request(DEFAULT)).unwrap_err();
    assert_eq!(
        refused,
        "the weights of Qwen2.5-Coder-32B Q8_0 need 32.4 GiB in host memory but there are only 16384 MiB of available memory: use a smaller model or a smaller quantization of it"
    );
    // Mapped weights are page cache, not counted.
    let mapped = plan(
        &model("32B Q8_0"),
        &machine(0, 16),
        &Request {
            mmap: true,
            ..request(DEFAULT)
        },
    )
    .unwrap();
    assert_eq!(mapped.weights.host_bytes, 0);
}

#[test]
fn several_gpus_are_planned_on_their_sum_and_one_card_seen_twice_counts_once() {
    let devices = [cpu(), gpu("CUDA0", 12), gpu("CUDA1", 12)];
    let budget = Budget::new(&devices, None);
    let plan = plan(&model("14B Q8_0"), &budget, &request(DEFAULT)).unwrap();
    assert_eq!(plan.n_gpu_layers, 49);
    assert_eq!(
        plan.notes,
        vec!["planned on the sum of 2 GPUs' free memory; llama.cpp splits the layers in proportion to it"]
    );
    assert_eq!(
        plan.gpus,
        "Test GPU 12 GiB (CUDA0), Test GPU 12 GiB (CUDA1)"
    );
    // The same card through CUDA and Vulkan.
    let mut vulkan = gpu("Vulkan0", 12);
    vulkan.backend = "Vulkan".to_owned();
    let twice = Budget::new(&[cpu(), gpu("CUDA0", 12), vulkan], None);
    assert_eq!(twice.gpus.len(), 1);
    // Integrated GPUs count only without a discrete one.
    let mut integrated = gpu("Vulkan1", 8);
    integrated.kind = DeviceKind::IntegratedGpu;
    assert_eq!(
        Budget::new(&[cpu(), integrated.clone()], None).gpus,
        vec![integrated.clone()]
    );
    assert_eq!(
        Budget::new(&[cpu(), gpu("CUDA0", 8), integrated], None).gpus,
        vec![gpu("CUDA0", 8)]
    );
}

#[test]
fn without_flash_attention_only_keys_are_quantised_and_scores_take_room() {
    let request = Request {
        kv_cache_type: KvCacheType::Q8_0,
        flash_attention: FlashAttention::Off,
        ..request(DEFAULT)
    };
    let plan = plan(&model("7B Q8_0"), &machine(80, 64), &request).unwrap();
    assert_eq!(
        (plan.kv_cache_type, plan.type_v),
        (KvCacheType::Q8_0, KvCacheType::F16)
    );
    // 28 layers of 4 heads of 128: keys as Q8_0 (16 blocks of 34 bytes), values as F16.
    assert_eq!(plan.kv_per_token.device_bytes, 28 * (16 * 34 + 512 * 2));
    // Each context's buffer holds the attention scores of a 512-token batch over its cells.
    let batch_bytes = 4 * 512 * (152_064 + 4 * 3584 + 2 * 18944);
    assert_eq!(
        plan.buffers.device_bytes,
        2 * batch_bytes + 4 * 512 * 28 * (8192 + 4096)
    );
}

#[test]
fn windows_count_the_slot_contexts_that_fit_beside_the_weights() {
    let plan = plan(&model("7B Q8_0"), &machine(24, 64), &request(DEFAULT)).unwrap();
    // 22.8 GiB less 7.5 GiB of weights, 224 MiB of chat KV and 0.8 GiB of buffers is 14.8 GiB;
    // a token takes 28 × 2 KiB.
    assert_eq!(
        [2048, 8192, 32768].map(|n_tokens| plan.windows(n_tokens)),
        [135, 33, 8]
    );
}

#[test]
fn a_chat_context_that_does_not_fit_is_left_out_and_noted() {
    let request = Request {
        chat_n_ctx: Some(4_000_000_000),
        ..request(DEFAULT)
    };
    let plan = plan(&model("1.5B Q8_0"), &machine(0, 32), &request).unwrap();
    assert_eq!(plan.chat_n_ctx, None);
    assert_eq!(plan.chat_kv, Split::default());
    assert_eq!(
        plan.notes,
        vec!["the chat context of 4000000000 tokens does not fit beside it: chat and code actions will fail until model.chat_n_ctx is lowered"]
    );
}

#[test]
fn the_plan_applies_its_choices_to_the_settings() {
    let plan = plan(&model("14B Q8_0"), &machine(16, 64), &request(LONG_AUTO)).unwrap();
    let config = plan.apply(&ModelConfig {
        kv_cache_type: KvCacheType::Auto,
        n_ctx: 4 * 8192,
        ..ModelConfig::default()
    });
    assert_eq!(
        (
            config.n_gpu_layers,
            config.kv_cache_type,
            config.n_slots,
            config.n_ctx
        ),
        (49, KvCacheType::Q4_0, 1, 7168)
    );
    assert!(plan.notes.contains(
        &"1 slot of 7168 tokens, not the configured 4 slots of 8192: the KV cache of those does not fit even as q4_0".to_owned()
    ));
}

#[test]
fn the_tiny_models_shape_comes_from_its_header() {
    let path = crate::testing::tiny_model();
    let summary = crate::model::inspect(&path).expect("the tiny model is a valid GGUF");
    let shape = ModelShape::from_summary(&summary).unwrap();
    assert_eq!(shape.name, "random-tiny F16");
    assert_eq!((shape.n_layer, shape.n_embd, shape.n_head), (2, 64, 1));
    assert_eq!(
        shape.kv,
        KvShape {
            n_layer: 2,
            n_head_kv: 1,
            n_embd_head_k: 64,
            n_embd_head_v: 64
        }
    );
    // Per block: four 64 × 64 and three 64 × 128 F16 matrices, three biases and two norms in F32.
    let block_bytes = 4 * 64 * 64 * 2 + 3 * 64 * 128 * 2 + 5 * 64 * 4;
    assert_eq!(shape.block_bytes, vec![block_bytes; 2]);
    // The embedding is tied: the output layer is its copy and the output norm.
    let embedding_bytes = 151_936 * 64 * 2;
    assert_eq!(shape.input_bytes, embedding_bytes);
    assert_eq!(shape.output_bytes, embedding_bytes + 64 * 4);
    let mut headless = summary.clone();
    headless.n_head = None;
    assert_eq!(
        ModelShape::from_summary(&headless),
        Err("its GGUF header has no `attention.head_count`".to_owned())
    );
}

/// `outcome` for a draft model's plan, with ` nochat` when chats go undrafted.
fn draft_outcome(model: &ModelShape, budget: &Budget, request: &Request) -> String {
    describe(plan_draft(model, budget, request), request)
}

#[test]
fn a_draft_model_is_planned_on_what_the_model_leaves_in_the_models_shape() {
    // 0.5B drafting for 7B, both Q8_0, default settings: the 7B model's plan comes first, and the
    // draft model gets what it leaves. 8 GiB holds 24 of the 7B model's blocks (the module doc
    // of the tests works it out), so nothing is left and the draft model runs on the CPU; from
    // 12 GiB on, the 7B model (7.5 GiB of weights, 0.8 GiB of buffers, 0.7 GiB of KV) leaves
    // more than the 0.5B model's 1.3 GiB. The draft model always gets the model's 4 slots of
    // 2048 tokens in F16, as the model's plan made them, and a chat context of 4096.
    let draft = model("0.5B Q8_0");
    let table: &[(u64, &str, &str)] = &[
        (8, "25 f16 4x2048", "0 f16 4x2048"),
        (12, "29 f16 4x2048", "25 f16 4x2048"),
        (16, "29 f16 4x2048", "25 f16 4x2048"),
        (24, "29 f16 4x2048", "25 f16 4x2048"),
    ];
    for &(gib, expected_model, expected_draft) in table {
        let budget = machine(gib, 64);
        let main = plan(&model("7B Q8_0"), &budget, &request(DEFAULT)).unwrap();
        assert_eq!(
            outcome(&model("7B Q8_0"), &budget, &request(DEFAULT)),
            expected_model,
            "{gib} GiB"
        );
        let planned = main.apply(&ModelConfig {
            n_slots: 4,
            n_ctx: 8192,
            chat_n_ctx: 4096,
            kv_cache_type: KvCacheType::F16,
            mmap: false,
            ..ModelConfig::default()
        });
        let left = budget.after(&main);
        let request = Request::draft(&planned, -1);
        assert_eq!(
            draft_outcome(&draft, &left, &request),
            expected_draft,
            "{gib} GiB"
        );
        // Both plans together stay within the card.
        let draft_plan = plan_draft(&draft, &left, &request).unwrap();
        let usable = budget.device_bytes().unwrap();
        assert!(
            main.device_bytes() + draft_plan.device_bytes() <= usable,
            "{gib} GiB"
        );
    }
}

#[test]
fn a_draft_model_follows_the_models_slots_whatever_its_kv_setting() {
    let planned = ModelConfig {
        n_gpu_layers: 20,
        n_slots: 3,
        n_ctx: 3 * 4096,
        chat_n_ctx: 0,
        kv_cache_type: KvCacheType::Auto,
        ..ModelConfig::default()
    };
    let request = Request::draft(&planned, -1);
    assert_eq!(
        (
            request.n_gpu_layers,
            request.n_slots,
            request.n_ctx,
            request.chat_n_ctx,
            request.kv_cache_type
        ),
        (-1, 3, 3 * 4096, None, KvCacheType::F16)
    );
    // With `auto`, a completion model's plan would give fewer slots a Q4_0 cache; a draft model
    // keeps the model's shape or is refused.
    let host_for_one_slot = Budget::new(
        &[cpu()],
        Some(Available {
            bytes: 2 * GIB,
            limit: Limit::Ram,
        }),
    );
    let huge = Request::draft(
        &ModelConfig {
            n_slots: 4,
            n_ctx: 4 * 131_072,
            chat_n_ctx: 0,
            kv_cache_type: KvCacheType::Auto,
            ..ModelConfig::default()
        },
        -1,
    );
    assert_eq!(
        draft_outcome(&model("0.5B Q8_0"), &host_for_one_slot, &huge),
        "refused"
    );
}

#[test]
fn a_draft_model_that_does_not_fit_beside_the_model_is_refused() {
    // No GPU and 3 GiB of host memory: the 1.5B model at Q8_0 (1.6 GiB of weights, 0.3 GiB of
    // KV, 0.6 GiB of buffers) fits and leaves too little for the 0.5B model's 0.5 GiB of weights.
    let budget = machine(0, 3);
    let main = plan(&model("1.5B Q8_0"), &budget, &request(DEFAULT)).unwrap();
    let planned = main.apply(&ModelConfig {
        n_slots: 4,
        n_ctx: 8192,
        chat_n_ctx: 4096,
        mmap: false,
        ..ModelConfig::default()
    });
    let refusal = plan_draft(
        &model("0.5B Q8_0"),
        &budget.after(&main),
        &Request::draft(&planned, -1),
    )
    .expect_err("the draft model does not fit beside the model");
    assert!(
        refusal.starts_with("the weights of Qwen2.5-Coder-0.5B Q8_0 need "),
        "{refusal}"
    );
}

#[test]
fn a_draft_models_chat_context_that_does_not_fit_is_left_out() {
    let planned = ModelConfig {
        n_slots: 4,
        n_ctx: 8192,
        chat_n_ctx: 2_000_000_000,
        mmap: false,
        ..ModelConfig::default()
    };
    let plan = plan_draft(
        &model("0.5B Q8_0"),
        &machine(0, 32),
        &Request::draft(&planned, -1),
    )
    .unwrap();
    let drafts_for_chats = plan.chat_n_ctx.is_some();
    assert!(!drafts_for_chats);
    assert_eq!((plan.chat_n_ctx, plan.chat_kv), (None, Split::default()));
    assert_eq!(
        plan.notes,
        vec!["its chat context of 2000000000 tokens does not fit beside the models: chats are not drafted for"]
    );
}
