//! Hand-written NEON matrix products and `dot` for aarch64; they compute what [`scalar`] defines.
//!
//! The int8 products (`gemm_q8`, and `gemm_q4` whose codes are expanded with `TBL`) are one body
//! built twice by `int8_products!`, differing only in how 16 int8 pairs are multiplied into
//! four i32 lanes:
//!
//! - `sdot`: the dot-product extension (`SDOT`, FEAT_DotProd), which the CPU must be checked for
//!   at run time (`is_aarch64_feature_detected!("dotprod")`);
//! - `widen`: baseline NEON, `SMULL`/`SMULL2` into i16 then `SADALP` into i32. Every product of two
//!   int8 values fits in i16 and is widened before any addition, so nothing saturates, even for
//!   -128 · -128.
//!
//! Both accumulate exactly in i32 and finish with the same f32 operations in the same order as
//! [`scalar`], so they return the same bits. `gemm_f32` and `dot` use FMA with independent
//! accumulators; their sums are ordered differently and agree within the tests' tolerances.
//!
//! Register blocking: one call of a block kernel computes `R` activation rows × `C` weight rows
//! (see `for_blocks!`), so `C` weight rows stream from memory together and each activation load
//! is used `C` times. Weight blocks are the outer loop: a block stays in L1 while every activation
//! row passes over it. The tail of `k` is copied into a zeroed stack buffer and goes through the
//! same vector step (zeros add nothing).
//!
//! `SDOT` is emitted with `asm!` because `vdotq_s32` is still unstable (`stdarch_neon_dotprod`).
//!
//! [`scalar`]: crate::kernels::scalar

use std::arch::aarch64::*;
use std::arch::asm;

use crate::kernels::{Out, QActs};

/// Calls `$f::<R, C>(args…, i, j)` for every register block covering an `m × n` output, where
/// the block is activation rows `i..i + R` × weight rows (output columns) `j..j + C`: `1 × 8`
/// blocks when `m = 1` (decoding: eight independent accumulators from one activation row), else
/// `2 × 4`, with 1-row and 1-column blocks at the edges. Weight blocks are the outer loop.
macro_rules! for_blocks {
    ($m:expr, $n:expr, $f:ident($($arg:expr),*)) => {{
        let (m, n): (usize, usize) = ($m, $n);
        let mut j = 0;
        if m == 1 {
            while j + 8 <= n {
                $f::<1, 8>($($arg,)* 0, j);
                j += 8;
            }
        }
        while j + 4 <= n {
            for_blocks!(@rows m, j, 4, $f($($arg),*));
            j += 4;
        }
        while j < n {
            for_blocks!(@rows m, j, 1, $f($($arg),*));
            j += 1;
        }
    }};
    (@rows $m:expr, $j:expr, $c:literal, $f:ident($($arg:expr),*)) => {{
        let mut i = 0;
        while i + 2 <= $m {
            $f::<2, $c>($($arg,)* i, $j);
            i += 2;
        }
        if i < $m {
            $f::<1, $c>($($arg,)* i, $j);
        }
    }};
}

// ---- int8 multiply-accumulate steps ----

/// `acc` plus the products of 16 int8 pairs, each i32 lane gaining four of them (`SDOT`).
#[inline]
#[target_feature(enable = "neon,dotprod")]
fn sdot_step(mut acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    // SAFETY: `sdot` reads three vector registers and writes `acc` only (no memory, no flags,
    // no stack). This function is compiled with dotprod, so any caller outside such code had to
    // establish in an `unsafe` block that the CPU has it.
    unsafe {
        asm!(
            "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
            acc = inout(vreg) acc,
            a = in(vreg) a,
            b = in(vreg) b,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    acc
}

/// `acc` plus the products of 16 int8 pairs with baseline NEON: exact i16 products (|a·b| ≤ 2^14),
/// pairwise added into i32 lanes.
#[inline]
#[target_feature(enable = "neon")]
fn widen_step(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let lo = vmull_s8(vget_low_s8(a), vget_low_s8(b));
    let hi = vmull_high_s8(a, b);
    vpadalq_s16(vpadalq_s16(acc, lo), hi)
}

/// `s` followed by zeros, as a full vector's worth of values (`s.len() ≤ N`).
#[inline]
fn padded<T: Copy + Default, const N: usize>(s: &[T]) -> [T; N] {
    let mut buf = [T::default(); N];
    buf[..s.len()].copy_from_slice(s);
    buf
}

/// Builds the int8 products for one multiply-accumulate step: `q8_dots` and `q4_dots` compute
/// one register block, `gemm_q8` and `gemm_q4` the whole product (as in [`scalar`]). Everything is
/// compiled with `$features`, so the module's functions may only run on a CPU that has them.
///
/// [`scalar`]: crate::kernels::scalar
macro_rules! int8_products {
    ($features:literal, $step:path) => {
        use std::arch::aarch64::*;

        use half::f16;

        use super::padded;
        use crate::kernels::{Out, QActs};
        use crate::tensor::{Q4_GROUP, Q4_LEVELS};

        /// Adds to `acc[r][c]` the int8 products of `x[r]` and `w[c]`, all of one length that is
        /// a multiple of 16, four per i32 lane.
        #[inline]
        #[target_feature(enable = $features)]
        fn q8_acc<const R: usize, const C: usize>(
            acc: &mut [[int32x4_t; C]; R],
            x: [&[i8]; R],
            w: [&[i8]; C],
        ) {
            let k = x[0].len();
            assert!(k.is_multiple_of(16) && x.iter().chain(&w).all(|s| s.len() == k));
            let mut wv = [vdupq_n_s8(0); C];
            for t in (0..k).step_by(16) {
                for (v, row) in wv.iter_mut().zip(&w) {
                    // SAFETY: t + 16 ≤ k = row.len() (asserted above).
                    *v = unsafe { vld1q_s8(row.as_ptr().add(t)) };
                }
                for (a, row) in acc.iter_mut().zip(&x) {
                    // SAFETY: t + 16 ≤ k = row.len() (asserted above).
                    let xv = unsafe { vld1q_s8(row.as_ptr().add(t)) };
                    for (a, &v) in a.iter_mut().zip(&wv) {
                        *a = $step(*a, xv, v);
                    }
                }
            }
        }

        /// The exact i32 dot products of `R` activation rows with `C` weight rows, all of
        /// one length.
        #[inline]
        #[target_feature(enable = $features)]
        fn q8_dots<const R: usize, const C: usize>(x: [&[i8]; R], w: [&[i8]; C]) -> [[i32; C]; R] {
            let k = x[0].len();
            let full = k - k % 16;
            let mut acc = [[vdupq_n_s32(0); C]; R];
            q8_acc(&mut acc, x.map(|s| &s[..full]), w.map(|s| &s[..full]));
            if full < k {
                // The tail, zero-padded to 16: zeros add nothing to an integer sum.
                let xt: [[i8; 16]; R] = x.map(|s| padded(&s[full..]));
                let wt: [[i8; 16]; C] = w.map(|s| padded(&s[full..]));
                q8_acc(
                    &mut acc,
                    xt.each_ref().map(|b| &b[..]),
                    wt.each_ref().map(|b| &b[..]),
                );
            }
            acc.map(|a| a.map(|v| vaddvq_s32(v)))
        }

        #[inline]
        #[target_feature(enable = $features)]
        fn q8_block<const R: usize, const C: usize>(
            x: &QActs,
            w: &[i8],
            ws: &[f32],
            y: &mut Out,
            i: usize,
            j: usize,
        ) {
            let k = x.k;
            let xr: [&[i8]; R] = std::array::from_fn(|r| &x.q[(i + r) * k..(i + r + 1) * k]);
            let wr: [&[i8]; C] = std::array::from_fn(|c| &w[(j + c) * k..(j + c + 1) * k]);
            let acc = q8_dots(xr, wr);
            for (r, acc) in acc.iter().enumerate() {
                let xs = x.scales[i + r];
                let out = &mut y.row(i + r)[j..j + C];
                for ((o, &a), &s) in out.iter_mut().zip(acc).zip(&ws[j..j + C]) {
                    *o = a as f32 * (xs * s);
                }
            }
        }

        /// int8 weights × int8 activations, bit-identical to `scalar::gemm_q8`.
        #[target_feature(enable = $features)]
        pub(super) fn gemm_q8(x: &QActs, w: &[i8], ws: &[f32], y: &mut Out) {
            for_blocks!(y.rows(), y.cols(), q8_block(x, w, ws, y));
        }

        /// For `R` activation rows × `C` weight rows of `groups` groups of 32: Σ_g (exact i32
        /// dot product of group g) · scale_g, summed in f32 group by group as `scalar::gemm_q4`.
        #[inline]
        #[target_feature(enable = $features)]
        fn q4_dots<const R: usize, const C: usize>(
            x: [&[i8]; R],
            codes: [&[u8]; C],
            scales: [&[f16]; C],
            groups: usize,
        ) -> [[f32; C]; R] {
            assert!(x.iter().all(|s| s.len() >= groups * Q4_GROUP));
            assert!(codes.iter().all(|s| s.len() >= groups * Q4_GROUP / 2));
            assert!(scales.iter().all(|s| s.len() >= groups));
            // SAFETY: `Q4_LEVELS` holds 16 readable i8.
            let levels = unsafe { vld1q_s8(Q4_LEVELS.as_ptr()) };
            let low_nibble = vdupq_n_u8(0x0f);
            let mut sums = [[0f32; C]; R];
            let (mut even, mut odd) = ([vdupq_n_s8(0); C], [vdupq_n_s8(0); C]);
            let mut s = [0f32; C];
            for g in 0..groups {
                // 16 bytes hold the group's 32 codes, low nibble first: the low nibbles are the
                // even elements, the high nibbles the odd ones.
                for c in 0..C {
                    let b = &codes[c][g * Q4_GROUP / 2..(g + 1) * Q4_GROUP / 2];
                    // SAFETY: `b` holds exactly 16 readable bytes (checked by the slicing above).
                    let b = unsafe { vld1q_u8(b.as_ptr()) };
                    even[c] = vqtbl1q_s8(levels, vandq_u8(b, low_nibble));
                    odd[c] = vqtbl1q_s8(levels, vshrq_n_u8::<4>(b));
                    s[c] = scales[c][g].to_f32();
                }
                for (sum, row) in sums.iter_mut().zip(&x) {
                    let xg = &row[g * Q4_GROUP..(g + 1) * Q4_GROUP];
                    // SAFETY: `xg` holds exactly 32 readable i8 (checked by the slicing above);
                    // `vld2q_s8` reads 32 and splits them into even and odd elements.
                    let xv = unsafe { vld2q_s8(xg.as_ptr()) };
                    for c in 0..C {
                        let acc = $step($step(vdupq_n_s32(0), xv.0, even[c]), xv.1, odd[c]);
                        sum[c] += vaddvq_s32(acc) as f32 * s[c];
                    }
                }
            }
            sums
        }

        #[inline]
        #[target_feature(enable = $features)]
        fn q4_block<const R: usize, const C: usize>(
            x: &QActs,
            codes: &[u8],
            ws: &[f16],
            y: &mut Out,
            i: usize,
            j: usize,
        ) {
            let k = x.k;
            let groups = k / Q4_GROUP;
            let xr: [&[i8]; R] = std::array::from_fn(|r| &x.q[(i + r) * k..(i + r + 1) * k]);
            let cr: [&[u8]; C] =
                std::array::from_fn(|c| &codes[(j + c) * k / 2..(j + c + 1) * k / 2]);
            let sr: [&[f16]; C] =
                std::array::from_fn(|c| &ws[(j + c) * groups..(j + c + 1) * groups]);
            let sums = q4_dots(xr, cr, sr, groups);
            for (r, sums) in sums.iter().enumerate() {
                let xs = x.scales[i + r];
                for (o, &s) in y.row(i + r)[j..j + C].iter_mut().zip(sums) {
                    *o = s * xs;
                }
            }
        }

        /// int4 codes × int8 activations, computed as `scalar::gemm_q4` (same bits).
        #[target_feature(enable = $features)]
        pub(super) fn gemm_q4(x: &QActs, codes: &[u8], ws: &[f16], y: &mut Out) {
            for_blocks!(y.rows(), y.cols(), q4_block(x, codes, ws, y));
        }
    };
}

/// Built with the dot-product extension.
mod sdot {
    int8_products!("neon,dotprod", super::sdot_step);
}

/// Built with baseline NEON only.
mod widen {
    int8_products!("neon", super::widen_step);
}

/// `gemm_q8` with `SDOT`. Only for the table that `neon_table()` hands out after detecting
/// dotprod.
pub(super) fn gemm_q8_sdot(x: &QActs, w: &[i8], ws: &[f32], y: &mut Out) {
    // SAFETY: this function is only reachable through the dotprod table, which is handed out
    // only after `is_aarch64_feature_detected!("dotprod")` returned true.
    unsafe { sdot::gemm_q8(x, w, ws, y) }
}

/// `gemm_q4` with `SDOT` (same condition as [`gemm_q8_sdot`]).
pub(super) fn gemm_q4_sdot(x: &QActs, codes: &[u8], ws: &[half::f16], y: &mut Out) {
    // SAFETY: as in `gemm_q8_sdot`: only reachable after dotprod was detected.
    unsafe { sdot::gemm_q4(x, codes, ws, y) }
}

/// `gemm_q8` with baseline NEON.
pub(super) fn gemm_q8_widen(x: &QActs, w: &[i8], ws: &[f32], y: &mut Out) {
    // SAFETY: NEON is part of the aarch64 baseline: every aarch64 CPU has it.
    unsafe { widen::gemm_q8(x, w, ws, y) }
}

/// `gemm_q4` with baseline NEON.
pub(super) fn gemm_q4_widen(x: &QActs, codes: &[u8], ws: &[half::f16], y: &mut Out) {
    // SAFETY: NEON is part of the aarch64 baseline: every aarch64 CPU has it.
    unsafe { widen::gemm_q4(x, codes, ws, y) }
}

// ---- f32 ----

/// Adds to `acc[r][c]` the products of `x[r]` and `w[c]`, all of one length that is a multiple
/// of 4: one FMA chain of 4 lanes per pair, `R · C` chains in flight.
#[inline]
#[target_feature(enable = "neon")]
fn f32_acc<const R: usize, const C: usize>(
    acc: &mut [[float32x4_t; C]; R],
    x: [&[f32]; R],
    w: [&[f32]; C],
) {
    let k = x[0].len();
    assert!(k.is_multiple_of(4) && x.iter().chain(&w).all(|s| s.len() == k));
    let mut wv = [vdupq_n_f32(0.0); C];
    for t in (0..k).step_by(4) {
        for (v, row) in wv.iter_mut().zip(&w) {
            // SAFETY: t + 4 ≤ k = row.len() (asserted above).
            *v = unsafe { vld1q_f32(row.as_ptr().add(t)) };
        }
        for (a, row) in acc.iter_mut().zip(&x) {
            // SAFETY: t + 4 ≤ k = row.len() (asserted above).
            let xv = unsafe { vld1q_f32(row.as_ptr().add(t)) };
            for (a, &v) in a.iter_mut().zip(&wv) {
                *a = vfmaq_f32(*a, xv, v);
            }
        }
    }
}

/// The dot products of `R` activation rows with `C` weight rows, all of one length.
#[inline]
#[target_feature(enable = "neon")]
fn f32_dots<const R: usize, const C: usize>(x: [&[f32]; R], w: [&[f32]; C]) -> [[f32; C]; R] {
    let k = x[0].len();
    let full = k - k % 4;
    let mut acc = [[vdupq_n_f32(0.0); C]; R];
    f32_acc(&mut acc, x.map(|s| &s[..full]), w.map(|s| &s[..full]));
    if full < k {
        // The tail, zero-padded to 4 (0 · 0 adds nothing).
        let xt: [[f32; 4]; R] = x.map(|s| padded(&s[full..]));
        let wt: [[f32; 4]; C] = w.map(|s| padded(&s[full..]));
        f32_acc(
            &mut acc,
            xt.each_ref().map(|b| &b[..]),
            wt.each_ref().map(|b| &b[..]),
        );
    }
    acc.map(|a| a.map(|v| vaddvq_f32(v)))
}

#[inline]
#[target_feature(enable = "neon")]
fn f32_block<const R: usize, const C: usize>(
    x: &[f32],
    k: usize,
    w: &[f32],
    y: &mut Out,
    i: usize,
    j: usize,
) {
    let xr: [&[f32]; R] = std::array::from_fn(|r| &x[(i + r) * k..(i + r + 1) * k]);
    let wr: [&[f32]; C] = std::array::from_fn(|c| &w[(j + c) * k..(j + c + 1) * k]);
    for (r, d) in f32_dots(xr, wr).iter().enumerate() {
        y.row(i + r)[j..j + C].copy_from_slice(d);
    }
}

#[target_feature(enable = "neon")]
fn gemm_f32_neon(x: &[f32], k: usize, w: &[f32], y: &mut Out) {
    for_blocks!(y.rows(), y.cols(), f32_block(x, k, w, y));
}

/// f32 weights with FMA.
pub(super) fn gemm_f32(x: &[f32], k: usize, w: &[f32], y: &mut Out) {
    // SAFETY: NEON is part of the aarch64 baseline: every aarch64 CPU has it.
    unsafe { gemm_f32_neon(x, k, w, y) }
}

#[target_feature(enable = "neon")]
fn dot_neon(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let load = |s: &[f32], at: usize| {
        let v = &s[at..at + 4];
        // SAFETY: `v` holds exactly 4 readable f32 (checked by the slicing above).
        unsafe { vld1q_f32(v.as_ptr()) }
    };
    let mut acc = [vdupq_n_f32(0.0); 4];
    let mut t = 0;
    while t + 16 <= n {
        for (l, acc) in acc.iter_mut().enumerate() {
            *acc = vfmaq_f32(*acc, load(a, t + 4 * l), load(b, t + 4 * l));
        }
        t += 16;
    }
    while t + 4 <= n {
        acc[0] = vfmaq_f32(acc[0], load(a, t), load(b, t));
        t += 4;
    }
    if t < n {
        let (at, bt): ([f32; 4], [f32; 4]) = (padded(&a[t..]), padded(&b[t..]));
        acc[1] = vfmaq_f32(acc[1], load(&at, 0), load(&bt, 0));
    }
    vaddvq_f32(vaddq_f32(
        vaddq_f32(acc[0], acc[1]),
        vaddq_f32(acc[2], acc[3]),
    ))
}

/// f32 dot product with FMA, four accumulators of four lanes.
pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: NEON is part of the aarch64 baseline: every aarch64 CPU has it.
    unsafe { dot_neon(a, b) }
}
