//! GGUF header reader: checks that a file is a complete GGUF model before llama.cpp sees it, and
//! summarises what the rest of Wellspring wants to know (architecture, quantisation, context
//! length, FIM tokens, chat template).
//!
//! It also sums up what the engine's memory planner needs: the model's shape (layers, widths,
//! heads, experts) and the bytes of each repeating block, of the input embedding and of the
//! output layer. Tensor sizes come from the ggml type table; a tensor of a type the table lacks
//! is taken to run up to the next tensor's start (or the end of the file), which is what it
//! occupies in the file, padding included.
//!
//! Only the header is read (metadata and tensor infos); tensor data is never loaded. The reader
//! trusts nothing in the file: every length is checked against the bytes left in the file before
//! anything is allocated, so a corrupt or hostile file gives an error, never a panic or a huge
//! allocation. Loading the weights is the engine's job.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek};
use std::path::Path;

use super::Error;

const GGUF_MAGIC: [u8; 4] = *b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;
/// GGML tensors have at most this many dimensions.
const MAX_DIMS: u32 = 4;
/// Metadata strings longer than this are skipped instead of kept (none of the keys the summary
/// reads comes close; chat templates are a few KiB).
const MAX_KEPT_STRING_BYTES: u64 = 1 << 20;

/// Token texts of the Qwen2.5-Coder family (also used by several other code models).
const QWEN_FIM_PREFIX: &str = "<|fim_prefix|>";
const QWEN_FIM_SUFFIX: &str = "<|fim_suffix|>";
const QWEN_FIM_MIDDLE: &str = "<|fim_middle|>";
const QWEN_FIM_PAD: &str = "<|fim_pad|>";
const QWEN_REPO_NAME: &str = "<|repo_name|>";
const QWEN_FILE_SEP: &str = "<|file_sep|>";

/// What `inspect` learned from a GGUF header.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufSummary {
    /// GGUF format version (2 or 3).
    pub version: u32,
    /// `general.architecture`, e.g. `qwen2`.
    pub architecture: Option<String>,
    /// `general.name`, e.g. `Qwen2.5 Coder 1.5B`.
    pub name: Option<String>,
    /// `general.file_type` (llama.cpp's `llama_ftype`); see [`GgufSummary::file_type_name`].
    pub file_type: Option<u32>,
    /// `{architecture}.context_length`: the context the model was trained for.
    pub n_ctx_train: Option<u64>,
    /// Number of entries in `tokenizer.ggml.tokens`.
    pub n_vocab: Option<u64>,
    pub n_tensors: u64,
    /// Total number of weights over all tensors.
    pub n_params: u64,
    pub special_tokens: SpecialTokens,
    /// The file carries `tokenizer.chat_template`.
    pub has_chat_template: bool,
    pub file_bytes: u64,
    /// Bytes of tensor data (from the first data byte to the end of the last tensor).
    pub tensor_data_bytes: u64,
    /// `{architecture}.block_count`: repeating layers.
    pub n_layer: Option<u64>,
    /// `{architecture}.embedding_length`.
    pub n_embd: Option<u64>,
    /// `{architecture}.attention.head_count`.
    pub n_head: Option<u64>,
    /// `{architecture}.attention.head_count_kv`; absent (or per layer) means `n_head`.
    pub n_head_kv: Option<u64>,
    /// `{architecture}.attention.key_length`: the width of one key head, when it is not
    /// `n_embd / n_head` (Qwen3 MoE: 128 with `n_embd` 2048 and 32 heads).
    pub n_embd_head_k: Option<u64>,
    /// `{architecture}.attention.value_length`, likewise for values.
    pub n_embd_head_v: Option<u64>,
    /// `{architecture}.feed_forward_length` (absent when it varies by layer).
    pub n_ff: Option<u64>,
    /// `{architecture}.expert_count` and `expert_used_count`, for mixture-of-experts models.
    pub n_expert: Option<u64>,
    pub n_expert_used: Option<u64>,
    /// `{architecture}.expert_feed_forward_length`: one expert's feed-forward width.
    pub n_ff_expert: Option<u64>,
    /// Where the tensor bytes lie: per repeating block, input embedding, output layer.
    pub tensor_bytes: TensorBytes,
}

/// Tensor bytes by where llama.cpp places them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TensorBytes {
    /// The bytes of each repeating block's tensors (`blk.N.*`), indexed by N.
    pub blocks: Vec<u64>,
    /// `token_embd.*`: the input embedding, which llama.cpp keeps in host memory.
    pub token_embd: u64,
    /// `output.*`, `output_norm.*` and any other tensor outside the blocks: the output layer,
    /// which llama.cpp puts on the GPU first.
    pub output: u64,
    /// The file has an `output.weight` of its own. Without one (tied embeddings) llama.cpp loads
    /// `token_embd.weight` a second time for the output layer.
    pub has_output_weight: bool,
}

/// Ids of the special tokens prompt builders care about; `None` when the vocabulary lacks one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecialTokens {
    pub fim_prefix: Option<u32>,
    pub fim_suffix: Option<u32>,
    pub fim_middle: Option<u32>,
    pub fim_pad: Option<u32>,
    pub repo_name: Option<u32>,
    pub file_sep: Option<u32>,
}

impl GgufSummary {
    /// The model can do fill-in-the-middle: it has prefix, suffix and middle tokens.
    pub fn has_fim(&self) -> bool {
        let tokens = &self.special_tokens;
        tokens.fim_prefix.is_some() && tokens.fim_suffix.is_some() && tokens.fim_middle.is_some()
    }

    /// The model knows repo-level FIM (file separators between files of one repository).
    pub fn has_repo_fim(&self) -> bool {
        self.has_fim() && self.special_tokens.file_sep.is_some()
    }

    /// The quantisation named the way llama.cpp names it (`Q4_K_M`, `Q8_0`, `F16`, …).
    pub fn file_type_name(&self) -> Option<&'static str> {
        self.file_type.and_then(file_type_name)
    }
}

/// llama.cpp's `llama_ftype` values (facts from `gguf-py`'s `LlamaFileType`).
pub fn file_type_name(file_type: u32) -> Option<&'static str> {
    // The "guessed" flag only says llama.cpp inferred the type; the name is the same.
    let name = match file_type & !1024 {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        19 => "IQ2_XXS",
        20 => "IQ2_XS",
        21 => "Q2_K_S",
        22 => "IQ3_XS",
        23 => "IQ3_XXS",
        24 => "IQ1_S",
        25 => "IQ4_NL",
        26 => "IQ3_S",
        27 => "IQ3_M",
        28 => "IQ2_S",
        29 => "IQ2_M",
        30 => "IQ4_XS",
        31 => "IQ1_M",
        32 => "BF16",
        36 => "TQ1_0",
        37 => "TQ2_0",
        38 => "MXFP4_MOE",
        _ => return None,
    };
    Some(name)
}

/// (elements per block, bytes per block) of a GGML tensor type (facts from `gguf-py`'s
/// `GGML_QUANT_SIZES`). `None` for types this reader does not know; their tensors are only
/// checked to start inside the file.
fn ggml_type_block(ggml_type: u32) -> Option<(u64, u64)> {
    let block = match ggml_type {
        0 => (1, 4),      // F32
        1 => (1, 2),      // F16
        2 => (32, 18),    // Q4_0
        3 => (32, 20),    // Q4_1
        6 => (32, 22),    // Q5_0
        7 => (32, 24),    // Q5_1
        8 => (32, 34),    // Q8_0
        9 => (32, 40),    // Q8_1
        10 => (256, 84),  // Q2_K
        11 => (256, 110), // Q3_K
        12 => (256, 144), // Q4_K
        13 => (256, 176), // Q5_K
        14 => (256, 210), // Q6_K
        15 => (256, 292), // Q8_K
        16 => (256, 66),  // IQ2_XXS
        17 => (256, 74),  // IQ2_XS
        18 => (256, 98),  // IQ3_XXS
        19 => (256, 50),  // IQ1_S
        20 => (32, 18),   // IQ4_NL
        21 => (256, 110), // IQ3_S
        22 => (256, 82),  // IQ2_S
        23 => (256, 136), // IQ4_XS
        24 => (1, 1),     // I8
        25 => (1, 2),     // I16
        26 => (1, 4),     // I32
        27 => (1, 8),     // I64
        28 => (1, 8),     // F64
        29 => (256, 56),  // IQ1_M
        30 => (1, 2),     // BF16
        34 => (256, 54),  // TQ1_0
        35 => (256, 66),  // TQ2_0
        39 => (32, 17),   // MXFP4
        _ => return None,
    };
    Some(block)
}

/// Block indices at or past this are not counted as blocks (llama.cpp allows 512 layers), so a
/// hostile `blk.4000000000.x` cannot make the per-block vector huge.
const MAX_BLOCKS: u64 = 4096;

/// Where a tensor's bytes are counted.
#[derive(Clone, Copy)]
enum Place {
    Block(usize),
    TokenEmbd,
    Output,
}

fn place_of(name: &str) -> Place {
    if let Some(rest) = name.strip_prefix("blk.") {
        let index = rest
            .split('.')
            .next()
            .and_then(|index| index.parse::<u64>().ok());
        if let Some(index) = index.filter(|index| *index < MAX_BLOCKS) {
            return Place::Block(index as usize);
        }
    }
    if name.starts_with("token_embd.") {
        Place::TokenEmbd
    } else {
        Place::Output
    }
}

/// Reads and checks the GGUF header of `path`. See [`super::inspect`].
pub(crate) fn read_summary(path: &Path) -> Result<GgufSummary, Error> {
    let read_error = |source: io::Error| Error::Read {
        path: path.to_path_buf(),
        source,
    };
    let metadata = std::fs::metadata(path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => Error::NotFound {
            path: path.to_path_buf(),
        },
        _ => read_error(source),
    })?;
    if metadata.is_dir() {
        return Err(Error::NotGguf {
            path: path.to_path_buf(),
            reason: "it is a directory".into(),
        });
    }
    let file_bytes = metadata.len();
    if file_bytes == 0 {
        return Err(Error::Empty {
            path: path.to_path_buf(),
        });
    }
    let file = File::open(path).map_err(read_error)?;
    let mut reader = HeaderReader {
        inner: BufReader::with_capacity(1 << 20, file),
        position: 0,
        file_bytes,
    };
    parse(&mut reader).map_err(|problem| match problem {
        Problem::Io(source) => read_error(source),
        Problem::Eof => Error::Truncated {
            path: path.to_path_buf(),
            detail: format!("the file ends inside the GGUF header, at byte {file_bytes}"),
        },
        Problem::NotGguf(reason) => Error::NotGguf {
            path: path.to_path_buf(),
            reason,
        },
        Problem::Version(version) => Error::UnsupportedVersion {
            path: path.to_path_buf(),
            version,
        },
        Problem::DataPastEnd { needed_bytes } => Error::Truncated {
            path: path.to_path_buf(),
            detail: format!("tensor data needs {needed_bytes} bytes but the file has {file_bytes}"),
        },
        Problem::Corrupt(detail) => Error::Corrupt {
            path: path.to_path_buf(),
            detail,
        },
    })
}

/// Why parsing stopped, before it is tied to a path.
enum Problem {
    Io(io::Error),
    /// The header runs past the end of the file.
    Eof,
    NotGguf(String),
    Version(u32),
    DataPastEnd {
        needed_bytes: u64,
    },
    Corrupt(String),
}

impl From<io::Error> for Problem {
    fn from(error: io::Error) -> Self {
        match error.kind() {
            io::ErrorKind::UnexpectedEof => Problem::Eof,
            _ => Problem::Io(error),
        }
    }
}

/// A metadata value the summary may want; arrays are consumed while reading and never kept.
enum Value {
    Unsigned(u64),
    Signed(i64),
    Float,
    Bool,
    Str(String),
    /// A string longer than `MAX_KEPT_STRING_BYTES`, skipped.
    LongStr,
    Array,
}

impl Value {
    fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::Unsigned(value) => Some(value),
            Value::Signed(value) => u64::try_from(value).ok(),
            _ => None,
        }
    }

    fn as_u32(&self) -> Option<u32> {
        self.as_u64().and_then(|value| u32::try_from(value).ok())
    }

    fn into_string(self) -> Option<String> {
        match self {
            Value::Str(text) => Some(text),
            _ => None,
        }
    }
}

// GGUF metadata value types.
const TYPE_U8: u32 = 0;
const TYPE_I8: u32 = 1;
const TYPE_U16: u32 = 2;
const TYPE_I16: u32 = 3;
const TYPE_U32: u32 = 4;
const TYPE_I32: u32 = 5;
const TYPE_F32: u32 = 6;
const TYPE_BOOL: u32 = 7;
const TYPE_STRING: u32 = 8;
const TYPE_ARRAY: u32 = 9;
const TYPE_U64: u32 = 10;
const TYPE_I64: u32 = 11;
const TYPE_F64: u32 = 12;

/// Size in bytes of a fixed-size metadata value type.
fn fixed_value_bytes(value_type: u32) -> Option<u64> {
    match value_type {
        TYPE_U8 | TYPE_I8 | TYPE_BOOL => Some(1),
        TYPE_U16 | TYPE_I16 => Some(2),
        TYPE_U32 | TYPE_I32 | TYPE_F32 => Some(4),
        TYPE_U64 | TYPE_I64 | TYPE_F64 => Some(8),
        _ => None,
    }
}

struct HeaderReader<R> {
    inner: R,
    position: u64,
    file_bytes: u64,
}

impl<R: Read + Seek> HeaderReader<R> {
    fn remaining_bytes(&self) -> u64 {
        self.file_bytes.saturating_sub(self.position)
    }

    fn bytes<const N: usize>(&mut self) -> Result<[u8; N], Problem> {
        let mut buffer = [0u8; N];
        self.inner.read_exact(&mut buffer)?;
        self.position += N as u64;
        Ok(buffer)
    }

    fn u32(&mut self) -> Result<u32, Problem> {
        Ok(u32::from_le_bytes(self.bytes()?))
    }

    fn u64(&mut self) -> Result<u64, Problem> {
        Ok(u64::from_le_bytes(self.bytes()?))
    }

    fn skip(&mut self, n_bytes: u64) -> Result<(), Problem> {
        if n_bytes > self.remaining_bytes() {
            return Err(Problem::Eof);
        }
        let n_bytes_signed = i64::try_from(n_bytes).map_err(|_| Problem::Eof)?;
        self.inner.seek_relative(n_bytes_signed)?;
        self.position += n_bytes;
        Ok(())
    }

    /// Reads a length-prefixed string into `buffer`, checking the length against the file size
    /// before allocating.
    fn string_into(&mut self, buffer: &mut Vec<u8>) -> Result<(), Problem> {
        let n_bytes = self.u64()?;
        self.bytes_into(n_bytes, buffer)
    }

    fn bytes_into(&mut self, n_bytes: u64, buffer: &mut Vec<u8>) -> Result<(), Problem> {
        if n_bytes > self.remaining_bytes() {
            return Err(Problem::Eof);
        }
        let n_bytes = usize::try_from(n_bytes).map_err(|_| Problem::Eof)?;
        buffer.clear();
        buffer.resize(n_bytes, 0);
        self.inner.read_exact(buffer)?;
        self.position += n_bytes as u64;
        Ok(())
    }

    fn string(&mut self) -> Result<String, Problem> {
        let mut buffer = Vec::new();
        self.string_into(&mut buffer)?;
        Ok(String::from_utf8_lossy(&buffer).into_owned())
    }

    fn skip_string(&mut self) -> Result<u64, Problem> {
        let n_bytes = self.u64()?;
        self.skip(n_bytes)?;
        Ok(n_bytes)
    }

    /// Reads one metadata value of `value_type`; arrays are skipped.
    fn value(&mut self, key: &str, value_type: u32) -> Result<Value, Problem> {
        let value = match value_type {
            TYPE_U8 => Value::Unsigned(u64::from(u8::from_le_bytes(self.bytes()?))),
            TYPE_I8 => Value::Signed(i64::from(i8::from_le_bytes(self.bytes()?))),
            TYPE_U16 => Value::Unsigned(u64::from(u16::from_le_bytes(self.bytes()?))),
            TYPE_I16 => Value::Signed(i64::from(i16::from_le_bytes(self.bytes()?))),
            TYPE_U32 => Value::Unsigned(u64::from(self.u32()?)),
            TYPE_I32 => Value::Signed(i64::from(i32::from_le_bytes(self.bytes()?))),
            TYPE_U64 => Value::Unsigned(self.u64()?),
            TYPE_I64 => Value::Signed(i64::from_le_bytes(self.bytes()?)),
            TYPE_F32 => {
                self.bytes::<4>()?;
                Value::Float
            }
            TYPE_F64 => {
                self.bytes::<8>()?;
                Value::Float
            }
            TYPE_BOOL => {
                self.bytes::<1>()?;
                Value::Bool
            }
            TYPE_STRING => {
                let n_bytes = self.u64()?;
                if n_bytes > MAX_KEPT_STRING_BYTES {
                    self.skip(n_bytes)?;
                    Value::LongStr
                } else {
                    let mut buffer = Vec::new();
                    self.bytes_into(n_bytes, &mut buffer)?;
                    Value::Str(String::from_utf8_lossy(&buffer).into_owned())
                }
            }
            TYPE_ARRAY => {
                self.skip_array(key, 0)?;
                Value::Array
            }
            other => {
                return Err(Problem::Corrupt(format!(
                    "metadata key `{key}` has unknown value type {other}"
                )))
            }
        };
        Ok(value)
    }

    /// Skips an array value (the element type and count come next in the file).
    fn skip_array(&mut self, key: &str, depth: u32) -> Result<(), Problem> {
        if depth > 8 {
            return Err(Problem::Corrupt(format!(
                "metadata key `{key}` nests arrays too deeply"
            )));
        }
        let element_type = self.u32()?;
        let n_elements = self.u64()?;
        if let Some(element_bytes) = fixed_value_bytes(element_type) {
            let n_bytes = n_elements.checked_mul(element_bytes).ok_or(Problem::Eof)?;
            return self.skip(n_bytes);
        }
        // Strings take at least 8 bytes and nested arrays at least 12, so a count the file
        // cannot hold is caught before the loop instead of after billions of reads.
        if n_elements > self.remaining_bytes() / 8 {
            return Err(Problem::Eof);
        }
        match element_type {
            TYPE_STRING => {
                for _ in 0..n_elements {
                    self.skip_string()?;
                }
            }
            TYPE_ARRAY => {
                for _ in 0..n_elements {
                    self.skip_array(key, depth + 1)?;
                }
            }
            other => {
                return Err(Problem::Corrupt(format!(
                    "metadata key `{key}` is an array of unknown value type {other}"
                )))
            }
        }
        Ok(())
    }

    /// Walks `tokenizer.ggml.tokens`, noting the ids of the special tokens we look for.
    fn scan_tokens(
        &mut self,
        key: &str,
        special_tokens: &mut SpecialTokens,
    ) -> Result<u64, Problem> {
        let element_type = self.u32()?;
        let n_elements = self.u64()?;
        if element_type != TYPE_STRING {
            return Err(Problem::Corrupt(format!(
                "metadata key `{key}` should be an array of strings but holds type {element_type}"
            )));
        }
        if n_elements > self.remaining_bytes() / 8 {
            return Err(Problem::Eof);
        }
        let mut buffer = Vec::new();
        for token_idx in 0..n_elements {
            self.string_into(&mut buffer)?;
            // Special tokens are short; skip the comparison for everything else.
            if buffer.len() > 16 || buffer.first() != Some(&b'<') {
                continue;
            }
            let slot = match buffer.as_slice() {
                text if text == QWEN_FIM_PREFIX.as_bytes() => &mut special_tokens.fim_prefix,
                text if text == QWEN_FIM_SUFFIX.as_bytes() => &mut special_tokens.fim_suffix,
                text if text == QWEN_FIM_MIDDLE.as_bytes() => &mut special_tokens.fim_middle,
                text if text == QWEN_FIM_PAD.as_bytes() => &mut special_tokens.fim_pad,
                text if text == QWEN_REPO_NAME.as_bytes() => &mut special_tokens.repo_name,
                text if text == QWEN_FILE_SEP.as_bytes() => &mut special_tokens.file_sep,
                _ => continue,
            };
            if slot.is_none() {
                *slot = u32::try_from(token_idx).ok();
            }
        }
        Ok(n_elements)
    }
}

fn parse<R: Read + Seek>(reader: &mut HeaderReader<R>) -> Result<GgufSummary, Problem> {
    let magic: [u8; 4] = match reader.bytes() {
        Ok(magic) => magic,
        Err(Problem::Eof) => {
            return Err(Problem::NotGguf(format!(
                "only {} bytes long",
                reader.file_bytes
            )))
        }
        Err(other) => return Err(other),
    };
    if magic != GGUF_MAGIC {
        return Err(Problem::NotGguf("bad magic".into()));
    }
    let version = reader.u32()?;
    if version.swap_bytes() == 2 || version.swap_bytes() == 3 {
        return Err(Problem::NotGguf(
            "it is a big-endian GGUF; llama.cpp loads little-endian files only".into(),
        ));
    }
    if version != 2 && version != 3 {
        return Err(Problem::Version(version));
    }
    let n_tensors = reader.u64()?;
    let n_kv = reader.u64()?;

    let mut values: HashMap<String, Value> = HashMap::new();
    let mut special_tokens = SpecialTokens::default();
    let mut n_vocab = None;
    for _ in 0..n_kv {
        let key = reader.string()?;
        let value_type = reader.u32()?;
        if key == "tokenizer.ggml.tokens" && value_type == TYPE_ARRAY {
            n_vocab = Some(reader.scan_tokens(&key, &mut special_tokens)?);
            continue;
        }
        let value = reader.value(&key, value_type)?;
        values.insert(key, value);
    }

    // Token ids named in the metadata win over ids found by token text.
    let metadata_ids = [
        (
            "tokenizer.ggml.fim_pre_token_id",
            &mut special_tokens.fim_prefix,
        ),
        (
            "tokenizer.ggml.fim_suf_token_id",
            &mut special_tokens.fim_suffix,
        ),
        (
            "tokenizer.ggml.fim_mid_token_id",
            &mut special_tokens.fim_middle,
        ),
        (
            "tokenizer.ggml.fim_pad_token_id",
            &mut special_tokens.fim_pad,
        ),
        (
            "tokenizer.ggml.fim_rep_token_id",
            &mut special_tokens.repo_name,
        ),
        (
            "tokenizer.ggml.fim_sep_token_id",
            &mut special_tokens.file_sep,
        ),
    ];
    for (key, slot) in metadata_ids {
        if let Some(id) = values.get(key).and_then(Value::as_u32) {
            *slot = Some(id);
        }
    }

    let alignment = match values.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(value) => match value.as_u64() {
            Some(alignment) if alignment > 0 && alignment.is_power_of_two() => alignment,
            _ => {
                return Err(Problem::Corrupt(
                    "general.alignment is not a power of two".into(),
                ))
            }
        },
    };

    let mut n_params: u64 = 0;
    let mut data_end_bytes: u64 = 0;
    // (offset, bytes when the type is known, place); grows with what the file really holds.
    let mut placed: Vec<(u64, Option<u64>, Place)> = Vec::new();
    let mut has_output_weight = false;
    for _ in 0..n_tensors {
        let name = reader.string()?;
        let n_dims = reader.u32()?;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(Problem::Corrupt(format!(
                "tensor `{name}` has {n_dims} dimensions"
            )));
        }
        let mut n_elements: u64 = 1;
        let mut first_dim = 0;
        for dim_idx in 0..n_dims {
            let dim = reader.u64()?;
            if dim_idx == 0 {
                first_dim = dim;
            }
            n_elements = n_elements.checked_mul(dim).ok_or_else(|| {
                Problem::Corrupt(format!("tensor `{name}` has an impossible shape"))
            })?;
        }
        let ggml_type = reader.u32()?;
        let byte_offset = reader.u64()?;
        if byte_offset % alignment != 0 {
            return Err(Problem::Corrupt(format!(
                "tensor `{name}` starts at offset {byte_offset}, which is not aligned to {alignment} bytes"
            )));
        }
        let known_bytes = match ggml_type_block(ggml_type) {
            Some((block_elements, block_bytes)) => {
                if first_dim % block_elements != 0 {
                    return Err(Problem::Corrupt(format!(
                        "tensor `{name}` has a row of {first_dim} elements, not a multiple of its block size {block_elements}"
                    )));
                }
                Some(
                    (n_elements / block_elements)
                        .checked_mul(block_bytes)
                        .ok_or_else(|| {
                            Problem::Corrupt(format!("tensor `{name}` is impossibly large"))
                        })?,
                )
            }
            None => None,
        };
        let n_bytes = known_bytes.unwrap_or(0);
        has_output_weight |= name == "output.weight";
        placed.push((byte_offset, known_bytes, place_of(&name)));
        n_params = n_params.saturating_add(n_elements);
        let tensor_end = byte_offset
            .checked_add(n_bytes)
            .ok_or_else(|| Problem::Corrupt(format!("tensor `{name}` is impossibly large")))?;
        data_end_bytes = data_end_bytes.max(tensor_end);
    }
    if n_tensors == 0 {
        return Err(Problem::Corrupt(
            "it has no tensors (a vocabulary-only file cannot generate text)".into(),
        ));
    }

    let data_start_bytes = reader.position.div_ceil(alignment) * alignment;
    let needed_bytes = data_start_bytes.saturating_add(data_end_bytes);
    if needed_bytes > reader.file_bytes {
        return Err(Problem::DataPastEnd { needed_bytes });
    }

    let tensor_bytes = tensor_bytes(
        placed,
        reader.file_bytes.saturating_sub(data_start_bytes),
        has_output_weight,
    );
    let architecture = values
        .remove("general.architecture")
        .and_then(Value::into_string);
    let arch_u64 = |key: &str| {
        architecture
            .as_deref()
            .and_then(|arch| values.get(&format!("{arch}.{key}")))
            .and_then(Value::as_u64)
    };
    let n_ctx_train = arch_u64("context_length");
    let n_layer = arch_u64("block_count");
    let n_embd = arch_u64("embedding_length");
    let n_head = arch_u64("attention.head_count");
    let n_head_kv = arch_u64("attention.head_count_kv");
    let n_embd_head_k = arch_u64("attention.key_length");
    let n_embd_head_v = arch_u64("attention.value_length");
    let n_ff = arch_u64("feed_forward_length");
    let n_expert = arch_u64("expert_count");
    let n_expert_used = arch_u64("expert_used_count");
    let n_ff_expert = arch_u64("expert_feed_forward_length");
    Ok(GgufSummary {
        version,
        name: values.remove("general.name").and_then(Value::into_string),
        file_type: values.get("general.file_type").and_then(Value::as_u32),
        n_ctx_train,
        architecture,
        n_vocab,
        n_tensors,
        n_params,
        special_tokens,
        has_chat_template: matches!(
            values.get("tokenizer.chat_template"),
            Some(Value::Str(_) | Value::LongStr)
        ),
        file_bytes: reader.file_bytes,
        tensor_data_bytes: data_end_bytes,
        n_layer,
        n_embd,
        n_head,
        n_head_kv,
        n_embd_head_k,
        n_embd_head_v,
        n_ff,
        n_expert,
        n_expert_used,
        n_ff_expert,
        tensor_bytes,
    })
}

/// Sums tensor bytes by place. A tensor of a type the table lacks is given the bytes up to the
/// next tensor's start, or to the end of the data for the last one (`data_bytes`, the file's
/// bytes after the data start).
fn tensor_bytes(
    mut placed: Vec<(u64, Option<u64>, Place)>,
    data_bytes: u64,
    has_output_weight: bool,
) -> TensorBytes {
    placed.sort_by_key(|(offset, _, _)| *offset);
    let n_blocks = placed
        .iter()
        .filter_map(|(_, _, place)| match place {
            Place::Block(index) => Some(index + 1),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    let mut bytes = TensorBytes {
        blocks: vec![0; n_blocks],
        has_output_weight,
        ..TensorBytes::default()
    };
    for (tensor_idx, &(offset, known_bytes, place)) in placed.iter().enumerate() {
        let n_bytes = known_bytes.unwrap_or_else(|| {
            let next_offset = placed
                .get(tensor_idx + 1)
                .map_or(data_bytes, |(next_offset, _, _)| *next_offset);
            next_offset.saturating_sub(offset)
        });
        let total = match place {
            Place::Block(index) => &mut bytes.blocks[index],
            Place::TokenEmbd => &mut bytes.token_embd,
            Place::Output => &mut bytes.output,
        };
        *total = total.saturating_add(n_bytes);
    }
    bytes
}
