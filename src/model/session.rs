//! A `Session`: the KV cache and every scratch buffer, sized once from [`Limits`], and the
//! Transformer forward pass.
//!
//! Batches are ragged: the rows of all sequences are stacked (no padding), so the linear layers
//! see one `[rows, d]` matrix while attention runs per sequence over that sequence's keys only.
//! Each sequence owns a cache slot; the decoder's self-attention K/V go to the slot at the token's
//! position, the cross-attention K/V are computed once per input.

use crate::error::{Error, Result};
use crate::format::{Arch, Norm as NormKind, Positions};
use crate::kernels::attention::{Rows, attend_one};
use crate::kernels::{ActScratch, Kernels};

use super::lstm::{self, LstmState};
use super::weights::{Attention, Linear, Norm, PosTable, Stack};
use super::{CancelHandle, Model, ModelInner};

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
    /// ([`crate::sys::physical_memory`]). [`Session::new`] refuses limits that need more with
    /// [`Error::OutOfMemory`], before allocating anything.
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
const MAX_TOKENS: usize = 1 << 20;
const MAX_SLOTS: usize = 1 << 14;

/// The rows of one sequence in the stacked activations.
#[derive(Clone, Copy, Debug)]
struct Group {
    slot: usize,
    row0: usize,
    len: usize,
    /// Position of the first row in its sequence.
    pos0: usize,
}

#[derive(Default)]
struct Buffers {
    x: Vec<f32>,
    a: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    att: Vec<f32>,
    h1: Vec<f32>,
    h2: Vec<f32>,
    /// Encoder output (seq2seq).
    enc: Vec<f32>,
    /// Final hidden states of the rows whose logits are wanted, `[slots, d]`.
    last: Vec<f32>,
    logits: Vec<f32>,
    scores: Vec<f32>,
    acts: ActScratch,
}

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
    /// The input each cache slot belongs to (beams of one input share its cross-attention K/V).
    input_of: Vec<usize>,
    /// Tokens in each slot's decoder cache.
    dec_pos: Vec<usize>,
    /// `[layers][slots][kv_heads][dec_len][head_dim]`
    self_k: Vec<f32>,
    self_v: Vec<f32>,
    /// `[layers][max_batch][kv_heads][max_input_len][head_dim]`, one per input
    cross_k: Vec<f32>,
    cross_v: Vec<f32>,
    buf: Buffers,
    groups: Vec<Group>,
    tokens: Vec<u32>,
    /// Rotary tables `[dec_len][head_dim / 2]`.
    rope_cos: Vec<f32>,
    rope_sin: Vec<f32>,
    /// T5 relative bias per head and relative position (`key − query + rel_span`):
    /// `[heads][2 · rel_span]`, for the encoder (bidirectional) and the decoder (causal).
    rel_enc: Vec<f32>,
    rel_dec: Vec<f32>,
    rel_span: usize,
    /// Rows of `logits` that are valid.
    logit_rows: usize,
    /// Checked between layers of long passes (prefill, encoder).
    cancel: Option<CancelHandle>,
    /// Cross-attention alignment of the last step, `[slots][max_input_len]`, when recorded.
    align: Vec<f32>,
    align_on: bool,
    /// The recurrent state of an LSTM model (`lstm-seq2seq`); the Transformer buffers are then
    /// left empty.
    lstm: Option<LstmState>,
    /// Per row of an LSTM step: its slot, input and source length (allocated once).
    lstm_rows: [Vec<usize>; 3],
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("limits", &self.limits)
            .field("batch", &self.n)
            .finish()
    }
}

impl Session {
    /// A session able to run up to `limits`; allocates its whole KV cache and scratch now.
    pub fn new(model: &Model, limits: Limits) -> Result<Session> {
        let m = &*model.inner;
        let c = &m.config;
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
                    "limits.{name} must be at least 1"
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
        let dec_len = match m.arch {
            Arch::DecoderOnly => max_input_len.checked_add(max_new_tokens),
            _ => max_new_tokens.checked_add(1),
        }
        .filter(|&l| l <= MAX_TOKENS && max_input_len <= MAX_TOKENS)
        .ok_or_else(|| {
            Error::InvalidArgument(format!("sequences longer than {MAX_TOKENS} tokens"))
        })?;
        let longest = dec_len.max(max_input_len);
        check_positions(m, longest)?;
        if m.arch != Arch::LstmSeq2Seq {
            // Sinusoids for every position the session can reach, now: decoding never allocates.
            let tf = m.tf();
            for stack in [tf.encoder.as_ref(), Some(&tf.decoder)]
                .into_iter()
                .flatten()
            {
                if let Some(PosTable::Sinusoidal(t)) = &stack.pos {
                    t.prepare(longest);
                }
            }
        }
        let (d, hd, kv) = (c.d_model, c.head_dim(), c.kv_heads());
        let (qd, kvd) = (c.heads * hd, kv * hd);
        let is_lstm = m.arch == Arch::LstmSeq2Seq;
        let enc_rows = if is_lstm {
            0
        } else {
            max_batch * max_input_len
        };
        let rows = if is_lstm { 0 } else { enc_rows.max(slots) };
        let layers = c.decoder_layers;
        let cross = m.arch == Arch::Seq2Seq;
        let elems = |parts: &[usize]| -> Result<usize> {
            parts
                .iter()
                .try_fold(1usize, |a, &b| a.checked_mul(b))
                .filter(|&n| n <= isize::MAX as usize / 4)
                .ok_or_else(|| {
                    Error::InvalidArgument("limits need more memory than addressable".into())
                })
        };
        let cache = if is_lstm {
            elems(&[layers, slots, 2 * d])? + elems(&[max_batch, max_input_len, 2 * d])?
        } else {
            elems(&[layers, slots, kvd, dec_len])?
        };
        let cross_cache = if cross {
            elems(&[layers, slots, kvd, max_input_len])?
        } else {
            0
        };
        let lstm_floats = if is_lstm {
            LstmState::floats(c, slots, max_batch, max_input_len) as u128
        } else {
            0
        };
        // Decoding state (src/decode): per step, each input's beam candidates (24-byte tuples,
        // the best 2·beams (more with several end-of-sequence ids) of each of its beams, or the
        // vocabulary when smaller), and each hypothesis' ids and log-probabilities (running and
        // finished).
        let keep = beams * (1 + c.eos_ids.len()).max(2);
        let cands = (slots as u128) * keep.min(c.vocab_size) as u128 * 24;
        let hyps = (slots as u128) * 3 * (dec_len as u128) * 8;
        let floats = 2 * (if is_lstm { 0 } else { cache } + cross_cache) as u128
            + (rows as u128) * (3 * d + 2 * qd + 2 * kvd + 2 * c.ffn_dim) as u128
            + (if cross { enc_rows * d } else { 0 }) as u128
            + (slots * (d + c.vocab_size)) as u128
            + (slots * max_input_len) as u128 // alignment, when asked for
            + 2 * (dec_len * hd) as u128 // rotary tables
            + 2 * (c.heads * 2 * (longest + 1)) as u128 // relative position tables
            + lstm_floats;
        // Activation quantization scratch: one byte per element of the widest input.
        let act_bytes = (rows.max(slots) as u128) * d.max(qd).max(c.ffn_dim).max(4 * d) as u128;
        let total_bytes = 4 * floats + act_bytes + cands + hyps;
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
        let oom = || {
            Error::OutOfMemory(format!(
                "the allocator refused the session's {} MiB",
                total_bytes >> 20
            ))
        };
        let zeros = |n: usize| crate::tensor::bytes::try_zeros(n).ok_or_else(oom);
        let buf = Buffers {
            x: zeros(rows * d)?,
            a: zeros(rows * d)?,
            q: zeros(rows * qd)?,
            k: zeros(rows * kvd)?,
            v: zeros(rows * kvd)?,
            att: zeros(rows * qd)?,
            h1: zeros(rows * c.ffn_dim)?,
            h2: zeros(rows * c.ffn_dim)?,
            enc: zeros(if cross { enc_rows * d } else { 0 })?,
            last: zeros(slots * d)?,
            logits: zeros(slots * c.vocab_size)?,
            scores: zeros(longest)?,
            acts: ActScratch::with_capacity(rows, d.max(qd).max(c.ffn_dim)),
        };
        let (rope_cos, rope_sin) = if c.positions == Positions::Rotary {
            rope_tables(dec_len, hd, c.rope_theta)
        } else {
            (Vec::new(), Vec::new())
        };
        let rel_span = longest + 1;
        let relative = !is_lstm && c.positions == Positions::Relative;
        let (rel_enc, rel_dec) = match relative {
            true => (
                m.tf()
                    .encoder
                    .as_ref()
                    .map(|e| {
                        rel_table(
                            e,
                            c.heads,
                            c.relative_buckets,
                            c.relative_max_distance,
                            rel_span,
                            true,
                        )
                    })
                    .unwrap_or_default(),
                rel_table(
                    &m.tf().decoder,
                    c.heads,
                    c.relative_buckets,
                    c.relative_max_distance,
                    rel_span,
                    false,
                ),
            ),
            false => (Vec::new(), Vec::new()),
        };
        let lstm = is_lstm.then(|| LstmState::new(c, slots, max_batch, max_input_len));
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
            self_k: zeros(if is_lstm { 0 } else { cache })?,
            self_v: zeros(if is_lstm { 0 } else { cache })?,
            cross_k: zeros(cross_cache)?,
            cross_v: zeros(cross_cache)?,
            buf,
            groups: Vec::with_capacity(slots),
            tokens: Vec::with_capacity(rows),
            rope_cos,
            rope_sin,
            rel_enc,
            rel_dec,
            rel_span,
            logit_rows: 0,
            cancel: None,
            align: Vec::new(),
            align_on: false,
            lstm,
            lstm_rows: std::array::from_fn(|_| Vec::with_capacity(if is_lstm { slots } else { 0 })),
        })
    }

    /// Records the cross-attention alignment of every decoding step (seq2seq; the last decoder
    /// layer's attention averaged over heads). Allocates its buffer once when first enabled.
    pub fn record_alignment(&mut self, on: bool) {
        self.align_on = on;
        if on && self.align.is_empty() {
            self.align = vec![0.0; self.slots * self.limits.max_input_len];
        }
    }

    /// The alignment of the last step for `slot`: weights over the source tokens of its input.
    pub(crate) fn alignment(&self, slot: usize) -> &[f32] {
        let src = self.limits.max_input_len;
        let n = self.src_len[self.input_of[slot]];
        &self.align[slot * src..slot * src + n]
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
        let model = self.model.inner.clone();
        let m = &*model;
        let c = &m.config;
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
            let slot = input * beams;
            if ids.is_empty() || ids.len() > self.limits.max_input_len {
                return Err(Error::InvalidArgument(format!(
                    "input {input} has {} tokens: this session takes 1 to {}",
                    ids.len(),
                    self.limits.max_input_len
                )));
            }
            if let Some(&bad) = ids.iter().find(|&&t| t as usize >= c.vocab_size) {
                return Err(Error::InvalidArgument(format!(
                    "token id {bad} in input {input} is not below the vocabulary size {}",
                    c.vocab_size
                )));
            }
            self.groups.push(Group {
                slot,
                row0: row,
                len: ids.len(),
                pos0: 0,
            });
            self.tokens.extend_from_slice(ids);
            row += ids.len();
        }
        self.n = inputs.len();
        self.dec_pos[..self.n * beams].fill(0);
        for (slot, input) in self.input_of[..self.n * beams].iter_mut().enumerate() {
            *input = slot / beams;
        }
        // The encoder or prefill runs on a pool worker (see `step_groups`).
        m.pool.install(|| {
            match m.arch {
                Arch::LstmSeq2Seq => {
                    let net = lstm_ctx(m);
                    let st = self.lstm.as_mut().expect("an LSTM session has LSTM state");
                    let cancel = self.cancel.clone();
                    let cancelled = || cancel.as_ref().is_some_and(|c| c.is_cancelled());
                    let mut slots = Vec::with_capacity(beams);
                    for (input, ids) in inputs.iter().enumerate() {
                        slots.clear();
                        slots.extend(input * beams..(input + 1) * beams);
                        if !net.encode(st, input, ids, &slots, &cancelled) {
                            self.n = 0;
                            return Err(Error::Cancelled);
                        }
                        self.src_len[input] = ids.len();
                    }
                }
                Arch::Seq2Seq => {
                    let enc = m.tf().encoder.as_ref().expect("seq2seq has an encoder");
                    if !self.run_stack(m, enc, false, row) {
                        self.n = 0;
                        return Err(Error::Cancelled);
                    }
                    let d = c.d_model;
                    if let Some(norm) = &enc.final_norm {
                        norm_rows(
                            m.kernels,
                            c.norm,
                            c.norm_eps as f32,
                            norm,
                            &mut self.buf.x[..row * d],
                            d,
                        );
                    }
                    self.buf.enc[..row * d].copy_from_slice(&self.buf.x[..row * d]);
                    for (input, g) in self.groups.iter().enumerate() {
                        self.src_len[input] = g.len;
                    }
                    self.fill_cross_cache(m, row);
                }
                _ => {
                    if !self.run_stack(m, &m.tf().decoder, true, row) {
                        self.n = 0;
                        return Err(Error::Cancelled);
                    }
                    for g in self.groups.iter_mut() {
                        self.dec_pos[g.slot] = g.len;
                        // Logits come from each prompt's last row.
                        g.row0 += g.len - 1;
                        g.len = 1;
                    }
                    self.compute_logits(m);
                    for i in 0..self.n {
                        for b in 1..beams {
                            self.copy_slot(i * beams, i * beams + b);
                        }
                    }
                }
            }
            Ok(())
        })
    }

    /// Appends `tokens` to the single sequence of a decoder-only session (a chat's next turn):
    /// only the new tokens are prefilled, after what the cache already holds; afterwards
    /// [`Session::logits`] holds the next-token logits.
    pub fn extend(&mut self, tokens: &[u32]) -> Result<()> {
        let model = self.model.inner.clone();
        let m = &*model;
        if m.arch != Arch::DecoderOnly || self.n != 1 {
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
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= m.config.vocab_size) {
            return Err(Error::InvalidArgument(format!(
                "token id {bad} is not below the vocabulary size"
            )));
        }
        self.groups.clear();
        self.groups.push(Group {
            slot: 0,
            row0: 0,
            len: tokens.len(),
            pos0: pos,
        });
        self.tokens.clear();
        self.tokens.extend_from_slice(tokens);
        // One pass on a pool worker (see `step_groups`): the prefill, then the logits.
        m.pool.install(|| {
            if !self.run_stack(m, &m.tf().decoder, true, tokens.len()) {
                return Err(Error::Cancelled);
            }
            self.dec_pos[0] = pos + tokens.len();
            self.groups[0] = Group {
                slot: 0,
                row0: tokens.len() - 1,
                len: 1,
                pos0: 0,
            };
            self.compute_logits(m);
            Ok(())
        })
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

    /// Makes slot `to` a copy of slot `from`: its decoder cache up to the current position
    /// (beam search: a hypothesis continued by more than one child).
    pub(crate) fn copy_slot(&mut self, from: usize, to: usize) {
        if from == to {
            return;
        }
        let c = &self.model.inner.config;
        if let Some(st) = self.lstm.as_mut() {
            st.copy_slot(c.decoder_layers, from, to);
            self.dec_pos[to] = self.dec_pos[from];
            self.input_of[to] = self.input_of[from];
            return;
        }
        let (hd, kv, layers) = (c.head_dim(), c.kv_heads(), c.decoder_layers);
        let len = self.dec_pos[from] * hd;
        for l in 0..layers {
            for h in 0..kv {
                let at = |slot: usize| (((l * self.slots + slot) * kv + h) * self.dec_len) * hd;
                let (src, dst) = (at(from), at(to));
                self.self_k.copy_within(src..src + len, dst);
                self.self_v.copy_within(src..src + len, dst);
            }
        }
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
        let v = self.model.inner.config.vocab_size;
        &mut self.buf.logits[..self.logit_rows * v]
    }

    /// Appends one token to every active sequence and computes the next logits
    /// (`[batch, vocab]`, also available afterwards from [`Session::logits`]).
    pub fn step(&mut self, tokens: &[u32]) -> Result<&[f32]> {
        if self.n == 0 {
            return Err(Error::InvalidArgument("step before start".into()));
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
        let model = self.model.inner.clone();
        let m = &*model;
        let vocab = m.config.vocab_size;
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
        let rows = self.groups.len();
        // On a pool worker: the products' splits then run one half on this thread (see
        // `Pool::install`), and only this one hand-over per step crosses threads.
        m.pool.install(|| {
            if m.arch == Arch::LstmSeq2Seq {
                self.step_lstm(m);
                return;
            }
            let done = self.run_stack(m, &m.tf().decoder, true, rows);
            debug_assert!(done, "one-row steps are not interrupted");
            for g in &self.groups {
                self.dec_pos[g.slot] += 1;
            }
            self.compute_logits(m);
        });
        Ok(())
    }

    /// One LSTM decoder step for the rows of `self.groups` (tokens in `self.tokens`).
    fn step_lstm(&mut self, m: &ModelInner) {
        let net = lstm_ctx(m);
        let st = self.lstm.as_mut().expect("an LSTM session has LSTM state");
        let [slots, inputs, src_len] = &mut self.lstm_rows;
        slots.clear();
        inputs.clear();
        src_len.clear();
        for g in &self.groups {
            slots.push(g.slot);
            inputs.push(self.input_of[g.slot]);
            src_len.push(self.src_len[self.input_of[g.slot]]);
        }
        let align = if self.align_on {
            Some(&mut self.align[..])
        } else {
            None
        };
        net.step(
            st,
            slots,
            &self.tokens,
            inputs,
            src_len,
            &mut self.buf.logits,
            align,
        );
        for &s in slots.iter() {
            self.dec_pos[s] += 1;
        }
        self.logit_rows = slots.len();
    }

    /// The logits of the last [`Session::step`] (or of the prefill), `[batch, vocab]`.
    pub fn logits(&self) -> &[f32] {
        &self.buf.logits[..self.logit_rows * self.model.inner.config.vocab_size]
    }

    /// Greedy decoding of a batch: ids in, generated ids out (without the decoder start id or
    /// the prompt; the end-of-sequence id is included when it was produced). `suppress` ids are
    /// never chosen.
    pub fn generate_greedy(
        &mut self,
        inputs: &[&[u32]],
        max_new_tokens: usize,
        suppress: &[u32],
    ) -> Result<Vec<Vec<u32>>> {
        let model = self.model.inner.clone();
        let c = &model.config;
        let max_new = max_new_tokens.min(self.limits.max_new_tokens);
        self.start(inputs)?;
        let n = inputs.len();
        let mut out: Vec<Vec<u32>> = (0..n).map(|_| Vec::with_capacity(max_new)).collect();
        let mut live: Vec<usize> = (0..n).collect();
        let mut next: Vec<u32> = Vec::with_capacity(n);
        if model.arch != Arch::DecoderOnly {
            let start = c.decoder_start_id.expect("validated for seq2seq");
            self.groups.clear();
            for slot in 0..n {
                self.groups.push(Group {
                    slot,
                    row0: slot,
                    len: 1,
                    pos0: 0,
                });
            }
            self.step_groups(&vec![start; n])?;
        }
        let vocab = c.vocab_size;
        for _ in 0..max_new {
            next.clear();
            for (r, &slot) in live.iter().enumerate() {
                let logits = &mut self.buf.logits[r * vocab..(r + 1) * vocab];
                for &s in suppress {
                    if let Some(l) = logits.get_mut(s as usize) {
                        *l = f32::NEG_INFINITY;
                    }
                }
                let t = (model.kernels.argmax)(logits) as u32;
                out[slot].push(t);
                next.push(t);
            }
            // Drop finished sequences; the rest take one more step.
            let mut keep = 0;
            for r in 0..live.len() {
                if !c.eos_ids.contains(&next[r]) {
                    live[keep] = live[r];
                    next[keep] = next[r];
                    keep += 1;
                }
            }
            live.truncate(keep);
            next.truncate(keep);
            if live.is_empty() || out[live[0]].len() >= max_new {
                break;
            }
            self.groups.clear();
            for (r, &slot) in live.iter().enumerate() {
                self.groups.push(Group {
                    slot,
                    row0: r,
                    len: 1,
                    pos0: 0,
                });
            }
            self.step_groups(&next)?;
        }
        Ok(out)
    }

    /// Greedy generation from text: each input is tokenized with the model's tokenizer
    /// (special tokens added as the tokenizer's post-processor says), and the generated ids are
    /// decoded with the target tokenizer, control ids removed.
    #[cfg(feature = "tokenizer")]
    pub fn generate_text(&mut self, texts: &[&str], max_new_tokens: usize) -> Result<Vec<String>> {
        let model = self.model.clone();
        let tok = model.tokenizer()?;
        let inputs: Vec<Vec<u32>> = texts
            .iter()
            .map(|t| tok.encode(t, true))
            .collect::<Result<_>>()?;
        let refs: Vec<&[u32]> = inputs.iter().map(|v| v.as_slice()).collect();
        let out = self.generate_greedy(&refs, max_new_tokens, &[])?;
        let special = model.special_ids();
        let target = model.target_tokenizer()?;
        out.iter()
            .map(|ids| {
                let ids: Vec<u32> = ids
                    .iter()
                    .copied()
                    .filter(|i| !special.contains(i))
                    .collect();
                target.decode(&ids, true)
            })
            .collect()
    }

    /// Final norm, scale, output projection for the rows named by `self.groups` (one each).
    fn compute_logits(&mut self, m: &ModelInner) {
        let c = &m.config;
        let (d, vocab) = (c.d_model, c.vocab_size);
        let n = self.groups.len();
        let b = &mut self.buf;
        for (i, g) in self.groups.iter().enumerate() {
            b.last[i * d..(i + 1) * d].copy_from_slice(&b.x[g.row0 * d..(g.row0 + 1) * d]);
        }
        let last = &mut b.last[..n * d];
        if let Some(norm) = &m.tf().decoder.final_norm {
            norm_rows(m.kernels, c.norm, c.norm_eps as f32, norm, last, d);
        }
        if c.logits_scale != 1.0 {
            (m.kernels.scale)(last, c.logits_scale as f32);
        }
        let head = m.file.resolve(m.tf().lm_head);
        m.kernels.linear(
            &m.pool,
            last,
            n,
            &head,
            &mut b.logits[..n * vocab],
            &mut b.acts,
        );
        if let Some(bias) = &m.tf().lm_bias {
            for row in b.logits[..n * vocab].chunks_exact_mut(vocab) {
                (m.kernels.add)(row, bias);
            }
        }
        self.logit_rows = n;
    }

    /// Cross-attention K/V of every decoder layer from the encoder output.
    fn fill_cross_cache(&mut self, m: &ModelInner, rows: usize) {
        let c = &m.config;
        let (hd, kv) = (c.head_dim(), c.kv_heads());
        let kvd = kv * hd;
        let src = self.limits.max_input_len;
        let b = &mut self.buf;
        for (l, layer) in m.tf().decoder.layers.iter().enumerate() {
            let (att, _) = layer
                .cross
                .as_ref()
                .expect("seq2seq decoder layers have cross-attention");
            linear(
                m,
                &att.k,
                &b.enc[..rows * c.d_model],
                rows,
                &mut b.k,
                &mut b.acts,
            );
            linear(
                m,
                &att.v,
                &b.enc[..rows * c.d_model],
                rows,
                &mut b.v,
                &mut b.acts,
            );
            for (input, g) in self.groups.iter().enumerate() {
                for h in 0..kv {
                    let base = (((l * self.limits.max_batch + input) * kv + h) * src) * hd;
                    for t in 0..g.len {
                        let from = (g.row0 + t) * kvd + h * hd;
                        self.cross_k[base + t * hd..base + (t + 1) * hd]
                            .copy_from_slice(&b.k[from..from + hd]);
                        self.cross_v[base + t * hd..base + (t + 1) * hd]
                            .copy_from_slice(&b.v[from..from + hd]);
                    }
                }
            }
        }
    }

    /// Runs `stack` over `rows` stacked rows (tokens in `self.tokens`, sequences in
    /// `self.groups`), leaving the hidden states in `buf.x`. `decoder`: causal self-attention
    /// through the KV cache (and cross-attention when the layers have it); otherwise
    /// bidirectional attention within each sequence.
    #[must_use = "false means the pass was cancelled"]
    fn run_stack(&mut self, m: &ModelInner, stack: &Stack, decoder: bool, rows: usize) -> bool {
        let c = &m.config;
        let kern = m.kernels;
        let d = c.d_model;
        let (hd, heads, kv) = (c.head_dim(), c.heads, c.kv_heads());
        let (qd, kvd) = (heads * hd, kv * hd);
        let eps = c.norm_eps as f32;
        let scale = c.attention_scale();
        let b = &mut self.buf;

        // Embeddings (+ positions, + embedding norm).
        let embed = m.file.resolve(stack.embed);
        let emb_scale = if c.scale_embedding {
            (d as f32).sqrt()
        } else {
            1.0
        };
        for g in &self.groups {
            for t in 0..g.len {
                let r = g.row0 + t;
                let x = &mut b.x[r * d..(r + 1) * d];
                kern.embed(&embed, self.tokens[r] as usize, x);
                if emb_scale != 1.0 {
                    (kern.scale)(x, emb_scale);
                }
                let pos = g.pos0 + t;
                match &stack.pos {
                    Some(PosTable::Learned { table, offset, .. }) => {
                        let tmp = &mut b.a[r * d..(r + 1) * d];
                        m.file.resolve(*table).dequantize_row(pos + offset, tmp);
                        (kern.add)(x, tmp);
                    }
                    Some(PosTable::Sinusoidal(t)) => (kern.add)(x, t.row(pos)),
                    None => {}
                }
            }
        }
        if let Some(norm) = &stack.embed_norm {
            norm_rows(kern, c.norm, eps, norm, &mut b.x[..rows * d], d);
        }

        let rel = if stack.rel_bias.is_some() {
            Some(if decoder {
                &self.rel_dec[..]
            } else {
                &self.rel_enc[..]
            })
        } else {
            None
        };
        let span = self.rel_span;
        for (l, layer) in stack.layers.iter().enumerate() {
            if rows > 1 && self.cancel.as_ref().is_some_and(|c| c.is_cancelled()) {
                return false;
            }
            // ---- self-attention
            pre_norm(
                m,
                &layer.self_attn_norm,
                &b.x[..rows * d],
                &mut b.a[..rows * d],
            );
            let a = &b.a[..rows * d];
            project_qkv(
                m,
                &layer.self_attn,
                a,
                rows,
                &mut b.q,
                &mut b.k,
                &mut b.v,
                &mut b.acts,
            );
            if c.positions == Positions::Rotary {
                let half = hd / 2;
                for g in &self.groups {
                    for t in 0..g.len {
                        let (r, pos) = (g.row0 + t, g.pos0 + t);
                        let (cs, sn) = (
                            &self.rope_cos[pos * half..(pos + 1) * half],
                            &self.rope_sin[pos * half..(pos + 1) * half],
                        );
                        for h in 0..heads {
                            (kern.rope)(
                                &mut b.q[r * qd + h * hd..r * qd + (h + 1) * hd],
                                cs,
                                sn,
                                c.rope_interleaved,
                            );
                        }
                        for h in 0..kv {
                            (kern.rope)(
                                &mut b.k[r * kvd + h * hd..r * kvd + (h + 1) * hd],
                                cs,
                                sn,
                                c.rope_interleaved,
                            );
                        }
                    }
                }
            }
            let group_size = heads / kv;
            if decoder {
                // Store K/V, then attend over the cache up to and including each row's position.
                for g in &self.groups {
                    for h in 0..kv {
                        let base = (((l * self.slots + g.slot) * kv + h) * self.dec_len) * hd;
                        for t in 0..g.len {
                            let (r, pos) = (g.row0 + t, g.pos0 + t);
                            let from = r * kvd + h * hd;
                            self.self_k[base + pos * hd..base + (pos + 1) * hd]
                                .copy_from_slice(&b.k[from..from + hd]);
                            self.self_v[base + pos * hd..base + (pos + 1) * hd]
                                .copy_from_slice(&b.v[from..from + hd]);
                        }
                    }
                }
                for g in &self.groups {
                    for h in 0..heads {
                        let base =
                            (((l * self.slots + g.slot) * kv + h / group_size) * self.dec_len) * hd;
                        let keys = Rows {
                            data: &self.self_k[base..],
                            stride: hd,
                            width: hd,
                        };
                        let values = Rows {
                            data: &self.self_v[base..],
                            stride: hd,
                            width: hd,
                        };
                        for t in 0..g.len {
                            let (r, pos) = (g.row0 + t, g.pos0 + t);
                            let bias = rel.map(|tab| &tab[h * 2 * span + span - pos..][..pos + 1]);
                            attend_one(
                                kern,
                                &b.q[r * qd + h * hd..r * qd + (h + 1) * hd],
                                keys,
                                values,
                                pos + 1,
                                scale,
                                bias,
                                None,
                                &mut b.scores,
                                &mut b.att[r * qd + h * hd..r * qd + (h + 1) * hd],
                            );
                        }
                    }
                }
            } else {
                for g in &self.groups {
                    for h in 0..heads {
                        let kh = h / group_size;
                        let keys = Rows {
                            data: &b.k[g.row0 * kvd + kh * hd..],
                            stride: kvd,
                            width: hd,
                        };
                        let values = Rows {
                            data: &b.v[g.row0 * kvd + kh * hd..],
                            stride: kvd,
                            width: hd,
                        };
                        for t in 0..g.len {
                            let r = g.row0 + t;
                            let bias = rel.map(|tab| &tab[h * 2 * span + span - t..][..g.len]);
                            attend_one(
                                kern,
                                &b.q[r * qd + h * hd..r * qd + (h + 1) * hd],
                                keys,
                                values,
                                g.len,
                                scale,
                                bias,
                                None,
                                &mut b.scores,
                                &mut b.att[r * qd + h * hd..r * qd + (h + 1) * hd],
                            );
                        }
                    }
                }
            }
            linear(
                m,
                &layer.self_attn.o,
                &b.att[..rows * qd],
                rows,
                &mut b.a,
                &mut b.acts,
            );
            residual(
                m,
                &layer.self_attn_norm,
                &mut b.x[..rows * d],
                &mut b.a[..rows * d],
            );

            // ---- cross-attention
            if let Some((att, norm)) = &layer.cross {
                pre_norm(m, norm, &b.x[..rows * d], &mut b.a[..rows * d]);
                linear(m, &att.q, &b.a[..rows * d], rows, &mut b.q, &mut b.acts);
                let src = self.limits.max_input_len;
                // The last layer's attention, averaged over heads, is the alignment of the token
                // these logits will choose (one row per slot during decoding steps).
                let record = self.align_on && l + 1 == stack.layers.len();
                for g in &self.groups {
                    let input = self.input_of[g.slot];
                    let n = self.src_len[input];
                    if record {
                        self.align[g.slot * src..(g.slot + 1) * src].fill(0.0);
                    }
                    for h in 0..heads {
                        let base = (((l * self.limits.max_batch + input) * kv + h / group_size)
                            * src)
                            * hd;
                        let keys = Rows {
                            data: &self.cross_k[base..],
                            stride: hd,
                            width: hd,
                        };
                        let values = Rows {
                            data: &self.cross_v[base..],
                            stride: hd,
                            width: hd,
                        };
                        for t in 0..g.len {
                            let r = g.row0 + t;
                            attend_one(
                                kern,
                                &b.q[r * qd + h * hd..r * qd + (h + 1) * hd],
                                keys,
                                values,
                                n,
                                scale,
                                None,
                                None,
                                &mut b.scores,
                                &mut b.att[r * qd + h * hd..r * qd + (h + 1) * hd],
                            );
                            if record && g.len == 1 {
                                let dst = &mut self.align[g.slot * src..g.slot * src + n];
                                (kern.axpy)(1.0 / heads as f32, &b.scores[..n], dst);
                            }
                        }
                    }
                }
                linear(m, &att.o, &b.att[..rows * qd], rows, &mut b.a, &mut b.acts);
                residual(m, norm, &mut b.x[..rows * d], &mut b.a[..rows * d]);
            }

            // ---- feed-forward
            pre_norm(m, &layer.ffn_norm, &b.x[..rows * d], &mut b.a[..rows * d]);
            let f = c.ffn_dim;
            let a = &b.a[..rows * d];
            linear(m, &layer.ffn.up, a, rows, &mut b.h1, &mut b.acts);
            match &layer.ffn.gate {
                Some(gate) => {
                    linear(m, gate, a, rows, &mut b.h2, &mut b.acts);
                    kern.gated(
                        c.activation.into(),
                        &mut b.h2[..rows * f],
                        &b.h1[..rows * f],
                    );
                    linear(
                        m,
                        &layer.ffn.down,
                        &b.h2[..rows * f],
                        rows,
                        &mut b.a,
                        &mut b.acts,
                    );
                }
                None => {
                    kern.activate(c.activation.into(), &mut b.h1[..rows * f]);
                    linear(
                        m,
                        &layer.ffn.down,
                        &b.h1[..rows * f],
                        rows,
                        &mut b.a,
                        &mut b.acts,
                    );
                }
            }
            residual(
                m,
                &layer.ffn_norm,
                &mut b.x[..rows * d],
                &mut b.a[..rows * d],
            );
        }
        true
    }
}

/// The LSTM view of a model.
fn lstm_ctx(m: &ModelInner) -> lstm::Ctx<'_> {
    lstm::Ctx {
        file: &m.file,
        kern: m.kernels,
        pool: &m.pool,
        config: &m.config,
        w: match &m.weights {
            super::Net::Lstm(w) => w,
            super::Net::Transformer(_) => unreachable!("an LSTM path with a Transformer"),
        },
    }
}

/// `out = x·Wᵀ + b` for `rows` rows.
fn linear(
    m: &ModelInner,
    lin: &Linear,
    x: &[f32],
    rows: usize,
    out: &mut [f32],
    acts: &mut ActScratch,
) {
    let w = m.file.resolve(lin.w);
    let out = &mut out[..rows * lin.out];
    m.kernels.linear(&m.pool, x, rows, &w, out, acts);
    if let Some(bias) = &lin.b {
        for row in out.chunks_exact_mut(lin.out) {
            (m.kernels.add)(row, bias);
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn project_qkv(
    m: &ModelInner,
    att: &Attention,
    a: &[f32],
    rows: usize,
    q: &mut [f32],
    k: &mut [f32],
    v: &mut [f32],
    acts: &mut ActScratch,
) {
    linear(m, &att.q, a, rows, q, acts);
    linear(m, &att.k, a, rows, k, acts);
    linear(m, &att.v, a, rows, v, acts);
}

fn norm_row(kern: &Kernels, kind: NormKind, eps: f32, norm: &Norm, x: &[f32], out: &mut [f32]) {
    match kind {
        NormKind::LayerNorm => (kern.layer_norm)(x, &norm.weight, norm.bias.as_deref(), eps, out),
        NormKind::RmsNorm => (kern.rms_norm)(x, &norm.weight, eps, out),
    }
}

/// Normalizes each row of `x` in place.
fn norm_rows(kern: &Kernels, kind: NormKind, eps: f32, norm: &Norm, x: &mut [f32], d: usize) {
    let mut tmp = [0f32; 256];
    for row in x.chunks_exact_mut(d) {
        if d <= tmp.len() {
            norm_row(kern, kind, eps, norm, row, &mut tmp[..d]);
            row.copy_from_slice(&tmp[..d]);
        } else {
            // Norms of wide rows read each element before writing it, so in place is safe in
            // the scalar reference; vector kernels compute the statistics first as well.
            let copy = row.to_vec();
            norm_row(kern, kind, eps, norm, &copy, row);
        }
    }
}

/// Sub-layer input: the normalized residual stream (pre-norm) or the stream itself (post-norm).
fn pre_norm(m: &ModelInner, norm: &Norm, x: &[f32], a: &mut [f32]) {
    let c = &m.config;
    if c.pre_norm {
        for (xr, ar) in x.chunks_exact(c.d_model).zip(a.chunks_exact_mut(c.d_model)) {
            norm_row(m.kernels, c.norm, c.norm_eps as f32, norm, xr, ar);
        }
    } else {
        a.copy_from_slice(x);
    }
}

/// Adds the sub-layer output `o` to the stream `x`; post-norm models then normalize.
fn residual(m: &ModelInner, norm: &Norm, x: &mut [f32], o: &mut [f32]) {
    let c = &m.config;
    (m.kernels.add)(x, o);
    if !c.pre_norm {
        for (xr, or) in x
            .chunks_exact_mut(c.d_model)
            .zip(o.chunks_exact_mut(c.d_model))
        {
            norm_row(m.kernels, c.norm, c.norm_eps as f32, norm, xr, or);
            xr.copy_from_slice(or);
        }
    }
}

/// Checks that positions `0..len` exist in the model's position scheme.
/// The longest sequence the model's position scheme covers, if it has a limit.
pub(crate) fn max_positions(m: &ModelInner) -> Option<usize> {
    let c = &m.config;
    if m.arch == Arch::LstmSeq2Seq {
        return None; // recurrent: no position table
    }
    let tables = [m.tf().encoder.as_ref(), Some(&m.tf().decoder)]
        .into_iter()
        .flatten()
        .filter_map(|s| match &s.pos {
            Some(PosTable::Learned { rows, offset, .. }) => Some(rows - offset),
            Some(PosTable::Sinusoidal(t)) => Some(t.rows()),
            None => None,
        })
        .min();
    let rotary =
        (c.positions == Positions::Rotary && c.max_positions > 0).then_some(c.max_positions);
    tables.into_iter().chain(rotary).min()
}

/// Checks that positions `0..len` exist in the model's position scheme.
fn check_positions(m: &ModelInner, len: usize) -> Result<()> {
    if let Some(max) = max_positions(m)
        && len > max
    {
        return Err(Error::InvalidArgument(format!(
            "the session limits allow sequences of {len} tokens but the model has {max} positions"
        )));
    }
    Ok(())
}

impl Limits {
    /// These limits, shortened where the model's positions end (defaults that always work).
    pub fn fit(self, model: &Model) -> Limits {
        let m = &*model.inner;
        let Some(p) = max_positions(m) else {
            return self;
        };
        let mut l = self;
        if m.arch == Arch::DecoderOnly {
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

/// Rotary tables as Hugging Face computes them (in f32): `inv_freq[i] = 1 / θ^(2i/d)`,
/// angle = position · inv_freq[i].
pub(crate) fn rope_tables(len: usize, hd: usize, theta: f64) -> (Vec<f32>, Vec<f32>) {
    let half = hd / 2;
    let inv: Vec<f32> = (0..half)
        .map(|i| 1.0 / (theta as f32).powf((2 * i) as f32 / hd as f32))
        .collect();
    let mut cos = vec![0f32; len * half];
    let mut sin = vec![0f32; len * half];
    for p in 0..len {
        for i in 0..half {
            let a = p as f32 * inv[i];
            cos[p * half + i] = a.cos();
            sin[p * half + i] = a.sin();
        }
    }
    (cos, sin)
}

/// T5's bucket of a relative position (`key − query`), as in the reference implementation
/// (logarithmic buckets beyond `buckets / 2`, computed in f32).
pub(crate) fn t5_bucket(
    rel: i64,
    bidirectional: bool,
    buckets: usize,
    max_distance: usize,
) -> usize {
    let mut nb = buckets as i64;
    let mut ret = 0i64;
    let n = if bidirectional {
        nb /= 2;
        if rel > 0 {
            ret += nb;
        }
        rel.abs()
    } else {
        (-rel).max(0)
    };
    let max_exact = nb / 2;
    if n < max_exact {
        return (ret + n) as usize;
    }
    let log_ratio = (max_distance as f64 / max_exact as f64).ln() as f32;
    let large = max_exact
        + ((n as f32 / max_exact as f32).ln() / log_ratio * (nb - max_exact) as f32) as i64;
    (ret + large.min(nb - 1)) as usize
}

/// `[heads][2 · span]`: the bias of head `h` for relative position `rel` at `h · 2span + span + rel`.
fn rel_table(
    stack: &Stack,
    heads: usize,
    buckets: usize,
    max_distance: usize,
    span: usize,
    bidirectional: bool,
) -> Vec<f32> {
    let Some(w) = &stack.rel_bias else {
        return Vec::new();
    };
    let mut t = vec![0f32; heads * 2 * span];
    for i in 0..2 * span {
        let rel = i as i64 - span as i64;
        let bucket = t5_bucket(rel, bidirectional, buckets, max_distance);
        for h in 0..heads {
            t[h * 2 * span + i] = w[bucket * heads + h];
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::t5_bucket;

    #[test]
    fn t5_buckets_match_the_reference_values() {
        // transformers 5.24's T5Attention._relative_position_bucket (32 buckets, max distance
        // 128), printed by tests/reference/t5_buckets.py.
        let bi = [
            (-200, 15),
            (-100, 15),
            (-20, 10),
            (-8, 8),
            (-7, 7),
            (-1, 1),
            (0, 0),
            (1, 17),
            (7, 23),
            (8, 24),
            (20, 26),
            (100, 31),
            (200, 31),
        ];
        for (rel, b) in bi {
            assert_eq!(t5_bucket(rel, true, 32, 128), b, "bidirectional {rel}");
        }
        let causal = [
            (-200, 31),
            (-100, 30),
            (-40, 23),
            (-16, 16),
            (-15, 15),
            (-1, 1),
            (0, 0),
            (5, 0),
        ];
        for (rel, b) in causal {
            assert_eq!(t5_bucket(rel, false, 32, 128), b, "causal {rel}");
        }
    }
}
