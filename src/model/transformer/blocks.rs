//! The blocks of a Transformer, each with its `forward` over a ragged batch: the rows of all
//! sequences stacked without padding (`[rows, d]`), attention per sequence (a [`Group`] each).
//!
//! A pre-norm layer (post-norm models normalize after each residual instead):
//!
//! ```text
//! x += SelfAttention(norm(x))        causal through the KV cache in a decoder
//! x += CrossAttention(norm(x), enc)  decoder of an encoder-decoder
//! x += FeedForward(norm(x))
//! ```
//!
//! Dimensions: `d` model width, `hd` head width, `qd = heads·hd`, `kvd = kv·hd`, `f` feed-forward
//! width.

use crate::format::{Config, Norm as NormKind, Positions, QuillFile};
use crate::kernels::attention::{Rows, attend_one};
use crate::kernels::{ActScratch, Kernels, Pool};

use super::super::Group;
use super::weights::{
    Attention, CrossAttention, FeedForward, Linear, Norm, PosTable, SelfAttention, Stack,
};

/// What every block reads besides its weights.
pub(crate) struct Cx<'a> {
    pub file: &'a QuillFile,
    pub kern: &'static Kernels,
    pub pool: &'a Pool,
    pub c: &'a Config,
}

/// The activations of one pass, `rows` stacked rows each (allocated once per session).
pub(crate) struct Work {
    /// The residual stream `[rows, d]`.
    pub x: Vec<f32>,
    /// A sub-layer's input or output `[rows, d]`.
    pub a: Vec<f32>,
    /// `[rows, qd]`
    pub q: Vec<f32>,
    /// `[rows, kvd]`
    pub k: Vec<f32>,
    /// `[rows, kvd]`
    pub v: Vec<f32>,
    /// Attention outputs `[rows, qd]`.
    pub att: Vec<f32>,
    /// Feed-forward hidden `[rows, f]`, twice (gated).
    pub h1: Vec<f32>,
    pub h2: Vec<f32>,
    /// One head's scores `[longest sequence]`.
    pub scores: Vec<f32>,
    /// One row `[d]`: scratch of the norms.
    pub row: Vec<f32>,
    /// Quantized activations for int8/int4 products.
    pub acts: ActScratch,
}

/// Row `r`'s query of head `h`, the scores scratch, and where the head's output goes (rows of
/// `qd` values, heads of `hd`).
fn head<'a>(
    q: &'a [f32],
    scores: &'a mut [f32],
    att: &'a mut [f32],
    (r, h, qd, hd): (usize, usize, usize, usize),
) -> (&'a [f32], &'a mut [f32], &'a mut [f32]) {
    let at = r * qd + h * hd;
    (&q[at..at + hd], scores, &mut att[at..at + hd])
}

/// The stacked sequences of a pass: their groups, and how the caches are laid out.
pub(crate) struct Seqs<'a> {
    pub groups: &'a [Group],
    /// Cache slots in all, and each slot's decoder length (`self_k`: `[layers][slots][kv][len][hd]`).
    pub slots: usize,
    pub dec_len: usize,
}

/// The decoder's self-attention cache: `[layers][slots][kv][dec_len][hd]` each.
pub(crate) struct SelfCache<'a> {
    pub k: &'a mut [f32],
    pub v: &'a mut [f32],
}

/// The cross-attention K/V of the encoder output: `[layers][max_batch][kv][src][hd]` each; the
/// inputs' source lengths; the alignment to record (the last layer's, averaged over heads:
/// `[slots][src]`).
pub(crate) struct CrossCache<'a> {
    pub k: &'a [f32],
    pub v: &'a [f32],
    pub max_batch: usize,
    pub src: usize,
    pub input_of: &'a [usize],
    pub src_len: &'a [usize],
    pub align: Option<&'a mut [f32]>,
}

impl Cx<'_> {
    /// `out = x·Wᵀ + b` for `rows` rows.
    pub fn linear(
        &self,
        lin: &Linear,
        x: &[f32],
        rows: usize,
        out: &mut [f32],
        acts: &mut ActScratch,
    ) {
        let w = self.file.resolve(lin.w);
        let out = &mut out[..rows * lin.out];
        self.kern.linear(self.pool, x, rows, &w, out, acts);
        if let Some(bias) = &lin.b {
            for row in out.chunks_exact_mut(lin.out) {
                (self.kern.add)(row, bias);
            }
        }
    }

    fn norm_row(&self, norm: &Norm, x: &[f32], out: &mut [f32]) {
        let eps = self.c.norm_eps as f32;
        match self.c.norm {
            NormKind::LayerNorm => {
                (self.kern.layer_norm)(x, &norm.weight, norm.bias.as_deref(), eps, out)
            }
            NormKind::RmsNorm => (self.kern.rms_norm)(x, &norm.weight, eps, out),
        }
    }

    /// Normalizes each row of `x` in place, through `tmp` (`[d]`, [`Work::row`]).
    pub fn norm_rows(&self, norm: &Norm, x: &mut [f32], tmp: &mut [f32]) {
        let d = self.c.d_model;
        let tmp = &mut tmp[..d];
        for row in x.chunks_exact_mut(d) {
            self.norm_row(norm, row, tmp);
            row.copy_from_slice(tmp);
        }
    }

    /// Sub-layer input: the normalized residual stream (pre-norm) or the stream itself
    /// (post-norm).
    fn pre_norm(&self, norm: &Norm, x: &[f32], a: &mut [f32]) {
        let d = self.c.d_model;
        if self.c.pre_norm {
            for (xr, ar) in x.chunks_exact(d).zip(a.chunks_exact_mut(d)) {
                self.norm_row(norm, xr, ar);
            }
        } else {
            a.copy_from_slice(x);
        }
    }

    /// Adds the sub-layer output `o` to the stream `x` (normalized first by `post`, Gemma 2's
    /// output norm, when the layer has one); post-norm models then normalize.
    fn residual(
        &self,
        norm: &Norm,
        post: Option<&Norm>,
        x: &mut [f32],
        o: &mut [f32],
        tmp: &mut [f32],
    ) {
        let d = self.c.d_model;
        if let Some(post) = post {
            self.norm_rows(post, o, tmp);
        }
        (self.kern.add)(x, o);
        if !self.c.pre_norm {
            for (xr, or) in x.chunks_exact_mut(d).zip(o.chunks_exact_mut(d)) {
                self.norm_row(norm, xr, or);
                xr.copy_from_slice(or);
            }
        }
    }
}

impl Stack {
    /// The embeddings of `tokens` at their positions (scaled, plus position rows, normalized when
    /// the stack has an embedding norm) into `w.x`.
    pub fn embed(&self, cx: &Cx, groups: &[Group], tokens: &[u32], w: &mut Work) {
        let (c, kern) = (cx.c, cx.kern);
        let d = c.d_model;
        let table = cx.file.resolve(self.embed);
        let scale = if c.scale_embedding {
            (d as f32).sqrt()
        } else {
            1.0
        };
        let mut rows = 0;
        for g in groups {
            for t in 0..g.len {
                let r = g.row0 + t;
                let x = &mut w.x[r * d..(r + 1) * d];
                kern.embed(&table, tokens[r] as usize, x);
                if scale != 1.0 {
                    (kern.scale)(x, scale);
                }
                let pos = g.pos0 + t;
                match &self.pos {
                    Some(PosTable::Learned { table, offset, .. }) => {
                        let tmp = &mut w.a[r * d..(r + 1) * d];
                        cx.file.resolve(*table).dequantize_row(pos + offset, tmp);
                        (kern.add)(x, tmp);
                    }
                    Some(PosTable::Sinusoidal(t)) => (kern.add)(x, t.row(pos)),
                    None => {}
                }
            }
            rows = rows.max(g.row0 + g.len);
        }
        if let Some(norm) = &self.embed_norm {
            cx.norm_rows(norm, &mut w.x[..rows * d], &mut w.row);
        }
    }
}

/// Rotary position embedding of the q and k rows of every group (rows at their positions).
fn rotate(cx: &Cx, groups: &[Group], rope: (&[f32], &[f32]), w: &mut Work) {
    let c = cx.c;
    let (hd, heads, kv) = (c.head_dim(), c.heads, c.kv_heads());
    let (qd, kvd, half) = (heads * hd, kv * hd, hd / 2);
    for g in groups {
        for t in 0..g.len {
            let (r, pos) = (g.row0 + t, g.pos0 + t);
            let (cs, sn) = (
                &rope.0[pos * half..(pos + 1) * half],
                &rope.1[pos * half..(pos + 1) * half],
            );
            for h in 0..heads {
                let q = &mut w.q[r * qd + h * hd..r * qd + (h + 1) * hd];
                (cx.kern.rope)(q, cs, sn, c.rope_interleaved);
            }
            for h in 0..kv {
                let k = &mut w.k[r * kvd + h * hd..r * kvd + (h + 1) * hd];
                (cx.kern.rope)(k, cs, sn, c.rope_interleaved);
            }
        }
    }
}

/// One head's keys or values: rows of `width` floats, `stride` apart, from offset `from`.
fn head_rows(data: &[f32], from: usize, stride: usize, width: usize) -> Rows<'_> {
    Rows {
        data: &data[from..],
        stride,
        width,
    }
}

impl SelfAttention {
    /// `x += o(attention)` over `rows` rows: with `cache`, causal through the KV cache (each row's
    /// K/V stored at its position, then attending over the positions up to its own); without,
    /// bidirectional within each sequence. `rel`: T5's relative bias table of the stack
    /// (`[heads][2·span]`).
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        cx: &Cx,
        layer: usize,
        rows: usize,
        seqs: &Seqs,
        cache: Option<SelfCache>,
        rope: (&[f32], &[f32]),
        rel: Option<(&[f32], usize)>,
        w: &mut Work,
    ) {
        let c = cx.c;
        let (d, hd, heads, kv) = (c.d_model, c.head_dim(), c.heads, c.kv_heads());
        let (qd, kvd) = (heads * hd, kv * hd);
        let scale = c.attention_scale();
        let group_size = heads / kv;
        cx.pre_norm(&self.norm, &w.x[..rows * d], &mut w.a[..rows * d]);
        let a = &w.a[..rows * d];
        let Attention { q, k, v, o } = &self.proj;
        cx.linear(q, a, rows, &mut w.q, &mut w.acts);
        cx.linear(k, a, rows, &mut w.k, &mut w.acts);
        cx.linear(v, a, rows, &mut w.v, &mut w.acts);
        if let Some((qn, kn)) = &self.qk_norm {
            let eps = c.norm_eps as f32;
            // Heads are narrow (128 in Qwen3): a stack buffer, no allocation per step.
            let mut stack = [0f32; 512];
            let mut heap = Vec::new();
            let tmp = if hd <= stack.len() {
                &mut stack[..hd]
            } else {
                heap.resize(hd, 0.0);
                &mut heap[..]
            };
            for (x, weight) in [(&mut w.q[..rows * qd], qn), (&mut w.k[..rows * kvd], kn)] {
                for head in x.chunks_exact_mut(hd) {
                    (cx.kern.rms_norm)(head, weight, eps, tmp);
                    head.copy_from_slice(tmp);
                }
            }
        }
        if c.positions == Positions::Rotary {
            rotate(cx, seqs.groups, rope, w);
        }
        let span_bias = |h: usize, first: usize, n: usize| {
            rel.map(|(tab, span)| &tab[h * 2 * span + span - first..][..n])
        };
        // With a cache: each row's K/V stored at its position; the cache is where heads read.
        let (slots, len) = (seqs.slots, seqs.dec_len);
        let at = |slot: usize, h: usize| (((layer * slots + slot) * kv + h) * len) * hd;
        let cache = cache.map(|cache| {
            for g in seqs.groups {
                for h in 0..kv {
                    let base = at(g.slot, h);
                    for t in 0..g.len {
                        let (r, pos) = (g.row0 + t, g.pos0 + t);
                        let from = r * kvd + h * hd;
                        cache.k[base + pos * hd..base + (pos + 1) * hd]
                            .copy_from_slice(&w.k[from..from + hd]);
                        cache.v[base + pos * hd..base + (pos + 1) * hd]
                            .copy_from_slice(&w.v[from..from + hd]);
                    }
                }
            }
            (&*cache.k, &*cache.v)
        });
        for g in seqs.groups {
            for h in 0..heads {
                let kh = h / group_size;
                let (keys, values) = match cache {
                    Some((k, v)) => {
                        let base = at(g.slot, kh);
                        (head_rows(k, base, hd, hd), head_rows(v, base, hd, hd))
                    }
                    None => {
                        let from = g.row0 * kvd + kh * hd;
                        (
                            head_rows(&w.k, from, kvd, hd),
                            head_rows(&w.v, from, kvd, hd),
                        )
                    }
                };
                for t in 0..g.len {
                    // Causal through the cache: the positions up to the row's own; without a
                    // cache, the whole sequence.
                    let (first, n) = match cache {
                        Some(_) => (g.pos0 + t, g.pos0 + t + 1),
                        None => (t, g.len),
                    };
                    // A sliding window: the last `window` positions of the prefix only.
                    let skip = match (cache, c.window_of(layer)) {
                        (Some(_), w) if w > 0 => n.saturating_sub(w),
                        _ => 0,
                    };
                    let (keys, values) = (keys.skip(skip), values.skip(skip));
                    let n = n - skip;
                    let (q, scores, out) =
                        head(&w.q, &mut w.scores, &mut w.att, (g.row0 + t, h, qd, hd));
                    attend_one(
                        cx.kern,
                        q,
                        keys,
                        values,
                        n,
                        scale,
                        c.attn_softcap as f32,
                        span_bias(h, first, n),
                        None,
                        scores,
                        out,
                    );
                }
            }
        }
        cx.linear(o, &w.att[..rows * qd], rows, &mut w.a, &mut w.acts);
        cx.residual(
            &self.norm,
            self.post_norm.as_ref(),
            &mut w.x[..rows * d],
            &mut w.a[..rows * d],
            &mut w.row,
        );
    }
}

impl CrossAttention {
    /// `x += o(attention over the encoder output of each row's input)`; records the alignment
    /// when `cache.align` is given (decoding steps: one row per slot).
    pub fn forward(
        &self,
        cx: &Cx,
        layer: usize,
        rows: usize,
        seqs: &Seqs,
        cache: CrossCache,
        w: &mut Work,
    ) {
        let c = cx.c;
        let (d, hd, heads, kv) = (c.d_model, c.head_dim(), c.heads, c.kv_heads());
        let qd = heads * hd;
        let scale = c.attention_scale();
        let group_size = heads / kv;
        let CrossCache {
            k: cache_k,
            v: cache_v,
            max_batch,
            src,
            input_of,
            src_len,
            mut align,
        } = cache;
        cx.pre_norm(&self.norm, &w.x[..rows * d], &mut w.a[..rows * d]);
        cx.linear(&self.proj.q, &w.a[..rows * d], rows, &mut w.q, &mut w.acts);
        for g in seqs.groups {
            let input = input_of[g.slot];
            let n = src_len[input];
            if let Some(al) = align.as_deref_mut() {
                al[g.slot * src..(g.slot + 1) * src].fill(0.0);
            }
            for h in 0..heads {
                let base = (((layer * max_batch + input) * kv + h / group_size) * src) * hd;
                let (keys, values) = (
                    head_rows(cache_k, base, hd, hd),
                    head_rows(cache_v, base, hd, hd),
                );
                for t in 0..g.len {
                    let r = g.row0 + t;
                    let (q, scores, out) = head(&w.q, &mut w.scores, &mut w.att, (r, h, qd, hd));
                    attend_one(
                        cx.kern, q, keys, values, n, scale, 0.0, None, None, scores, out,
                    );
                    if let Some(al) = align.as_deref_mut()
                        && g.len == 1
                    {
                        let dst = &mut al[g.slot * src..g.slot * src + n];
                        (cx.kern.axpy)(1.0 / heads as f32, &w.scores[..n], dst);
                    }
                }
            }
        }
        cx.linear(
            &self.proj.o,
            &w.att[..rows * qd],
            rows,
            &mut w.a,
            &mut w.acts,
        );
        cx.residual(
            &self.norm,
            None,
            &mut w.x[..rows * d],
            &mut w.a[..rows * d],
            &mut w.row,
        );
    }
}

impl FeedForward {
    /// `x += down(act(up(x)))`, or gated: `x += down(act(gate(x)) ⊙ up(x))`.
    pub fn forward(&self, cx: &Cx, rows: usize, w: &mut Work) {
        let (d, f) = (cx.c.d_model, cx.c.ffn_dim);
        let act = cx.c.activation.into();
        cx.pre_norm(&self.norm, &w.x[..rows * d], &mut w.a[..rows * d]);
        let a = &w.a[..rows * d];
        cx.linear(&self.up, a, rows, &mut w.h1, &mut w.acts);
        let hidden = match &self.gate {
            Some(gate) => {
                cx.linear(gate, a, rows, &mut w.h2, &mut w.acts);
                cx.kern.gated(act, &mut w.h2[..rows * f], &w.h1[..rows * f]);
                &w.h2[..rows * f]
            }
            None => {
                cx.kern.activate(act, &mut w.h1[..rows * f]);
                &w.h1[..rows * f]
            }
        };
        cx.linear(&self.down, hidden, rows, &mut w.a, &mut w.acts);
        cx.residual(
            &self.norm,
            self.post_norm.as_ref(),
            &mut w.x[..rows * d],
            &mut w.a[..rows * d],
            &mut w.row,
        );
    }
}
