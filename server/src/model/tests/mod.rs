//! Tests of model acquisition: the GGUF reader on real and hand-made files, and the `hf:`,
//! `ollama:` and built-in (PyPI) sources against a fake store and a 127.0.0.1 HTTP server.

mod builtin;
mod gguf;
mod hf;
pub(crate) mod http_server;
mod ollama;
mod spec;

use std::path::Path;
use std::sync::{Arc, Mutex};

use super::{Progress, ResolveOptions};

/// Options that never touch the real cache, store or network.
pub(crate) fn options(cache_dir: &Path) -> ResolveOptions {
    ResolveOptions {
        cache_dir: Some(cache_dir.to_path_buf()),
        hf_endpoint: Some("http://127.0.0.1:9".into()),
        hf_token: Some(String::new()),
        pypi_url: Some("http://127.0.0.1:9".into()),
        ollama_models: Some(cache_dir.join("no-ollama-store")),
        ..ResolveOptions::default()
    }
}

/// A progress callback that records every report.
pub(crate) fn recorder() -> (super::ProgressCallback, Arc<Mutex<Vec<Progress>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    let callback: super::ProgressCallback = Arc::new(move |progress| {
        sink.lock().expect("progress lock").push(progress);
    });
    (callback, seen)
}

/// Every regular file under `dir`, relative to it, sorted.
/// The files under `dir`, relative to it, sorted; the download locks (`.locks/`, bookkeeping
/// that stays) left out.
pub(crate) fn files_under(dir: &Path) -> Vec<String> {
    fn walk(dir: &Path, root: &Path, files: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                if path != root.join(".locks") {
                    walk(&path, root, files);
                }
            } else if let Ok(relative) = path.strip_prefix(root) {
                files.push(relative.display().to_string());
            }
        }
    }
    let mut files = Vec::new();
    walk(dir, dir, &mut files);
    files.sort();
    files
}

/// Writes small GGUF files for tests, with whatever metadata and tensors a test needs.
pub(crate) struct GgufBuilder {
    version: u32,
    n_kv: u64,
    metadata: Vec<u8>,
    /// (name, dims, ggml type, bytes of data)
    tensors: Vec<(String, Vec<u64>, u32, u64)>,
    alignment: u64,
}

fn put_string(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
}

impl GgufBuilder {
    pub(crate) fn new() -> GgufBuilder {
        GgufBuilder {
            version: 3,
            n_kv: 0,
            metadata: Vec::new(),
            tensors: Vec::new(),
            alignment: 32,
        }
    }

    /// A plausible little model: architecture, name, context length, Qwen FIM tokens, one
    /// F32 tensor of `n_floats` weights.
    pub(crate) fn model(n_floats: u64) -> GgufBuilder {
        GgufBuilder::new()
            .string("general.architecture", "qwen2")
            .string("general.name", "test model")
            .u32("general.file_type", 0)
            .u32("qwen2.context_length", 4096)
            .strings(
                "tokenizer.ggml.tokens",
                &[
                    "a",
                    "b",
                    "<|fim_prefix|>",
                    "<|fim_middle|>",
                    "<|fim_suffix|>",
                    "<|file_sep|>",
                ],
            )
            .tensor("weight", &[n_floats], 0)
    }

    pub(crate) fn version(mut self, version: u32) -> Self {
        self.version = version;
        self
    }

    fn key(&mut self, key: &str, value_type: u32) {
        self.n_kv += 1;
        put_string(&mut self.metadata, key);
        self.metadata.extend_from_slice(&value_type.to_le_bytes());
    }

    pub(crate) fn string(mut self, key: &str, value: &str) -> Self {
        self.key(key, 8);
        put_string(&mut self.metadata, value);
        self
    }

    pub(crate) fn u32(mut self, key: &str, value: u32) -> Self {
        self.key(key, 4);
        self.metadata.extend_from_slice(&value.to_le_bytes());
        if key == "general.alignment" {
            self.alignment = u64::from(value);
        }
        self
    }

    pub(crate) fn f32(mut self, key: &str, value: f32) -> Self {
        self.key(key, 6);
        self.metadata.extend_from_slice(&value.to_le_bytes());
        self
    }

    pub(crate) fn strings(mut self, key: &str, values: &[&str]) -> Self {
        self.key(key, 9);
        self.metadata.extend_from_slice(&8u32.to_le_bytes());
        self.metadata
            .extend_from_slice(&(values.len() as u64).to_le_bytes());
        for value in values {
            put_string(&mut self.metadata, value);
        }
        self
    }

    /// An array of arrays of i32, to exercise nested skipping.
    pub(crate) fn nested_ints(mut self, key: &str, rows: &[&[i32]]) -> Self {
        self.key(key, 9);
        self.metadata.extend_from_slice(&9u32.to_le_bytes());
        self.metadata
            .extend_from_slice(&(rows.len() as u64).to_le_bytes());
        for row in rows {
            self.metadata.extend_from_slice(&5u32.to_le_bytes());
            self.metadata
                .extend_from_slice(&(row.len() as u64).to_le_bytes());
            for value in *row {
                self.metadata.extend_from_slice(&value.to_le_bytes());
            }
        }
        self
    }

    /// Raw bytes appended to the metadata as one more entry (for corrupt files).
    pub(crate) fn raw_entry(mut self, bytes: &[u8]) -> Self {
        self.n_kv += 1;
        self.metadata.extend_from_slice(bytes);
        self
    }

    /// A tensor of a ggml type the reader does not know, taking `n_bytes` in the file.
    pub(crate) fn tensor_of_unknown_type(mut self, name: &str, dims: &[u64], n_bytes: u64) -> Self {
        self.tensors
            .push((name.to_owned(), dims.to_vec(), 1000, n_bytes));
        self
    }

    /// A tensor of ggml type `ggml_type` (0 = F32, 8 = Q8_0).
    pub(crate) fn tensor(mut self, name: &str, dims: &[u64], ggml_type: u32) -> Self {
        let n_elements: u64 = dims.iter().product();
        let n_bytes = match ggml_type {
            0 => n_elements * 4,
            8 => n_elements / 32 * 34,
            _ => panic!("the test builder knows F32 and Q8_0 only"),
        };
        self.tensors
            .push((name.to_owned(), dims.to_vec(), ggml_type, n_bytes));
        self
    }

    pub(crate) fn build(self) -> Vec<u8> {
        self.build_with_offsets(None)
    }

    /// Like `build`, but the tensor offsets may be overridden (for misaligned files).
    pub(crate) fn build_with_offsets(self, offsets: Option<Vec<u64>>) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(b"GGUF");
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&self.n_kv.to_le_bytes());
        out.extend_from_slice(&self.metadata);
        let mut next_offset = 0u64;
        let mut data_bytes = 0u64;
        for (tensor_idx, (name, dims, ggml_type, n_bytes)) in self.tensors.iter().enumerate() {
            put_string(&mut out, name);
            out.extend_from_slice(&(dims.len() as u32).to_le_bytes());
            for dim in dims {
                out.extend_from_slice(&dim.to_le_bytes());
            }
            out.extend_from_slice(&ggml_type.to_le_bytes());
            let offset = offsets
                .as_ref()
                .map_or(next_offset, |offsets| offsets[tensor_idx]);
            out.extend_from_slice(&offset.to_le_bytes());
            data_bytes = data_bytes.max(offset + n_bytes);
            next_offset = (offset + n_bytes).div_ceil(self.alignment) * self.alignment;
        }
        let data_start = (out.len() as u64).div_ceil(self.alignment) * self.alignment;
        out.resize(data_start as usize, 0);
        // Deterministic, non-repeating-looking data, so a misplaced chunk changes the bytes.
        out.extend((0..data_bytes).map(|byte_idx| (byte_idx * 7 + byte_idx / 251) as u8));
        out
    }
}
