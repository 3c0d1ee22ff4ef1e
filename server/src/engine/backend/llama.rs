//! The llama.cpp backend: model loading (after the GGUF check), context creation from
//! `ModelConfig`, and the `Backend` operations on one `LlamaContext`.
//!
//! The model outlives its contexts: the engine thread owns the `Arc<LlamaModel>` and the contexts
//! borrow it, so no self-referential struct or `unsafe` is needed.

use std::num::NonZeroU32;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use llama_cpp_2::context::params::{KvCacheType, LlamaContextParams};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::{LlamaBackendDeviceType, LogOptions};

use super::{Backend, SpecialTokens, Token};
use crate::config::{FlashAttention, KvCacheType as ConfigKvCacheType, ModelConfig};
use crate::engine::cpu_share::{ThreadGovernor, Threads};
use crate::engine::llama_log;
use crate::engine::memory::{kv_cache_bytes, mib, Available, KvShape};
use crate::engine::{ChatMessage, Error, Placement, SamplingConfig, TokenCounter};

/// llama.cpp's process-wide initialisation; it may run once per process, so everything in the
/// engine (inference and `vocab`) goes through here.
pub(crate) fn llama_backend() -> Result<&'static LlamaBackend, Error> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            llama_cpp_2::send_logs_to_tracing(LogOptions::default());
            #[cfg(feature = "dynamic-backends")]
            load_backend_libraries();
            if llama_cpp_2::list_llama_ggml_backend_devices().is_empty() {
                return Err("no ggml backend was found (a build with `dynamic-backends` looks for its libraries in WELLSPRING_BACKENDS_DIR, then beside the executable)".to_owned());
            }
            LlamaBackend::init().map_err(|error| error.to_string())
        })
        .as_ref()
        .map_err(|message| Error::Backend(format!("cannot initialise llama.cpp: {message}")))
}

/// In a `dynamic-backends` build, ggml's backends are shared libraries (`libggml-cpu-haswell.so`,
/// `libggml-vulkan.so`, `libggml-cuda.so`, ...) registered here, before llama.cpp starts. They are
/// looked for in one directory, so that no backend is registered twice: `WELLSPRING_BACKENDS_DIR`
/// when it is set, else the executable's directory when a CPU backend lies there (a release
/// archive), else the directory the build put them in (a development build). ggml picks the
/// best CPU variant this processor runs and every GPU backend whose library loads.
#[cfg(feature = "dynamic-backends")]
fn load_backend_libraries() {
    let has_cpu_backend = |dir: &Path| {
        std::fs::read_dir(dir).is_ok_and(|entries| {
            entries.flatten().any(|entry| {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                name.starts_with("libggml-cpu") && name.contains(".so")
            })
        })
    };
    let configured = std::env::var_os("WELLSPRING_BACKENDS_DIR").map(std::path::PathBuf::from);
    let beside_binary = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
        .filter(|dir| has_cpu_backend(dir));
    match configured.or(beside_binary) {
        Some(dir) => {
            tracing::info!(dir = %dir.display(), "loading ggml backends");
            llama_cpp_2::llama_backend::load_backends_from_path(&dir);
        }
        None => {
            tracing::info!("loading ggml backends from the build's directory");
            llama_cpp_2::llama_backend::load_backends();
        }
    }
}

/// The first discrete GPU ggml offers, else the first integrated one (llama.cpp offloads to
/// integrated GPUs only when there is no discrete one, and so does the memory plan).
fn gpu_device() -> Option<llama_cpp_2::LlamaBackendDevice> {
    let devices = llama_cpp_2::list_llama_ggml_backend_devices();
    let first = |kind: LlamaBackendDeviceType| {
        devices
            .iter()
            .find(|device| device.device_type == kind)
            .cloned()
    };
    first(LlamaBackendDeviceType::Gpu).or_else(|| first(LlamaBackendDeviceType::IntegratedGpu))
}

/// The name of the device the model's layers run on: "cpu", or the GPU backend's name in lower
/// case ("cuda", "metal", "vulkan", …) when one is present and offloading is on.
pub(crate) fn device_name(config: &ModelConfig) -> String {
    if config.n_gpu_layers == 0 {
        return "cpu".to_owned();
    }
    gpu_device().map_or_else(|| "cpu".to_owned(), |device| device.backend.to_lowercase())
}

/// The repeating layers `n_gpu_layers` puts on a GPU out of `n_layers`. llama.cpp counts the
/// output layer as one more layer, offloaded first: `g` layers are the output layer and the last
/// `g - 1` repeating ones; -1 is all of them.
fn layers_offloaded(n_gpu_layers: i32, n_layers: u32) -> u32 {
    match u32::try_from(n_gpu_layers) {
        Ok(layers) => layers.saturating_sub(1).min(n_layers),
        Err(_) => n_layers,
    }
}

/// The GPU's free memory now, when layers are to be offloaded to it: taken before the model
/// loads, so that [`placement`] can tell what the engine took.
pub(crate) fn device_memory_free(config: &ModelConfig) -> Option<u64> {
    if config.n_gpu_layers == 0 {
        return None;
    }
    gpu_device().and_then(|device| u64::try_from(device.memory_free).ok())
}

/// Where a loaded model's layers run. `free_before` is [`device_memory_free`] from before the
/// load; the difference to the free memory now is what the engine's weights, caches and compute
/// buffers took (other processes' allocations in between count too).
pub(crate) fn placement(
    model: &LlamaModel,
    config: &ModelConfig,
    free_before: Option<u64>,
    planned_device_bytes: Option<u64>,
) -> Placement {
    let n_layers = model.n_layer();
    let gpu = gpu_device().filter(|_| config.n_gpu_layers != 0);
    let Some(gpu) = gpu else {
        let cpu = llama_cpp_2::list_llama_ggml_backend_devices()
            .into_iter()
            .find(|device| device.device_type == LlamaBackendDeviceType::Cpu);
        return Placement {
            backend: "cpu".to_owned(),
            device: cpu.map(|device| device.description).unwrap_or_default(),
            n_layers_offloaded: 0,
            n_layers,
            device_memory_used: None,
            device_memory_total: None,
            device_memory_planned: None,
            endpoint: None,
        };
    };
    let n_layers_offloaded = layers_offloaded(config.n_gpu_layers, n_layers);
    let free_now = u64::try_from(gpu.memory_free).ok();
    Placement {
        backend: gpu.backend.to_lowercase(),
        device: gpu.description,
        n_layers_offloaded,
        n_layers,
        device_memory_used: free_before
            .zip(free_now)
            .map(|(before, now)| before.saturating_sub(now)),
        device_memory_total: u64::try_from(gpu.memory_total).ok(),
        device_memory_planned: planned_device_bytes,
        endpoint: None,
    }
}

/// Loads a GGUF model. Missing and malformed files are errors, never aborts: the file is checked
/// before llama.cpp sees it. The weights are read into memory unless `config.mmap` asks for the
/// file to be mapped, so that by default nothing done to the file later can crash the server.
pub(crate) fn load_model(
    path: &Path,
    config: &ModelConfig,
    mut on_progress: Option<Box<dyn FnMut(f32) + Send>>,
) -> Result<LlamaModel, Error> {
    let backend = llama_backend()?;
    if !path.is_file() {
        return Err(Error::ModelNotFound(path.to_owned()));
    }
    let summary = crate::model::inspect(path).map_err(|error| Error::InvalidModel {
        path: path.to_owned(),
        reason: error.to_string(),
    })?;
    // Weights that are read in take memory of their own (on the CPU backend); mapped ones are
    // page cache, which the kernel can drop and reload.
    if !config.mmap && device_name(config) == "cpu" {
        if let Some(available) = Available::now() {
            if summary.tensor_data_bytes > available.bytes {
                return Err(Error::OutOfMemory(format!(
                    "the weights of {} need {} but there are only {}: use a smaller model or a smaller quantization of it",
                    path.display(),
                    mib(summary.tensor_data_bytes),
                    available.describe()
                )));
            }
        }
    }
    let n_gpu_layers = match config.n_gpu_layers {
        layers if layers < 0 => u32::MAX,
        layers => layers as u32,
    };
    let mut params = LlamaModelParams::default()
        .with_n_gpu_layers(n_gpu_layers)
        .with_use_mmap(config.mmap);
    if let Some(mut callback) = on_progress.take() {
        params = params.with_progress_callback(move |progress| {
            callback(progress);
            true
        });
    }
    let architecture = summary.architecture.as_deref().unwrap_or("unknown");
    tracing::info!(
        path = %path.display(),
        architecture,
        n_tensors = summary.n_tensors,
        mmap = config.mmap,
        "loading model"
    );
    llama_log::clear();
    LlamaModel::load_from_file(backend, path, &params).map_err(|error| {
        let reason = match llama_log::take() {
            Some(message) if mentions_allocation(&message) => format!(
                "memory ran out while llama.cpp loaded it ({message}): use a smaller model or a smaller quantization of it"
            ),
            Some(message) => format!("llama.cpp rejected it: {message}"),
            None => format!(
                "llama.cpp rejected it ({error}); its architecture ({architecture}) may be one this build does not support, or tensors it needs may be missing or malformed"
            ),
        };
        Error::Load {
            path: path.to_owned(),
            reason,
        }
    })
}

/// Whether a llama.cpp error is about memory it could not get.
fn mentions_allocation(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    ["alloc", "out of memory", "insufficient memory"]
        .iter()
        .any(|word| message.contains(word))
}

/// How one context is shaped.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ContextShape {
    pub n_ctx: u32,
    pub n_seq: u32,
    /// The setting that sized `n_ctx` (`model.n_ctx`, `model.chat_n_ctx`), named in errors.
    pub n_ctx_setting: &'static str,
}

/// One llama.cpp context over a borrowed model.
pub(crate) struct LlamaCpp<'m> {
    model: &'m LlamaModel,
    context: LlamaContext<'m>,
    batch: LlamaBatch<'static>,
    special: SpecialTokens,
    n_seq: u32,
    n_ctx_per_seq: u32,
    n_batch: u32,
    /// The model's token texts, shared with every other context over the same model.
    texts: Arc<TokenTexts>,
    /// The batch index whose logits `sample` reads (-1: the last one).
    output: i32,
    /// After `evaluate_batch`: the batch index of each input's last token (after
    /// `evaluate_each`: of each token).
    outputs: Vec<i32>,
    max_draft: usize,
    /// `Backend::max_model_draft`.
    max_model_draft: usize,
    /// Fewer threads while other programs keep cores busy (`model.adapt_threads`).
    threads: Option<ThreadControl>,
}

/// The thread counts of one context, chosen step by step from the machine's load.
struct ThreadControl {
    governor: ThreadGovernor,
    /// The context's own pointer, for `llama_set_n_threads` (see `raw_context`).
    raw: NonNull<llama_cpp_sys_2::llama_context>,
    /// When the context last evaluated anything.
    last_step: Instant,
}

/// Most tokens a draft model drafts for one check (llama-server's default too); how many of them
/// are worth it on this machine is the draft tuner's to say.
const MAX_MODEL_DRAFT: usize = 16;

/// How long after its last step an idle context keeps looking at the load: a typist's pauses
/// are shorter, so the next keystroke starts with counts that fit the load of the moment.
const WATCH_AFTER_STEP: Duration = Duration::from_secs(30);

fn kv_type(kv_type: ConfigKvCacheType) -> KvCacheType {
    match kv_type {
        // `auto` is resolved by the plan before a context is made; F16 is its first choice.
        ConfigKvCacheType::F16 | ConfigKvCacheType::Auto => KvCacheType::F16,
        ConfigKvCacheType::Q8_0 => KvCacheType::Q8_0,
        ConfigKvCacheType::Q4_0 => KvCacheType::Q4_0,
    }
}

fn valid(token: LlamaToken, n_vocab: i32) -> Option<Token> {
    (token.0 >= 0 && token.0 < n_vocab).then_some(token.0)
}

/// The model's special tokens; ids llama.cpp reports as absent (-1) become `None`.
pub(crate) fn special_tokens(model: &LlamaModel) -> SpecialTokens {
    let vocab = model.vocab();
    let n_vocab = vocab.n_tokens();
    SpecialTokens {
        bos: vocab
            .should_add_bos()
            .then(|| valid(vocab.bos(), n_vocab))
            .flatten(),
        fim_prefix: valid(vocab.fim_pre(), n_vocab),
        fim_suffix: valid(vocab.fim_suf(), n_vocab),
        fim_middle: valid(vocab.fim_mid(), n_vocab),
        file_sep: valid(vocab.fim_sep(), n_vocab),
        repo_name: valid(vocab.fim_rep(), n_vocab),
    }
}

/// Every token's text and the token ids ordered by it: what token healing searches and what a
/// draft is checked against for text. Built once per model when it loads (tens of milliseconds
/// for 151k tokens, which no keystroke's decode step should pay) and shared by the completion
/// and chat contexts over that model.
pub(crate) struct TokenTexts {
    /// Every token's text (empty for end-of-generation and control tokens).
    pieces: Vec<Vec<u8>>,
    /// Token ids ordered by their text, for prefix searches over `pieces`.
    sorted: Vec<u32>,
}

impl TokenTexts {
    pub(crate) fn of(model: &LlamaModel) -> TokenTexts {
        let vocab = model.vocab();
        let pieces: Vec<Vec<u8>> = (0..vocab.n_tokens())
            .map(|token| {
                let token = LlamaToken(token);
                if vocab.is_eog(token) {
                    Vec::new()
                } else {
                    vocab.token_to_piece(token, false, None)
                }
            })
            .collect();
        let mut sorted: Vec<u32> = (0..pieces.len() as u32).collect();
        sorted.sort_by(|a, b| pieces[*a as usize].cmp(&pieces[*b as usize]));
        TokenTexts { pieces, sorted }
    }
}

impl TokenTexts {
    /// Why a draft model with the tokens `draft` cannot draft for a model with these, if it
    /// cannot: vocabularies that differ by more than a little padding at the end (Qwen2.5-Coder
    /// 7B has 128 more ids than 0.5B), or any token of both whose text differs. Drafted ids past
    /// the end of this vocabulary are never checked (they have no text here).
    pub(crate) fn draft_mismatch(&self, draft: &TokenTexts) -> Option<String> {
        let (n_ours, n_draft) = (self.pieces.len(), draft.pieces.len());
        if n_ours.abs_diff(n_draft) > 128 {
            return Some(format!(
                "its vocabulary has {n_draft} tokens, the model's {n_ours}"
            ));
        }
        let differs = (0..n_ours.min(n_draft)).find(|&id| self.pieces[id] != draft.pieces[id])?;
        Some(format!(
            "token {differs} is {:?} in the draft model and {:?} in the model",
            String::from_utf8_lossy(&draft.pieces[differs]),
            String::from_utf8_lossy(&self.pieces[differs])
        ))
    }
}

impl<'m> LlamaCpp<'m> {
    /// Every token's text.
    fn pieces(&self) -> &[Vec<u8>] {
        &self.texts.pieces
    }

    /// The logits of the last evaluated token.
    #[cfg(test)]
    pub(crate) fn last_logits(&self) -> &[f32] {
        self.context.get_logits_ith(-1)
    }

    /// Every token id, ordered by its text.
    fn sorted_tokens(&self) -> &[u32] {
        &self.texts.sorted
    }

    /// The tokens whose text starts with `prefix` or is a non-empty start of it, in ascending id
    /// order: binary searches in the sorted vocabulary, not a scan of all 151k tokens.
    fn tokens_fitting(&self, prefix: &[u8]) -> Vec<u32> {
        let pieces = self.pieces();
        let sorted = self.sorted_tokens();
        let piece = |token: &u32| pieces[*token as usize].as_slice();
        let mut fitting = Vec::new();
        if prefix.is_empty() {
            return fitting;
        }
        let first = sorted.partition_point(|token| piece(token) < prefix);
        fitting.extend(
            sorted[first..]
                .iter()
                .take_while(|token| piece(token).starts_with(prefix)),
        );
        for n_bytes in 1..prefix.len() {
            let start = &prefix[..n_bytes];
            let first = sorted.partition_point(|token| piece(token) < start);
            fitting.extend(
                sorted[first..]
                    .iter()
                    .take_while(|token| piece(token) == start),
            );
        }
        fitting.sort_unstable();
        fitting.dedup();
        fitting
    }

    pub(crate) fn new(
        model: &'m LlamaModel,
        texts: Arc<TokenTexts>,
        config: &ModelConfig,
        shape: ContextShape,
    ) -> Result<LlamaCpp<'m>, Error> {
        let backend = llama_backend()?;
        let n_seq = shape.n_seq.max(1);
        // Every sequence gets at least 256 positions, and the total is a multiple of the
        // sequence count so each one gets the same share.
        let n_ctx = shape.n_ctx.max(256 * n_seq) / n_seq * n_seq;
        let n_batch = config.n_batch.clamp(32, n_ctx);
        let n_threads = match config.n_threads {
            0 => default_n_threads() as i32,
            n => n as i32,
        };
        let n_threads_batch = match config.n_threads_batch {
            0 => n_threads,
            n => n as i32,
        };
        // llama.cpp's `llama_flash_attn_type` values (the crate passes the raw C enum through).
        let flash = match config.flash_attention {
            FlashAttention::Auto => -1,
            FlashAttention::Off => 0,
            FlashAttention::On => 1,
        };
        // A quantized V cache needs flash attention; without it only K is quantized.
        let type_v = match config.flash_attention {
            FlashAttention::Off => ConfigKvCacheType::F16,
            _ => config.kv_cache_type,
        };
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(n_ctx))
            .with_n_batch(n_batch)
            .with_n_ubatch(n_batch)
            .with_n_seq_max(n_seq)
            .with_n_threads(n_threads)
            .with_n_threads_batch(n_threads_batch)
            .with_flash_attention_policy(flash)
            .with_type_k(kv_type(config.kv_cache_type))
            .with_type_v(kv_type(type_v));
        let (kv_settings, kv_growth) = if n_seq > 1 {
            (format!("{} or model.n_slots", shape.n_ctx_setting), "both")
        } else {
            (shape.n_ctx_setting.to_owned(), "it")
        };
        let device = device_name(config);
        if device == "cpu" {
            check_context_memory(model, n_ctx, n_batch, config.kv_cache_type, type_v).map_err(
                |shortfall| {
                    let lower = if shortfall.kv_cache_dominates {
                        format!("lower {kv_settings} (the KV cache grows with {kv_growth})")
                    } else {
                        "lower model.n_batch (the output buffers grow with it)".to_owned()
                    };
                    Error::OutOfMemory(format!(
                        "a context of {n_ctx} tokens needs at least {}: {lower}, or use a smaller model",
                        shortfall.message
                    ))
                },
            )?;
        }
        let lower = format!("lower {kv_settings} or model.n_batch, or use a smaller model");
        llama_log::clear();
        let context = model.new_context(backend, params).map_err(|error| {
            let detail = llama_log::take().unwrap_or_else(|| error.to_string());
            if mentions_allocation(&detail) {
                Error::OutOfMemory(format!(
                    "llama.cpp could not allocate a context of {n_ctx} tokens ({detail}): {lower}"
                ))
            } else {
                Error::Backend(format!(
                    "cannot create a model context of {n_ctx} tokens ({detail}); if memory ran out, {lower}"
                ))
            }
        })?;
        let n_ctx_actual = context.n_ctx();
        // A recurrent model's state cannot be rolled back to a position within a draft.
        let takes_back_drafts = !(model.is_recurrent() || model.is_hybrid());
        let mut backend = LlamaCpp {
            model,
            context,
            batch: LlamaBatch::new(n_batch as usize, 1),
            special: special_tokens(model),
            n_seq,
            n_ctx_per_seq: n_ctx_actual / n_seq,
            n_batch,
            texts,
            output: -1,
            outputs: Vec::new(),
            max_draft: if takes_back_drafts {
                config.lookup_draft as usize
            } else {
                0
            },
            max_model_draft: if takes_back_drafts && !config.draft_path.trim().is_empty() {
                MAX_MODEL_DRAFT
            } else {
                0
            },
            threads: None,
        };
        // With every layer on a GPU the CPU threads carry next to nothing: their count is not
        // worth a look at the machine's load before each step.
        let all_on_gpu = device != "cpu"
            && layers_offloaded(config.n_gpu_layers, model.n_layer()) == model.n_layer();
        if config.adapt_threads && !all_on_gpu {
            backend.threads = thread_control(&backend.context, n_threads, n_threads_batch);
        }
        if let Err(error) = backend.reserve_draft_outputs() {
            tracing::warn!(%error, "speculative decoding is off: the context cannot hold a draft's logits");
            backend.max_draft = 0;
            backend.max_model_draft = 0;
        }
        Ok(backend)
    }

    /// Evaluates every input in one batch, keeping the logits of each input's last token, or of
    /// every token with `every_token`; `outputs` lists their batch indices in order.
    fn decode(&mut self, inputs: &[super::Input<'_>], every_token: bool) -> Result<(), Error> {
        self.batch.clear();
        self.outputs.clear();
        for input in inputs {
            let last_idx = input.tokens.len().saturating_sub(1);
            for (token_idx, &token) in input.tokens.iter().enumerate() {
                let logits = every_token || token_idx == last_idx;
                self.batch
                    .add(
                        LlamaToken(token),
                        (input.n_past as usize + token_idx) as i32,
                        &[input.seq as i32],
                        logits,
                    )
                    .map_err(|error| Error::Backend(format!("cannot build a batch: {error}")))?;
                if logits {
                    self.outputs.push(self.batch.n_tokens() - 1);
                }
            }
        }
        // `sample` reads the last token's logits until `select_output` picks another.
        self.output = -1;
        if let Some(control) = &mut self.threads {
            control.last_step = Instant::now();
            control.adapt(control.last_step);
        }
        self.context
            .decode(&mut self.batch)
            .map_err(|error| Error::Backend(format!("decode failed: {error}")))
    }

    /// The thread counts llama.cpp holds for this context, read through the pointer recovered
    /// by `raw_context`; `None` without one.
    #[cfg(test)]
    pub(crate) fn context_threads(&self) -> Option<(i32, i32)> {
        let raw = self.threads.as_ref()?.raw;
        // SAFETY: see `ThreadControl::adapt`; these calls only read.
        unsafe {
            Some((
                llama_cpp_sys_2::llama_n_threads(raw.as_ptr()),
                llama_cpp_sys_2::llama_n_threads_batch(raw.as_ptr()),
            ))
        }
    }

    /// Sets the thread counts as the governor would.
    #[cfg(test)]
    pub(crate) fn set_context_threads(&mut self, n_threads: i32, n_threads_batch: i32) {
        let raw = self.threads.as_ref().expect("thread control").raw;
        // SAFETY: see `ThreadControl::adapt`.
        unsafe { llama_cpp_sys_2::llama_set_n_threads(raw.as_ptr(), n_threads, n_threads_batch) };
    }

    /// Has llama.cpp size its output buffer for a whole draft's logits now, with one throwaway
    /// evaluation. It grows the buffer on the first batch asking for more outputs than it holds,
    /// and on Mesa's llvmpipe a buffer replaced while the device still worked on the old one
    /// crashed the process (the first draft checked, mid-session).
    fn reserve_draft_outputs(&mut self) -> Result<(), Error> {
        let max_draft = self.max_draft.max(self.max_model_draft);
        if max_draft == 0 {
            return Ok(());
        }
        let n_tokens = (max_draft + 1).min(self.n_batch as usize);
        let tokens = vec![0; n_tokens];
        let reserved = self.evaluate_each(0, 0, &tokens);
        self.clear(0);
        reserved
    }
}

/// How a generation picks its tokens. Greedy decoding, what completions use by default, is an
/// argmax over the logits in place: llama.cpp's sampler would copy all 151k of them into a
/// candidate array first, a cost that shows on a GPU where a whole decode step takes 2 ms.
pub(crate) enum Sampling {
    Greedy,
    Chain(LlamaSampler),
}

/// The first of the highest logits (llama.cpp's greedy sampler breaks ties the same way). The
/// maximum is found sixteen lanes at a time, which the compiler turns into vector instructions,
/// then its first position: two quick passes instead of one branchy one over 151k logits.
fn argmax(logits: &[f32]) -> Option<Token> {
    const N_LANES: usize = 16;
    let mut lanes = [f32::NEG_INFINITY; N_LANES];
    let chunks = logits.chunks_exact(N_LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (lane, &logit) in lanes.iter_mut().zip(chunk) {
            *lane = if logit > *lane { logit } else { *lane };
        }
    }
    let max =
        lanes.iter().chain(tail).fold(
            f32::NEG_INFINITY,
            |max, &logit| if logit > max { logit } else { max },
        );
    logits
        .iter()
        .position(|&logit| logit == max)
        .map(|token_idx| token_idx as Token)
}

impl Backend for LlamaCpp<'_> {
    type Sampler = Sampling;

    fn special_tokens(&self) -> SpecialTokens {
        self.special
    }

    fn tokenize(&self, text: &str, parse_special: bool) -> Vec<Token> {
        self.model
            .vocab()
            .tokenize(text.as_bytes(), false, parse_special)
            .into_iter()
            .map(|token| token.0)
            .collect()
    }

    fn piece(&self, token: Token) -> Vec<u8> {
        self.model
            .vocab()
            .token_to_piece(LlamaToken(token), false, None)
    }

    fn is_eog(&self, token: Token) -> bool {
        self.model.vocab().is_eog(LlamaToken(token))
    }

    /// From the table of every token's text (built when the model loads), where
    /// end-of-generation and control tokens have none.
    fn has_text(&self, token: Token) -> bool {
        usize::try_from(token)
            .ok()
            .and_then(|token| self.pieces().get(token))
            .is_some_and(|piece| !piece.is_empty())
    }

    fn n_seq(&self) -> u32 {
        self.n_seq
    }

    fn n_ctx_per_seq(&self) -> u32 {
        self.n_ctx_per_seq
    }

    fn n_batch(&self) -> u32 {
        self.n_batch
    }

    fn evaluate(&mut self, seq: u32, n_past: u32, tokens: &[Token]) -> Result<(), Error> {
        self.evaluate_batch(&[super::Input {
            seq,
            n_past,
            tokens,
        }])
    }

    fn evaluate_batch(&mut self, inputs: &[super::Input<'_>]) -> Result<(), Error> {
        self.decode(inputs, false)
    }

    fn select_output(&mut self, input_idx: usize) {
        self.output = self.outputs.get(input_idx).copied().unwrap_or(-1);
    }

    fn evaluate_each(&mut self, seq: u32, n_past: u32, tokens: &[Token]) -> Result<(), Error> {
        self.decode(
            &[super::Input {
                seq,
                n_past,
                tokens,
            }],
            true,
        )
    }

    fn max_draft(&self) -> usize {
        self.max_draft
    }

    fn max_model_draft(&self) -> usize {
        self.max_model_draft
    }

    fn watch_load(&mut self) -> bool {
        let Some(control) = &mut self.threads else {
            return false;
        };
        let now = Instant::now();
        if now.saturating_duration_since(control.last_step) > WATCH_AFTER_STEP {
            return false;
        }
        control.adapt(now);
        true
    }

    fn trim(&mut self, seq: u32, n_keep: u32) -> bool {
        self.context
            .clear_kv_cache_seq(Some(seq), Some(n_keep), None)
            .unwrap_or(false)
    }

    fn clear(&mut self, seq: u32) {
        // Removing a whole sequence always succeeds.
        let _ = self.context.clear_kv_cache_seq(Some(seq), None, None);
    }

    fn new_sampler(
        &self,
        sampling: &SamplingConfig,
        grammar: Option<&str>,
    ) -> Result<Sampling, Error> {
        if grammar.is_none() && sampling.temperature <= 0.0 {
            return Ok(Sampling::Greedy);
        }
        let mut chain = Vec::new();
        if let Some(grammar) = grammar {
            chain.push(
                LlamaSampler::grammar(self.model, grammar, "root")
                    .map_err(|error| Error::Grammar(error.to_string()))?,
            );
        }
        if sampling.temperature <= 0.0 {
            chain.push(LlamaSampler::greedy());
        } else {
            if sampling.top_k > 0 {
                chain.push(LlamaSampler::top_k(sampling.top_k));
            }
            if sampling.top_p > 0.0 && sampling.top_p < 1.0 {
                chain.push(LlamaSampler::top_p(sampling.top_p, 1));
            }
            chain.push(LlamaSampler::temp(sampling.temperature));
            chain.push(LlamaSampler::dist(sampling.seed));
        }
        Ok(Sampling::Chain(LlamaSampler::chain_simple(chain)))
    }

    fn sample(&mut self, sampler: &mut Sampling) -> Token {
        match sampler {
            // Only all-NaN logits have no maximum; token 0 is as good as any then.
            Sampling::Greedy => argmax(self.context.get_logits_ith(self.output)).unwrap_or(0),
            Sampling::Chain(sampler) => sampler.sample(&self.context, self.output).0,
        }
    }

    fn is_greedy(&self, sampler: &Sampling) -> bool {
        matches!(sampler, Sampling::Greedy)
    }

    fn heals_last_token(&self) -> bool {
        true
    }

    fn extends_to_a_longer_token(&self, text: &[u8]) -> bool {
        let pieces = self.pieces();
        let sorted = self.sorted_tokens();
        // Texts starting with `text` sort right after it, `text` itself first.
        let first = sorted.partition_point(|token| pieces[*token as usize].as_slice() < text);
        sorted[first..]
            .iter()
            .map(|token| &pieces[*token as usize])
            .take_while(|piece| piece.starts_with(text))
            .any(|piece| piece.len() > text.len())
    }

    fn sample_with_prefix(&mut self, sampler: &mut Sampling, prefix: &[u8]) -> Token {
        let fitting = self.tokens_fitting(prefix);
        let logits = self.context.get_logits_ith(self.output);
        let sampler = match sampler {
            Sampling::Greedy => {
                // Ascending ids, so the first of equal logits wins, as in a full-vocabulary scan.
                let mut best: Option<(u32, f32)> = None;
                for &token in &fitting {
                    let logit = logits[token as usize];
                    if best.is_none_or(|(_, best_logit)| logit > best_logit) {
                        best = Some((token, logit));
                    }
                }
                return match best {
                    Some((token, _)) => token as Token,
                    None => argmax(logits).unwrap_or(0),
                };
            }
            Sampling::Chain(sampler) => sampler,
        };
        if fitting.is_empty() {
            return sampler.sample(&self.context, self.output).0;
        }
        let candidates: Vec<LlamaTokenData> = fitting
            .iter()
            .map(|&token| {
                LlamaTokenData::new(LlamaToken(token as i32), logits[token as usize], 0.0)
            })
            .collect();
        let mut candidates = LlamaTokenDataArray::new(candidates, false);
        candidates.apply_sampler(sampler);
        match candidates.selected_token() {
            Some(token) => {
                // `apply_sampler` only picks; the sampler's state (a grammar, say) still has to
                // see the token, which `sample` would have done itself.
                sampler.accept(token);
                token.0
            }
            None => sampler.sample(&self.context, self.output).0,
        }
    }

    fn apply_chat_template(&self, messages: &[ChatMessage]) -> Result<String, Error> {
        let template = match self.model.chat_template(None) {
            Ok(template) => template,
            Err(_) => LlamaChatTemplate::new("chatml").expect("a literal without NUL bytes"),
        };
        let messages = messages
            .iter()
            .map(|message| LlamaChatMessage::new(message.role.clone(), message.content.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| Error::ChatTemplate(error.to_string()))?;
        self.model
            .apply_chat_template(&template, &messages, true)
            .map_err(|error| Error::ChatTemplate(error.to_string()))
    }
}

/// A context that does not fit in the memory available.
struct Shortfall {
    /// What it needs, of what, and what there is.
    message: String,
    /// The KV cache (sized by the context and slots) is the bigger part, not the output buffers
    /// (sized by the batch).
    kv_cache_dominates: bool,
}

/// Compares the least a context needs (its KV cache and its output logits) with the memory
/// available; on the CPU backend both live in host memory.
fn check_context_memory(
    model: &LlamaModel,
    n_ctx: u32,
    n_batch: u32,
    type_k: ConfigKvCacheType,
    type_v: ConfigKvCacheType,
) -> Result<(), Shortfall> {
    let Some(available) = Available::now() else {
        return Ok(());
    };
    let head_length = |key: &str| {
        let architecture = model.meta_val_str("general.architecture").ok()?;
        model
            .meta_val_str(&format!("{architecture}.attention.{key}"))
            .ok()?
            .parse()
            .ok()
    };
    let shape = KvShape::new(
        u64::from(model.n_layer()),
        u64::try_from(model.n_embd()).unwrap_or(0),
        u64::from(model.n_head()),
        u64::from(model.n_head_kv()),
        head_length("key_length"),
        head_length("value_length"),
    );
    let n_vocab = u64::try_from(model.vocab().n_tokens()).unwrap_or(0);
    let kv_bytes = kv_cache_bytes(shape, u64::from(n_ctx), type_k, type_v);
    let logits_bytes = n_vocab * u64::from(n_batch) * 4;
    let needed = kv_bytes.saturating_add(logits_bytes);
    if needed <= available.bytes {
        return Ok(());
    }
    Err(Shortfall {
        message: format!(
            "{} ({} of KV cache, {} of output buffers) but there are only {}",
            mib(needed),
            mib(kv_bytes),
            mib(logits_bytes),
            available.describe()
        ),
        kv_cache_dominates: kv_bytes >= logits_bytes,
    })
}

/// Counts tokens with the model's vocabulary, off the engine thread (the model is `Sync`).
pub(crate) struct VocabCounter(pub Arc<LlamaModel>);

impl TokenCounter for VocabCounter {
    fn count_tokens(&self, text: &str) -> usize {
        self.0.vocab().tokenize(text.as_bytes(), false, false).len()
    }
}

/// The control of a context's thread counts, when the machine's load can be read and the
/// context's pointer recovered.
fn thread_control(
    context: &LlamaContext<'_>,
    n_threads: i32,
    n_threads_batch: i32,
) -> Option<ThreadControl> {
    let Some(raw) = raw_context(context) else {
        tracing::warn!(
            "thread counts stay as configured: this llama-cpp-2 does not show its context pointer"
        );
        return None;
    };
    let governor = ThreadGovernor::new(Threads {
        decode: n_threads.max(1) as u32,
        batch: n_threads_batch.max(1) as u32,
    })?;
    Some(ThreadControl {
        governor,
        raw,
        last_step: Instant::now(),
    })
}

/// The `llama_context` pointer inside a `LlamaContext`. llama-cpp-2 0.1.160 wraps neither
/// `llama_set_n_threads` nor a threadpool to attach, and keeps the pointer to itself, but its
/// `Debug` form prints it (`LlamaContext { context: 0x… }`, a `NonNull`'s address). Read back
/// from there and checked against the context (the same `n_ctx` through the pointer), it serves
/// the one call the binding lacks; a binding that prints something else gets `None`, and the
/// thread counts stay as configured. `tests` pins the form, so a new binding shows up at once.
fn raw_context(context: &LlamaContext<'_>) -> Option<NonNull<llama_cpp_sys_2::llama_context>> {
    let printed = format!("{context:?}");
    let hex = printed.strip_prefix("LlamaContext { context: 0x")?;
    let end = hex.find(|c: char| !c.is_ascii_hexdigit())?;
    if !hex[end..].starts_with(" }") {
        return None;
    }
    let address = usize::from_str_radix(&hex[..end], 16).ok()?;
    let raw = NonNull::new(address as *mut llama_cpp_sys_2::llama_context)?;
    // SAFETY: the address is the one `context` holds (printed from its `NonNull`), alive while
    // `context` is; `llama_n_ctx` only reads.
    let n_ctx = unsafe { llama_cpp_sys_2::llama_n_ctx(raw.as_ptr()) };
    (n_ctx == context.n_ctx()).then_some(raw)
}

impl ThreadControl {
    /// Before a step, and while idle: new thread counts when the load changed them.
    fn adapt(&mut self, now: Instant) {
        let Some((threads, others)) = self.governor.poll(now) else {
            return;
        };
        // SAFETY: `raw` is the pointer of the context this control belongs to (`raw_context`),
        // which outlives it (both are fields of one `LlamaCpp`), and the engine thread that
        // owns the context is the one calling; the call only stores the two counts.
        unsafe {
            llama_cpp_sys_2::llama_set_n_threads(
                self.raw.as_ptr(),
                threads.decode as i32,
                threads.batch as i32,
            );
        }
        tracing::info!(
            threads = threads.decode,
            threads_batch = threads.batch,
            "other programs keep {others:.1} cores busy: decoding on {} threads, prompts on {}",
            threads.decode,
            threads.batch
        );
    }
}

/// Physical cores, capped by what this process may use (affinity, container CPU quota):
/// decoding is bound by memory bandwidth, and hyperthread siblings only add contention.
fn default_n_threads() -> usize {
    let usable = std::thread::available_parallelism().map_or(4, |n| n.get());
    num_cpus::get_physical().clamp(1, usable)
}

#[cfg(test)]
mod tests {
    use super::{argmax, TokenTexts};

    fn texts(pieces: &[&str]) -> TokenTexts {
        TokenTexts {
            pieces: pieces
                .iter()
                .map(|piece| piece.as_bytes().to_vec())
                .collect(),
            sorted: Vec::new(),
        }
    }

    #[test]
    fn a_draft_model_needs_the_same_token_texts_and_at_most_a_little_padding() {
        let ours = texts(&["a", "b", "", "cd"]);
        assert_eq!(ours.draft_mismatch(&texts(&["a", "b", "", "cd"])), None);
        // Padding past the end of either vocabulary is allowed.
        assert_eq!(ours.draft_mismatch(&texts(&["a", "b"])), None);
        let padded: Vec<&str> = std::iter::repeat_n("x", 4 + 128).collect();
        let mut long = texts(&padded);
        long.pieces[..4].clone_from_slice(&ours.pieces);
        assert_eq!(ours.draft_mismatch(&long), None);
        long.pieces.push(b"y".to_vec());
        assert_eq!(
            ours.draft_mismatch(&long).as_deref(),
            Some("its vocabulary has 133 tokens, the model's 4")
        );
        assert_eq!(
            ours.draft_mismatch(&texts(&["a", "B", "", "cd"]))
                .as_deref(),
            Some("token 1 is \"B\" in the draft model and \"b\" in the model")
        );
    }

    #[test]
    fn argmax_takes_the_first_of_equal_maxima_and_skips_nan() {
        let mut logits = vec![0.0_f32; 100];
        logits[37] = 5.0;
        logits[70] = 5.0;
        logits[3] = f32::NAN;
        assert_eq!(argmax(&logits), Some(37));
        assert_eq!(argmax(&[f32::NEG_INFINITY, 1.0, 2.0]), Some(2));
        assert_eq!(argmax(&[f32::NAN; 5]), None);
    }
}
