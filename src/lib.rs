//! quill: an embeddable inference engine for Seq2Seq and Transformer text-generation models.
//!
//! The crate is layered (`CONTRIBUTING.md` has the map): [`format`] reads and writes the
//! `.quill` file, [`tensor`] views its bytes as typed weights, [`convert`] quantizes, and
//! [`ffi`] exposes the stable C API declared in `include/quill.h`.

pub mod convert;
pub mod decode;
pub mod error;
pub mod ffi;
pub mod format;
pub mod kernels;
pub mod log;
pub mod model;
pub mod tensor;
#[cfg(feature = "tokenizer")]
pub mod tokenizer;

pub use error::{Error, Result};
pub use format::{Arch, Config, QuillFile, Writer};
pub use model::{Limits, Model, OpenOptions, Session};

/// This library's version, `MAJOR.MINOR.PATCH`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
