//! The scalar kernels: plain loops that define what every kernel computes. Each ISA's version is
//! tested against these (int8 products bit for bit, float kernels within named tolerances).
//!
//! Matrix products follow one convention: `Y[m, n] = X[m, k] · W[n, k]ᵀ`, where `W` is a weight
//! matrix stored row-major as `[out_features, in_features]` (the `.quill` layout), `X` holds `m`
//! activation rows and `Y` is written through an [`Out`] view (row stride ≥ n).

use half::{bf16, f16};

use super::{Out, QActs};
use crate::tensor::{Q4_GROUP, Q4_LEVELS};

// ---- activation quantization (int8 products) ----

/// Quantizes each of the `m` rows of `x` (length `k`) symmetrically to int8:
/// `s = max|x| / 127`, `q = round_half_even(x · (127 / max|x|))` clamped to [-127, 127].
/// An all-zero row gets `s = 0`, `q = 0`.
pub fn quantize_rows(x: &[f32], k: usize, q: &mut [i8], scales: &mut [f32]) {
    for ((row, qrow), s) in x
        .chunks_exact(k)
        .zip(q.chunks_exact_mut(k))
        .zip(scales.iter_mut())
    {
        let amax = row.iter().fold(0f32, |m, v| m.max(v.abs()));
        if amax == 0.0 || !amax.is_finite() {
            *s = 0.0;
            qrow.fill(0);
            continue;
        }
        *s = amax / 127.0;
        let inv = 127.0 / amax;
        for (o, &v) in qrow.iter_mut().zip(row) {
            *o = (v * inv).round_ties_even().clamp(-127.0, 127.0) as i8;
        }
    }
}

// ---- matrix products ----

/// f32 weights.
pub fn gemm_f32(x: &[f32], k: usize, w: &[f32], y: &mut Out) {
    for i in 0..y.rows() {
        let xr = &x[i * k..(i + 1) * k];
        for (j, o) in y.row(i).iter_mut().enumerate() {
            *o = dot(xr, &w[j * k..(j + 1) * k]);
        }
    }
}

/// f16 weights (IEEE binary16), widened to f32.
pub fn gemm_f16(x: &[f32], k: usize, w: &[f16], y: &mut Out) {
    for i in 0..y.rows() {
        let xr = &x[i * k..(i + 1) * k];
        for (j, o) in y.row(i).iter_mut().enumerate() {
            let wr = &w[j * k..(j + 1) * k];
            *o = xr.iter().zip(wr).map(|(a, b)| a * b.to_f32()).sum();
        }
    }
}

/// bf16 weights, widened to f32 (exact).
pub fn gemm_bf16(x: &[f32], k: usize, w: &[bf16], y: &mut Out) {
    for i in 0..y.rows() {
        let xr = &x[i * k..(i + 1) * k];
        for (j, o) in y.row(i).iter_mut().enumerate() {
            let wr = &w[j * k..(j + 1) * k];
            *o = xr.iter().zip(wr).map(|(a, b)| a * b.to_f32()).sum();
        }
    }
}

/// int8 weights with per-row scales, int8 activations: the dot product is exact in i32, then
/// `y = acc · (x_scale · w_scale)`. Every ISA must return the same bits.
pub fn gemm_q8(x: &QActs, w: &[i8], ws: &[f32], y: &mut Out) {
    let k = x.k;
    for i in 0..y.rows() {
        let xr = &x.q[i * k..(i + 1) * k];
        let xs = x.scales[i];
        for (j, o) in y.row(i).iter_mut().enumerate() {
            let acc: i32 = xr
                .iter()
                .zip(&w[j * k..(j + 1) * k])
                .map(|(&a, &b)| a as i32 * b as i32)
                .sum();
            *o = acc as f32 * (xs * ws[j]);
        }
    }
}

/// int4 codes (two per byte, low nibble first) into `Q4_LEVELS`, one f16 scale per group of 32,
/// int8 activations: each group's dot product is exact in i32, scaled by the group's scale and
/// summed in f32 group by group, then multiplied by the row's activation scale.
pub fn gemm_q4(x: &QActs, codes: &[u8], ws: &[f16], y: &mut Out) {
    let k = x.k;
    let groups = k / Q4_GROUP;
    for i in 0..y.rows() {
        let xr = &x.q[i * k..(i + 1) * k];
        let xs = x.scales[i];
        for (j, o) in y.row(i).iter_mut().enumerate() {
            let row = &codes[j * k / 2..(j + 1) * k / 2];
            let mut sum = 0f32;
            for g in 0..groups {
                let mut acc = 0i32;
                for t in 0..Q4_GROUP {
                    let c = g * Q4_GROUP + t;
                    let byte = row[c / 2];
                    let code = if c.is_multiple_of(2) {
                        byte & 15
                    } else {
                        byte >> 4
                    };
                    acc += xr[c] as i32 * Q4_LEVELS[code as usize] as i32;
                }
                sum += acc as f32 * ws[j * groups + g].to_f32();
            }
            *o = sum * xs;
        }
    }
}

// ---- vectors ----

pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `y += a · x`.
pub fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    for (o, v) in y.iter_mut().zip(x) {
        *o += a * v;
    }
}

/// Attention scores: `out[j] = scale · q·row_j` for `j < out.len()`, row `j` being
/// `rows[j · stride..][..q.len()]`.
pub fn dots(q: &[f32], rows: &[f32], stride: usize, scale: f32, out: &mut [f32]) {
    for (j, o) in out.iter_mut().enumerate() {
        *o = dot(q, &rows[j * stride..j * stride + q.len()]) * scale;
    }
}

/// Attention mix: `out = Σ_j p[j] · row_j` (row `j` = `rows[j · stride..][..out.len()]`), rows
/// of weight 0 skipped.
pub fn mix(p: &[f32], rows: &[f32], stride: usize, out: &mut [f32]) {
    out.fill(0.0);
    let d = out.len();
    for (j, &pj) in p.iter().enumerate() {
        if pj != 0.0 {
            axpy(pj, &rows[j * stride..j * stride + d], out);
        }
    }
}

/// `y += x` (residual connections).
pub fn add(y: &mut [f32], x: &[f32]) {
    for (o, v) in y.iter_mut().zip(x) {
        *o += v;
    }
}

/// `x *= a`.
pub fn scale(x: &mut [f32], a: f32) {
    for v in x {
        *v *= a;
    }
}

/// LayerNorm of one row: `out = (x − mean) / sqrt(var + eps) · gamma + beta` (biased variance).
pub fn layer_norm(x: &[f32], gamma: &[f32], beta: Option<&[f32]>, eps: f32, out: &mut [f32]) {
    let n = x.len() as f32;
    let mean = x.iter().sum::<f32>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    let inv = 1.0 / (var + eps).sqrt();
    for (i, o) in out.iter_mut().enumerate() {
        *o = (x[i] - mean) * inv * gamma[i] + beta.map_or(0.0, |b| b[i]);
    }
}

/// RMSNorm of one row: `out = x / sqrt(mean(x²) + eps) · gamma`.
pub fn rms_norm(x: &[f32], gamma: &[f32], eps: f32, out: &mut [f32]) {
    let ms = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    let inv = 1.0 / (ms + eps).sqrt();
    for (i, o) in out.iter_mut().enumerate() {
        *o = x[i] * inv * gamma[i];
    }
}

/// Numerically stable softmax in place. Entries equal to −∞ are masked: they get probability 0.
/// A row that is entirely masked becomes all zeros.
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    if max == f32::NEG_INFINITY {
        x.fill(0.0);
        return;
    }
    let mut sum = 0.0;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    let inv = 1.0 / sum;
    for v in x {
        *v *= inv;
    }
}

/// GELU, exact form: `x · Φ(x) = 0.5 x (1 + erf(x / √2))`.
pub fn gelu(x: &mut [f32]) {
    for v in x {
        *v = 0.5 * *v * (1.0 + erf(*v as f64 * std::f64::consts::FRAC_1_SQRT_2) as f32);
    }
}

/// GELU, tanh approximation: `0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³)))`.
pub fn gelu_tanh(x: &mut [f32]) {
    const C: f32 = 0.797_884_6; // sqrt(2 / pi)
    for v in x {
        *v = 0.5 * *v * (1.0 + (C * (*v + 0.044715 * *v * *v * *v)).tanh());
    }
}

/// SiLU (swish): `x · sigmoid(x)`.
pub fn silu(x: &mut [f32]) {
    for v in x {
        *v /= 1.0 + (-*v).exp();
    }
}

pub fn relu(x: &mut [f32]) {
    for v in x {
        *v = v.max(0.0);
    }
}

/// Gated feed-forward: `gate = act(gate) ⊙ up` (SwiGLU with `silu`, GEGLU with `gelu`).
pub fn gated(act: fn(&mut [f32]), gate: &mut [f32], up: &[f32]) {
    act(gate);
    for (g, u) in gate.iter_mut().zip(up) {
        *g *= u;
    }
}

/// One LSTM cell update from its pre-activation gates `[i | f | g | o]` (4·n values, PyTorch's
/// order): `c = σ(f)·c + σ(i)·tanh(g)`, `h = σ(o)·tanh(c)`, for the `n` units of `c` and `h`.
pub fn lstm_cell(gates: &[f32], c: &mut [f32], h: &mut [f32]) {
    let n = c.len();
    let sig = |x: f32| 1.0 / (1.0 + (-x).exp());
    for j in 0..n {
        let (i, f, g, o) = (gates[j], gates[n + j], gates[2 * n + j], gates[3 * n + j]);
        c[j] = sig(f) * c[j] + sig(i) * g.tanh();
        h[j] = sig(o) * c[j].tanh();
    }
}

/// Rotary position embedding of one head `x` (length `2 · cos.len()`), with `cos[i]`, `sin[i]`
/// the rotation of pair `i` at this position. `interleaved`: pairs are `(x[2i], x[2i+1])`
/// (GPT-J); otherwise `(x[i], x[i + d/2])` (Llama's rotate-half).
pub fn rope(x: &mut [f32], cos: &[f32], sin: &[f32], interleaved: bool) {
    let half = cos.len();
    for i in 0..half {
        let (a, b) = if interleaved {
            (2 * i, 2 * i + 1)
        } else {
            (i, i + half)
        };
        let (x0, x1) = (x[a], x[b]);
        x[a] = x0 * cos[i] - x1 * sin[i];
        x[b] = x0 * sin[i] + x1 * cos[i];
    }
}

/// `ln Σ exp(x)`, stable (the maximum is taken out first, the sum is in f64); −∞ for an empty or
/// entirely −∞ row. The normalizer of a log-softmax: `log_softmax(x)_i = x_i − log_sum_exp(x)`.
pub fn log_sum_exp(x: &[f32]) -> f32 {
    let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    if max.is_infinite() {
        return max;
    }
    let sum: f64 = x.iter().map(|&v| ((v - max) as f64).exp()).sum();
    max + sum.ln() as f32
}

/// Index of the largest value (the first one on ties; NaN is never chosen unless all are NaN).
pub fn argmax(x: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate() {
        if v > x[best] || x[best].is_nan() && !v.is_nan() {
            best = i;
        }
    }
    best
}

/// erf to double precision (Abramowitz & Stegun 7.1.26 is not enough for a reference; this is
/// the series / continued fraction pair, accurate to ~1e-15).
pub fn erf(x: f64) -> f64 {
    let ax = x.abs();
    let r = if ax < 2.5 {
        // Maclaurin series: erf x = 2/√π Σ (−1)^n x^(2n+1) / (n! (2n+1)).
        let mut term = ax;
        let mut sum = ax;
        let x2 = ax * ax;
        let mut n = 0.0;
        while term.abs() > 1e-17 * sum.abs() {
            n += 1.0;
            term *= -x2 / n;
            sum += term / (2.0 * n + 1.0);
        }
        sum * std::f64::consts::FRAC_2_SQRT_PI
    } else {
        // Continued fraction for erfc, evaluated bottom-up.
        let mut f = 0.0;
        for n in (1..60).rev() {
            f = n as f64 / 2.0 / (ax + f);
        }
        1.0 - (-ax * ax).exp() / (ax + f) / std::f64::consts::PI.sqrt()
    };
    r.copysign(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_known_values() {
        for (x, e) in [
            (0.0, 0.0),
            (0.5, 0.520_499_877_813_046_5),
            (1.0, 0.842_700_792_949_714_9),
            (2.0, 0.995_322_265_018_952_7),
            (3.0, 0.999_977_909_503_001_4),
            (-1.0, -0.842_700_792_949_714_9),
        ] {
            assert!((erf(x) - e).abs() < 1e-14, "erf({x}) = {} != {e}", erf(x));
        }
    }

    #[test]
    fn softmax_masks_and_sums_to_one() {
        let mut x = [1.0, f32::NEG_INFINITY, 3.0, 1000.0];
        softmax(&mut x);
        assert_eq!(x[1], 0.0);
        assert!((x.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        let mut all = [f32::NEG_INFINITY; 3];
        softmax(&mut all);
        assert_eq!(all, [0.0; 3]);
    }

    #[test]
    fn quantize_rounds_half_to_even() {
        let x = [127.0, 0.5, 1.5, -2.5, 0.0];
        let (mut q, mut s) = ([0i8; 5], [0f32; 1]);
        quantize_rows(&x, 5, &mut q, &mut s);
        assert_eq!(s[0], 1.0);
        assert_eq!(q, [127, 0, 2, -2, 0]);
    }
}
