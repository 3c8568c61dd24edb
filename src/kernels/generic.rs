//! Portable lane-blocked kernels. Written so that the compiler vectorizes them (independent
//! partial sums in `LANES` lanes, branch-free polynomial `exp`), they are instantiated inside each
//! ISA module with that ISA's target features by [`instantiate!`], which is how the element-wise
//! kernels get AVX2 / AVX-512 / NEON code without a hand-written copy per ISA.

use half::{bf16, f16};

use super::{Out, QActs};
use crate::tensor::{Q4_GROUP, Q4_LEVELS};

/// Independent accumulators per reduction: 16 f32 = one AVX-512 register, two AVX2 or four NEON
/// registers, enough to hide FMA latency.
const LANES: usize = 16;

#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; LANES];
    let mut ca = a.chunks_exact(LANES);
    let mut cb = b.chunks_exact(LANES);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    let mut tail = 0f32;
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        tail += x * y;
    }
    hsum(&acc) + tail
}

#[inline(always)]
fn hsum(acc: &[f32; LANES]) -> f32 {
    // Pairwise, so the result does not depend on the vector width used.
    let mut v = *acc;
    let mut w = LANES;
    while w > 1 {
        w /= 2;
        for l in 0..w {
            v[l] += v[l + w];
        }
    }
    v[0]
}

#[inline(always)]
pub fn sum(x: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let mut c = x.chunks_exact(LANES);
    for v in &mut c {
        for l in 0..LANES {
            acc[l] += v[l];
        }
    }
    hsum(&acc) + c.remainder().iter().sum::<f32>()
}

#[inline(always)]
pub fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    for (o, v) in y.iter_mut().zip(x) {
        *o += a * v;
    }
}

/// `scalar::dots` with the lane-blocked dot, every key in one call.
#[inline(always)]
pub fn dots(q: &[f32], rows: &[f32], stride: usize, scale: f32, out: &mut [f32]) {
    let d = q.len();
    for (j, o) in out.iter_mut().enumerate() {
        *o = dot(q, &rows[j * stride..j * stride + d]) * scale;
    }
}

/// `scalar::mix`, bit for bit (the same `axpy` per row, inlined).
#[inline(always)]
pub fn mix(p: &[f32], rows: &[f32], stride: usize, out: &mut [f32]) {
    out.fill(0.0);
    let d = out.len();
    for (j, &pj) in p.iter().enumerate() {
        if pj != 0.0 {
            axpy(pj, &rows[j * stride..j * stride + d], out);
        }
    }
}

#[inline(always)]
pub fn add(y: &mut [f32], x: &[f32]) {
    for (o, v) in y.iter_mut().zip(x) {
        *o += v;
    }
}

#[inline(always)]
pub fn mul(y: &mut [f32], x: &[f32]) {
    for (o, v) in y.iter_mut().zip(x) {
        *o *= v;
    }
}

/// The scalar table's `mul` (there is nothing simpler to write as a reference).
pub fn scalar_mul(y: &mut [f32], x: &[f32]) {
    mul(y, x)
}

#[inline(always)]
pub fn scale(x: &mut [f32], a: f32) {
    for v in x {
        *v *= a;
    }
}

#[inline(always)]
pub fn layer_norm(x: &[f32], gamma: &[f32], beta: Option<&[f32]>, eps: f32, out: &mut [f32]) {
    let n = x.len() as f32;
    let mean = sum(x) / n;
    let mut acc = [0f32; LANES];
    let mut c = x.chunks_exact(LANES);
    for v in &mut c {
        for l in 0..LANES {
            let d = v[l] - mean;
            acc[l] += d * d;
        }
    }
    let tail: f32 = c.remainder().iter().map(|v| (v - mean) * (v - mean)).sum();
    let inv = 1.0 / ((hsum(&acc) + tail) / n + eps).sqrt();
    match beta {
        Some(b) => {
            for (i, o) in out.iter_mut().enumerate() {
                *o = (x[i] - mean) * inv * gamma[i] + b[i];
            }
        }
        None => {
            for (i, o) in out.iter_mut().enumerate() {
                *o = (x[i] - mean) * inv * gamma[i];
            }
        }
    }
}

#[inline(always)]
pub fn rms_norm(x: &[f32], gamma: &[f32], eps: f32, out: &mut [f32]) {
    let inv = 1.0 / (dot(x, x) / x.len() as f32 + eps).sqrt();
    for ((o, v), g) in out.iter_mut().zip(x).zip(gamma) {
        *o = v * inv * g;
    }
}

/// `x` rounded half to even, as a float and as an integer, for |x| < 2^22: adding 1.5 · 2^23
/// leaves the integer in the low mantissa bits. The same value as `round_ties_even`, and an
/// integer without `as i32`, whose saturating semantics (NaN → 0) LLVM turns into one scalar
/// conversion per lane inside otherwise vectorized loops.
#[inline(always)]
fn round_half_even(x: f32) -> (f32, i32) {
    const ROUNDER: f32 = 12_582_912.0;
    let t = x + ROUNDER;
    (
        t - ROUNDER,
        (t.to_bits() as i32).wrapping_sub(ROUNDER.to_bits() as i32),
    )
}

/// e^x for f32, branch-free: x = n·ln2 + r with |r| ≤ ln2/2, e^r by a degree-6 polynomial,
/// 2^n through the exponent bits. Relative error ≈ 2e-7; exactly 0 below −87.3 (so −∞ → 0).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let xc = x.clamp(-87.3, 88.7);
    let (n, ni) = round_half_even(xc * LOG2E);
    let r = xc - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    let pow2 = f32::from_bits((ni.wrapping_add(127) << 23) as u32);
    if x < -87.3 { 0.0 } else { p * pow2 }
}

#[inline(always)]
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    if max == f32::NEG_INFINITY {
        x.fill(0.0);
        return;
    }
    for v in x.iter_mut() {
        *v = exp(*v - max);
    }
    let inv = 1.0 / sum(x);
    scale(x, inv);
}

/// erf by Abramowitz & Stegun 7.1.26 (absolute error ≤ 1.5e-7), branch-free.
#[inline(always)]
fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152_1 + t * 1.061_405_4))));
    let y = 1.0 - poly * exp(-a * a);
    y.copysign(x)
}

#[inline(always)]
pub fn gelu(x: &mut [f32]) {
    for v in x {
        *v = 0.5 * *v * (1.0 + erf(*v * std::f32::consts::FRAC_1_SQRT_2));
    }
}

#[inline(always)]
pub fn gelu_tanh(x: &mut [f32]) {
    const C: f32 = 0.797_884_6;
    for v in x {
        let u = C * (*v + 0.044715 * *v * *v * *v);
        // tanh u = 1 − 2 / (e^{2u} + 1)
        let t = 1.0 - 2.0 / (exp(2.0 * u) + 1.0);
        *v = 0.5 * *v * (1.0 + t);
    }
}

#[inline(always)]
pub fn silu(x: &mut [f32]) {
    for v in x {
        *v /= 1.0 + exp(-*v);
    }
}

/// See `scalar::lstm_cell`; σ and tanh through the branch-free `exp`.
#[inline(always)]
pub fn lstm_cell(gates: &[f32], c: &mut [f32], h: &mut [f32]) {
    let n = c.len();
    let (gi, rest) = gates[..4 * n].split_at(n);
    let (gf, rest) = rest.split_at(n);
    let (gg, go) = rest.split_at(n);
    let sig = |x: f32| 1.0 / (1.0 + exp(-x));
    // tanh x = 2σ(2x) − 1
    let tanh = |x: f32| 2.0 / (1.0 + exp(-2.0 * x)) - 1.0;
    for j in 0..n {
        let cj = sig(gf[j]) * c[j] + sig(gi[j]) * tanh(gg[j]);
        c[j] = cj;
        h[j] = sig(go[j]) * tanh(cj);
    }
}

#[inline(always)]
pub fn relu(x: &mut [f32]) {
    for v in x {
        *v = v.max(0.0);
    }
}

#[inline(always)]
pub fn rope(x: &mut [f32], cos: &[f32], sin: &[f32], interleaved: bool) {
    let half = cos.len();
    if interleaved {
        for ((p, c), s) in x.chunks_exact_mut(2).zip(cos).zip(sin) {
            let (x0, x1) = (p[0], p[1]);
            p[0] = x0 * c - x1 * s;
            p[1] = x0 * s + x1 * c;
        }
    } else {
        let (lo, hi) = x.split_at_mut(half);
        for i in 0..half {
            let (x0, x1) = (lo[i], hi[i]);
            lo[i] = x0 * cos[i] - x1 * sin[i];
            hi[i] = x0 * sin[i] + x1 * cos[i];
        }
    }
}

#[inline(always)]
pub fn argmax(x: &[f32]) -> usize {
    // Same result as `scalar::argmax`: the largest non-NaN value found lane-wise (`f32::max`
    // ignores NaN), then its first index; an all-NaN row gives 0, as there.
    let max = max_of(x);
    x.iter().position(|&v| v == max).unwrap_or(0)
}

/// The largest non-NaN value (−∞ for an empty or all-NaN row).
#[inline(always)]
fn max_of(x: &[f32]) -> f32 {
    let mut m = [f32::NEG_INFINITY; LANES];
    let mut c = x.chunks_exact(LANES);
    for v in &mut c {
        for l in 0..LANES {
            m[l] = m[l].max(v[l]);
        }
    }
    c.remainder().iter().fold(
        m.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)),
        |a, &v| a.max(v),
    )
}

/// `scalar::log_sum_exp` with the polynomial `exp` and f32 lane sums (relative error ~1e-6).
#[inline(always)]
pub fn log_sum_exp(x: &[f32]) -> f32 {
    let max = max_of(x);
    if max.is_infinite() {
        return max;
    }
    let mut acc = [0f32; LANES];
    let mut c = x.chunks_exact(LANES);
    for v in &mut c {
        for l in 0..LANES {
            acc[l] += exp(v[l] - max);
        }
    }
    let tail: f32 = c.remainder().iter().map(|&v| exp(v - max)).sum();
    max + (hsum(&acc) + tail).ln()
}

/// Same arithmetic as `scalar::quantize_rows`, so the results are bit-identical.
#[inline(always)]
pub fn quantize_rows(x: &[f32], k: usize, q: &mut [i8], scales: &mut [f32]) {
    for ((row, qrow), s) in x
        .chunks_exact(k)
        .zip(q.chunks_exact_mut(k))
        .zip(scales.iter_mut())
    {
        let mut m = [0f32; LANES];
        let mut c = row.chunks_exact(LANES);
        for v in &mut c {
            for l in 0..LANES {
                m[l] = m[l].max(v[l].abs());
            }
        }
        let amax = c
            .remainder()
            .iter()
            .fold(m.iter().fold(0f32, |a, &b| a.max(b)), |a, v| a.max(v.abs()));
        if amax == 0.0 || !amax.is_finite() {
            *s = 0.0;
            qrow.fill(0);
            continue;
        }
        *s = amax / 127.0;
        let inv = 127.0 / amax;
        // Clamping before rounding is the same as after (±127 are integers); NaN becomes 0, as
        // the saturating cast of the reference makes it.
        for (o, &v) in qrow.iter_mut().zip(row) {
            let c = (v * inv).clamp(-127.0, 127.0);
            let c = if c.is_nan() { 0.0 } else { c };
            *o = round_half_even(c).1 as i8;
        }
    }
}

#[inline(always)]
pub fn gemm_f32(x: &[f32], k: usize, w: &[f32], y: &mut Out) {
    for i in 0..y.rows() {
        let xr = &x[i * k..(i + 1) * k];
        for (j, o) in y.row(i).iter_mut().enumerate() {
            *o = dot(xr, &w[j * k..(j + 1) * k]);
        }
    }
}

#[inline(always)]
fn dot_widen<W: Copy>(x: &[f32], w: &[W], widen: impl Fn(W) -> f32) -> f32 {
    let mut acc = [0f32; LANES];
    let mut cx = x.chunks_exact(LANES);
    let mut cw = w.chunks_exact(LANES);
    for (a, b) in (&mut cx).zip(&mut cw) {
        for l in 0..LANES {
            acc[l] += a[l] * widen(b[l]);
        }
    }
    let tail: f32 = cx
        .remainder()
        .iter()
        .zip(cw.remainder())
        .map(|(a, &b)| a * widen(b))
        .sum();
    hsum(&acc) + tail
}

#[inline(always)]
pub fn gemm_f16(x: &[f32], k: usize, w: &[f16], y: &mut Out) {
    for i in 0..y.rows() {
        let xr = &x[i * k..(i + 1) * k];
        for (j, o) in y.row(i).iter_mut().enumerate() {
            *o = dot_widen(xr, &w[j * k..(j + 1) * k], f16::to_f32);
        }
    }
}

#[inline(always)]
pub fn gemm_bf16(x: &[f32], k: usize, w: &[bf16], y: &mut Out) {
    for i in 0..y.rows() {
        let xr = &x[i * k..(i + 1) * k];
        for (j, o) in y.row(i).iter_mut().enumerate() {
            // bf16 → f32 is a 16-bit shift: exact, and vectorizes.
            *o = dot_widen(xr, &w[j * k..(j + 1) * k], |b: bf16| {
                f32::from_bits((b.to_bits() as u32) << 16)
            });
        }
    }
}

#[inline(always)]
fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    let mut acc = [0i32; LANES];
    let mut ca = a.chunks_exact(LANES);
    let mut cb = b.chunks_exact(LANES);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..LANES {
            acc[l] += x[l] as i32 * y[l] as i32;
        }
    }
    let tail: i32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(&x, &y)| x as i32 * y as i32)
        .sum();
    acc.iter().sum::<i32>() + tail
}

#[inline(always)]
#[allow(dead_code)] // every x86 level has a hand-written int8 kernel
pub fn gemm_q8(x: &QActs, w: &[i8], ws: &[f32], y: &mut Out) {
    let k = x.k;
    for i in 0..y.rows() {
        let xr = &x.q[i * k..(i + 1) * k];
        let xs = x.scales[i];
        for (j, o) in y.row(i).iter_mut().enumerate() {
            *o = dot_i8(xr, &w[j * k..(j + 1) * k]) as f32 * (xs * ws[j]);
        }
    }
}

#[inline(always)]
#[allow(dead_code)] // every x86 level has a hand-written int4 kernel
pub fn gemm_q4(x: &QActs, codes: &[u8], ws: &[f16], y: &mut Out) {
    let k = x.k;
    let groups = k / Q4_GROUP;
    let mut wq = [0i8; Q4_GROUP];
    for i in 0..y.rows() {
        let xr = &x.q[i * k..(i + 1) * k];
        let xs = x.scales[i];
        for (j, o) in y.row(i).iter_mut().enumerate() {
            let row = &codes[j * k / 2..(j + 1) * k / 2];
            let mut total = 0f32;
            for g in 0..groups {
                for (t, &b) in row[g * Q4_GROUP / 2..(g + 1) * Q4_GROUP / 2]
                    .iter()
                    .enumerate()
                {
                    wq[2 * t] = Q4_LEVELS[(b & 15) as usize];
                    wq[2 * t + 1] = Q4_LEVELS[(b >> 4) as usize];
                }
                let acc = dot_i8(&xr[g * Q4_GROUP..(g + 1) * Q4_GROUP], &wq);
                total += acc as f32 * ws[j * groups + g].to_f32();
            }
            *o = total * xs;
        }
    }
}

/// Defines, in the invoking module, a safe wrapper per generic kernel compiled with the target
/// features `$features`. The wrappers are sound only on a CPU that has those features, so the
/// invoking module must keep them private and hand them out only in a table built after the
/// run-time check.
macro_rules! instantiate {
    ($features:literal: $($name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)?;)*) => {
        $(
            #[allow(dead_code)]
            pub(super) fn $name($($arg: $ty),*) $(-> $ret)? {
                #[target_feature(enable = $features)]
                unsafe fn inner($($arg: $ty),*) $(-> $ret)? {
                    $crate::kernels::generic::$name($($arg),*)
                }
                // SAFETY: only reachable through a table built after checking `$features`.
                unsafe { inner($($arg),*) }
            }
        )*
    };
}
pub(crate) use instantiate;

/// Instantiates every generic kernel for one ISA (see [`instantiate!`]). Used where an ISA has no
/// hand-written kernels yet (aarch64 builds); x86 modules list what they instantiate.
#[allow(unused_macros)]
macro_rules! instantiate_all {
    ($features:literal) => {
        $crate::kernels::generic::instantiate! { $features:
            quantize_rows(x: &[f32], k: usize, q: &mut [i8], s: &mut [f32]);
            gemm_f32(x: &[f32], k: usize, w: &[f32], y: &mut Out);
            gemm_f16(x: &[f32], k: usize, w: &[half::f16], y: &mut Out);
            gemm_bf16(x: &[f32], k: usize, w: &[half::bf16], y: &mut Out);
            gemm_q8(x: &QActs, w: &[i8], ws: &[f32], y: &mut Out);
            gemm_q4(x: &QActs, codes: &[u8], ws: &[half::f16], y: &mut Out);
            dot(a: &[f32], b: &[f32]) -> f32;
            axpy(a: f32, x: &[f32], y: &mut [f32]);
            add(y: &mut [f32], x: &[f32]);
            mul(y: &mut [f32], x: &[f32]);
            scale(x: &mut [f32], a: f32);
            layer_norm(x: &[f32], g: &[f32], b: Option<&[f32]>, eps: f32, out: &mut [f32]);
            rms_norm(x: &[f32], g: &[f32], eps: f32, out: &mut [f32]);
            softmax(x: &mut [f32]);
            gelu(x: &mut [f32]);
            gelu_tanh(x: &mut [f32]);
            silu(x: &mut [f32]);
            relu(x: &mut [f32]);
            lstm_cell(gates: &[f32], c: &mut [f32], h: &mut [f32]);
            rope(x: &mut [f32], cos: &[f32], sin: &[f32], interleaved: bool);
            argmax(x: &[f32]) -> usize;
            log_sum_exp(x: &[f32]) -> f32;
            dots(q: &[f32], rows: &[f32], stride: usize, scale: f32, out: &mut [f32]);
            mix(p: &[f32], rows: &[f32], stride: usize, out: &mut [f32]);
        }
    };
}
#[allow(unused_imports)]
pub(crate) use instantiate_all;
