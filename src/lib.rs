//! quill: an embeddable inference engine for Seq2Seq and Transformer text-generation models.
//!
//! The crate is layered (`CONTRIBUTING.md` has the map): [`format`] reads and writes the
//! `.quill` file, [`tensor`] views its bytes as typed weights, [`kernels`] compute, [`model`]
//! runs the networks, [`decode`] turns logits into ids and ids into text, [`eval`] scores,
//! [`convert`] imports and quantizes, and [`ffi`] exposes the stable C API declared in
//! `include/quill.h`.
//!
//! ```
//! // A .quill file is a safetensors file with quill's conventions; write one and read it back.
//! use quill::{QuillFile, Writer};
//! let mut w = Writer::new();
//! w.add("weights", &[2, 2], &[1.0f32, 2.0, 3.0, 4.0])?;
//! let file = QuillFile::from_bytes(&w.to_bytes())?;
//! let m = file.matrix("weights")?;
//! assert_eq!((m.rows, m.cols, m.to_f32_vec()), (2, 2, vec![1.0, 2.0, 3.0, 4.0]));
//! # Ok::<(), quill::Error>(())
//! ```
//!
//! Running a model: `Model::open`, `Session::new`, then `quill::decode::generate` (ids) with
//! `quill::decode::text` (text in and out); see README.md.

#[cfg(feature = "chat")]
pub mod chat;
pub mod convert;
pub mod decode;
pub mod error;
pub mod eval;
pub mod ffi;
pub mod format;
pub mod kernels;
pub mod log;
pub mod model;
pub mod rng;
pub mod sys;
pub mod tensor;
#[cfg(feature = "tokenizer")]
pub mod tokenizer;
#[cfg(feature = "train")]
pub mod train;

pub use error::{Error, Result};
pub use format::{Arch, Config, QuillFile, Writer};
pub use model::{Limits, Model, OpenOptions, Session};

/// This library's version, `MAJOR.MINOR.PATCH`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
