//! The Transformer of a session: its state (KV caches, activations, position tables), sized
//! once from the session's limits, and its passes — the encoder (seq2seq), the decoder over
//! stacked rows (prefill, chat extension, decoding steps) and the logits.
//!
//! ```text
//! encode: x = embed(src);  for layer: x = layer(x);  enc = norm(x);  cross K/V = k(enc), v(enc)
//! decode: x = embed(tokens at their positions);  for layer: x = layer(x, cache);
//!         logits = lm_head(norm(x of each sequence's last row)) + bias
//! ```
//!
//! The blocks and their `forward` are in [`blocks`]; the weights in [`weights`]. Batches are
//! ragged: the rows of all sequences are stacked (no padding), so the linear layers see one
//! `[rows, d]` matrix while attention runs per sequence over that sequence's keys only. Each
//! sequence owns a cache slot; the decoder's self-attention K/V go to the slot at the token's
//! position, the cross-attention K/V are computed once per input.

pub(crate) mod blocks;
pub(crate) mod weights;

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::format::{Arch, Config, Positions, RopeScaling};
use crate::kernels::ActScratch;

use super::positions::{rel_table, rope_tables, rope_tables_of};
use super::{Batch, CancelHandle, Limits, Model, Network, Outputs};
use blocks::{CrossCache, Cx, SelfCache, Seqs, Work};
use weights::{PosTable, Stack, TransformerWeights};

/// Every buffer's length in elements (f32 unless said), from the limits: what
/// [`TransformerState::new`] allocates and [`TransformerState::bytes_for`] budgets, so the two
/// cannot disagree.
struct Sizes {
    /// Stacked rows of the widest pass: the encoder's or prompts' tokens, or one per slot.
    rows: usize,
    /// `[layers, slots, kvd, dec_len]`, for K and for V.
    self_cache: usize,
    /// `[layers, slots, kvd, max_input_len]`, for K and for V (seq2seq).
    cross_cache: usize,
    /// The encoder output `[max_batch · max_input_len, d]` (seq2seq).
    enc: usize,
    /// `[slots, d]` and `[slots, V]`.
    last: usize,
    logits: usize,
    /// Scores of one head over the longest sequence.
    scores: usize,
    /// Rotary tables `[dec_len, hd/2]`, cos and sin.
    rope: usize,
    /// T5 relative bias tables `[heads, 2·span]`, encoder and decoder.
    rel: usize,
    span: usize,
    /// The alignment `[slots, max_input_len]`, allocated when first recorded.
    align: usize,
    /// Quantized activations (bytes).
    act_bytes: usize,
}

impl Sizes {
    fn of(model: &Model, limits: &Limits, dec_len: usize) -> Sizes {
        let m = &*model.inner;
        let c = &m.config;
        let slots = limits.max_batch * limits.beams;
        let w = Widths::of(c);
        let (d, hd) = (c.d_model, c.head_dim());
        // The caches are the decoder's.
        let kvd = w.dec_kvd;
        let cross = m.arch == Arch::Seq2Seq;
        let enc_rows = limits.max_batch * limits.max_input_len;
        let longest = dec_len.max(limits.max_input_len);
        let span = longest + 1;
        let relative = c.positions == Positions::Relative;
        Sizes {
            rows: enc_rows.max(slots),
            self_cache: c.decoder_layers * slots * kvd * dec_len,
            cross_cache: if cross {
                c.decoder_layers * slots * kvd * limits.max_input_len
            } else {
                0
            },
            enc: if cross { enc_rows * d } else { 0 },
            last: slots * d,
            logits: slots * c.vocab_size,
            scores: longest,
            rope: if c.positions == Positions::Rotary {
                // LongRoPE's long factors: a second pair of tables.
                let tables = if c
                    .rope_scaling
                    .as_ref()
                    .and_then(RopeScaling::long_from)
                    .is_some()
                {
                    2
                } else {
                    1
                };
                tables * dec_len * (hd / 2)
            } else {
                0
            },
            rel: if relative { w.heads * 2 * span } else { 0 },
            span,
            align: slots * limits.max_input_len,
            act_bytes: enc_rows.max(slots) * w.widest(d),
        }
    }

    /// Floats per stacked row of the activations (`Work`).
    fn per_row(model: &Model) -> usize {
        let c = &model.inner.config;
        let w = Widths::of(c);
        2 * c.d_model + 2 * w.qd + 2 * w.kvd + 2 * w.ffn
    }

    fn bytes(&self, model: &Model) -> u128 {
        let floats = (self.rows * Sizes::per_row(model)) as u128
            + 2 * (self.self_cache + self.cross_cache) as u128
            + (self.enc + self.last + self.logits + self.scores + self.align) as u128
            + model.inner.config.d_model as u128
            + 2 * (self.rope + self.rel) as u128;
        4 * floats + self.act_bytes as u128
    }
}

/// The widest activations of either stack (the encoder's and the decoder's heads and
/// feed-forward width may differ), which the shared buffers must hold.
struct Widths {
    /// Query heads · head width, key/value heads · head width, feed-forward width.
    qd: usize,
    kvd: usize,
    ffn: usize,
    /// The most heads (T5's relative-bias tables).
    heads: usize,
    /// The decoder's key/value width (its caches).
    dec_kvd: usize,
}

impl Widths {
    fn of(c: &Config) -> Widths {
        let dec = c.for_decoder();
        let kvd = |c: &Config| c.kv_heads() * c.head_dim();
        Widths {
            qd: (c.heads * c.head_dim()).max(dec.heads * dec.head_dim()),
            kvd: kvd(c).max(kvd(&dec)),
            ffn: c.ffn_dim.max(dec.ffn_dim),
            heads: c.heads.max(dec.heads),
            dec_kvd: kvd(&dec),
        }
    }

    /// The widest row a linear layer reads or writes (with `d` the model width).
    fn widest(&self, d: usize) -> usize {
        d.max(self.qd).max(self.ffn).max(4 * d)
    }
}

/// The context of the blocks' `forward`s, for a stack of shape `c`.
fn cx<'a>(m: &'a super::ModelInner, c: &'a Config) -> Cx<'a> {
    Cx {
        file: &m.file,
        kern: m.kernels,
        pool: &m.pool,
        c,
    }
}

/// A Transformer's state in a session.
pub(crate) struct TransformerState {
    model: Model,
    w: Arc<TransformerWeights>,
    slots: usize,
    dec_len: usize,
    max_batch: usize,
    /// Source tokens per input (`max_input_len`).
    src: usize,
    work: Work,
    /// `[layers][slots][kv][dec_len][hd]`
    self_k: Vec<f32>,
    self_v: Vec<f32>,
    /// `[layers][max_batch][kv][max_input_len][hd]`, one per input
    cross_k: Vec<f32>,
    cross_v: Vec<f32>,
    /// Encoder output `[rows, d]` (seq2seq).
    enc: Vec<f32>,
    /// Final hidden states of the rows whose logits are wanted, `[slots, d]`.
    last: Vec<f32>,
    /// The logits `[slots, V]` and the alignment `[slots][max_input_len]`, when recorded.
    out: Outputs,
    /// Rotary tables `[dec_len][hd / 2]`.
    rope_cos: Vec<f32>,
    rope_sin: Vec<f32>,
    /// LongRoPE's tables with the long factors (cos, sin), used by a pass whose last position
    /// reaches `long_from`.
    rope_long: (Vec<f32>, Vec<f32>),
    long_from: Option<usize>,
    /// T5 relative bias per head and relative position (`key − query + span`): `[heads][2·span]`,
    /// for the encoder (bidirectional) and the decoder (causal).
    rel_enc: Vec<f32>,
    rel_dec: Vec<f32>,
    span: usize,
}

impl TransformerState {
    /// Bytes the state takes for `limits` (`dec_len`: tokens a slot's decoder cache holds).
    pub fn bytes_for(model: &Model, limits: &Limits, dec_len: usize) -> u128 {
        Sizes::of(model, limits, dec_len).bytes(model)
    }

    /// Allocates the state for `limits` (every buffer now: decoding never allocates).
    pub fn new(
        model: &Model,
        w: Arc<TransformerWeights>,
        limits: &Limits,
        dec_len: usize,
    ) -> Result<TransformerState> {
        let s = Sizes::of(model, limits, dec_len);
        let c = &model.inner.config;
        let oom = || {
            Error::OutOfMemory(format!(
                "the allocator refused the session's {} MiB",
                s.bytes(model) >> 20
            ))
        };
        let zeros = |n: usize| crate::tensor::bytes::try_zeros(n).ok_or_else(oom);
        let widths = Widths::of(c);
        let (d, hd) = (c.d_model, c.head_dim());
        let (qd, kvd, ffn) = (widths.qd, widths.kvd, widths.ffn);
        let rows = s.rows;
        // Sinusoids for every position the session can reach, now: decoding never allocates.
        for stack in [w.encoder.as_ref(), Some(&w.decoder)].into_iter().flatten() {
            if let Some(PosTable::Sinusoidal(t)) = &stack.pos {
                t.prepare(s.scores);
            }
        }
        let work = Work {
            x: zeros(rows * d)?,
            a: zeros(rows * d)?,
            q: zeros(rows * qd)?,
            k: zeros(rows * kvd)?,
            v: zeros(rows * kvd)?,
            att: zeros(rows * qd)?,
            h1: zeros(rows * ffn)?,
            h2: zeros(rows * ffn)?,
            scores: zeros(s.scores)?,
            row: zeros(d)?,
            acts: ActScratch::with_capacity(rows, d.max(qd).max(ffn)),
        };
        let (rope_cos, rope_sin) = if s.rope > 0 {
            rope_tables(dec_len, hd, c.rope_theta, c.rope_scaling.as_ref())
        } else {
            (Vec::new(), Vec::new())
        };
        let long_from = c.rope_scaling.as_ref().and_then(RopeScaling::long_from);
        let rope_long = match long_from {
            Some(_) if s.rope > 0 => {
                rope_tables_of(dec_len, hd, c.rope_theta, c.rope_scaling.as_ref(), true)
            }
            _ => (Vec::new(), Vec::new()),
        };
        let rel = |stack: Option<&Stack>, bidirectional: bool| match stack
            .and_then(|s| s.rel_bias.as_ref())
        {
            Some(b) if s.rel > 0 => rel_table(
                b,
                stack.map_or(c.heads, |s| s.config.heads),
                c.relative_buckets,
                c.relative_max_distance,
                s.span,
                bidirectional,
            ),
            _ => Vec::new(),
        };
        Ok(TransformerState {
            model: model.clone(),
            slots: limits.max_batch * limits.beams,
            dec_len,
            max_batch: limits.max_batch,
            src: limits.max_input_len,
            work,
            self_k: zeros(s.self_cache)?,
            self_v: zeros(s.self_cache)?,
            cross_k: zeros(s.cross_cache)?,
            cross_v: zeros(s.cross_cache)?,
            enc: zeros(s.enc)?,
            last: zeros(s.last)?,
            out: Outputs::new(
                zeros(s.logits)?,
                limits.max_batch * limits.beams,
                limits.max_input_len,
            ),
            rope_cos,
            rope_sin,
            rope_long,
            long_from,
            rel_enc: rel(w.encoder.as_ref(), true),
            rel_dec: rel(Some(&w.decoder), false),
            span: s.span,
            w,
        })
    }

    /// Runs `stack` over the rows of `b` (its tokens at their positions), leaving the hidden
    /// states in `work.x`. `decoder`: causal self-attention through the cache and
    /// cross-attention when the layers have it; otherwise bidirectional attention within each
    /// sequence. Returns false when `cancel` stopped it between two layers.
    fn run_stack(
        &mut self,
        stack: &Stack,
        decoder: bool,
        b: &Batch,
        cancel: Option<&CancelHandle>,
    ) -> bool {
        let m = &*self.model.inner;
        let cx = cx(m, &stack.config);
        let rows = b.rows();
        let seqs = Seqs {
            groups: b.groups,
            slots: self.slots,
            dec_len: self.dec_len,
        };
        stack.embed(&cx, b.groups, b.tokens, &mut self.work);
        let rel = stack.rel_bias.as_ref().map(|_| {
            let t = if decoder {
                &self.rel_dec
            } else {
                &self.rel_enc
            };
            (&t[..], self.span)
        });
        // LongRoPE: `transformers` picks the long factors for a whole pass when its longest
        // position reaches the original context.
        let last_pos = b.groups.iter().map(|g| g.pos0 + g.len).max().unwrap_or(0);
        let rope = match self.long_from {
            Some(from) if decoder && last_pos > from => {
                (&self.rope_long.0[..], &self.rope_long.1[..])
            }
            _ => (&self.rope_cos[..], &self.rope_sin[..]),
        };
        let last = stack.layers.len().saturating_sub(1);
        for (l, layer) in stack.layers.iter().enumerate() {
            if rows > 1 && cancel.is_some_and(|c| c.is_cancelled()) {
                return false;
            }
            let cache = decoder.then(|| SelfCache {
                k: &mut self.self_k[..],
                v: &mut self.self_v[..],
            });
            layer
                .self_attn
                .forward(&cx, l, rows, &seqs, cache, rope, rel, &mut self.work);
            if let Some(cross) = &layer.cross {
                let align = self.out.align_mut().filter(|_| l == last);
                let cache = CrossCache {
                    k: &self.cross_k,
                    v: &self.cross_v,
                    max_batch: self.max_batch,
                    src: self.src,
                    input_of: b.input_of,
                    src_len: b.src_len,
                    align,
                };
                cross.forward(&cx, l, rows, &seqs, cache, &mut self.work);
            }
            layer.ffn.forward(&cx, rows, &mut self.work);
        }
        true
    }

    /// Cross-attention K/V of every decoder layer from the encoder output (group `i` is input
    /// `i`).
    fn fill_cross_cache(&mut self, b: &Batch) {
        let m = &*self.model.inner;
        let c = &self.w.decoder.config;
        let cx = cx(m, c);
        let (hd, kv) = (c.head_dim(), c.kv_heads());
        let kvd = kv * hd;
        let (src, rows) = (self.src, b.rows());
        let w = &mut self.work;
        for (l, layer) in self.w.decoder.layers.iter().enumerate() {
            let Some(cross) = &layer.cross else { continue };
            let enc = &self.enc[..rows * c.d_model];
            cx.linear(&cross.proj.k, enc, rows, &mut w.k, &mut w.acts);
            cx.linear(&cross.proj.v, enc, rows, &mut w.v, &mut w.acts);
            for (input, g) in b.groups.iter().enumerate() {
                for h in 0..kv {
                    let base = (((l * self.max_batch + input) * kv + h) * src) * hd;
                    for t in 0..g.len {
                        let from = (g.row0 + t) * kvd + h * hd;
                        self.cross_k[base + t * hd..base + (t + 1) * hd]
                            .copy_from_slice(&w.k[from..from + hd]);
                        self.cross_v[base + t * hd..base + (t + 1) * hd]
                            .copy_from_slice(&w.v[from..from + hd]);
                    }
                }
            }
        }
    }

    /// Final norm, scale, output projection for the last row of each group.
    fn compute_logits(&mut self, b: &Batch) {
        let m = &*self.model.inner;
        let c = &m.config;
        let cx = cx(m, c);
        let (d, vocab) = (c.d_model, c.vocab_size);
        let n = b.groups.len();
        for (i, g) in b.groups.iter().enumerate() {
            let r = g.row0 + g.len - 1;
            self.last[i * d..(i + 1) * d].copy_from_slice(&self.work.x[r * d..(r + 1) * d]);
        }
        let last = &mut self.last[..n * d];
        if let Some(norm) = &self.w.decoder.final_norm {
            cx.norm_rows(norm, last, &mut self.work.row);
        }
        if c.logits_scale != 1.0 {
            (m.kernels.scale)(last, c.logits_scale as f32);
        }
        let head = m.file.resolve(self.w.lm_head);
        let logits = &mut self.out.logits[..n * vocab];
        m.kernels
            .linear(&m.pool, last, n, &head, logits, &mut self.work.acts);
        if let Some(bias) = &self.w.lm_bias {
            for row in logits.chunks_exact_mut(vocab) {
                (m.kernels.add)(row, bias);
            }
        }
        if c.final_softcap > 0.0 {
            let cap = c.final_softcap as f32;
            for l in logits.iter_mut() {
                *l = cap * (*l / cap).tanh();
            }
        }
    }
}

impl Network for TransformerState {
    fn encode(&mut self, b: &Batch, _beams: usize, cancel: Option<&CancelHandle>) -> Result<bool> {
        let w = self.w.clone();
        let Some(enc) = &w.encoder else {
            return Err(Error::InvalidArgument(
                "a decoder-only model has no encoder".into(),
            ));
        };
        if !self.run_stack(enc, false, b, cancel) {
            return Ok(false);
        }
        let d = self.model.inner.config.d_model;
        let rows = b.rows();
        if let Some(norm) = &enc.final_norm {
            let w = &mut self.work;
            cx(&self.model.inner, &enc.config).norm_rows(norm, &mut w.x[..rows * d], &mut w.row);
        }
        self.enc[..rows * d].copy_from_slice(&self.work.x[..rows * d]);
        self.fill_cross_cache(b);
        Ok(true)
    }

    fn decode(&mut self, b: &Batch, cancel: Option<&CancelHandle>) -> bool {
        let w = self.w.clone();
        if !self.run_stack(&w.decoder, true, b, cancel) {
            return false;
        }
        self.compute_logits(b);
        true
    }

    fn copy_slot(&mut self, from: usize, to: usize, len: usize) {
        let c = &self.w.decoder.config;
        let (hd, kv, layers) = (c.head_dim(), c.kv_heads(), c.decoder_layers);
        let n = len * hd;
        for l in 0..layers {
            for h in 0..kv {
                let at = |slot: usize| (((l * self.slots + slot) * kv + h) * self.dec_len) * hd;
                let (src, dst) = (at(from), at(to));
                self.self_k.copy_within(src..src + n, dst);
                self.self_v.copy_within(src..src + n, dst);
            }
        }
    }

    fn outputs(&self) -> &Outputs {
        &self.out
    }

    fn outputs_mut(&mut self) -> &mut Outputs {
        &mut self.out
    }
}
