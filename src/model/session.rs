//! A `Session`: one user's state of a model — its limits, the sequences it runs (cache slots,
//! positions, the inputs they belong to), cancellation — around the network's own state (a
//! [`Network`]: the Transformer's KV caches and activations, or the LSTM's recurrent state),
//! all allocated once when the session is made.

use crate::error::{Error, Result};
use crate::format::Arch;

use super::limits::{MAX_SLOTS, MAX_TOKENS};
use super::lstm::LstmNet;
use super::transformer::TransformerState;
use super::{Batch, CancelHandle, Group, Limits, Model, Net, Network};

/// All mutable state of one conversation with a model. Use from one thread at a time.
pub struct Session {
    model: Model,
    limits: Limits,
    /// What the limits were budgeted at, bytes.
    memory: usize,
    /// The budget they were checked against (`Limits::max_memory`, 0 resolved), bytes.
    budget: usize,
    slots: usize,
    /// Longest decoder sequence (decoder-only: prompt + new tokens; seq2seq: start + new tokens).
    dec_len: usize,
    /// Active sequences (slots 0..n).
    n: usize,
    /// Source length of each input (seq2seq).
    src_len: Vec<usize>,
    /// The input each cache slot belongs to (beams of one input share its encoder output).
    input_of: Vec<usize>,
    /// Tokens in each slot's decoder cache.
    dec_pos: Vec<usize>,
    /// The sequences of the current pass, and their tokens (stacked rows).
    groups: Vec<Group>,
    tokens: Vec<u32>,
    /// Rows of the network's logits that are valid.
    logit_rows: usize,
    /// Checked between layers of long passes (prefill, encoder).
    cancel: Option<CancelHandle>,
    net: Box<dyn Network>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("limits", &self.limits)
            .field("batch", &self.n)
            .finish()
    }
}

/// Bytes of the decoding state a session's limits imply (src/decode): per step, each input's
/// beam candidates (24-byte tuples, the best 2·beams (more with several end-of-sequence ids) of
/// each of its beams, or the vocabulary when smaller), and each hypothesis' ids and
/// log-probabilities (running and finished).
fn decoding_bytes(model: &Model, limits: &Limits, dec_len: usize) -> u128 {
    let c = model.config();
    let slots = (limits.max_batch * limits.beams) as u128;
    let keep = limits.beams * (1 + c.eos_ids.len()).max(2);
    let cands = slots * keep.min(c.vocab_size) as u128 * 24;
    let hyps = slots * 3 * dec_len as u128 * 8;
    cands + hyps
}

impl Session {
    /// A session able to run up to `limits`; allocates its whole KV cache and scratch now.
    pub fn new(model: &Model, limits: Limits) -> Result<Session> {
        let Limits {
            max_batch,
            max_input_len,
            max_new_tokens,
            beams,
            max_memory,
        } = limits;
        for (name, v) in [
            ("max_batch", max_batch),
            ("max_input_len", max_input_len),
            ("max_new_tokens", max_new_tokens),
            ("beams", beams),
        ] {
            if v == 0 {
                return Err(Error::InvalidArgument(format!(
                    "the session's {name} must be at least 1"
                )));
            }
        }
        let slots = max_batch
            .checked_mul(beams)
            .filter(|&s| s <= MAX_SLOTS)
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "max_batch × beams = {max_batch} × {beams} exceeds {MAX_SLOTS}"
                ))
            })?;
        let dec_len = match model.arch() {
            Arch::DecoderOnly => max_input_len.checked_add(max_new_tokens),
            _ => max_new_tokens.checked_add(1),
        }
        .filter(|&l| l <= MAX_TOKENS && max_input_len <= MAX_TOKENS)
        .ok_or_else(|| {
            Error::InvalidArgument(format!("sequences longer than {MAX_TOKENS} tokens"))
        })?;
        let longest = dec_len.max(max_input_len);
        if let Some(max) = model.max_positions()
            && longest > max
        {
            return Err(Error::InvalidArgument(format!(
                "the session limits allow sequences of {longest} tokens but the model has {max} \
                 positions"
            )));
        }
        let net_bytes = match &model.inner.weights {
            Net::Transformer(_) => TransformerState::bytes_for(model, &limits, dec_len),
            Net::Lstm(_) => LstmNet::bytes_for(model.config(), &limits),
        };
        let total_bytes = net_bytes + decoding_bytes(model, &limits, dec_len);
        let budget = match max_memory {
            0 => crate::sys::physical_memory().map_or(u64::MAX as u128, |p| p as u128 / 2),
            b => b as u128,
        };
        if total_bytes > budget {
            return Err(Error::OutOfMemory(format!(
                "these limits (batch {max_batch}, input {max_input_len}, new tokens \
                 {max_new_tokens}, beams {beams}) need {} MiB, over the session's budget of {} \
                 MiB (limits.max_memory; 0 = half the physical memory)",
                total_bytes >> 20,
                budget >> 20
            )));
        }
        let net: Box<dyn Network> = match &model.inner.weights {
            Net::Transformer(w) => {
                Box::new(TransformerState::new(model, w.clone(), &limits, dec_len)?)
            }
            Net::Lstm(w) => Box::new(LstmNet::new(model, w.clone(), &limits)),
        };
        let rows = max_batch * max_input_len;
        Ok(Session {
            model: model.clone(),
            limits,
            memory: total_bytes as usize,
            budget: budget.min(usize::MAX as u128) as usize,
            slots,
            dec_len,
            n: 0,
            src_len: vec![0; max_batch],
            input_of: vec![0; slots],
            dec_pos: vec![0; slots],
            groups: Vec::with_capacity(slots.max(max_batch)),
            tokens: Vec::with_capacity(rows.max(slots)),
            logit_rows: 0,
            cancel: None,
            net,
        })
    }

    /// Records the cross-attention alignment of every decoding step (seq2seq; the last decoder
    /// layer's attention averaged over heads). Allocates its buffer once when first enabled.
    pub fn record_alignment(&mut self, on: bool) {
        self.net.outputs_mut().record_alignment(on);
    }

    /// The alignment of the last step for `slot`: weights over the source tokens of its input.
    pub(crate) fn alignment(&self, slot: usize) -> &[f32] {
        self.net
            .outputs()
            .alignment(slot, self.src_len[self.input_of[slot]])
    }

    /// A handle whose cancellation interrupts this session's prefill and encoder passes between
    /// layers (`start` and `extend` then return `Error::Cancelled`); `None` removes it.
    pub fn set_cancel(&mut self, cancel: Option<CancelHandle>) {
        self.cancel = cancel;
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The bytes this session's limits were budgeted at: an upper bound of what it allocates,
    /// its decoding state included (checked against `Limits::max_memory` at creation).
    pub fn memory_bytes(&self) -> usize {
        self.memory
    }

    /// The memory budget the session was checked against: `Limits::max_memory`, or what 0
    /// resolved to (half the physical memory), bytes.
    pub fn memory_budget(&self) -> usize {
        self.budget
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Number of sequences started by the last [`Session::start`].
    pub fn batch(&self) -> usize {
        self.n
    }

    /// Starts a batch: seq2seq models encode the inputs (the decoder then starts from nothing;
    /// feed it the decoder start id with [`Session::step`]); decoder-only models prefill the
    /// prompts into the cache, after which [`Session::logits`] holds each prompt's next-token
    /// logits.
    pub fn start(&mut self, inputs: &[&[u32]]) -> Result<()> {
        self.start_beams(inputs, 1)
    }

    /// [`Session::start`] with `beams` cache slots per input: input `i` owns slots
    /// `i·beams .. (i+1)·beams`, all holding its prompt (decoder-only) and reading its encoder
    /// output (seq2seq). Logits after a decoder-only start: one row per input.
    pub(crate) fn start_beams(&mut self, inputs: &[&[u32]], beams: usize) -> Result<()> {
        if beams == 0 || beams > self.limits.beams {
            return Err(Error::InvalidArgument(format!(
                "{beams} beams: this session was created for at most {}",
                self.limits.beams
            )));
        }
        let vocab = self.model.config().vocab_size;
        if inputs.is_empty() || inputs.len() > self.limits.max_batch {
            return Err(Error::InvalidArgument(format!(
                "{} inputs: this session takes 1 to {}",
                inputs.len(),
                self.limits.max_batch
            )));
        }
        self.n = 0;
        self.logit_rows = 0;
        self.groups.clear();
        self.tokens.clear();
        let mut row = 0;
        for (input, ids) in inputs.iter().enumerate() {
            if ids.is_empty() || ids.len() > self.limits.max_input_len {
                return Err(Error::InvalidArgument(format!(
                    "input {input} has {} tokens: this session takes 1 to {}",
                    ids.len(),
                    self.limits.max_input_len
                )));
            }
            if let Some(&bad) = ids.iter().find(|&&t| t as usize >= vocab) {
                return Err(Error::InvalidArgument(format!(
                    "token id {bad} in input {input} is not below the vocabulary size {vocab}"
                )));
            }
            self.groups.push(Group {
                slot: input * beams,
                row0: row,
                len: ids.len(),
                pos0: 0,
            });
            self.tokens.extend_from_slice(ids);
            row += ids.len();
        }
        let n = inputs.len();
        self.dec_pos[..n * beams].fill(0);
        for (slot, input) in self.input_of[..n * beams].iter_mut().enumerate() {
            *input = slot / beams;
        }
        for (input, g) in self.groups.iter().enumerate() {
            self.src_len[input] = g.len;
        }
        let model = self.model.clone();
        let encoder_decoder = model.arch() != Arch::DecoderOnly;
        // The encoder or prefill runs on a pool worker (see `run_on_pool`).
        let done = model.inner.pool.install(|| {
            let b = Batch::new(&self.groups, &self.tokens, &self.input_of, &self.src_len);
            if encoder_decoder {
                self.net.encode(&b, beams, self.cancel.as_ref())
            } else {
                Ok(self.net.decode(&b, self.cancel.as_ref()))
            }
        })?;
        if !done {
            return Err(Error::Cancelled);
        }
        self.n = n;
        if !encoder_decoder {
            for g in &self.groups {
                self.dec_pos[g.slot] = g.len;
            }
            self.logit_rows = n;
            for i in 0..n {
                for b in 1..beams {
                    self.copy_slot(i * beams, i * beams + b);
                }
            }
        }
        Ok(())
    }

    /// Appends `tokens` to the single sequence of a decoder-only session (a chat's next turn):
    /// only the new tokens are prefilled, after what the cache already holds; afterwards
    /// [`Session::logits`] holds the next-token logits.
    pub fn extend(&mut self, tokens: &[u32]) -> Result<()> {
        if self.model.arch() != Arch::DecoderOnly || self.n != 1 {
            return Err(Error::InvalidArgument(
                "extend continues the one sequence of a decoder-only session (start it first)"
                    .into(),
            ));
        }
        let pos = self.dec_pos[0];
        if tokens.is_empty() || pos + tokens.len() > self.dec_len {
            return Err(Error::InvalidArgument(format!(
                "{} more tokens after {pos}: this session holds {} in all",
                tokens.len(),
                self.dec_len
            )));
        }
        let vocab = self.model.config().vocab_size;
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= vocab) {
            return Err(Error::InvalidArgument(format!(
                "token id {bad} is not below the vocabulary size {vocab}"
            )));
        }
        // In chunks of the rows the session's buffers hold (a turn may be longer than an input:
        // the c_generate fuzzer found the overflow); the last chunk's logits are the turn's.
        let chunk = (self.limits.max_batch * self.limits.max_input_len).max(self.slots);
        for (i, part) in tokens.chunks(chunk).enumerate() {
            self.groups.clear();
            self.groups.push(Group {
                slot: 0,
                row0: 0,
                len: part.len(),
                pos0: pos + i * chunk,
            });
            self.tokens.clear();
            self.tokens.extend_from_slice(part);
            if !self.run_on_pool() {
                return Err(Error::Cancelled);
            }
        }
        Ok(())
    }

    /// Runs the decoder over `self.groups` in one hand-over to a pool worker (the products'
    /// splits then run one half on this thread, see `Pool::install`); on success the groups'
    /// positions advance and their logits are current. False when cancelled.
    fn run_on_pool(&mut self) -> bool {
        let model = self.model.clone();
        let done = model.inner.pool.install(|| {
            let b = Batch::new(&self.groups, &self.tokens, &self.input_of, &self.src_len);
            self.net.decode(&b, self.cancel.as_ref())
        });
        if done {
            for g in &self.groups {
                self.dec_pos[g.slot] += g.len;
            }
            self.logit_rows = self.groups.len();
        }
        done
    }

    /// Forgets the started sequences (the memory stays allocated for the next start).
    pub fn reset(&mut self) {
        self.n = 0;
        self.logit_rows = 0;
        self.dec_pos.fill(0);
    }

    /// Tokens held in the cache of slot 0 (the conversation so far, for a chat).
    pub fn cached_len(&self) -> usize {
        self.dec_pos[0]
    }

    /// Makes slot `to` a copy of slot `from`: its decoder state up to the current position
    /// (beam search: a hypothesis continued by more than one child).
    pub(crate) fn copy_slot(&mut self, from: usize, to: usize) {
        if from == to {
            return;
        }
        self.net.copy_slot(from, to, self.dec_pos[from]);
        self.dec_pos[to] = self.dec_pos[from];
        self.input_of[to] = self.input_of[from];
    }

    /// One decoder step for the given slots (one token each); logits rows follow `slots`.
    pub(crate) fn step_slots(&mut self, slots: &[usize], tokens: &[u32]) -> Result<()> {
        if slots.len() != tokens.len() || slots.iter().any(|&s| s >= self.slots) {
            return Err(Error::InvalidArgument(
                "slots and tokens do not match".into(),
            ));
        }
        self.groups.clear();
        for (r, &slot) in slots.iter().enumerate() {
            self.groups.push(Group {
                slot,
                row0: r,
                len: 1,
                pos0: 0,
            });
        }
        self.step_groups(tokens)
    }

    /// The logits of the last step, mutable (logits processors work in place).
    pub(crate) fn logits_mut(&mut self) -> &mut [f32] {
        let v = self.model.config().vocab_size;
        &mut self.net.outputs_mut().logits[..self.logit_rows * v]
    }

    /// Appends one token to every active sequence and computes the next logits
    /// (`[batch, vocab]`, also available afterwards from [`Session::logits`]).
    pub fn step(&mut self, tokens: &[u32]) -> Result<&[f32]> {
        if self.n == 0 {
            return Err(Error::InvalidArgument(
                "step before start: start the sequences first".into(),
            ));
        }
        if tokens.len() != self.n {
            return Err(Error::InvalidArgument(format!(
                "{} tokens for {} sequences",
                tokens.len(),
                self.n
            )));
        }
        self.groups.clear();
        for slot in 0..self.n {
            self.groups.push(Group {
                slot,
                row0: slot,
                len: 1,
                pos0: 0,
            });
        }
        self.step_groups(tokens)?;
        Ok(self.logits())
    }

    /// One decoder step for the sequences listed in `self.groups` (one row each).
    fn step_groups(&mut self, tokens: &[u32]) -> Result<()> {
        let vocab = self.model.config().vocab_size;
        self.tokens.clear();
        for (g, &t) in self.groups.iter_mut().zip(tokens) {
            if t as usize >= vocab {
                return Err(Error::InvalidArgument(format!(
                    "token id {t} is not below the vocabulary size {vocab}"
                )));
            }
            let pos = self.dec_pos[g.slot];
            if pos >= self.dec_len {
                return Err(Error::InvalidArgument(format!(
                    "sequence {} is full: the session was created for {} decoder tokens",
                    g.slot, self.dec_len
                )));
            }
            g.pos0 = pos;
            self.tokens.push(t);
        }
        let done = self.run_on_pool();
        debug_assert!(done, "one-row steps are not interrupted");
        Ok(())
    }

    /// The logits of the last [`Session::step`] (or of the prefill), `[batch, vocab]`.
    pub fn logits(&self) -> &[f32] {
        &self.net.outputs().logits[..self.logit_rows * self.model.config().vocab_size]
    }
}
