//! `quill-train`'s library: train Transformer translation and language models from text and
//! write `.quill` files the runtime loads unchanged.
//!
//! - [`layers`]: forward/backward pairs (llm.c style) on the runtime's f32 kernels;
//! - [`model`]: the parameter layout under canonical `.quill` names, and the passes over a
//!   padded batch of an encoder-decoder or decoder-only Transformer;
//! - [`lstm`]: the LSTM encoder-decoder with attention, backpropagation through time;
//!   [`net`]: either network behind one interface;
//! - [`optim`]: AdamW, schedules, clipping; [`data`]: corpora, bucketed batches, cursors;
//! - [`tok`]: BPE / Unigram tokenizer training;
//! - [`run`]: a training run, checkpoints, exports; [`plot`]: training curves as PNG.
//!
//! Evaluation (decoding a test set, BLEU and chrF) is [`crate::eval`]'s, shared with `quill eval`.

pub mod data;
pub mod layers;
pub mod lstm;
pub mod model;
pub mod net;
pub mod optim;
pub mod plot;
pub mod run;
pub mod tok;

#[cfg(test)]
mod gradcheck;
