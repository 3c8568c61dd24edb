//! Running models: an immutable [`Model`] (the validated file, its weights and a worker pool) and
//! per-user [`Session`]s holding all mutable state (KV cache, scratch).
//!
//! Architectures: Transformer encoder-decoder (`seq2seq`: Marian, BART, mBART, M2M100/NLLB, T5) and decoder-only
//! (`decoder-only`: GPT-2, Llama, Qwen2, Mistral), built from one [`Config`]; the weight names are
//! in `docs/architectures.md`. Try it: `quill run model.quill --ids 5,17,42`.

mod limits;
mod lstm;
pub(crate) mod positions;
mod session;
mod transformer;

use std::path::Path;
use std::sync::Arc;

pub use limits::Limits;
pub use session::Session;

use std::sync::atomic::{AtomicBool, Ordering};

/// Lets another thread stop a session's work: checked before every decoding step and between
/// the layers of a prefill or encoder pass. Clones share the flag.
#[derive(Clone, Debug, Default)]
pub struct CancelHandle(Arc<AtomicBool>);

impl CancelHandle {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
    /// Clears the flag (a new generation starts).
    pub fn reset(&self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

use crate::error::{Error, Result};
use crate::format::{Arch, Config, QuillFile};
use crate::kernels::{Kernels, Pool, kernels};
#[cfg(feature = "tokenizer")]
use crate::tokenizer::Tokenizer;
use transformer::weights::{self as tf_weights, TransformerWeights};

impl From<crate::format::Activation> for crate::kernels::Act {
    fn from(a: crate::format::Activation) -> Self {
        use crate::format::Activation as A;
        use crate::kernels::Act;
        match a {
            A::Relu => Act::Relu,
            A::Gelu => Act::Gelu,
            A::GeluTanh => Act::GeluTanh,
            A::Silu => Act::Silu,
        }
    }
}

/// The matrix `name` of `file`, checked to be `[rows, cols]` (as the config says).
pub(crate) fn shaped_matrix(
    file: &QuillFile,
    name: &str,
    rows: usize,
    cols: usize,
) -> Result<crate::format::MatrixRef> {
    let r = file.matrix_ref(name)?;
    let m = file.resolve(r);
    if (m.rows, m.cols) != (rows, cols) {
        return Err(Error::WrongTensorType {
            tensor: name.into(),
            expected: format!("[{rows}, {cols}] (from the config)"),
            found: format!("[{}, {}]", m.rows, m.cols),
        });
    }
    Ok(r)
}

/// What every network writes for the session: logits `[slots, V]` and, when recorded, the
/// cross-attention alignment of each slot over its input's source tokens `[slots, src]`.
pub(crate) struct Outputs {
    pub logits: Vec<f32>,
    align: Vec<f32>,
    align_on: bool,
    slots: usize,
    src: usize,
}

impl Outputs {
    pub fn new(logits: Vec<f32>, slots: usize, src: usize) -> Outputs {
        Outputs {
            logits,
            align: Vec::new(),
            align_on: false,
            slots,
            src,
        }
    }

    /// Records the alignment from now on (or not); its buffer is allocated when first needed.
    pub fn record_alignment(&mut self, on: bool) {
        self.align_on = on;
        if on && self.align.is_empty() {
            self.align = vec![0.0; self.slots * self.src];
        }
    }

    /// The alignment buffer to write, when recording.
    pub fn align_mut(&mut self) -> Option<&mut [f32]> {
        self.align_on.then_some(&mut self.align[..])
    }

    /// The logits and the alignment to write, together.
    pub fn both_mut(&mut self) -> (&mut [f32], Option<&mut [f32]>) {
        (
            &mut self.logits,
            self.align_on.then_some(&mut self.align[..]),
        )
    }

    /// Slot `slot`'s alignment over `n` source tokens.
    pub fn alignment(&self, slot: usize, n: usize) -> &[f32] {
        &self.align[slot * self.src..slot * self.src + n]
    }
}

/// How to open a model.
#[derive(Clone, Debug, Default)]
pub struct OpenOptions {
    /// Worker threads; 0 = one per available core.
    pub threads: usize,
    /// Read the whole file into memory instead of mapping it (immune to the file changing on disk).
    pub in_memory: bool,
    /// Ask the kernel to read a mapped file ahead now.
    pub prefetch: bool,
}

pub(crate) struct ModelInner {
    /// Parsed on first use (text in or out), so opening stays O(header).
    #[cfg(feature = "tokenizer")]
    pub tokenizers: [std::sync::OnceLock<std::result::Result<Tokenizer, String>>; 2],
    pub file: QuillFile,
    pub arch: Arch,
    pub config: Config,
    pub weights: Net,
    pub pool: Pool,
    pub kernels: &'static Kernels,
}

/// The weights of one of the architectures (shared with the sessions' network states).
pub(crate) enum Net {
    Transformer(Arc<TransformerWeights>),
    Lstm(Arc<lstm::LstmWeights>),
}

/// The rows of one sequence in a pass's stacked rows: its cache slot, its first row, how many
/// rows (tokens) it has, and the position of its first row in the sequence.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Group {
    pub slot: usize,
    pub row0: usize,
    pub len: usize,
    pub pos0: usize,
}

/// A pass over a ragged batch: the sequences' groups and their tokens (`[rows]`), the input each
/// cache slot reads, and each input's source length (seq2seq).
pub(crate) struct Batch<'a> {
    pub groups: &'a [Group],
    pub tokens: &'a [u32],
    pub input_of: &'a [usize],
    pub src_len: &'a [usize],
}

impl<'a> Batch<'a> {
    pub fn new(
        groups: &'a [Group],
        tokens: &'a [u32],
        input_of: &'a [usize],
        src_len: &'a [usize],
    ) -> Batch<'a> {
        Batch {
            groups,
            tokens,
            input_of,
            src_len,
        }
    }

    /// Stacked rows in all.
    pub fn rows(&self) -> usize {
        self.groups.last().map_or(0, |g| g.row0 + g.len)
    }
}

/// What a network keeps per session and the passes a [`Session`] runs on it. The Transformer
/// and the LSTM each implement it; the session only keeps the sequences' bookkeeping.
pub(crate) trait Network: Send {
    /// Encodes the inputs (group `i` is input `i`, its slots `i·beams..(i+1)·beams`) of an
    /// encoder-decoder. `Ok(false)` when `cancel` stopped it.
    fn encode(&mut self, b: &Batch, beams: usize, cancel: Option<&CancelHandle>) -> Result<bool>;
    /// Runs the decoder over the groups' tokens at their positions (after what each slot's state
    /// holds) and computes the logits of each group's last row. False when `cancel` stopped it
    /// (passes of more than one row only).
    fn decode(&mut self, b: &Batch, cancel: Option<&CancelHandle>) -> bool;
    /// Makes slot `to` continue from slot `from`, whose state holds `len` tokens.
    fn copy_slot(&mut self, from: usize, to: usize, len: usize);
    /// The logits (the first rows are the last pass's) and the alignment.
    fn outputs(&self) -> &Outputs;
    fn outputs_mut(&mut self) -> &mut Outputs;
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
        if options.prefetch {
            file.prefetch();
        }
        let (arch, config) = (meta.arch, meta.config.clone());
        let weights = match arch {
            Arch::Seq2Seq | Arch::DecoderOnly => Net::Transformer(Arc::new(
                tf_weights::load_transformer(&file, arch, &config)?,
            )),
            Arch::LstmSeq2Seq => Net::Lstm(Arc::new(lstm::load(&file, &config)?)),
        };
        let pool = Pool::new(options.threads)?;
        Ok(Model {
            inner: Arc::new(ModelInner {
                #[cfg(feature = "tokenizer")]
                tokenizers: Default::default(),
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

    /// The tokenizer stored in the file (the source side, for seq2seq models with two).
    #[cfg(feature = "tokenizer")]
    pub fn tokenizer(&self) -> Result<&Tokenizer> {
        self.tokenizer_at(0)
    }

    /// The tokenizer of generated text: the file's target tokenizer when it has one, else the
    /// same as [`Model::tokenizer`].
    #[cfg(feature = "tokenizer")]
    pub fn target_tokenizer(&self) -> Result<&Tokenizer> {
        if self.inner.file.target_tokenizer_json().is_some() {
            self.tokenizer_at(1)
        } else {
            self.tokenizer_at(0)
        }
    }

    #[cfg(feature = "tokenizer")]
    fn tokenizer_at(&self, which: usize) -> Result<&Tokenizer> {
        let file = &self.inner.file;
        let parsed = self.inner.tokenizers[which].get_or_init(|| {
            let json = if which == 0 { file.tokenizer_json() } else { file.target_tokenizer_json() };
            let json = json.ok_or_else(|| {
                "this model file has no tokenizer: give token ids instead of text, or convert the model again with its tokenizer.json or SentencePiece model".to_string()
            })?;
            Tokenizer::from_json(json).map_err(|e| e.to_string())
        });
        parsed
            .as_ref()
            .map_err(|e| Error::InvalidArgument(e.clone()))
    }

    /// The ids generation treats as control tokens, never shown as text: end of sequence,
    /// padding, start of sequence, decoder start.
    pub fn special_ids(&self) -> Vec<u32> {
        let c = &self.inner.config;
        let mut v = c.eos_ids.clone();
        v.extend(
            [c.pad_id, c.bos_id, c.decoder_start_id]
                .into_iter()
                .flatten(),
        );
        v
    }

    /// The longest sequence the model's position scheme covers (learned or sinusoidal tables,
    /// a rotary model's `max_positions`); `None` when it has no such limit (LSTM, T5's relative
    /// positions).
    pub fn max_positions(&self) -> Option<usize> {
        match &self.inner.weights {
            Net::Transformer(w) => w.max_positions(&self.inner.config),
            // Recurrent: no position table.
            Net::Lstm(_) => None,
        }
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
