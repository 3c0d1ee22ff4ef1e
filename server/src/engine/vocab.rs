//! A model's vocabulary without its weights: counts tokens exactly as the model will and reads
//! the FIM token texts, for `wellspring prompt` and benchmarks that must not load a model.
//!
//! Ships a vocab-only Qwen2.5-Coder GGUF (`server/assets/qwen2.5-coder-vocab.gguf`, tokenizer and
//! hyperparameters, no tensors; written by `scripts/make-vocab-gguf.py`) as the default
//! vocabulary. The inference thread loads full models elsewhere; this module only tokenizes.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;

pub use super::prompt::FimTokenTexts;
use super::{ModelCaps, TokenCounter};

/// The default vocabulary, embedded so the binary needs no file beside it.
const DEFAULT_VOCAB_GGUF: &[u8] = include_bytes!("../../assets/qwen2.5-coder-vocab.gguf");

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot start llama.cpp: {0}")]
    Backend(String),
    #[error("cannot read vocabulary from {path}: {message}")]
    Load { path: PathBuf, message: String },
    #[error("cannot write the default vocabulary to {path}: {source}")]
    WriteDefault {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A loaded vocabulary.
pub struct Vocab {
    model: LlamaModel,
    fim: FimTokenTexts,
}

/// llama.cpp's process-wide backend, shared with the inference thread (it may be initialised
/// only once per process).
fn backend() -> Result<&'static LlamaBackend, Error> {
    super::backend::llama::llama_backend().map_err(|error| Error::Backend(error.to_string()))
}

impl Vocab {
    /// Loads only the tokenizer of the GGUF at `path`.
    pub fn load(path: &Path) -> Result<Vocab, Error> {
        if !path.is_file() {
            return Err(Error::Load {
                path: path.to_owned(),
                message: "no such file".to_owned(),
            });
        }
        let params = LlamaModelParams::default().with_vocab_only(true);
        let model =
            LlamaModel::load_from_file(backend()?, path, &params).map_err(|error| Error::Load {
                path: path.to_owned(),
                message: error.to_string(),
            })?;
        let fim = {
            let vocab = model.vocab();
            let text = |token: LlamaToken| -> Option<String> {
                if token.0 < 0 || token.0 >= vocab.n_tokens() {
                    return None;
                }
                vocab
                    .text(token)
                    .map(|text| text.to_string_lossy().into_owned())
                    .filter(|text| !text.is_empty())
            };
            FimTokenTexts {
                prefix: text(vocab.fim_pre()),
                suffix: text(vocab.fim_suf()),
                middle: text(vocab.fim_mid()),
                file_sep: text(vocab.fim_sep()),
                repo_name: text(vocab.fim_rep()),
            }
        };
        Ok(Vocab { model, fim })
    }

    /// Loads the bundled Qwen2.5-Coder vocabulary, writing it once to the temp directory because
    /// llama.cpp reads models from paths only.
    pub fn load_default() -> Result<Vocab, Error> {
        Vocab::load(&write_default(&std::env::temp_dir())?)
    }

    pub fn fim_texts(&self) -> &FimTokenTexts {
        &self.fim
    }

    /// What the prompt builder may assume about this model.
    pub fn caps(&self, n_ctx_per_slot: u32) -> ModelCaps {
        self.fim.caps(n_ctx_per_slot)
    }
}

impl Vocab {
    /// The token ids of `text` with special tokens (`<|fim_prefix|>`, …) recognised, as the
    /// engine tokenizes a rendered prompt.
    pub fn tokens(&self, text: &str) -> Vec<i32> {
        self.model
            .vocab()
            .tokenize(text.as_bytes(), false, true)
            .into_iter()
            .map(|token| token.0)
            .collect()
    }
}

impl TokenCounter for Vocab {
    fn count_tokens(&self, text: &str) -> usize {
        self.model
            .vocab()
            .tokenize(text.as_bytes(), false, false)
            .len()
    }
}

/// Writes the bundled vocabulary into `dir` unless a whole copy is there already; returns its
/// path.
fn write_default(dir: &Path) -> Result<PathBuf, Error> {
    let path = dir.join(format!(
        "wellspring-{}-qwen2.5-coder-vocab.gguf",
        env!("CARGO_PKG_VERSION")
    ));
    let up_to_date = std::fs::metadata(&path)
        .map(|metadata| metadata.len() == DEFAULT_VOCAB_GGUF.len() as u64)
        .unwrap_or(false);
    if !up_to_date {
        // Written beside and renamed, so a concurrent reader never sees half a file. The file
        // written is this call's own: two threads of one process (two engines connecting at once)
        // writing one file would rename it from under each other, half written or gone.
        static N_WRITES: AtomicU64 = AtomicU64::new(0);
        let partial = path.with_extension(format!(
            "{}.{}.partial",
            std::process::id(),
            N_WRITES.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&partial, DEFAULT_VOCAB_GGUF)
            .and_then(|()| std::fs::rename(&partial, &path))
            .map_err(|source| {
                let _ = std::fs::remove_file(&partial);
                Error::WriteDefault {
                    path: path.clone(),
                    source,
                }
            })?;
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_vocabulary_counts_qwen_tokens_and_knows_fim_tokens() {
        let vocab = Vocab::load_default().expect("bundled vocabulary loads");
        assert_eq!(vocab.count_tokens(""), 0);
        // Qwen2.5's BPE keeps common words whole and splits runs of digits one by one.
        assert_eq!(vocab.count_tokens("hello world"), 2);
        assert_eq!(vocab.count_tokens("12345"), 5);
        assert_eq!(
            vocab.count_tokens("<|fim_prefix|>"),
            7,
            "special tokens are not parsed in text"
        );
        assert_eq!(
            vocab.fim_texts(),
            &FimTokenTexts {
                prefix: Some("<|fim_prefix|>".into()),
                suffix: Some("<|fim_suffix|>".into()),
                middle: Some("<|fim_middle|>".into()),
                file_sep: Some("<|file_sep|>".into()),
                repo_name: Some("<|repo_name|>".into()),
            }
        );
        assert!(vocab.caps(4096).has_file_sep);
    }

    #[test]
    fn missing_or_broken_files_are_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = Vocab::load(&dir.path().join("none.gguf"))
            .err()
            .expect("error");
        assert!(missing.to_string().contains("no such file"), "{missing}");
        let broken = dir.path().join("broken.gguf");
        std::fs::write(&broken, b"GGUF but not really").expect("write");
        assert!(Vocab::load(&broken).is_err());
    }

    #[test]
    fn threads_writing_the_bundled_vocabulary_at_once_all_get_a_whole_file() {
        // Each round starts from a directory without the file, so every thread writes it.
        for _ in 0..8 {
            let dir = tempfile::tempdir().expect("tempdir");
            let written: Vec<PathBuf> = std::thread::scope(|scope| {
                let writers: Vec<_> = (0..4)
                    .map(|_| scope.spawn(|| write_default(dir.path())))
                    .collect();
                writers
                    .into_iter()
                    .map(|writer| writer.join().unwrap().expect("written"))
                    .collect()
            });
            assert!(written.iter().all(|path| path == &written[0]));
            assert_eq!(std::fs::read(&written[0]).unwrap(), DEFAULT_VOCAB_GGUF);
            // No partial file is left behind.
            assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        }
    }
}
