//! Scaled dot-product attention for one head, over keys and values stored as rows (a KV cache
//! `[len, head_dim]` per head, or a projection of the encoder output), built from the table's
//! kernels: `out = softmax(scale · q·Kᵀ + bias, masked) · V`.

use super::Kernels;

/// Rows of a matrix stored with a stride (a head's slice of a `[len, heads · head_dim]` buffer,
/// or a contiguous `[len, head_dim]` cache).
#[derive(Clone, Copy, Debug)]
pub struct Rows<'a> {
    pub data: &'a [f32],
    /// Distance between consecutive rows, in elements.
    pub stride: usize,
    /// Row width (the head dimension).
    pub width: usize,
}

impl<'a> Rows<'a> {
    pub fn row(&self, i: usize) -> &'a [f32] {
        &self.data[i * self.stride..i * self.stride + self.width]
    }

    /// These rows without the first `n`.
    pub fn skip(self, n: usize) -> Rows<'a> {
        Rows {
            data: &self.data[n * self.stride..],
            ..self
        }
    }
}

/// Which keys a query may see.
#[derive(Clone, Copy, Debug, Default)]
pub struct Mask<'a> {
    /// Causal: query `i` of the block sees keys `0..=causal_offset + i` (the offset is the number
    /// of keys already in the cache before the block). `None`: every key.
    pub causal_offset: Option<usize>,
    /// Key padding: key `j` is visible only where `keys_valid[j]` is true.
    pub keys_valid: Option<&'a [bool]>,
}

/// One query `q` (`[head_dim]`) over the first `n` keys and values. `scores` is scratch of at least
/// `n`; the scaled scores are soft-capped when `softcap` > 0 (`cap·tanh(s / cap)`, Gemma 2), then
/// `bias` (length ≥ n) is added (T5 relative positions, ALiBi).
/// A query that sees no key at all gets a zero output.
#[allow(clippy::too_many_arguments)]
pub fn attend_one(
    kern: &Kernels,
    q: &[f32],
    keys: Rows,
    values: Rows,
    n: usize,
    scale: f32,
    softcap: f32,
    bias: Option<&[f32]>,
    keys_valid: Option<&[bool]>,
    scores: &mut [f32],
    out: &mut [f32],
) {
    let scores = &mut scores[..n];
    if n == 0 {
        out.fill(0.0);
        return;
    }
    fn span<'a>(r: Rows<'a>, n: usize) -> &'a [f32] {
        &r.data[..(n - 1) * r.stride + r.width]
    }
    assert!(q.len() == keys.width && out.len() == values.width);
    (kern.dots)(q, span(keys, n), keys.stride, scale, scores);
    if softcap > 0.0 {
        for s in scores.iter_mut() {
            *s = softcap * (*s / softcap).tanh();
        }
    }
    if let Some(b) = bias {
        (kern.add)(scores, &b[..n]);
    }
    if let Some(valid) = keys_valid {
        for (s, &ok) in scores.iter_mut().zip(valid) {
            if !ok {
                *s = f32::NEG_INFINITY;
            }
        }
    }
    (kern.softmax)(scores);
    (kern.mix)(scores, span(values, n), values.stride, out);
}

/// A block of queries (`q` rows, e.g. a prompt being prefilled or an encoder pass) over `n` keys.
/// `bias`, when given, is `[q_rows, n]` row-major. `out` has the same row layout as `q`.
#[allow(clippy::too_many_arguments)]
pub fn attend_block(
    kern: &Kernels,
    q: Rows,
    q_rows: usize,
    keys: Rows,
    values: Rows,
    n: usize,
    scale: f32,
    bias: Option<&[f32]>,
    mask: Mask,
    scores: &mut [f32],
    out: &mut [f32],
    out_stride: usize,
) {
    for i in 0..q_rows {
        let visible = match mask.causal_offset {
            Some(off) => (off + i + 1).min(n),
            None => n,
        };
        let o = &mut out[i * out_stride..i * out_stride + q.width];
        let b = bias.map(|b| &b[i * n..i * n + visible]);
        attend_one(
            kern,
            q.row(i),
            keys,
            values,
            visible,
            scale,
            0.0,
            b,
            mask.keys_valid,
            scores,
            o,
        );
    }
}
