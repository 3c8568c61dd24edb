//! What a session is sized for: [`Limits`], checked and budgeted when the session is made.

use crate::format::Arch;

use super::Model;

/// What a session must be able to hold; everything is allocated when the session is created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Sequences per call.
    pub max_batch: usize,
    /// Tokens per input (source sentence or prompt).
    pub max_input_len: usize,
    /// Tokens generated per sequence.
    pub max_new_tokens: usize,
    /// Hypotheses kept per sequence (beam search); 1 for greedy or sampling.
    pub beams: usize,
    /// Bytes the session may use: its KV cache and scratch, and the decoding state its limits
    /// imply (beam candidates, hypotheses). 0 means half of the machine's physical memory
    /// ([`crate::sys::physical_memory`]). [`super::Session::new`] refuses limits that need more with
    /// [`crate::Error::OutOfMemory`], before allocating anything.
    pub max_memory: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_batch: 1,
            max_input_len: 512,
            max_new_tokens: 256,
            beams: 1,
            max_memory: 0,
        }
    }
}

/// Upper bounds on limits (each far above what a device can hold; they guard absurd requests
/// before any allocation is attempted).
pub(crate) const MAX_TOKENS: usize = 1 << 20;
pub(crate) const MAX_SLOTS: usize = 1 << 14;

impl Limits {
    /// These limits, shortened where the model's positions end (defaults that always work).
    pub fn fit(self, model: &Model) -> Limits {
        let Some(p) = model.max_positions() else {
            return self;
        };
        let mut l = self;
        if model.arch() == Arch::DecoderOnly {
            if l.max_input_len + l.max_new_tokens > p {
                l.max_input_len = l.max_input_len.min(p / 2).max(1);
                l.max_new_tokens = (p - l.max_input_len).max(1);
            }
        } else {
            l.max_input_len = l.max_input_len.min(p);
            l.max_new_tokens = l.max_new_tokens.min(p.saturating_sub(1)).max(1);
        }
        l
    }
}
