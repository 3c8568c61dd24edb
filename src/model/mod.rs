//! Running models: an immutable [`Model`] (the validated file, its weights and a worker pool) and
//! per-user [`Session`]s holding all mutable state (KV cache, scratch).
//!
//! Architectures: Transformer encoder-decoder (`seq2seq`: Marian, BART, mBART, T5) and decoder-only
//! (`decoder-only`: GPT-2, Llama, Qwen2, Mistral), built from one [`Config`]; the weight names are
//! in `docs/architectures.md`. Try it: `quill run model.quill --ids 5,17,42`.

mod session;
mod weights;

use std::path::Path;
use std::sync::Arc;

pub use session::{Limits, Session};

use crate::error::{Error, Result};
use crate::format::{Arch, Config, QuillFile};
use crate::kernels::{Kernels, Pool, kernels};
use weights::TransformerWeights;

/// How to open a model.
#[derive(Clone, Debug, Default)]
pub struct OpenOptions {
    /// Worker threads; 0 = one per available core.
    pub threads: usize,
    /// Read the whole file into memory instead of mapping it (immune to the file changing on disk).
    pub in_memory: bool,
}

pub(crate) struct ModelInner {
    pub file: QuillFile,
    pub arch: Arch,
    pub config: Config,
    pub weights: TransformerWeights,
    pub pool: Pool,
    pub kernels: &'static Kernels,
}

/// A loaded model: immutable, `Send + Sync`, cheap to clone (clones share everything).
#[derive(Clone)]
pub struct Model {
    pub(crate) inner: Arc<ModelInner>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("arch", &self.inner.arch)
            .field("threads", &self.inner.pool.threads())
            .field("isa", &self.inner.kernels.isa)
            .finish()
    }
}

impl Model {
    /// Opens a `.quill` file (mmap by default) and checks its weights against its config.
    pub fn open(path: impl AsRef<Path>, options: &OpenOptions) -> Result<Model> {
        let file = if options.in_memory {
            QuillFile::read(path)?
        } else {
            QuillFile::open(path)?
        };
        Self::from_file(file, options)
    }

    /// Builds a model from an already opened file.
    pub fn from_file(file: QuillFile, options: &OpenOptions) -> Result<Model> {
        let meta = file.require_quill()?;
        let (arch, config) = (meta.arch, meta.config.clone());
        let weights = match arch {
            Arch::Seq2Seq | Arch::DecoderOnly => weights::load_transformer(&file, arch, &config)?,
            Arch::LstmSeq2Seq => {
                return Err(Error::bad_meta(
                    crate::format::keys::ARCH,
                    "lstm-seq2seq models are not supported by this build yet",
                ));
            }
        };
        let pool = Pool::new(options.threads)?;
        Ok(Model {
            inner: Arc::new(ModelInner {
                file,
                arch,
                config,
                weights,
                pool,
                kernels: kernels(),
            }),
        })
    }

    pub fn arch(&self) -> Arch {
        self.inner.arch
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The file the model was loaded from (metadata, tokenizer, tensors).
    pub fn file(&self) -> &QuillFile {
        &self.inner.file
    }

    /// Worker threads in use.
    pub fn threads(&self) -> usize {
        self.inner.pool.threads()
    }

    /// The kernel level in use.
    pub fn isa(&self) -> crate::kernels::Isa {
        self.inner.kernels.isa
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Model>();
        fn send<T: Send>() {}
        send::<Session>();
    }
}
