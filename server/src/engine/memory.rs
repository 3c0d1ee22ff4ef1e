//! How much memory a model or a context may still take, checked before llama.cpp is asked for
//! it.
//!
//! llama.cpp fails cleanly when an allocation is refused, but the kernel refuses little: on Linux
//! a KV cache far bigger than the machine is usually granted, then touched page by page until the
//! out-of-memory killer ends the whole server. So the engine estimates what a load needs (a lower
//! bound: the weights, or the KV cache and the output logits) and refuses it with a message that
//! says what to lower when it cannot fit in what is available: `MemAvailable` from
//! `/proc/meminfo`, and the room left under the address-space limit (`ulimit -v`, `prlimit
//! --as`). Where these figures cannot be read, nothing is refused here.

use crate::config::KvCacheType;

/// Address space kept free under a limit, beyond what the estimates count: llama.cpp's own
/// working memory while it loads (about 70 MiB for a tiny model: thread stacks, the vocabulary,
/// read buffers) and the server's. An allocation that fails in Rust code aborts the process, so
/// the limit must not be reached by what the estimates leave out.
const ADDRESS_SPACE_HEADROOM: u64 = 256 << 20;

/// What limits the memory still available.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limit {
    /// The machine's available memory (`MemAvailable`).
    Ram,
    /// The process's address-space limit (`RLIMIT_AS`).
    AddressSpace,
}

/// Bytes a new allocation may still take, and what bounds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Available {
    pub bytes: u64,
    pub limit: Limit,
}

impl Available {
    /// Reads the figures of this process on this machine.
    pub(crate) fn now() -> Option<Available> {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        Available::from_proc(
            &read("/proc/meminfo"),
            &read("/proc/self/limits"),
            &read("/proc/self/status"),
        )
    }

    /// The smaller of the available memory and the room left under the address-space limit,
    /// from the texts of `/proc/meminfo`, `/proc/self/limits` and `/proc/self/status`.
    pub(crate) fn from_proc(meminfo: &str, limits: &str, status: &str) -> Option<Available> {
        let ram = kib_field(meminfo, "MemAvailable:").map(|bytes| Available {
            bytes,
            limit: Limit::Ram,
        });
        let address_space = address_space_limit(limits)
            .zip(kib_field(status, "VmSize:"))
            .map(|(limit, used)| Available {
                bytes: limit
                    .saturating_sub(used)
                    .saturating_sub(ADDRESS_SPACE_HEADROOM),
                limit: Limit::AddressSpace,
            });
        match (ram, address_space) {
            (Some(ram), Some(address_space)) if address_space.bytes < ram.bytes => {
                Some(address_space)
            }
            (Some(ram), _) => Some(ram),
            (None, address_space) => address_space,
        }
    }

    /// "N MiB of available memory" or "N MiB left under the address-space limit".
    pub(crate) fn describe(&self) -> String {
        match self.limit {
            Limit::Ram => format!("{} of available memory", mib(self.bytes)),
            Limit::AddressSpace => format!(
                "{} left under the process's address-space limit (ulimit -v), after {} kept for the rest of the server",
                mib(self.bytes),
                mib(ADDRESS_SPACE_HEADROOM)
            ),
        }
    }
}

/// A `Name:   123 kB` line's value in bytes.
fn kib_field(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|line| line.starts_with(name))?;
    let kib: u64 = line[name.len()..].split_whitespace().next()?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

/// The soft `Max address space` limit in bytes; `None` when unlimited.
fn address_space_limit(limits: &str) -> Option<u64> {
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max address space"))?;
    line["Max address space".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Bytes a mebibyte count is written from, rounded up.
pub(crate) fn mib(bytes: u64) -> String {
    format!("{} MiB", bytes.div_ceil(1 << 20))
}

/// The shape of a model that decides the size of its KV cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KvShape {
    pub n_layer: u64,
    pub n_head_kv: u64,
    /// Width of one key head and of one value head.
    pub n_embd_head_k: u64,
    pub n_embd_head_v: u64,
}

impl KvShape {
    /// Heads are `key_length` and `value_length` wide where the GGUF says so (Qwen3 MoE: 128,
    /// with `n_embd` 2048 and 32 heads), else `n_embd / n_head`, which holds for the common
    /// architectures.
    pub(crate) fn new(
        n_layer: u64,
        n_embd: u64,
        n_head: u64,
        n_head_kv: u64,
        key_length: Option<u64>,
        value_length: Option<u64>,
    ) -> KvShape {
        let n_embd_head = n_embd / n_head.max(1);
        KvShape {
            n_layer,
            n_head_kv,
            n_embd_head_k: key_length.unwrap_or(n_embd_head),
            n_embd_head_v: value_length.unwrap_or(n_embd_head),
        }
    }
}

/// Bytes `n_elements` of a KV cache row take as `kv_type`: F16 is 2 bytes an element, Q8_0 and
/// Q4_0 blocks of 32 elements are 34 and 18 bytes. `Auto` counts as F16 (the planner resolves it
/// before anything is sized).
pub(crate) fn kv_row_bytes(n_elements: u64, kv_type: KvCacheType) -> u64 {
    match kv_type {
        KvCacheType::F16 | KvCacheType::Auto => n_elements.saturating_mul(2),
        KvCacheType::Q8_0 => n_elements.div_ceil(32).saturating_mul(34),
        KvCacheType::Q4_0 => n_elements.div_ceil(32).saturating_mul(18),
    }
}

/// Bytes one token takes in one layer's KV cache: a key and a value row over the KV heads.
pub(crate) fn kv_bytes_per_token_layer(
    shape: KvShape,
    type_k: KvCacheType,
    type_v: KvCacheType,
) -> u64 {
    kv_row_bytes(shape.n_head_kv.saturating_mul(shape.n_embd_head_k), type_k).saturating_add(
        kv_row_bytes(shape.n_head_kv.saturating_mul(shape.n_embd_head_v), type_v),
    )
}

/// Bytes of a KV cache of `n_ctx` cells, with keys and values stored as `type_k` and `type_v`.
pub(crate) fn kv_cache_bytes(
    shape: KvShape,
    n_ctx: u64,
    type_k: KvCacheType,
    type_v: KvCacheType,
) -> u64 {
    shape
        .n_layer
        .saturating_mul(n_ctx)
        .saturating_mul(kv_bytes_per_token_layer(shape, type_k, type_v))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMINFO: &str =
        "MemTotal:       32000000 kB\nMemFree:         1000000 kB\nMemAvailable:   20000000 kB\n";
    const UNLIMITED: &str = "Limit                     Soft Limit           Hard Limit           Units     \nMax address space         unlimited            unlimited            bytes     \n";
    const LIMITED: &str = "Limit                     Soft Limit           Hard Limit           Units     \nMax address space         1000000000           unlimited            bytes     \n";
    const STATUS: &str = "Name:\twellspring\nVmPeak:\t  400000 kB\nVmSize:\t  300000 kB\n";

    fn check(meminfo: &str, limits: &str, status: &str, expected: Option<(u64, Limit)>) {
        let available = Available::from_proc(meminfo, limits, status);
        assert_eq!(
            available.map(|available| (available.bytes, available.limit)),
            expected
        );
    }

    #[test]
    fn available_memory_is_the_tighter_of_ram_and_the_address_space_limit() {
        check(
            MEMINFO,
            UNLIMITED,
            STATUS,
            Some((20_000_000 * 1024, Limit::Ram)),
        );
        check(
            MEMINFO,
            LIMITED,
            STATUS,
            Some((
                1_000_000_000 - 300_000 * 1024 - ADDRESS_SPACE_HEADROOM,
                Limit::AddressSpace,
            )),
        );
        check(
            "",
            LIMITED,
            STATUS,
            Some((692_800_000 - (256 << 20), Limit::AddressSpace)),
        );
        check(MEMINFO, LIMITED, "", Some((20_000_000 * 1024, Limit::Ram)));
        check("", "", "", None);
        // A process already past its limit has nothing left, not a wrapped-around figure.
        check(
            MEMINFO,
            LIMITED,
            "VmSize:\t 2000000 kB\n",
            Some((0, Limit::AddressSpace)),
        );
    }

    #[test]
    fn kv_cache_size_follows_layers_context_heads_and_type() {
        // Qwen2.5-Coder 1.5B: 28 layers, 1536 wide, 12 heads of which 2 carry keys and values.
        let shape = KvShape::new(28, 1536, 12, 2, None, None);
        let f16 = kv_cache_bytes(shape, 8192, KvCacheType::F16, KvCacheType::F16);
        assert_eq!(f16, 28 * 8192 * 256 * 2 * 2);
        let q8 = kv_cache_bytes(shape, 8192, KvCacheType::Q8_0, KvCacheType::F16);
        assert_eq!(q8, 28 * 8192 * 256 / 32 * (34 + 64));
        assert_eq!(
            kv_cache_bytes(shape, u64::MAX, KvCacheType::F16, KvCacheType::F16),
            u64::MAX
        );
        assert_eq!(mib(f16), "224 MiB");
    }

    #[test]
    fn kv_heads_take_key_and_value_length_when_the_model_gives_them() {
        // Qwen3-Coder-30B-A3B: 48 layers, 2048 wide, 32 heads, 4 KV heads of 128, not 64.
        let shape = KvShape::new(48, 2048, 32, 4, Some(128), Some(128));
        assert_eq!(
            kv_cache_bytes(shape, 1, KvCacheType::F16, KvCacheType::F16),
            48 * 4 * 128 * 2 * 2
        );
        assert_eq!(
            kv_cache_bytes(shape, 1, KvCacheType::Q4_0, KvCacheType::Q8_0),
            48 * (4 * 128 / 32) * (18 + 34)
        );
        // Keys and values may differ in width (DeepSeek's MLA: 192 and 128).
        let uneven = KvShape::new(1, 2048, 16, 16, Some(192), Some(128));
        assert_eq!(
            kv_cache_bytes(uneven, 10, KvCacheType::F16, KvCacheType::F16),
            10 * 16 * (192 + 128) * 2
        );
    }
}
