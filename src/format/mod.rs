//! The `.quill` model file: a safetensors file with quill's conventions (`docs/format.md`).
//!
//! - [`QuillFile`] opens a file by mmap, by reading it into memory, or from a caller's bytes, and
//!   validates all of it before anything uses it (O(header): no tensor data is read).
//! - [`Writer`] writes aligned files: every tensor starts on a 64-byte boundary.
//! - [`Config`] and [`Arch`] are the `quill.config` / `quill.arch` metadata.
//!
//! Try it: `quill inspect model.quill`.

mod config;
mod header;
pub mod names;
mod reader;
mod summary;
mod writer;

pub use config::{Activation, Arch, Config, LstmAttention, Norm, Positions, RopeScaling};
pub use reader::{MatrixRef, QuillFile, QuillMeta, Source};
pub use summary::{KindTotals, Summary, TensorLine};
pub use writer::Writer;

/// The major format version this build reads and writes. A file with another major version is
/// refused; minor versions (`"1.N"`) only ever add optional things and are accepted.
pub const FORMAT_MAJOR: u32 = 1;

/// Metadata keys (`__metadata__`, strings only).
pub mod keys {
    /// Format version: `"1"` (or `"1.N"`). Its presence makes a safetensors file a quill file.
    pub const FORMAT: &str = "quill.format";
    /// Architecture: `seq2seq`, `decoder-only` or `lstm-seq2seq`.
    pub const ARCH: &str = "quill.arch";
    /// Hyperparameters and special token ids, JSON (see [`super::Config`]).
    pub const CONFIG: &str = "quill.config";
    /// Default decoding options, a JSON object.
    pub const GENERATION: &str = "quill.generation";
    /// What wrote the file, from what (free text).
    pub const PRODUCER: &str = "quill.producer";
    /// The chat template and its special tokens, a JSON object (`crate::chat::TemplateSpec`).
    pub const CHAT_TEMPLATE: &str = "quill.chat_template";
}
