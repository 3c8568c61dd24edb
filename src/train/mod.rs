//! `quill-train`'s library: train Transformer translation and language models from text and
//! write `.quill` files the runtime loads unchanged.
//!
//! - [`layers`]: forward/backward pairs (llm.c style) on the runtime's f32 kernels;
//! - [`model`]: the parameter layout under canonical `.quill` names, and the passes over a
//!   padded batch of an encoder-decoder or decoder-only Transformer;
//! - [`metrics`]: corpus BLEU and chrF, sacreBLEU-compatible; [`plot`]: training curves as PNG.

pub mod layers;
pub mod metrics;
pub mod model;

#[cfg(test)]
mod gradcheck;
