//! A GGUF sanity check run before a file reaches llama.cpp, which trusts its input and can abort
//! the whole process on a truncated or corrupt file. It reads the header, every metadata entry
//! and every tensor description, and checks that each tensor's data lies inside the file.
//!
//! It does not check what the data means (that is llama.cpp's job, and it reports that failure
//! as an error rather than an abort).

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

/// What the check learned about a file that passed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GgufSummary {
    pub version: u32,
    pub n_tensors: u64,
    pub architecture: Option<String>,
}

/// Checks that `path` is a complete GGUF file; the error says what is wrong with it.
pub(crate) fn validate(path: &Path) -> Result<GgufSummary, String> {
    let file = File::open(path).map_err(|error| format!("cannot open: {error}"))?;
    let file_len = file
        .metadata()
        .map_err(|error| format!("cannot read file size: {error}"))?
        .len();
    let mut reader = Reader {
        inner: BufReader::with_capacity(1 << 16, file),
        position: 0,
        file_len,
    };
    let magic = reader
        .bytes(4)
        .map_err(|_| "not a GGUF file (too short)".to_owned())?;
    if magic != b"GGUF" {
        return Err("not a GGUF file (bad magic bytes)".to_owned());
    }
    let version = reader.u32()?;
    if !(2..=3).contains(&version) {
        return Err(format!("unsupported GGUF version {version}"));
    }
    let n_tensors = reader.u64()?;
    let n_kv = reader.u64()?;
    // Every entry takes at least 8 bytes, so counts beyond that are corrupt, not just large.
    if n_tensors > file_len / 8 || n_kv > file_len / 8 {
        return Err(format!(
            "corrupt header: {n_tensors} tensors and {n_kv} metadata entries in {file_len} bytes"
        ));
    }

    let mut architecture = None;
    let mut alignment = 32u64;
    for _ in 0..n_kv {
        let key = reader.string()?;
        let value_type = reader.u32()?;
        match (key.as_str(), value_type) {
            ("general.architecture", TYPE_STRING) => architecture = Some(reader.string()?),
            ("general.alignment", TYPE_U32) => {
                alignment = u64::from(reader.u32()?);
                if alignment == 0 || !alignment.is_power_of_two() {
                    return Err(format!("corrupt header: alignment {alignment}"));
                }
            }
            _ => reader.skip_value(value_type, 0)?,
        }
    }

    let mut tensors = Vec::with_capacity(n_tensors.min(1 << 16) as usize);
    for _ in 0..n_tensors {
        let name = reader.string()?;
        let n_dims = reader.u32()?;
        if n_dims > 8 {
            return Err(format!("tensor {name}: {n_dims} dimensions"));
        }
        let mut n_elements = 1u64;
        let mut row_len = 0u64;
        for dim_idx in 0..n_dims {
            let dim = reader.u64()?;
            if dim_idx == 0 {
                row_len = dim;
            }
            n_elements = n_elements
                .checked_mul(dim)
                .ok_or_else(|| format!("tensor {name}: dimensions overflow"))?;
        }
        let ggml_type = reader.u32()?;
        let data_offset = reader.u64()?;
        tensors.push((name, ggml_type, n_elements, row_len, data_offset));
    }

    let data_start = reader.position.div_ceil(alignment) * alignment;
    if n_tensors > 0 && data_start > file_len {
        return Err("truncated: the tensor data section is missing".to_owned());
    }
    let data_len = file_len.saturating_sub(data_start);
    for (name, ggml_type, n_elements, row_len, data_offset) in tensors {
        let n_bytes = match type_layout(ggml_type) {
            Some((block_len, block_bytes)) => {
                if row_len % block_len != 0 {
                    return Err(format!(
                        "tensor {name}: row length {row_len} does not fit type {ggml_type}"
                    ));
                }
                (n_elements / block_len)
                    .checked_mul(block_bytes)
                    .ok_or_else(|| format!("tensor {name}: size overflows"))?
            }
            // A type this check does not know: at least its first byte must be in the file.
            None => 1,
        };
        let end = data_offset
            .checked_add(n_bytes)
            .ok_or_else(|| format!("tensor {name}: offset overflows"))?;
        if end > data_len {
            return Err(format!(
                "truncated: tensor {name} needs {end} data bytes, the file has {data_len}"
            ));
        }
    }
    Ok(GgufSummary {
        version,
        n_tensors,
        architecture,
    })
}

const TYPE_U32: u32 = 4;
const TYPE_STRING: u32 = 8;
const TYPE_ARRAY: u32 = 9;

/// Bytes taken by one metadata value of a fixed-size type.
fn fixed_size(value_type: u32) -> Option<u64> {
    match value_type {
        0 | 1 | 7 => Some(1), // u8, i8, bool
        2 | 3 => Some(2),     // u16, i16
        4..=6 => Some(4),     // u32, i32, f32
        10..=12 => Some(8),   // u64, i64, f64
        _ => None,
    }
}

/// (elements per block, bytes per block) of the ggml tensor types in common use.
fn type_layout(ggml_type: u32) -> Option<(u64, u64)> {
    Some(match ggml_type {
        0 => (1, 4),       // F32
        1 => (1, 2),       // F16
        2 => (32, 18),     // Q4_0
        3 => (32, 20),     // Q4_1
        6 => (32, 22),     // Q5_0
        7 => (32, 24),     // Q5_1
        8 => (32, 34),     // Q8_0
        9 => (32, 36),     // Q8_1
        10 => (256, 84),   // Q2_K
        11 => (256, 110),  // Q3_K
        12 => (256, 144),  // Q4_K
        13 => (256, 176),  // Q5_K
        14 => (256, 210),  // Q6_K
        15 => (256, 292),  // Q8_K
        16 => (256, 66),   // IQ2_XXS
        17 => (256, 74),   // IQ2_XS
        18 => (256, 98),   // IQ3_XXS
        19 => (256, 50),   // IQ1_S
        20 => (32, 18),    // IQ4_NL
        21 => (256, 110),  // IQ3_S
        22 => (256, 82),   // IQ2_S
        23 => (256, 136),  // IQ4_XS
        24 => (1, 1),      // I8
        25 => (1, 2),      // I16
        26 => (1, 4),      // I32
        27 | 28 => (1, 8), // I64, F64
        29 => (256, 56),   // IQ1_M
        30 => (1, 2),      // BF16
        34 => (256, 54),   // TQ1_0
        35 => (256, 66),   // TQ2_0
        39 => (32, 17),    // MXFP4
        _ => return None,
    })
}

struct Reader {
    inner: BufReader<File>,
    position: u64,
    file_len: u64,
}

impl Reader {
    fn need(&self, n_bytes: u64) -> Result<(), String> {
        if self.position.saturating_add(n_bytes) > self.file_len {
            return Err(format!(
                "truncated: metadata runs past the end of the file at byte {}",
                self.position
            ));
        }
        Ok(())
    }

    fn bytes(&mut self, n_bytes: u64) -> Result<Vec<u8>, String> {
        self.need(n_bytes)?;
        let mut buffer = vec![0; n_bytes as usize];
        self.inner
            .read_exact(&mut buffer)
            .map_err(|error| format!("read error: {error}"))?;
        self.position += n_bytes;
        Ok(buffer)
    }

    fn skip(&mut self, n_bytes: u64) -> Result<(), String> {
        self.need(n_bytes)?;
        let copied = std::io::copy(&mut (&mut self.inner).take(n_bytes), &mut std::io::sink())
            .map_err(|error| format!("read error: {error}"))?;
        if copied != n_bytes {
            return Err("truncated: file ended early".to_owned());
        }
        self.position += n_bytes;
        Ok(())
    }

    fn u32(&mut self) -> Result<u32, String> {
        let bytes = self.bytes(4)?;
        Ok(u32::from_le_bytes(
            bytes.try_into().expect("read exactly 4 bytes"),
        ))
    }

    fn u64(&mut self) -> Result<u64, String> {
        let bytes = self.bytes(8)?;
        Ok(u64::from_le_bytes(
            bytes.try_into().expect("read exactly 8 bytes"),
        ))
    }

    fn string(&mut self) -> Result<String, String> {
        let n_bytes = self.u64()?;
        let bytes = self.bytes(n_bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    fn skip_value(&mut self, value_type: u32, depth: u32) -> Result<(), String> {
        if let Some(n_bytes) = fixed_size(value_type) {
            return self.skip(n_bytes);
        }
        match value_type {
            TYPE_STRING => {
                let n_bytes = self.u64()?;
                self.skip(n_bytes)
            }
            TYPE_ARRAY if depth < 4 => {
                let element_type = self.u32()?;
                let n_elements = self.u64()?;
                if let Some(n_bytes) = fixed_size(element_type) {
                    let total = n_elements
                        .checked_mul(n_bytes)
                        .ok_or("corrupt metadata: array size overflows")?;
                    return self.skip(total);
                }
                if n_elements > self.file_len {
                    return Err(format!("corrupt metadata: array of {n_elements} elements"));
                }
                for _ in 0..n_elements {
                    self.skip_value(element_type, depth + 1)?;
                }
                Ok(())
            }
            other => Err(format!("corrupt metadata: value type {other}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal GGUF: one u32 and one string entry, one F32 tensor of `n_floats` elements, and
    /// `data_len` bytes of tensor data.
    fn gguf_bytes(n_floats: u64, data_len: usize) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(b"GGUF");
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&1u64.to_le_bytes());
        out.extend_from_slice(&2u64.to_le_bytes());
        let string = |out: &mut Vec<u8>, text: &str| {
            out.extend_from_slice(&(text.len() as u64).to_le_bytes());
            out.extend_from_slice(text.as_bytes());
        };
        string(&mut out, "general.architecture");
        out.extend_from_slice(&TYPE_STRING.to_le_bytes());
        string(&mut out, "qwen2");
        string(&mut out, "general.alignment");
        out.extend_from_slice(&TYPE_U32.to_le_bytes());
        out.extend_from_slice(&32u32.to_le_bytes());
        string(&mut out, "weight");
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(&n_floats.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&0u64.to_le_bytes());
        while out.len() % 32 != 0 {
            out.push(0);
        }
        out.extend(std::iter::repeat_n(0u8, data_len));
        out
    }

    fn check(bytes: &[u8]) -> Result<GgufSummary, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.gguf");
        std::fs::write(&path, bytes).unwrap();
        validate(&path)
    }

    #[test]
    fn complete_file_passes() {
        let summary = check(&gguf_bytes(8, 32)).unwrap();
        assert_eq!(summary.architecture.as_deref(), Some("qwen2"));
        assert_eq!((summary.version, summary.n_tensors), (3, 1));
    }

    #[test]
    fn missing_tensor_data_is_truncation() {
        let error = check(&gguf_bytes(8, 31)).unwrap_err();
        assert!(error.starts_with("truncated: tensor weight"), "{error}");
    }

    #[test]
    fn cut_inside_metadata_is_truncation() {
        let bytes = gguf_bytes(8, 32);
        let error = check(&bytes[..40]).unwrap_err();
        assert!(error.starts_with("truncated"), "{error}");
    }

    #[test]
    fn other_files_are_not_gguf() {
        assert_eq!(check(b"").unwrap_err(), "not a GGUF file (too short)");
        assert_eq!(
            check(b"#!/bin/sh\necho hi\n").unwrap_err(),
            "not a GGUF file (bad magic bytes)"
        );
    }

    #[test]
    fn absurd_counts_are_corrupt_not_allocated() {
        let mut bytes = gguf_bytes(8, 32);
        bytes[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(check(&bytes).unwrap_err().starts_with("corrupt header"));
    }
}
