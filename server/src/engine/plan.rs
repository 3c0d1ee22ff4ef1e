//! The memory plan: before a model loads, decide how many of its layers go to the GPU, how many
//! slots of how many tokens its KV cache gets and in which type, so that a model that does not
//! fit is refused with what would fit, instead of failing inside llama.cpp or bringing the
//! server down.
//!
//! This module is pure: it takes the model's shape (from its GGUF header), the devices with their
//! free memory, the host memory available and the settings, and returns a [`Plan`] or a refusal.
//! Reading those figures off the machine is `devices.rs`'s job; acting on the plan is the
//! engine thread's.
//!
//! # What a loaded engine takes
//!
//! - Layers, counted as llama.cpp counts `n_gpu_layers`: the output layer is one more layer and
//!   is offloaded first, so `g` layers put the output layer and the last `g - 1` repeating blocks
//!   on the GPU, and `n_layer + 1` puts everything there. The input embedding (`token_embd`)
//!   always stays in host memory. A model without an `output.weight` (tied embeddings) gets a
//!   second copy of `token_embd.weight` as its output layer.
//! - The KV cache of a layer lives where the layer does. One token takes, per layer,
//!   `n_head_kv × (key_length × K bytes + value_length × V bytes)`, at 2 bytes an element for F16
//!   and 34 and 18 bytes per 32 elements for Q8_0 and Q4_0; heads are `n_embd / n_head` wide when
//!   the GGUF gives no key or value length. llama.cpp refuses a quantised V cache without flash
//!   attention, so with `flash_attention = "off"` only K is quantised and V stays F16.
//! - Contexts: the completion context of `n_slots × n_ctx_per_slot` cells, and the chat context
//!   of `chat_n_ctx` cells when chat runs on the same model. A separate chat model is planned on
//!   what the completion model leaves, and a draft model on what both leave, its contexts in the
//!   completion model's planned shape ([`Request::draft`], [`plan_draft`]).
//! - Compute buffers, an estimate: each context takes `4 × n_ubatch × (n_vocab + 4 n_embd + 2
//!   n_ff)` bytes (the logits of a batch dominate; `n_ff` is one expert's width times the experts
//!   used for a mixture of experts) where its output layer is, plus `4 × n_ubatch × n_head ×
//!   cells` for the attention scores when flash attention is off (`auto` counts as on: CUDA,
//!   Metal, Vulkan and the CPU all have it). The host also keeps `4 × n_vocab` bytes of logits per
//!   sequence.
//! - Weights read into memory (the default) take host memory for what stays on the CPU; mapped
//!   ones (`model.mmap`) are page cache the kernel can drop, and are not counted.
//!
//! # Budgets
//!
//! The GPUs are the discrete ones ggml lists (integrated ones only when there is none, as llama.cpp
//! does), planned on the sum of their free memory, since llama.cpp splits layers in proportion to
//! it; the plan says so when there are several. Each keeps a headroom of max(512 MiB, 5 % of its
//! memory) for the driver, other programs and what the estimate misses. A device that reports no
//! memory at all is not limited. Host memory is bounded by [`Available`] (which keeps its own
//! margin under an address-space limit), or not at all where it cannot be read.
//!
//! # Choices
//!
//! 1. The configured shape is tried with the wanted layers (all for `n_gpu_layers = -1`): the
//!    configured KV type, or for `auto` F16, then Q8_0, then Q4_0; then (for `auto` only) Q4_0
//!    with fewer slots of the configured size, one fewer at a time, then one slot with less
//!    context (the most that fits, in steps of 256 tokens), never below one slot of 2048 tokens.
//!    Every layer on the GPU goes first because a layer left on the CPU costs more speed than a
//!    quantised cache or fewer slots.
//! 2. When nothing fits with every layer on the GPU and `n_gpu_layers = -1`, the same shapes are
//!    tried in the same order with as many layers as fit; the first one whose remainder host
//!    memory holds wins (for `auto` that is F16 at the configured context: with layers on the
//!    CPU, a smaller cache would win back a layer or two, not speed).
//! 3. Otherwise the configuration is refused, saying what would fit: the most layers, or the
//!    slots and context, or another KV type or quantisation.
//!
//! A chat context that does not fit beside a plan that otherwise does is left out of the plan
//! and noted: completions start, and a chat then fails with what to lower.

use crate::config::{FlashAttention, KvCacheType, ModelConfig};
use crate::engine::memory::{kv_bytes_per_token_layer, Available, KvShape};
use crate::model::GgufSummary;

/// Headroom kept free on each GPU: at least this much...
const MIN_HEADROOM_BYTES: u64 = 512 << 20;
/// ...and at least this share of its memory, in percent.
const HEADROOM_PERCENT: u64 = 5;
/// The least context the plan shrinks to: one slot of this many tokens.
const MIN_N_CTX_PER_SLOT: u32 = 2048;
/// Context sizes the plan picks are multiples of this.
const N_CTX_STEP: u32 = 256;
/// Bits per weight of a Q4_K_M file, for the hint that a smaller quantisation would fit.
const Q4_K_M_BITS_PER_WEIGHT: f64 = 4.85;

/// What the plan needs of a model, from its GGUF header.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ModelShape {
    /// How messages name the model: its `general.name` and quantisation.
    pub name: String,
    pub n_layer: u32,
    pub n_embd: u64,
    pub n_head: u64,
    pub kv: KvShape,
    pub n_vocab: u64,
    /// The feed-forward width a token goes through: `n_ff`, or one expert's width times the
    /// experts used.
    pub n_ff: u64,
    pub n_params: u64,
    /// Bytes of each repeating block, `n_layer` of them.
    pub block_bytes: Vec<u64>,
    /// The input embedding, always in host memory.
    pub input_bytes: u64,
    /// The output layer (with the tied copy of the embedding where there is one).
    pub output_bytes: u64,
}

impl ModelShape {
    /// The shape from a GGUF summary; `Err` says what the header lacks (an architecture without
    /// attention heads, say), and the model is then loaded as configured, unplanned.
    pub(crate) fn from_summary(summary: &GgufSummary) -> Result<ModelShape, String> {
        let missing = |key: &str| format!("its GGUF header has no `{key}`");
        let n_layer = summary.n_layer.ok_or_else(|| missing("block_count"))?;
        let n_layer = u32::try_from(n_layer)
            .ok()
            .filter(|n_layer| *n_layer > 0 && *n_layer < 4096)
            .ok_or_else(|| format!("its GGUF header claims {n_layer} layers"))?;
        let n_embd = summary.n_embd.ok_or_else(|| missing("embedding_length"))?;
        let n_head = summary
            .n_head
            .filter(|n_head| *n_head > 0)
            .ok_or_else(|| missing("attention.head_count"))?;
        let n_head_kv = summary.n_head_kv.unwrap_or(n_head);
        let bytes = &summary.tensor_bytes;
        let mut block_bytes = bytes.blocks.clone();
        block_bytes.resize(n_layer as usize, 0);
        // Tensors past the last counted block (a hostile or odd file) are counted as output.
        let beyond: u64 = bytes.blocks.iter().skip(n_layer as usize).sum();
        let tied_copy = if bytes.has_output_weight {
            0
        } else {
            bytes.token_embd
        };
        let n_ff = match (summary.n_expert_used, summary.n_ff_expert) {
            (Some(n_used), Some(n_ff_expert)) if n_used > 0 => n_used.saturating_mul(n_ff_expert),
            _ => summary.n_ff.unwrap_or(4 * n_embd),
        };
        let name = summary
            .name
            .clone()
            .unwrap_or_else(|| "the model".to_owned());
        Ok(ModelShape {
            name: match summary.file_type_name() {
                Some(quantization) => format!("{name} {quantization}"),
                None => name,
            },
            n_layer,
            n_embd,
            n_head,
            kv: KvShape::new(
                u64::from(n_layer),
                n_embd,
                n_head,
                n_head_kv,
                summary.n_embd_head_k,
                summary.n_embd_head_v,
            ),
            n_vocab: summary.n_vocab.unwrap_or(0),
            n_ff,
            n_params: summary.n_params,
            block_bytes,
            input_bytes: bytes.token_embd,
            output_bytes: bytes.output + beyond + tied_copy,
        })
    }

    /// Bytes of every weight, the tied copy included.
    pub(crate) fn weight_bytes(&self) -> u64 {
        self.block_bytes.iter().sum::<u64>() + self.input_bytes + self.output_bytes
    }

    /// The same model with every weight scaled by `ratio` (another quantisation of it).
    fn requantized(&self, ratio: f64) -> ModelShape {
        let scale = |bytes: u64| (bytes as f64 * ratio) as u64;
        ModelShape {
            block_bytes: self.block_bytes.iter().map(|bytes| scale(*bytes)).collect(),
            input_bytes: scale(self.input_bytes),
            output_bytes: scale(self.output_bytes),
            ..self.clone()
        }
    }
}

/// What kind of device ggml reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeviceKind {
    Cpu,
    Gpu,
    IntegratedGpu,
    Other,
}

/// One ggml backend device and its memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Device {
    /// ggml's name, such as `CUDA0` or `Vulkan0`.
    pub name: String,
    /// Such as `NVIDIA GeForce RTX 4090`.
    pub description: String,
    /// Such as `CUDA`, `Vulkan`, `CPU`.
    pub backend: String,
    pub kind: DeviceKind,
    pub free_bytes: u64,
    pub total_bytes: u64,
}

impl Device {
    /// The headroom kept free on this device.
    pub(crate) fn headroom_bytes(&self) -> u64 {
        MIN_HEADROOM_BYTES.max(self.total_bytes / 100 * HEADROOM_PERCENT)
    }
}

/// The memory a plan may use.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Budget {
    /// The devices llama.cpp offloads to: the discrete GPUs, or the integrated ones when there
    /// is no discrete one. Empty on a CPU-only machine.
    pub gpus: Vec<Device>,
    /// Host memory; `None` when it cannot be read (then it limits nothing).
    pub host: Option<Available>,
    /// Device and host bytes already promised (to the completion model, when this plan is for a
    /// separate chat model).
    pub reserved_device_bytes: u64,
    pub reserved_host_bytes: u64,
}

impl Budget {
    /// The budget over `devices` (every device ggml lists) and `host`.
    pub(crate) fn new(devices: &[Device], host: Option<Available>) -> Budget {
        let mut gpus: Vec<Device> = Vec::new();
        for device in devices
            .iter()
            .filter(|device| device.kind == DeviceKind::Gpu)
        {
            // The same card seen by two backends (CUDA and Vulkan) is one card; llama.cpp keeps
            // the first by its device id, which ggml's list does not give, so compare what it
            // does give. Two alike cards on one backend are two cards.
            let seen = gpus.iter().any(|gpu| {
                gpu.backend != device.backend
                    && gpu.description == device.description
                    && gpu.total_bytes == device.total_bytes
            });
            if !seen {
                gpus.push(device.clone());
            }
        }
        if gpus.is_empty() {
            let integrated = devices
                .iter()
                .filter(|device| device.kind == DeviceKind::IntegratedGpu);
            if let Some(first) = integrated.clone().next() {
                gpus = integrated
                    .filter(|device| device.backend == first.backend)
                    .cloned()
                    .collect();
            }
        }
        Budget {
            gpus,
            host,
            reserved_device_bytes: 0,
            reserved_host_bytes: 0,
        }
    }

    /// What is left after `plan` takes its share.
    pub(crate) fn after(&self, plan: &Plan) -> Budget {
        Budget {
            reserved_device_bytes: self.reserved_device_bytes + plan.device_bytes(),
            reserved_host_bytes: self.reserved_host_bytes + plan.host_bytes(),
            ..self.clone()
        }
    }

    /// Free GPU memory less headroom and reservations; `None` when the devices report none
    /// (then it limits nothing).
    fn device_bytes(&self) -> Option<u64> {
        if self
            .gpus
            .iter()
            .all(|gpu| gpu.free_bytes == 0 && gpu.total_bytes == 0)
        {
            return None;
        }
        let usable: u64 = self
            .gpus
            .iter()
            .map(|gpu| gpu.free_bytes.saturating_sub(gpu.headroom_bytes()))
            .sum();
        Some(usable.saturating_sub(self.reserved_device_bytes))
    }

    fn headroom_bytes(&self) -> u64 {
        self.gpus.iter().map(Device::headroom_bytes).sum()
    }

    fn host_bytes(&self) -> Option<u64> {
        self.host
            .map(|host| host.bytes.saturating_sub(self.reserved_host_bytes))
    }

    /// How messages name the GPUs: `this 24 GiB card`, `these 2 GPUs (48 GiB)`.
    fn describe_gpus(&self) -> String {
        let total: u64 = self.gpus.iter().map(|gpu| gpu.total_bytes).sum();
        match self.gpus.len() {
            1 => format!("this {} card", whole_gib(total)),
            n => format!("these {n} GPUs ({})", whole_gib(total)),
        }
    }
}

/// What the plan is asked for: the `[model]` settings that shape memory.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Request {
    /// llama.cpp's count (see the module doc); negative: as many as fit.
    pub n_gpu_layers: i32,
    /// Completion slots and the context they share; 0 slots: no completion context (a
    /// separate chat model).
    pub n_slots: u32,
    pub n_ctx: u32,
    /// The chat context on this model, if it has one.
    pub chat_n_ctx: Option<u32>,
    pub kv_cache_type: KvCacheType,
    pub n_batch: u32,
    pub flash_attention: FlashAttention,
    pub mmap: bool,
}

impl Request {
    /// The completion model's request from `config`; `chat_on_same_model` adds the chat context.
    pub(crate) fn completion(config: &ModelConfig, chat_on_same_model: bool) -> Request {
        Request {
            n_gpu_layers: config.n_gpu_layers,
            n_slots: config.n_slots.max(1),
            n_ctx: config.n_ctx,
            chat_n_ctx: chat_on_same_model.then_some(config.chat_n_ctx),
            kv_cache_type: config.kv_cache_type,
            n_batch: config.n_batch,
            flash_attention: config.flash_attention,
            mmap: config.mmap,
        }
    }

    /// A separate chat model's request: its chat context only.
    pub(crate) fn chat(config: &ModelConfig) -> Request {
        Request {
            n_slots: 0,
            n_ctx: 0,
            chat_n_ctx: Some(config.chat_n_ctx),
            ..Request::completion(config, true)
        }
    }

    /// A draft model's request: a context shaped like the completion context its plan made
    /// (`planned`, the completion model's settings with the plan applied: a sequence per slot,
    /// the same cells and KV type) and a chat context, since chats draft with it too, with
    /// `n_gpu_layers` as configured. The shape is fixed: the draft model follows the model's
    /// slots, so the plan never gives it fewer or another KV type.
    pub(crate) fn draft(planned: &ModelConfig, n_gpu_layers: i32) -> Request {
        Request {
            n_gpu_layers,
            chat_n_ctx: (planned.chat_n_ctx > 0).then_some(planned.chat_n_ctx),
            kv_cache_type: match planned.kv_cache_type {
                // What the engine makes of `auto` when nothing planned it.
                KvCacheType::Auto => KvCacheType::F16,
                kv_cache_type => kv_cache_type,
            },
            ..Request::completion(planned, false)
        }
    }

    /// Cells per slot as the engine makes them: at least 256, the total a multiple of the slots.
    fn n_ctx_per_slot(&self) -> u32 {
        if self.n_slots == 0 {
            return 0;
        }
        (self.n_ctx / self.n_slots).max(256)
    }
}

/// Where one part of the plan lives and what it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Split {
    pub device_bytes: u64,
    pub host_bytes: u64,
}

impl Split {
    pub(crate) fn total(&self) -> u64 {
        self.device_bytes + self.host_bytes
    }
}

/// How a model is to be loaded, and what that takes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Plan {
    /// The model's name and quantisation.
    pub model: String,
    /// The GPUs the layers go to, described (empty: CPU only).
    pub gpus: String,
    pub n_layer: u32,
    /// What llama.cpp is given (see the module doc); 0 on the CPU.
    pub n_gpu_layers: u32,
    pub n_slots: u32,
    pub n_ctx_per_slot: u32,
    /// The chat context on this model, when it has one that fits.
    pub chat_n_ctx: Option<u32>,
    /// The type the cache is made with (never `auto`), and the V type that follows from it.
    pub kv_cache_type: KvCacheType,
    pub type_v: KvCacheType,
    pub weights: Split,
    /// One completion slot's KV cache.
    pub kv_per_slot: Split,
    pub chat_kv: Split,
    /// Compute buffers (device) and output buffers (host), estimated.
    pub buffers: Split,
    /// Kept free on the GPUs (0 on the CPU).
    pub headroom_bytes: u64,
    /// What the budget allowed: device and host, `None` where unlimited.
    pub device_budget_bytes: Option<u64>,
    pub host_budget_bytes: Option<u64>,
    /// KV bytes a token takes across all layers, on the device and on the host.
    pub kv_per_token: Split,
    /// Things the user should know: fewer slots than asked, layers left on the CPU, several
    /// GPUs, a chat context that does not fit.
    pub notes: Vec<String>,
}

impl Plan {
    /// Whether any layer goes to a GPU.
    pub(crate) fn on_gpu(&self) -> bool {
        self.n_gpu_layers > 0
    }

    /// Repeating layers on the GPU.
    pub(crate) fn n_layers_offloaded(&self) -> u32 {
        self.n_gpu_layers.saturating_sub(1).min(self.n_layer)
    }

    /// Everything the plan puts on the GPUs, headroom not included.
    pub(crate) fn device_bytes(&self) -> u64 {
        self.weights.device_bytes
            + self.kv_per_slot.device_bytes * u64::from(self.n_slots)
            + self.chat_kv.device_bytes
            + self.buffers.device_bytes
    }

    pub(crate) fn host_bytes(&self) -> u64 {
        self.weights.host_bytes
            + self.kv_per_slot.host_bytes * u64::from(self.n_slots)
            + self.chat_kv.host_bytes
            + self.buffers.host_bytes
    }

    /// `config` with what this plan chose: the layers, the KV type and (for a completion model)
    /// the slots and their context.
    pub(crate) fn apply(&self, config: &ModelConfig) -> ModelConfig {
        let mut config = config.clone();
        config.n_gpu_layers = i32::try_from(self.n_gpu_layers).unwrap_or(-1);
        config.kv_cache_type = self.kv_cache_type;
        if self.n_slots > 0 {
            config.n_slots = self.n_slots;
            config.n_ctx = self.n_slots.saturating_mul(self.n_ctx_per_slot);
        }
        config
    }

    /// The plan on one line, for the log.
    pub(crate) fn summary(&self) -> String {
        let place = if self.on_gpu() {
            format!(
                "n_gpu_layers {} of {} on {}",
                self.n_gpu_layers,
                self.n_layer + 1,
                self.gpus
            )
        } else {
            "on the CPU".to_owned()
        };
        format!(
            "{}: {place}; {} of {} tokens, KV {}; weights {} on the device and {} in host memory, KV {} a slot, chat KV {}, buffers {}, headroom {}; {} on the device and {} in host memory in all",
            self.model,
            plural(self.n_slots, "slot"),
            self.n_ctx_per_slot,
            kv_name(self.kv_cache_type),
            size(self.weights.device_bytes),
            size(self.weights.host_bytes),
            size(self.kv_per_slot.total()),
            size(self.chat_kv.total()),
            size(self.buffers.total()),
            size(self.headroom_bytes),
            size(self.device_bytes()),
            size(self.host_bytes()),
        )
    }

    /// How many slot contexts of `n_tokens` tokens would fit beside the weights, the buffers and
    /// the chat context, with this plan's layers and KV type.
    pub(crate) fn windows(&self, n_tokens: u64) -> u64 {
        let room = |budget: Option<u64>, used: u64, per_token: u64| -> Option<u64> {
            let budget = budget?;
            if per_token == 0 {
                return None;
            }
            Some(budget.saturating_sub(used) / per_token.saturating_mul(n_tokens).max(1))
        };
        let device = room(
            self.device_budget_bytes.filter(|_| self.on_gpu()),
            self.weights.device_bytes + self.chat_kv.device_bytes + self.buffers.device_bytes,
            self.kv_per_token.device_bytes,
        );
        let host = room(
            self.host_budget_bytes,
            self.weights.host_bytes + self.chat_kv.host_bytes + self.buffers.host_bytes,
            self.kv_per_token.host_bytes,
        );
        match (device, host) {
            (Some(device), Some(host)) => device.min(host),
            (Some(windows), None) | (None, Some(windows)) => windows,
            (None, None) => u64::MAX,
        }
    }
}

/// One shape of the KV cache the search tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shape {
    kv_cache_type: KvCacheType,
    n_slots: u32,
    n_ctx_per_slot: u32,
}

/// What a given layer count and shape take.
#[derive(Debug, Clone, Copy)]
struct Cost {
    weights: Split,
    kv_per_slot: Split,
    chat_kv: Split,
    buffers: Split,
    kv_per_token: Split,
}

impl Cost {
    fn device(&self, n_slots: u32) -> u64 {
        self.weights.device_bytes
            + self.kv_per_slot.device_bytes * u64::from(n_slots)
            + self.chat_kv.device_bytes
            + self.buffers.device_bytes
    }

    fn host(&self, n_slots: u32) -> u64 {
        self.weights.host_bytes
            + self.kv_per_slot.host_bytes * u64::from(n_slots)
            + self.chat_kv.host_bytes
            + self.buffers.host_bytes
    }
}

/// The planner over one model, budget and request.
struct Planner<'a> {
    model: &'a ModelShape,
    budget: &'a Budget,
    request: &'a Request,
    chat_n_ctx: Option<u32>,
}

impl Planner<'_> {
    /// The layer count that puts everything on the GPUs, or 0 without GPUs.
    fn all_layers(&self) -> u32 {
        if self.budget.gpus.is_empty() {
            0
        } else {
            self.model.n_layer + 1
        }
    }

    fn type_v(&self, kv_cache_type: KvCacheType) -> KvCacheType {
        match self.request.flash_attention {
            FlashAttention::Off => KvCacheType::F16,
            _ => kv_cache_type,
        }
    }

    fn cost(&self, n_gpu_layers: u32, shape: Shape) -> Cost {
        let model = self.model;
        let n_offloaded = n_gpu_layers.saturating_sub(1).min(model.n_layer) as usize;
        let output_on_device = n_gpu_layers > 0;
        let offloaded_bytes: u64 = model.block_bytes[model.n_layer as usize - n_offloaded..]
            .iter()
            .sum();
        let all_block_bytes: u64 = model.block_bytes.iter().sum();
        let mut weights = Split {
            device_bytes: offloaded_bytes,
            host_bytes: all_block_bytes - offloaded_bytes + model.input_bytes,
        };
        if output_on_device {
            weights.device_bytes += model.output_bytes;
        } else {
            weights.host_bytes += model.output_bytes;
        }
        if self.request.mmap {
            weights.host_bytes = 0;
        }
        let per_layer = kv_bytes_per_token_layer(
            model.kv,
            shape.kv_cache_type,
            self.type_v(shape.kv_cache_type),
        );
        let kv_per_token = Split {
            device_bytes: per_layer * n_offloaded as u64,
            host_bytes: per_layer * (u64::from(model.n_layer) - n_offloaded as u64),
        };
        let kv_of = |n_cells: u32| Split {
            device_bytes: kv_per_token.device_bytes.saturating_mul(u64::from(n_cells)),
            host_bytes: kv_per_token.host_bytes.saturating_mul(u64::from(n_cells)),
        };
        let mut buffers = Split::default();
        let mut contexts = Vec::new();
        if shape.n_slots > 0 {
            contexts.push((
                u64::from(shape.n_slots) * u64::from(shape.n_ctx_per_slot),
                shape.n_slots,
            ));
        }
        if let Some(chat_n_ctx) = self.chat_n_ctx {
            contexts.push((u64::from(chat_n_ctx.max(256)), 1));
        }
        for (n_cells, n_seq) in contexts {
            let compute = self.compute_bytes(n_cells);
            if output_on_device {
                buffers.device_bytes += compute;
            } else {
                buffers.host_bytes += compute;
            }
            buffers.host_bytes += 4 * model.n_vocab * u64::from(n_seq);
        }
        Cost {
            weights,
            kv_per_slot: kv_of(shape.n_ctx_per_slot),
            chat_kv: kv_of(self.chat_n_ctx.map_or(0, |n_ctx| n_ctx.max(256))),
            buffers,
            kv_per_token,
        }
    }

    /// The estimated compute buffer of a context of `n_cells` cells (see the module doc).
    fn compute_bytes(&self, n_cells: u64) -> u64 {
        let model = self.model;
        let n_ubatch = u64::from(self.request.n_batch).clamp(32, n_cells.max(32));
        let width = model.n_vocab + 4 * model.n_embd + 2 * model.n_ff;
        let mut bytes = (4 * n_ubatch).saturating_mul(width);
        if self.request.flash_attention == FlashAttention::Off {
            bytes = bytes.saturating_add((4 * n_ubatch * model.n_head).saturating_mul(n_cells));
        }
        bytes
    }

    fn fits(&self, n_gpu_layers: u32, shape: Shape) -> (bool, bool) {
        let cost = self.cost(n_gpu_layers, shape);
        let device_fits = n_gpu_layers == 0
            || self
                .budget
                .device_bytes()
                .is_none_or(|budget| cost.device(shape.n_slots) <= budget);
        let host_fits = self
            .budget
            .host_bytes()
            .is_none_or(|budget| cost.host(shape.n_slots) <= budget);
        (device_fits, host_fits)
    }

    /// The most layers up to `most` that fit on the device with `shape` (0 always does).
    fn most_layers(&self, shape: Shape, most: u32) -> u32 {
        // The device's share grows with the layer count.
        largest(0, most, |n_gpu_layers| self.fits(n_gpu_layers, shape).0).unwrap_or(0)
    }

    /// The configured slots and context with each KV type to try, most wanted first.
    fn configured_shapes(&self) -> Vec<Shape> {
        let request = self.request;
        let types = if request.kv_cache_type == KvCacheType::Auto {
            vec![KvCacheType::F16, KvCacheType::Q8_0, KvCacheType::Q4_0]
        } else {
            vec![request.kv_cache_type]
        };
        types
            .into_iter()
            .map(|kv_cache_type| Shape {
                kv_cache_type,
                n_slots: request.n_slots,
                n_ctx_per_slot: request.n_ctx_per_slot(),
            })
            .collect()
    }

    /// The first shape, most wanted first, with which `layers` finds a layer count that fits:
    /// the configured slots and context with each KV type to try, then for `auto` Q4_0 with the
    /// most slots of the configured size that fit, then one slot with the most context that
    /// fits (a multiple of 256, at least 2048). The searches over slots and context rely on a
    /// smaller cache never fitting worse.
    fn search(&self, layers: impl Fn(Shape) -> Option<u32>) -> Option<(u32, Shape)> {
        for shape in self.configured_shapes() {
            if let Some(n_gpu_layers) = layers(shape) {
                return Some((n_gpu_layers, shape));
            }
        }
        let request = self.request;
        if request.kv_cache_type != KvCacheType::Auto || request.n_slots == 0 {
            return None;
        }
        let shape = |n_slots, n_ctx_per_slot| Shape {
            kv_cache_type: KvCacheType::Q4_0,
            n_slots,
            n_ctx_per_slot,
        };
        let configured = request.n_ctx_per_slot();
        let n_slots = largest(1, request.n_slots - 1, |n_slots| {
            layers(shape(n_slots, configured)).is_some()
        });
        let shrunk = match n_slots {
            Some(n_slots) => shape(n_slots, configured),
            None if configured > MIN_N_CTX_PER_SLOT => {
                let n_steps = largest(
                    MIN_N_CTX_PER_SLOT / N_CTX_STEP,
                    (configured - 1) / N_CTX_STEP,
                    |n_steps| layers(shape(1, n_steps * N_CTX_STEP)).is_some(),
                )?;
                shape(1, n_steps * N_CTX_STEP)
            }
            None => return None,
        };
        layers(shrunk).map(|n_gpu_layers| (n_gpu_layers, shrunk))
    }

    fn plan(&self) -> Result<Plan, String> {
        let all = self.all_layers();
        let wanted = match u32::try_from(self.request.n_gpu_layers) {
            Ok(n_gpu_layers) => n_gpu_layers.min(all),
            Err(_) => all,
        };
        // Every wanted layer on the GPU.
        let everything =
            self.search(|shape| (self.fits(wanted, shape) == (true, true)).then_some(wanted));
        if let Some((n_gpu_layers, shape)) = everything {
            return Ok(self.build(n_gpu_layers, shape));
        }
        // As many layers as fit, the rest in host memory.
        if self.request.n_gpu_layers < 0 && wanted > 0 {
            let partial = self.search(|shape| {
                let n_gpu_layers = self.most_layers(shape, all);
                self.fits(n_gpu_layers, shape).1.then_some(n_gpu_layers)
            });
            if let Some((n_gpu_layers, shape)) = partial {
                return Ok(self.build(n_gpu_layers, shape));
            }
        }
        Err(self.refusal(wanted, self.configured_shapes()[0]))
    }

    fn build(&self, n_gpu_layers: u32, shape: Shape) -> Plan {
        let cost = self.cost(n_gpu_layers, shape);
        let request = self.request;
        let mut notes = Vec::new();
        if self.budget.gpus.len() > 1 && n_gpu_layers > 0 {
            notes.push(format!(
                "planned on the sum of {} GPUs' free memory; llama.cpp splits the layers in proportion to it",
                self.budget.gpus.len()
            ));
        }
        let all = self.all_layers();
        if n_gpu_layers < all && request.n_gpu_layers < 0 {
            let mut note = format!(
                "{} needs {} for its weights; {} holds n_gpu_layers = {n_gpu_layers} of {all} (the rest on the CPU)",
                self.model.name,
                size(self.model.weight_bytes()),
                self.budget.describe_gpus(),
            );
            if let Some(hint) = self.smaller_quantization_hint() {
                note.push_str(&format!(", or {hint}"));
            }
            notes.push(note);
        }
        if request.n_slots > 0
            && (shape.n_slots, shape.n_ctx_per_slot) != (request.n_slots, request.n_ctx_per_slot())
        {
            notes.push(format!(
                "{} of {} tokens, not the configured {} of {}: the KV cache of those does not fit even as q4_0",
                plural(shape.n_slots, "slot"),
                shape.n_ctx_per_slot,
                plural(request.n_slots, "slot"),
                request.n_ctx_per_slot()
            ));
        }
        Plan {
            model: self.model.name.clone(),
            gpus: if n_gpu_layers > 0 {
                self.budget
                    .gpus
                    .iter()
                    .map(|gpu| format!("{} ({})", gpu.description, gpu.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            } else {
                String::new()
            },
            n_layer: self.model.n_layer,
            n_gpu_layers,
            n_slots: shape.n_slots,
            n_ctx_per_slot: shape.n_ctx_per_slot,
            chat_n_ctx: self.chat_n_ctx,
            kv_cache_type: shape.kv_cache_type,
            type_v: self.type_v(shape.kv_cache_type),
            weights: cost.weights,
            kv_per_slot: cost.kv_per_slot,
            chat_kv: cost.chat_kv,
            buffers: cost.buffers,
            headroom_bytes: if n_gpu_layers > 0 {
                self.budget.headroom_bytes()
            } else {
                0
            },
            device_budget_bytes: self.budget.device_bytes().filter(|_| n_gpu_layers > 0),
            host_budget_bytes: self.budget.host_bytes(),
            kv_per_token: cost.kv_per_token,
            notes,
        }
    }

    /// "a Q4_K_M quantization fully" when one would fit with every layer on the GPU and one slot
    /// of the configured size.
    fn smaller_quantization_hint(&self) -> Option<String> {
        let model = self.model;
        if self.budget.gpus.is_empty() || model.n_params == 0 {
            return None;
        }
        let bits_per_weight = model.weight_bytes() as f64 * 8.0 / model.n_params as f64;
        if bits_per_weight <= Q4_K_M_BITS_PER_WEIGHT + 0.5 {
            return None;
        }
        let smaller = model.requantized(Q4_K_M_BITS_PER_WEIGHT / bits_per_weight);
        let planner = Planner {
            model: &smaller,
            ..*self
        };
        let shape = Shape {
            kv_cache_type: self.request.kv_cache_type,
            n_slots: self.request.n_slots.min(1),
            n_ctx_per_slot: self.request.n_ctx_per_slot(),
        };
        (planner.fits(planner.all_layers(), shape) == (true, true))
            .then(|| "a Q4_K_M quantization fully".to_owned())
    }

    /// Why `shape` with `wanted` layers does not fit, and what would.
    fn refusal(&self, wanted: u32, shape: Shape) -> String {
        let request = self.request;
        let (device_fits, _) = self.fits(wanted, shape);
        if !device_fits {
            // An explicit layer count the GPUs cannot hold.
            let cost = self.cost(wanted, shape);
            let most = self.most_layers(shape, wanted);
            let mut message = format!(
                "n_gpu_layers = {wanted} puts {} on the GPU but {} has {} free after {} of headroom",
                size(cost.device(shape.n_slots)),
                self.budget.describe_gpus(),
                size(self.budget.device_bytes().unwrap_or(0)),
                size(self.budget.headroom_bytes()),
            );
            if self.fits(most, shape).1 {
                message.push_str(&format!(
                    ": n_gpu_layers = {most} fits (the rest on the CPU), and -1 picks as many as fit"
                ));
                return message;
            }
        }
        // Host memory is short: of the weights, or of the context beside them.
        let n_gpu_layers = if request.n_gpu_layers < 0 {
            self.most_layers(shape, self.all_layers())
        } else {
            wanted.min(self.most_layers(shape, wanted))
        };
        let cost = self.cost(n_gpu_layers, shape);
        let (Some(host), Some(host_bytes)) = (self.budget.host, self.budget.host_bytes()) else {
            return format!("{} does not fit in this machine's memory", self.model.name);
        };
        let beside = if n_gpu_layers > 0 {
            format!(
                " beside the {} on the GPU (n_gpu_layers = {n_gpu_layers})",
                size(cost.weights.device_bytes)
            )
        } else {
            String::new()
        };
        let describe = |bytes| {
            Available {
                bytes,
                limit: host.limit,
            }
            .describe()
        };
        if cost.weights.host_bytes > host_bytes {
            let mut message = format!(
                "the weights of {} need {} in host memory{beside} but there are only {}: use a smaller model or a smaller quantization of it",
                self.model.name,
                size(cost.weights.host_bytes),
                describe(host_bytes),
            );
            if let Some(hint) = self.smaller_quantization_hint() {
                message.push_str(&format!(" ({hint} on the GPU)"));
            }
            return message;
        }
        let n_ctx = u64::from(shape.n_slots) * u64::from(shape.n_ctx_per_slot);
        let kv_bytes =
            cost.kv_per_slot.host_bytes * u64::from(shape.n_slots) + cost.chat_kv.host_bytes;
        let lower = if kv_bytes >= cost.buffers.host_bytes {
            if shape.n_slots > 1 {
                "lower model.n_ctx or model.n_slots (the KV cache grows with both)"
            } else {
                "lower model.n_ctx (the KV cache grows with it)"
            }
        } else {
            "lower model.n_batch (the output buffers grow with it)"
        };
        let mut message = format!(
            "a context of {n_ctx} tokens needs at least {} ({} of KV cache, {} of output buffers) but there are only {} once the weights ({}) are in{beside}: {lower}, or use a smaller model",
            size(kv_bytes + cost.buffers.host_bytes),
            size(kv_bytes),
            size(cost.buffers.host_bytes),
            describe(host_bytes - cost.weights.host_bytes),
            size(cost.weights.host_bytes),
        );
        if let Some(fitting) = self.what_fits(n_gpu_layers, shape) {
            message.push_str(&format!("; {fitting}"));
        }
        message
    }

    /// What context would fit with `n_gpu_layers`: fewer slots of the configured size, or one
    /// smaller slot, and whether a smaller KV type holds the configured one.
    fn what_fits(&self, n_gpu_layers: u32, shape: Shape) -> Option<String> {
        let fits = |shape: Shape| self.fits(n_gpu_layers, shape) == (true, true);
        let mut parts = Vec::new();
        let type_setting = if self.request.kv_cache_type == KvCacheType::Auto {
            String::new()
        } else {
            format!(" at kv_cache_type = \"{}\"", kv_name(shape.kv_cache_type))
        };
        if let Some(n_slots) = largest(1, shape.n_slots.saturating_sub(1), |n_slots| {
            fits(Shape { n_slots, ..shape })
        }) {
            parts.push(format!(
                "{} of {} tokens fit{type_setting}",
                plural(n_slots, "slot"),
                shape.n_ctx_per_slot
            ));
        } else {
            let one = |n_ctx_per_slot| Shape {
                n_slots: 1,
                n_ctx_per_slot,
                ..shape
            };
            if let Some(n_steps) = largest(1, shape.n_ctx_per_slot / N_CTX_STEP, |n_steps| {
                fits(one(n_steps * N_CTX_STEP))
            }) {
                parts.push(format!(
                    "1 slot of {} tokens fits{type_setting}",
                    n_steps * N_CTX_STEP
                ));
            }
        }
        if self.request.kv_cache_type != KvCacheType::Auto {
            let smaller = [KvCacheType::Q8_0, KvCacheType::Q4_0]
                .into_iter()
                .filter(|kv_cache_type| {
                    kv_row_width(*kv_cache_type) < kv_row_width(shape.kv_cache_type)
                })
                .find(|kv_cache_type| {
                    fits(Shape {
                        kv_cache_type: *kv_cache_type,
                        ..shape
                    })
                });
            if let Some(kv_cache_type) = smaller {
                parts.push(format!(
                    "kv_cache_type = \"{}\" holds the configured context",
                    kv_name(kv_cache_type)
                ));
            }
        }
        (!parts.is_empty()).then(|| parts.join(", or "))
    }
}

/// The setting's spelling of a KV type.
pub(crate) fn kv_name(kv_cache_type: KvCacheType) -> &'static str {
    match kv_cache_type {
        KvCacheType::F16 => "f16",
        KvCacheType::Q8_0 => "q8_0",
        KvCacheType::Q4_0 => "q4_0",
        KvCacheType::Auto => "auto",
    }
}

/// Bytes per 32 elements, to order KV types by size.
fn kv_row_width(kv_cache_type: KvCacheType) -> u64 {
    crate::engine::memory::kv_row_bytes(32, kv_cache_type)
}

/// Plans `request` for `model` within `budget`; `Err` is the refusal, saying what would fit.
pub(crate) fn plan(model: &ModelShape, budget: &Budget, request: &Request) -> Result<Plan, String> {
    let mut plan = plan_leaving_out_chat(model, budget, request)?;
    if plan.chat_n_ctx.is_none() && request.chat_n_ctx.is_some() {
        // Completions can still run; the chat says what to lower.
        plan.notes.push(format!(
            "the chat context of {} tokens does not fit beside it: chat and code actions will fail until model.chat_n_ctx is lowered",
            request.chat_n_ctx.unwrap_or(0)
        ));
    }
    Ok(plan)
}

/// Plans a draft model (`request` from [`Request::draft`]) within what the models leave of
/// `budget`. Its completion-shaped context must fit; a chat context that does not fit beside it
/// is left out (the plan's `chat_n_ctx` is `None`: chats go undrafted, and nothing else
/// changes).
pub(crate) fn plan_draft(
    model: &ModelShape,
    budget: &Budget,
    request: &Request,
) -> Result<Plan, String> {
    let mut plan = plan_leaving_out_chat(model, budget, request)?;
    if plan.chat_n_ctx.is_none() && request.chat_n_ctx.is_some() {
        plan.notes.push(format!(
            "its chat context of {} tokens does not fit beside the models: chats are not drafted for",
            request.chat_n_ctx.unwrap_or(0)
        ));
    }
    Ok(plan)
}

/// Plans `request`, or, when it asks for completion slots and a chat context and that does not
/// fit, the slots alone (the plan then has no `chat_n_ctx`). The refusal is the one of the
/// whole request.
fn plan_leaving_out_chat(
    model: &ModelShape,
    budget: &Budget,
    request: &Request,
) -> Result<Plan, String> {
    let planner = Planner {
        model,
        budget,
        request,
        chat_n_ctx: request.chat_n_ctx,
    };
    match planner.plan() {
        Ok(plan) => Ok(plan),
        Err(refusal) if request.chat_n_ctx.is_some() && request.n_slots > 0 => {
            let without_chat = Planner {
                chat_n_ctx: None,
                ..planner
            };
            without_chat.plan().map_err(|_| refusal)
        }
        Err(refusal) => Err(refusal),
    }
}

/// The largest `x` in `low..=high` for which `fits(x)`, where `fits` holds up to some point and
/// not beyond it; `None` when it does not hold at `low`.
fn largest(low: u32, high: u32, fits: impl Fn(u32) -> bool) -> Option<u32> {
    if low > high || !fits(low) {
        return None;
    }
    let (mut low, mut high) = (low, high);
    while low < high {
        let middle = low + (high - low).div_ceil(2);
        if fits(middle) {
            low = middle;
        } else {
            high = middle - 1;
        }
    }
    Some(low)
}

/// `1 slot`, `3 slots`.
fn plural(n: u32, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// Bytes for people: `812 MiB`, `33.1 GiB`.
pub(crate) fn size(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
    } else {
        format!("{} MiB", bytes.div_ceil(1 << 20))
    }
}

/// Whole gibibytes, rounded: a card's size as people name it.
fn whole_gib(bytes: u64) -> String {
    format!("{} GiB", (bytes + (1 << 29)) >> 30)
}

#[cfg(test)]
mod tests;
