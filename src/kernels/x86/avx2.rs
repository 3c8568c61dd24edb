//! AVX2 + FMA + F16C: hand-written int8 and int4 products and a packed f32 GEMM; the other
//! kernels are the generic ones compiled for AVX2. Integer products sign-extend to i16 and use
//! `vpmaddwd`, which is exact for every input (unlike `vpmaddubsw`, which saturates).

use std::arch::x86_64::*;
use std::cell::RefCell;

use half::f16;

use crate::kernels::generic;
use crate::kernels::{Out, QActs};
use crate::tensor::{Q4_GROUP, Q4_LEVELS};

generic::instantiate! { "avx2,fma,f16c":
    quantize_rows(x: &[f32], k: usize, q: &mut [i8], s: &mut [f32]);
    gemm_f16(x: &[f32], k: usize, w: &[half::f16], y: &mut Out);
    gemm_bf16(x: &[f32], k: usize, w: &[half::bf16], y: &mut Out);
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
}

// ---------------------------------------------------------------- int8 × int8

thread_local! {
    /// The activation rows sign-extended to i16 (`[m][k16]`, `k16` = k rounded down to 16),
    /// allocated once per thread and reused.
    static X16: RefCell<Vec<i16>> = const { RefCell::new(Vec::new()) };
}

/// How far ahead (bytes) each weight row is prefetched while it streams.
const Q8_PREFETCH: usize = 1024;
/// Weight bytes per column block when many activation rows share each weight row.
const Q8_BLOCK: usize = 128 * 1024;

pub(super) fn gemm_q8(x: &QActs, w: &[i8], ws: &[f32], y: &mut Out) {
    let (m, k, n) = (y.rows(), x.k, y.cols());
    assert!(x.q.len() >= m * k && w.len() >= n * k && ws.len() >= n && x.scales.len() >= m);
    // SAFETY: this table is only handed out after checking AVX2 + FMA + F16C; sizes asserted.
    unsafe { gemm_q8_impl(x, w, ws, y) }
}

/// Register tiles of `R` activation rows × `C` weight rows: each 16-element step loads `C`
/// weight vectors (sign-extended once) and multiplies each against `R` activation vectors
/// (converted once per call), `R · C` `vpmaddwd` + `vpaddd` into i32 accumulators. The `C` weight
/// rows of a tile come from `C` contiguous bands of the matrix, so the weights are read as `C`
/// long sequential streams, which the hardware prefetchers follow (4 adjacent rows at a time
/// read as a strided pattern, and decoding one sequence, m = 1, ran 1.45× slower).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn gemm_q8_impl(x: &QActs, w: &[i8], ws: &[f32], y: &mut Out) {
    let (m, k) = (y.rows(), x.k);
    let k16 = k / 16 * 16;
    X16.with(|buf| {
        let mut x16 = buf.borrow_mut();
        if x16.len() < m * k16 {
            x16.resize(m * k16, 0);
        }
        for i in 0..m {
            for c in (0..k16).step_by(16) {
                // SAFETY: 16 bytes inside activation row i; 16 i16 inside row i of x16.
                unsafe {
                    let v = _mm256_cvtepi8_epi16(_mm_loadu_si128(x.q[i * k + c..].as_ptr().cast()));
                    _mm256_storeu_si256(x16[i * k16 + c..].as_mut_ptr().cast(), v);
                }
            }
        }
        let x16 = &x16[..m * k16];
        let mut i = 0;
        let full = m / 4 * 4;
        if full >= 8 {
            // Several 4-row groups: blocks of columns, each block's weights (about Q8_BLOCK
            // bytes) multiplied against every group while they are in L2, instead of streaming
            // the whole matrix again from memory for each group of 4 rows.
            let n = y.cols();
            let band = n / 3;
            let per = (Q8_BLOCK / (3 * k.max(1))).max(8);
            let mut j = 0;
            while j < band {
                let end = (j + per).min(band);
                for g in (0..full).step_by(4) {
                    // SAFETY: same features; rows g..g + 4 and the block's columns exist.
                    unsafe { q8_tile::<4, 3>(x, x16, g, w, ws, y, 0, band, j..end) };
                }
                j = end;
            }
            let rest = n - band * 3;
            for g in (0..full).step_by(4) {
                // SAFETY: as above, the last `rest` columns.
                unsafe { q8_tile::<4, 1>(x, x16, g, w, ws, y, band * 3, rest, 0..rest) };
            }
            i = full;
        }
        while i < m {
            let rows = (m - i).min(4);
            // SAFETY: same features; rows i..i + rows exist.
            unsafe {
                match rows {
                    1 => q8_bands::<1, 4>(x, x16, i, w, ws, y),
                    2 => q8_bands::<2, 4>(x, x16, i, w, ws, y),
                    3 => q8_bands::<3, 4>(x, x16, i, w, ws, y),
                    _ => q8_bands::<4, 3>(x, x16, i, w, ws, y),
                }
            }
            i += rows;
        }
    });
}

/// Rows `i0..i0 + R` of the output, every column: `C` bands of `n / C` columns side by side,
/// then the `n % C` left over one at a time.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q8_bands<const R: usize, const C: usize>(
    x: &QActs,
    x16: &[i16],
    i0: usize,
    w: &[i8],
    ws: &[f32],
    y: &mut Out,
) {
    let n = y.cols();
    let band = n / C;
    // SAFETY: same features; the columns lie inside the matrix.
    unsafe {
        q8_tile::<R, C>(x, x16, i0, w, ws, y, 0, band, 0..band);
        let rest = n - band * C;
        q8_tile::<R, 1>(x, x16, i0, w, ws, y, band * C, rest, 0..rest);
    }
}

/// Rows `i0..i0 + R`, columns `j0 + t · band + j` for `t < C`, `j` in `js` (within `band`).
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q8_tile<const R: usize, const C: usize>(
    x: &QActs,
    x16: &[i16],
    i0: usize,
    w: &[i8],
    ws: &[f32],
    y: &mut Out,
    j0: usize,
    band: usize,
    js: std::ops::Range<usize>,
) {
    debug_assert!(js.end <= band);
    const { assert!(C <= 4, "hsum4_epi32 reduces at most 4 accumulators") };
    let k = x.k;
    let k16 = k / 16 * 16;
    let xp: [*const i16; R] = std::array::from_fn(|r| x16[(i0 + r) * k16..].as_ptr());
    for j in js {
        let col: [usize; C] = std::array::from_fn(|t| j0 + t * band + j);
        let wp: [*const i8; C] = std::array::from_fn(|t| w[col[t] * k..(col[t] + 1) * k].as_ptr());
        let mut acc = [[_mm256_setzero_si256(); C]; R];
        let mut c = 0;
        while c < k16 {
            // SAFETY: 16 bytes inside each weight row, 16 i16 inside each converted activation
            // row; prefetches never fault.
            unsafe {
                if c % 64 == 0 {
                    for p in wp {
                        _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(c + Q8_PREFETCH).cast());
                    }
                }
                let wv: [__m256i; C] = std::array::from_fn(|t| {
                    _mm256_cvtepi8_epi16(_mm_loadu_si128(wp[t].add(c).cast()))
                });
                for r in 0..R {
                    let xv = _mm256_loadu_si256(xp[r].add(c).cast());
                    for t in 0..C {
                        acc[r][t] = _mm256_add_epi32(acc[r][t], _mm256_madd_epi16(xv, wv[t]));
                    }
                }
            }
            c += 16;
        }
        for (r, acc) in acc.iter().enumerate() {
            let sums = hsum4_epi32(acc);
            let xs = x.scales[i0 + r];
            let out = y.row(i0 + r);
            for (t, &cl) in col.iter().enumerate() {
                let mut d = sums[t];
                if k16 < k {
                    let xr = &x.q[(i0 + r) * k + k16..(i0 + r + 1) * k];
                    let wr = &w[cl * k + k16..(cl + 1) * k];
                    let tail: i32 = xr.iter().zip(wr).map(|(&a, &b)| a as i32 * b as i32).sum();
                    d = d.wrapping_add(tail);
                }
                out[cl] = d as f32 * (xs * ws[cl]);
            }
        }
    }
}

/// The horizontal sums of up to 4 vectors at once (3 `vphaddd` and one add of the halves,
/// instead of a shuffle tree per vector); entries past `v.len()` are 0.
#[inline]
#[target_feature(enable = "avx2")]
fn hsum4_epi32<const C: usize>(v: &[__m256i; C]) -> [i32; 4] {
    let z = _mm256_setzero_si256();
    let g = |i: usize| if i < C { v[i] } else { z };
    let ab = _mm256_hadd_epi32(g(0), g(1));
    let cd = _mm256_hadd_epi32(g(2), g(3));
    let s = _mm256_hadd_epi32(ab, cd);
    let s = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256::<1>(s));
    let mut out = [0i32; 4];
    // SAFETY: 16 bytes into a [i32; 4].
    unsafe { _mm_storeu_si128(out.as_mut_ptr().cast(), s) };
    out
}

// ---------------------------------------------------------------- attention

/// Attention scores, for head dimensions of 32 and 64 with the query held in registers
/// (the generic code for other widths).
pub(super) fn dots(q: &[f32], rows: &[f32], stride: usize, scale: f32, out: &mut [f32]) {
    let (d, n) = (q.len(), out.len());
    if n == 0 {
        return;
    }
    assert!(rows.len() >= (n - 1) * stride + d);
    // SAFETY: this table is only handed out after checking AVX2 + FMA; the rows lie in `rows`.
    unsafe {
        match d {
            32 => dots_n::<4>(q, rows, stride, scale, out),
            64 => dots_n::<8>(q, rows, stride, scale, out),
            _ => dots_any(q, rows, stride, scale, out),
        }
    }
}

#[target_feature(enable = "avx2,fma")]
unsafe fn dots_any(q: &[f32], rows: &[f32], stride: usize, scale: f32, out: &mut [f32]) {
    generic::dots(q, rows, stride, scale, out)
}

#[target_feature(enable = "avx2,fma")]
unsafe fn dots_n<const C: usize>(
    q: &[f32],
    rows: &[f32],
    stride: usize,
    scale: f32,
    out: &mut [f32],
) {
    // SAFETY (whole body): q has 8·C floats; row j has 8·C floats at j · stride (asserted by
    // the caller for every j < out.len()).
    unsafe {
        let qv: [__m256; C] = std::array::from_fn(|c| _mm256_loadu_ps(q.as_ptr().add(8 * c)));
        for (j, o) in out.iter_mut().enumerate() {
            let r = rows.as_ptr().add(j * stride);
            let mut acc = _mm256_mul_ps(qv[0], _mm256_loadu_ps(r));
            for (c, &qc) in qv.iter().enumerate().skip(1) {
                acc = _mm256_fmadd_ps(qc, _mm256_loadu_ps(r.add(8 * c)), acc);
            }
            *o = hsum256(acc) * scale;
        }
    }
}

/// Attention mix with the output in registers, two accumulator sets (even and odd keys) to
/// halve the dependency chains (widths 32 and 64; the generic code otherwise).
pub(super) fn mix(p: &[f32], rows: &[f32], stride: usize, out: &mut [f32]) {
    let (d, n) = (out.len(), p.len());
    if n == 0 {
        out.fill(0.0);
        return;
    }
    assert!(rows.len() >= (n - 1) * stride + d);
    // SAFETY: as in `dots`.
    unsafe {
        match d {
            32 => mix_n::<4>(p, rows, stride, out),
            64 => mix_n::<8>(p, rows, stride, out),
            _ => mix_any(p, rows, stride, out),
        }
    }
}

#[target_feature(enable = "avx2,fma")]
unsafe fn mix_any(p: &[f32], rows: &[f32], stride: usize, out: &mut [f32]) {
    generic::mix(p, rows, stride, out)
}

#[target_feature(enable = "avx2,fma")]
unsafe fn mix_n<const C: usize>(p: &[f32], rows: &[f32], stride: usize, out: &mut [f32]) {
    let mut acc = [[_mm256_setzero_ps(); C]; 2];
    // SAFETY (whole body): as in `dots_n`; out has 8·C floats.
    unsafe {
        for (j, &pj) in p.iter().enumerate() {
            if pj != 0.0 {
                let r = rows.as_ptr().add(j * stride);
                let pv = _mm256_set1_ps(pj);
                let a = &mut acc[j & 1];
                for (c, ac) in a.iter_mut().enumerate() {
                    *ac = _mm256_fmadd_ps(pv, _mm256_loadu_ps(r.add(8 * c)), *ac);
                }
            }
        }
        let [even, odd] = acc;
        for (c, (e, o)) in even.iter().zip(&odd).enumerate() {
            _mm256_storeu_ps(out.as_mut_ptr().add(8 * c), _mm256_add_ps(*e, *o));
        }
    }
}

// ---------------------------------------------------------------- int4 × int8

pub(super) fn gemm_q4(x: &QActs, codes: &[u8], ws: &[f16], y: &mut Out) {
    // SAFETY: this table is only handed out after checking AVX2 + FMA + F16C.
    unsafe { gemm_q4_impl(x, codes, ws, y) }
}

/// Per group of 32: the 16 code bytes expand (one `vpshufb` against the levels) to the int8
/// weights of the even elements (low nibbles) and the odd ones (high nibbles); the activations
/// are split the same way once per row, then sign-extended products are summed with `vpmaddwd`.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn gemm_q4_impl(x: &QActs, codes: &[u8], ws: &[f16], y: &mut Out) {
    let (m, k, n) = (y.rows(), x.k, y.cols());
    let groups = k / Q4_GROUP;
    assert!(k % Q4_GROUP == 0 && codes.len() >= n * k / 2 && ws.len() >= n * groups);
    let levels: [i8; 16] = Q4_LEVELS;
    // SAFETY: 16 readable bytes.
    let lut = unsafe { _mm_loadu_si128(levels.as_ptr().cast()) };
    let low = _mm_set1_epi8(0x0f);
    SPLIT.with(|buf| {
        let mut split = buf.borrow_mut();
        if split.len() < k {
            split.resize(k, 0);
        }
        for i in 0..m {
            // Activations of each group as [even 16 | odd 16], matching the expanded codes.
            let xr = &x.q[i * k..(i + 1) * k];
            for g in 0..groups {
                for t in 0..16 {
                    split[g * 32 + t] = xr[g * 32 + 2 * t];
                    split[g * 32 + 16 + t] = xr[g * 32 + 2 * t + 1];
                }
            }
            for j in 0..n {
                let crow = &codes[j * k / 2..(j + 1) * k / 2];
                let srow = &ws[j * groups..(j + 1) * groups];
                let mut f = _mm256_setzero_ps();
                for (g, scale) in srow.iter().enumerate() {
                    // SAFETY: 16 code bytes and 32 activations of group g.
                    unsafe {
                        let c = _mm_loadu_si128(crow.as_ptr().add(g * 16).cast());
                        let we = _mm_shuffle_epi8(lut, _mm_and_si128(c, low));
                        let wo = _mm_shuffle_epi8(lut, _mm_and_si128(_mm_srli_epi16(c, 4), low));
                        let xe = _mm_loadu_si128(split.as_ptr().add(g * 32).cast());
                        let xo = _mm_loadu_si128(split.as_ptr().add(g * 32 + 16).cast());
                        let pe =
                            _mm256_madd_epi16(_mm256_cvtepi8_epi16(xe), _mm256_cvtepi8_epi16(we));
                        let po =
                            _mm256_madd_epi16(_mm256_cvtepi8_epi16(xo), _mm256_cvtepi8_epi16(wo));
                        let acc = _mm256_cvtepi32_ps(_mm256_add_epi32(pe, po));
                        f = _mm256_fmadd_ps(acc, _mm256_set1_ps(scale.to_f32()), f);
                    }
                }
                y.row(i)[j] = hsum256(f) * x.scales[i];
            }
        }
    });
}

thread_local! {
    /// One activation row split into even/odd halves per group (reused).
    static SPLIT: RefCell<Vec<i8>> = const { RefCell::new(Vec::new()) };
}

#[inline(always)]
fn hsum256(v: __m256) -> f32 {
    let mut a = [0f32; 8];
    // SAFETY: 8 writable floats; AVX is implied by the caller's AVX2.
    unsafe { _mm256_storeu_ps(a.as_mut_ptr(), v) };
    ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]))
}

// ---------------------------------------------------------------- f32

/// Below this many activation rows the generic streaming kernel is used.
const GEMM_MIN_ROWS: usize = 6;
/// Tile: 6 activation rows × 16 columns (two ymm): 12 accumulators + 2 weight vectors + a
/// broadcast = 15 of the 16 ymm registers.
const MR: usize = 6;
const NR: usize = 16;
/// 256 × 16 floats = 16 KiB packed panel.
const KC: usize = 256;

pub(super) fn gemm_f32(x: &[f32], k: usize, w: &[f32], y: &mut Out) {
    if y.rows() >= GEMM_MIN_ROWS {
        // SAFETY: this table is only handed out after checking AVX2 + FMA.
        unsafe { sgemm(x, k, w, y) }
    } else {
        gemv_f32(x, k, w, y)
    }
}

/// Few rows: the generic streaming kernel, compiled for AVX2.
fn gemv_f32(x: &[f32], k: usize, w: &[f32], y: &mut Out) {
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn inner(x: &[f32], k: usize, w: &[f32], y: &mut Out) {
        generic::gemm_f32(x, k, w, y)
    }
    // SAFETY: this table is only handed out after checking AVX2 + FMA + F16C.
    unsafe { inner(x, k, w, y) }
}

/// `Y = X · Wᵀ` for many rows: the shared packed driver with this level's 6×16 tile.
unsafe fn sgemm(x: &[f32], k: usize, w: &[f32], y: &mut Out) {
    // SAFETY: `tile` needs the features this table was handed out for.
    unsafe { super::packed_sgemm::<MR, NR, KC>(x, k, w, y, tile) }
}

#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile(
    rows: usize,
    x: *const f32,
    ldx: usize,
    panel: *const f32,
    kc: usize,
    y: &mut Out,
    i0: usize,
    j0: usize,
    cols: usize,
    accumulate: bool,
) {
    let mut c = [[_mm256_setzero_ps(); 2]; MR];
    macro_rules! body {
        ($r:expr) => {{
            for kk in 0..kc {
                // SAFETY: the panel has kc × 16 floats; x has `rows` rows of ≥ kc floats.
                unsafe {
                    let b0 = _mm256_loadu_ps(panel.add(kk * NR));
                    let b1 = _mm256_loadu_ps(panel.add(kk * NR + 8));
                    for r in 0..$r {
                        let a = _mm256_broadcast_ss(&*x.add(r * ldx + kk));
                        c[r][0] = _mm256_fmadd_ps(a, b0, c[r][0]);
                        c[r][1] = _mm256_fmadd_ps(a, b1, c[r][1]);
                    }
                }
            }
        }};
    }
    match rows {
        6 => body!(6),
        5 => body!(5),
        4 => body!(4),
        3 => body!(3),
        2 => body!(2),
        _ => body!(1),
    }
    for (r, cr) in c.iter().enumerate().take(rows) {
        let mut v = [0f32; NR];
        // SAFETY: 16 writable floats.
        unsafe {
            _mm256_storeu_ps(v.as_mut_ptr(), cr[0]);
            _mm256_storeu_ps(v.as_mut_ptr().add(8), cr[1]);
        }
        let out = &mut y.row(i0 + r)[j0..j0 + cols];
        if accumulate {
            for (o, a) in out.iter_mut().zip(v) {
                *o += a;
            }
        } else {
            out.copy_from_slice(&v[..cols]);
        }
    }
}
