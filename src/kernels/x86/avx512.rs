//! AVX-512 F/BW/VL + VNNI: hand-written products, generic element-wise kernels.
//!
//! - int8: `vpdpbusd` multiplies unsigned by signed bytes, so activations are shifted to
//!   unsigned (`x + 128`, one `xor` with 0x80) and `128 · Σw` is subtracted from each dot
//!   product. Sums are exact in i32, so results equal the scalar kernel's bit for bit.
//! - int4: codes expand to their int8 levels with one `vpshufb`; activations are reordered once per
//!   call so that the low and high nibbles of a byte meet their own activations.
//! - f32: a packed, register-blocked GEMM for many rows (12×32 tile: 24 zmm accumulators, two
//!   weight vectors and a broadcast in the remaining registers) and a streaming GEMV for few.

#![allow(clippy::missing_safety_doc)]

use std::arch::x86_64::*;
use std::cell::RefCell;

use half::{bf16, f16};

use crate::kernels::generic;
use crate::kernels::{Out, QActs};
use crate::tensor::{Q4_GROUP, Q4_LEVELS};

generic::instantiate! { "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c":
    quantize_rows(x: &[f32], k: usize, q: &mut [i8], s: &mut [f32]);
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

/// Mask of the first `n` (≤ 64) bytes.
#[inline(always)]
fn mask64(n: usize) -> u64 {
    if n >= 64 { !0 } else { (1u64 << n) - 1 }
}

/// Mask of the first `n` (≤ 16) lanes.
#[inline(always)]
fn mask16(n: usize) -> u16 {
    if n >= 16 {
        !0
    } else {
        ((1u32 << n) - 1) as u16
    }
}

// ---------------------------------------------------------------- int8 × int8

pub(super) fn gemm_q8(x: &QActs, w: &[i8], ws: &[f32], y: &mut Out) {
    let (m, k, n) = (y.rows(), x.k, y.cols());
    assert!(x.q.len() >= m * k && w.len() >= n * k && ws.len() >= n && x.scales.len() >= m);
    if m >= GEMM_MIN_ROWS {
        // SAFETY: this table is only handed out after checking AVX-512 F/BW/VL/VNNI.
        unsafe { q8_gemm(x, w, ws, y) };
        return;
    }
    let mut i0 = 0;
    while i0 < m {
        // SAFETY: as above; rows i0.. of x exist (asserted).
        unsafe {
            match m - i0 {
                1 => q8_gemv_one(x, i0, w, ws, y),
                2 => q8_gemv::<2, 4>(x, i0, w, ws, y),
                3 => q8_gemv::<3, 4>(x, i0, w, ws, y),
                _ => q8_gemv::<4, 4>(x, i0, w, ws, y),
            }
        }
        i0 += 4;
    }
}

/// How the int8 GEMV of one activation row streams the weights: `streams` sequential bands, each
/// read `prefetch` bytes ahead by software (0: left to the hardware prefetchers). Measured on
/// 4 × 64 MiB of weights, cycled so none stays in L3 (`cargo bench --bench kernels -- gemv_q8`):
/// - Zen 5 (family 26): 3 streams, 2 KiB ahead 42.5 GB/s (4 KiB 42.4, 8 KiB 40; 2 streams 40,
///   4: 39, 6 and 8: 33–35; 4 streams 512 B ahead: 31).
/// - Zen 4 (family 25): 3 streams, 2 KiB ahead 11.6–13.6 GB/s of a 22 GB/s read probe; 3
///   streams, no software prefetch 14.1; 2 streams 17.3; 1 stream 15.2–18.9 (1 stream 1 KiB
///   ahead: 14.6). Batch-1 Llama-135M int8: 81.5 → 113.7 tok/s with 1 stream and no prefetch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct GemvPlan {
    pub streams: usize,
    pub prefetch: usize,
}

/// The software prefetch distance of the Zen 5 plan (also used by the 2–4 row GEMV).
const PREFETCH: usize = 2048;

/// The plan for this CPU (chosen once): Zen 4's own, else the Zen 5 one.
fn gemv_plan() -> GemvPlan {
    static PLAN: std::sync::OnceLock<GemvPlan> = std::sync::OnceLock::new();
    *PLAN.get_or_init(|| {
        // SAFETY: leaves 0 (vendor) and 1 (family) exist on every x86-64 CPU. (`__cpuid` is a
        // safe function in recent Rust, an unsafe one in the crate's minimum version.)
        #[allow(unused_unsafe)]
        let (vendor, sig) = unsafe { (__cpuid(0), __cpuid(1).eax) };
        let amd = (vendor.ebx, vendor.edx, vendor.ecx) == (0x6874_7541, 0x6974_6e65, 0x444d_4163);
        let family = ((sig >> 8) & 0xf)
            + if (sig >> 8) & 0xf == 0xf {
                (sig >> 20) & 0xff
            } else {
                0
            };
        if amd && family == 25 {
            GemvPlan {
                streams: 1,
                prefetch: 0,
            }
        } else {
            GemvPlan {
                streams: 3,
                prefetch: PREFETCH,
            }
        }
    })
}

/// One activation row (decoding one sequence), by `gemv_plan()`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn q8_gemv_one(x: &QActs, i0: usize, w: &[i8], ws: &[f32], y: &mut Out) {
    // SAFETY: same features as this function.
    unsafe { q8_gemv_one_by(gemv_plan(), x, i0, w, ws, y) }
}

/// [`q8_gemv_one`] with a given plan (tests run every plan).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn q8_gemv_one_by(
    plan: GemvPlan,
    x: &QActs,
    i0: usize,
    w: &[i8],
    ws: &[f32],
    y: &mut Out,
) {
    // SAFETY (all arms): same features as this function.
    unsafe {
        match plan.streams {
            1 => q8_stream::<1>(plan.prefetch, x, i0, w, ws, y),
            2 => q8_stream::<2>(plan.prefetch, x, i0, w, ws, y),
            _ => q8_stream::<3>(plan.prefetch, x, i0, w, ws, y),
        }
    }
}

/// The matrix cut into `S` contiguous bands of rows, one row of each band processed at a time,
/// so the weights are read as `S` long sequential streams — what the hardware prefetchers follow.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn q8_stream<const S: usize>(
    prefetch: usize,
    x: &QActs,
    i0: usize,
    w: &[i8],
    ws: &[f32],
    y: &mut Out,
) {
    let (k, n) = (x.k, y.cols());
    let flip = _mm512_set1_epi8(-128);
    let ones = _mm512_set1_epi8(1);
    let full = k / 64;
    let tail = mask64(k % 64);
    let xp = x.q[i0 * k..].as_ptr();
    let xs = x.scales[i0];
    let band = n / S;
    let mut dots = [0i32; S];
    for j in 0..band {
        let wp: [*const i8; S] = std::array::from_fn(|s| w[(s * band + j) * k..].as_ptr());
        let mut acc = [_mm512_setzero_si512(); S];
        let mut sw = [_mm512_setzero_si512(); S];
        // SAFETY: all loads stay inside the weight rows and activation row i0 (masked at the tail);
        // prefetches never fault.
        unsafe {
            for c in 0..full {
                let off = c * 64;
                let xu = _mm512_xor_si512(_mm512_loadu_si512(xp.add(off).cast()), flip);
                for t in 0..S {
                    if prefetch > 0 {
                        _mm_prefetch::<_MM_HINT_T0>(wp[t].wrapping_add(off + prefetch).cast());
                    }
                    let wv = _mm512_loadu_si512(wp[t].add(off).cast());
                    acc[t] = _mm512_dpbusd_epi32(acc[t], xu, wv);
                    sw[t] = _mm512_dpbusd_epi32(sw[t], ones, wv);
                }
            }
            if tail != 0 {
                let off = full * 64;
                let xu = _mm512_xor_si512(_mm512_maskz_loadu_epi8(tail, xp.add(off)), flip);
                for t in 0..S {
                    let wv = _mm512_maskz_loadu_epi8(tail, wp[t].add(off));
                    acc[t] = _mm512_dpbusd_epi32(acc[t], xu, wv);
                    sw[t] = _mm512_dpbusd_epi32(sw[t], ones, wv);
                }
            }
        }
        for t in 0..S {
            dots[t] = _mm512_reduce_add_epi32(acc[t])
                .wrapping_sub(_mm512_reduce_add_epi32(sw[t]).wrapping_mul(128));
        }
        let out = y.row(i0);
        for (t, &d) in dots.iter().enumerate() {
            let r = t * band + j;
            out[r] = d as f32 * (xs * ws[r]);
        }
    }
    // Rows left over when n is not a multiple of S.
    let done = band * S;
    if done < n {
        let rest = n - done;
        let mut part = Out::new(&mut y.row(i0)[done..], 1, rest);
        let sub = QActs {
            q: &x.q[i0 * k..(i0 + 1) * k],
            scales: &x.scales[i0..i0 + 1],
            m: 1,
            k,
        };
        // SAFETY: same features as this function.
        unsafe { q8_gemv::<1, 4>(&sub, 0, &w[done * k..], &ws[done..], &mut part) };
    }
}

/// Decoding: streams the weights once, 4 rows at a time, against `M` (≤ 4) activation rows
/// starting at `i0`. Activations become unsigned (`x ⊕ 0x80 = x + 128`) and `128 · Σw` is
/// subtracted; `Σw` comes from a second `vpdpbusd` against ones.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn q8_gemv<const M: usize, const R: usize>(
    x: &QActs,
    i0: usize,
    w: &[i8],
    ws: &[f32],
    y: &mut Out,
) {
    let (k, n) = (x.k, y.cols());
    let flip = _mm512_set1_epi8(-128);
    let ones = _mm512_set1_epi8(1);
    let chunks = k.div_ceil(64);
    let tail = mask64(k - (chunks - 1) * 64);
    let xp = x.q[i0 * k..].as_ptr();
    let mut results = [[0i32; R]; M];
    let mut j = 0;
    while j < n {
        let rows = (n - j).min(R);
        // Missing rows of a last partial block repeat the block's first row (results unused).
        let wp: [*const i8; R] =
            std::array::from_fn(|r| w[(j + if r < rows { r } else { 0 }) * k..].as_ptr());
        let mut acc = [[_mm512_setzero_si512(); R]; M];
        let mut sw = [_mm512_setzero_si512(); R];
        let full = k / 64;
        // One step over 64 columns; `load` reads 64 bytes of weights or activations.
        macro_rules! step {
            ($off:expr, $load:expr) => {{
                let wv: [__m512i; R] = std::array::from_fn(|r| $load(wp[r].wrapping_add($off)));
                for r in 0..R {
                    sw[r] = _mm512_dpbusd_epi32(sw[r], ones, wv[r]);
                }
                for (ii, a) in acc.iter_mut().enumerate() {
                    let xu = _mm512_xor_si512($load(xp.wrapping_add(ii * k + $off)), flip);
                    for r in 0..R {
                        a[r] = _mm512_dpbusd_epi32(a[r], xu, wv[r]);
                    }
                }
            }};
        }
        for c in 0..full {
            // SAFETY: 64 bytes inside each weight row and activation row; prefetches never fault.
            unsafe {
                // (2 to 4 rows keep the Zen 5 prefetch distance: not measured on Zen 4.)
                for p in wp {
                    _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(c * 64 + PREFETCH).cast());
                }
                step!(c * 64, |p: *const i8| _mm512_loadu_si512(p.cast()));
            }
        }
        if full < chunks {
            // SAFETY: masked loads of the last k % 64 bytes of each row.
            unsafe { step!(full * 64, |p: *const i8| _mm512_maskz_loadu_epi8(tail, p)) };
        }
        for r in 0..rows {
            let wsum = _mm512_reduce_add_epi32(sw[r]).wrapping_mul(128);
            for (ii, res) in results.iter_mut().enumerate() {
                res[r] = _mm512_reduce_add_epi32(acc[ii][r]).wrapping_sub(wsum);
            }
        }
        for (ii, res) in results.iter().enumerate() {
            let xs = x.scales[i0 + ii];
            let out = y.row(i0 + ii);
            for r in 0..rows {
                out[j + r] = res[r] as f32 * (xs * ws[j + r]);
            }
        }
        j += rows;
    }
}

thread_local! {
    /// Packed int8 weight panel (`[k/4][32][4]` bytes, as `w + 128`) and activations padded to a
    /// multiple of 4 columns; allocated once per thread and reused.
    static Q8_PANEL: RefCell<(Vec<u8>, Vec<i8>, Vec<i32>)> =
        const { RefCell::new((Vec::new(), Vec::new(), Vec::new())) };
}

/// Many rows (prefill, encoder, batches, beams): pack 32 weight rows at a time into the VNNI
/// layout — lane `c` of a vector holds 4 consecutive `k` of output column `c`, stored as
/// `w + 128` so the weights are the unsigned operand — and sweep MR activation rows through the
/// panel, broadcasting 4 activation bytes per step. `128 · Σx` is subtracted per row.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn q8_gemm(x: &QActs, w: &[i8], ws: &[f32], y: &mut Out) {
    let (m, k, n) = (y.rows(), x.k, y.cols());
    let k4 = k.div_ceil(4);
    let kp = k4 * 4;
    Q8_PANEL.with(|bufs| {
        let (panel, xpad, xsum) = &mut *bufs.borrow_mut();
        if panel.len() < k4 * NR * 4 {
            panel.resize(k4 * NR * 4, 0);
        }
        if xpad.len() < m * kp {
            xpad.resize(m * kp, 0);
        }
        if xsum.len() < m {
            xsum.resize(m, 0);
        }
        for i in 0..m {
            let src = &x.q[i * k..(i + 1) * k];
            xpad[i * kp..i * kp + k].copy_from_slice(src);
            xpad[i * kp + k..(i + 1) * kp].fill(0);
            xsum[i] = src.iter().map(|&v| v as i32).sum::<i32>() * 128;
        }
        let mut j0 = 0;
        while j0 < n {
            let cols = (n - j0).min(NR);
            // SAFETY: same features; `panel` holds k4 · NR · 4 bytes.
            unsafe { pack_q8_panel(w, k, j0, cols, &mut panel[..k4 * NR * 4]) };
            // Padding weights are 0 + 128, but their activations are 0.
            let mut i0 = 0;
            while i0 < m {
                let rows = (m - i0).min(MR);
                // SAFETY: reads `rows` padded activation rows and the packed panel; writes rows
                // i0..i0+rows, columns j0..j0+cols of y.
                unsafe {
                    let tile = match rows {
                        12 => q8_tile::<12>,
                        11 => q8_tile::<11>,
                        10 => q8_tile::<10>,
                        9 => q8_tile::<9>,
                        8 => q8_tile::<8>,
                        7 => q8_tile::<7>,
                        6 => q8_tile::<6>,
                        5 => q8_tile::<5>,
                        4 => q8_tile::<4>,
                        3 => q8_tile::<3>,
                        2 => q8_tile::<2>,
                        _ => q8_tile::<1>,
                    };
                    tile(
                        xpad[i0 * kp..].as_ptr(),
                        kp,
                        panel.as_ptr(),
                        k4,
                        &xsum[i0..],
                        x,
                        ws,
                        y,
                        i0,
                        j0,
                        cols,
                    )
                };
                i0 += rows;
            }
            j0 += cols;
        }
    });
}

/// Packs weight rows `j0..j0 + cols` (≤ NR) into the VNNI panel of [`q8_gemm`]: as 32-bit
/// words (4 consecutive `k` of one row), word `t · NR + c` = word `t` of row `j0 + c`, each byte
/// `⊕ 0x80`; missing rows and the columns past `k` are packed as 0 (`0x80`). Whole 16-row × 64-byte
/// blocks are transposed in registers (16 × 16 words); the edges byte by byte.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn pack_q8_panel(w: &[i8], k: usize, j0: usize, cols: usize, panel: &mut [u8]) {
    let k4 = k.div_ceil(4);
    assert!(panel.len() >= k4 * NR * 4 && w.len() >= (j0 + cols) * k);
    let flip = _mm512_set1_epi8(-128);
    let whole_t = k / 64 * 16; // words covered by whole 64-byte blocks
    let whole_halves = cols / 16;
    for h in 0..whole_halves {
        for t0 in (0..whole_t).step_by(16) {
            // SAFETY: 64 bytes at word t0 of each of the 16 rows lie inside w (t0 + 16 ≤ k / 4);
            // the 16 stores of 64 bytes land at words (t0 + t) · NR + 16 h < k4 · NR.
            unsafe {
                let rows: [__m512i; 16] = std::array::from_fn(|i| {
                    let p = w.as_ptr().add((j0 + 16 * h + i) * k + 4 * t0);
                    // The same bytes of the next panel, into L2 while this one is multiplied
                    // (rows at stride k are too many streams for the hardware prefetchers).
                    _mm_prefetch::<_MM_HINT_T1>(p.wrapping_add(NR * k).cast());
                    _mm512_loadu_si512(p.cast())
                });
                let dst = panel.as_mut_ptr().add((t0 * NR + 16 * h) * 4);
                transpose16x16_u32(rows, |t, v| {
                    _mm512_storeu_si512(dst.add(t * NR * 4).cast(), _mm512_xor_si512(v, flip))
                });
            }
        }
    }
    // The rest byte by byte: words past the whole blocks for the transposed rows, and every
    // word of the other rows (partial half, missing rows).
    for c in 0..NR {
        let t_start = if c < whole_halves * 16 { whole_t } else { 0 };
        for t in t_start..k4 {
            for b in 0..4 {
                let kk = 4 * t + b;
                let v = if c < cols && kk < k {
                    w[(j0 + c) * k + kk]
                } else {
                    0
                };
                panel[(t * NR + c) * 4 + b] = (v as u8) ^ 0x80;
            }
        }
    }
}

/// Transposes a 16 × 16 matrix of 32-bit words held one row per register and hands column `t`
/// to `put(t, column)`: two rounds of unpacks transpose the 4 × 4 blocks inside each 128-bit
/// lane, two rounds of lane shuffles transpose the 4 × 4 matrix of lanes. (No array of results:
/// the compiler would zero one on the stack before filling it.)
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn transpose16x16_u32(r: [__m512i; 16], mut put: impl FnMut(usize, __m512i)) {
    // e[g][q]: lane L holds words 4L + q of rows 4g..4g + 3.
    let e: [[__m512i; 4]; 4] = std::array::from_fn(|g| {
        let a = _mm512_unpacklo_epi32(r[4 * g], r[4 * g + 1]);
        let b = _mm512_unpackhi_epi32(r[4 * g], r[4 * g + 1]);
        let c = _mm512_unpacklo_epi32(r[4 * g + 2], r[4 * g + 3]);
        let d = _mm512_unpackhi_epi32(r[4 * g + 2], r[4 * g + 3]);
        [
            _mm512_unpacklo_epi64(a, c),
            _mm512_unpackhi_epi64(a, c),
            _mm512_unpacklo_epi64(b, d),
            _mm512_unpackhi_epi64(b, d),
        ]
    });
    #[allow(clippy::needless_range_loop)] // q indexes the inner arrays of four rows at once
    for q in 0..4 {
        let u0 = _mm512_shuffle_i32x4::<0x44>(e[0][q], e[1][q]);
        let u1 = _mm512_shuffle_i32x4::<0xEE>(e[0][q], e[1][q]);
        let u2 = _mm512_shuffle_i32x4::<0x44>(e[2][q], e[3][q]);
        let u3 = _mm512_shuffle_i32x4::<0xEE>(e[2][q], e[3][q]);
        // Column 4L + q gathers lane L of e[0..4][q].
        put(q, _mm512_shuffle_i32x4::<0x88>(u0, u2));
        put(4 + q, _mm512_shuffle_i32x4::<0xDD>(u0, u2));
        put(8 + q, _mm512_shuffle_i32x4::<0x88>(u1, u3));
        put(12 + q, _mm512_shuffle_i32x4::<0xDD>(u1, u3));
    }
}

/// One register tile: `R` (≤ MR) activation rows × the NR columns of the packed panel, 2·R zmm
/// accumulators (a const `R`, so that they stay in registers).
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn q8_tile<const R: usize>(
    xp: *const i8,
    ldx: usize,
    panel: *const u8,
    k4: usize,
    xsum: &[i32],
    x: &QActs,
    ws: &[f32],
    y: &mut Out,
    i0: usize,
    j0: usize,
    cols: usize,
) {
    let mut c = [[_mm512_setzero_si512(); 2]; R];
    for t in 0..k4 {
        // SAFETY: the panel holds k4 × 128 bytes; each activation row ≥ 4·k4 bytes.
        unsafe {
            let b0 = _mm512_loadu_si512(panel.add(t * 128).cast());
            let b1 = _mm512_loadu_si512(panel.add(t * 128 + 64).cast());
            for (r, cr) in c.iter_mut().enumerate() {
                let a = _mm512_set1_epi32((xp.add(r * ldx + 4 * t) as *const i32).read_unaligned());
                cr[0] = _mm512_dpbusd_epi32(cr[0], b0, a);
                cr[1] = _mm512_dpbusd_epi32(cr[1], b1, a);
            }
        }
    }
    let m0 = mask16(cols);
    let m1 = mask16(cols.saturating_sub(16));
    // SAFETY: masked loads of `cols` scales starting at column j0.
    let (s0, s1) = unsafe {
        (
            _mm512_maskz_loadu_ps(m0, ws.as_ptr().add(j0)),
            _mm512_maskz_loadu_ps(m1, ws.as_ptr().add(j0).wrapping_add(16)),
        )
    };
    for (r, cr) in c.iter().enumerate() {
        let comp = _mm512_set1_epi32(xsum[r]);
        let xs = _mm512_set1_ps(x.scales[i0 + r]);
        // Same float operations as the scalar kernel: acc as f32 · (x_scale · w_scale).
        let v0 = _mm512_mul_ps(
            _mm512_cvtepi32_ps(_mm512_sub_epi32(cr[0], comp)),
            _mm512_mul_ps(xs, s0),
        );
        let v1 = _mm512_mul_ps(
            _mm512_cvtepi32_ps(_mm512_sub_epi32(cr[1], comp)),
            _mm512_mul_ps(xs, s1),
        );
        let out = y.row(i0 + r)[j0..].as_mut_ptr();
        // SAFETY: masks cover exactly `cols` elements of row i0 + r from column j0.
        unsafe {
            _mm512_mask_storeu_ps(out, m0, v0);
            _mm512_mask_storeu_ps(out.wrapping_add(16), m1, v1);
        }
    }
}

// ---------------------------------------------------------------- attention

/// Attention scores, for head dimensions of 32, 64 and 128 with the query held in registers
/// (the generic code for other widths).
pub(super) fn dots(q: &[f32], rows: &[f32], stride: usize, scale: f32, out: &mut [f32]) {
    let (d, n) = (q.len(), out.len());
    if n == 0 {
        return;
    }
    assert!(rows.len() >= (n - 1) * stride + d);
    // SAFETY: this table is only handed out after checking AVX-512 F; the rows lie in `rows`.
    unsafe {
        match d {
            32 => dots_n::<2>(q, rows, stride, scale, out),
            64 => dots_n::<4>(q, rows, stride, scale, out),
            128 => dots_n::<8>(q, rows, stride, scale, out),
            _ => dots_any(q, rows, stride, scale, out),
        }
    }
}

#[target_feature(enable = "avx512f")]
unsafe fn dots_any(q: &[f32], rows: &[f32], stride: usize, scale: f32, out: &mut [f32]) {
    generic::dots(q, rows, stride, scale, out)
}

#[target_feature(enable = "avx512f")]
unsafe fn dots_n<const C: usize>(
    q: &[f32],
    rows: &[f32],
    stride: usize,
    scale: f32,
    out: &mut [f32],
) {
    // SAFETY (whole body): q has 16·C floats; row j has 16·C floats at j · stride (asserted by
    // the caller for every j < out.len()).
    unsafe {
        let qv: [__m512; C] = std::array::from_fn(|c| _mm512_loadu_ps(q.as_ptr().add(16 * c)));
        for (j, o) in out.iter_mut().enumerate() {
            let r = rows.as_ptr().add(j * stride);
            let mut acc = _mm512_mul_ps(qv[0], _mm512_loadu_ps(r));
            for (c, &qc) in qv.iter().enumerate().skip(1) {
                acc = _mm512_fmadd_ps(qc, _mm512_loadu_ps(r.add(16 * c)), acc);
            }
            *o = _mm512_reduce_add_ps(acc) * scale;
        }
    }
}

/// Attention mix with the output in registers, two accumulator sets (even and odd keys) to
/// halve the dependency chains (widths 32, 64, 128; the generic code otherwise).
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
            32 => mix_n::<2>(p, rows, stride, out),
            64 => mix_n::<4>(p, rows, stride, out),
            128 => mix_n::<8>(p, rows, stride, out),
            _ => mix_any(p, rows, stride, out),
        }
    }
}

#[target_feature(enable = "avx512f")]
unsafe fn mix_any(p: &[f32], rows: &[f32], stride: usize, out: &mut [f32]) {
    generic::mix(p, rows, stride, out)
}

#[target_feature(enable = "avx512f")]
unsafe fn mix_n<const C: usize>(p: &[f32], rows: &[f32], stride: usize, out: &mut [f32]) {
    let mut acc = [[_mm512_setzero_ps(); C]; 2];
    // SAFETY (whole body): as in `dots_n`; out has 16·C floats.
    unsafe {
        for (j, &pj) in p.iter().enumerate() {
            if pj != 0.0 {
                let r = rows.as_ptr().add(j * stride);
                let pv = _mm512_set1_ps(pj);
                let a = &mut acc[j & 1];
                for (c, ac) in a.iter_mut().enumerate() {
                    *ac = _mm512_fmadd_ps(pv, _mm512_loadu_ps(r.add(16 * c)), *ac);
                }
            }
        }
        let [even, odd] = acc;
        for (c, (e, o)) in even.iter().zip(&odd).enumerate() {
            _mm512_storeu_ps(out.as_mut_ptr().add(16 * c), _mm512_add_ps(*e, *o));
        }
    }
}

// ---------------------------------------------------------------- int4 × int8

thread_local! {
    /// Activations reordered for the int4 kernel (grows to the largest m·k seen, then reused).
    static Q4_ACTS: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

pub(super) fn gemm_q4(x: &QActs, codes: &[u8], ws: &[f16], y: &mut Out) {
    Q4_ACTS.with(|buf| {
        let mut buf = buf.borrow_mut();
        let (m, k) = (y.rows(), x.k);
        if buf.len() < m * k {
            buf.resize(m * k, 0);
        }
        reorder_q4_acts(&x.q[..m * k], k, &mut buf[..m * k]);
        // SAFETY: this table is only handed out after checking AVX-512 F/BW/VL/VNNI.
        unsafe { gemm_q4_impl(&buf[..m * k], x, codes, ws, y) }
    })
}

/// Shifts activations to unsigned (+128) and reorders each block of 64 (two groups g0, g1) as
/// [even of g0, even of g1, odd of g0, odd of g1], the order in which the kernel expands a block's
/// 32 code bytes (low nibbles = even elements, high nibbles = odd ones). A last lone group of 32
/// becomes [even, odd].
fn reorder_q4_acts(q: &[i8], k: usize, out: &mut [u8]) {
    for (row, orow) in q.chunks_exact(k).zip(out.chunks_exact_mut(k)) {
        for (blk, oblk) in row.chunks(64).zip(orow.chunks_mut(64)) {
            let groups = blk.len() / Q4_GROUP;
            for g in 0..groups {
                for t in 0..16 {
                    oblk[g * 16 + t] = (blk[g * 32 + 2 * t] as u8) ^ 0x80;
                    oblk[groups * 16 + g * 16 + t] = (blk[g * 32 + 2 * t + 1] as u8) ^ 0x80;
                }
            }
        }
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn gemm_q4_impl(xu: &[u8], x: &QActs, codes: &[u8], ws: &[f16], y: &mut Out) {
    let (m, k, n) = (y.rows(), x.k, y.cols());
    let groups = k / Q4_GROUP;
    assert!(k % Q4_GROUP == 0 && codes.len() >= n * k / 2 && ws.len() >= n * groups);
    let levels: [i8; 16] = Q4_LEVELS;
    // SAFETY: 16 readable bytes.
    let lut128 = unsafe { _mm_loadu_si128(levels.as_ptr().cast()) };
    let lut = _mm512_broadcast_i32x4(lut128);
    let lut256 = _mm256_broadcastsi128_si256(lut128);
    let low = _mm512_set1_epi8(0x0f);
    let ones = _mm512_set1_epi8(1);
    let pairs = groups / 2;
    for j in 0..n {
        let crow = &codes[j * k / 2..(j + 1) * k / 2];
        let srow = &ws[j * groups..(j + 1) * groups];
        for i in 0..m {
            let xr = &xu[i * k..(i + 1) * k];
            let mut f = _mm512_setzero_ps();
            for p in 0..pairs {
                // SAFETY: 32 code bytes of groups 2p, 2p+1 and 64 reordered activations.
                let (c, xv) = unsafe {
                    (
                        _mm256_loadu_si256(crow.as_ptr().add(p * 32).cast()),
                        _mm512_loadu_si512(xr.as_ptr().add(p * 64).cast()),
                    )
                };
                // [lo g0 | lo g1 | hi g0 | hi g1], 16 bytes each.
                let cz = _mm512_inserti64x4(_mm512_castsi256_si512(c), _mm256_srli_epi16(c, 4), 1);
                let wv = _mm512_shuffle_epi8(lut, _mm512_and_si512(cz, low));
                let acc = _mm512_dpbusd_epi32(_mm512_setzero_si512(), xv, wv);
                let wsum = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, wv);
                let dotv = _mm512_sub_epi32(acc, _mm512_slli_epi32(wsum, 7));
                // Lanes 0-3 and 8-11 belong to group 2p, lanes 4-7 and 12-15 to group 2p+1.
                let s0 = _mm512_set1_ps(srow[2 * p].to_f32());
                let s1 = _mm512_set1_ps(srow[2 * p + 1].to_f32());
                let sv = _mm512_mask_blend_ps(0xF0F0, s0, s1);
                f = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dotv), sv, f);
            }
            let mut total = _mm512_reduce_add_ps(f);
            if groups % 2 == 1 {
                let g = groups - 1;
                // SAFETY: the last 16 code bytes and 32 activations of the row.
                let (c, xv) = unsafe {
                    (
                        _mm_loadu_si128(crow.as_ptr().add(g * 16).cast()),
                        _mm256_loadu_si256(xr.as_ptr().add(g * 32).cast()),
                    )
                };
                let cy =
                    _mm256_inserti128_si256(_mm256_castsi128_si256(c), _mm_srli_epi16(c, 4), 1);
                let wv = _mm256_shuffle_epi8(lut256, _mm256_and_si256(cy, _mm256_set1_epi8(0x0f)));
                let acc = _mm256_dpbusd_epi32(_mm256_setzero_si256(), xv, wv);
                let wsum = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(1), wv);
                let d = _mm256_sub_epi32(acc, _mm256_slli_epi32(wsum, 7));
                let mut arr = [0i32; 8];
                // SAFETY: 8 writable i32.
                unsafe { _mm256_storeu_si256(arr.as_mut_ptr().cast(), d) };
                total += arr.iter().sum::<i32>() as f32 * srow[g].to_f32();
            }
            y.row(i)[j] = total * x.scales[i];
        }
    }
}

// ---------------------------------------------------------------- f32, f16, bf16 weights

/// Below this many activation rows the weights are streamed row by row (GEMV); above, the packed
/// GEMM reuses each weight panel across rows.
const GEMM_MIN_ROWS: usize = 8;

pub(super) fn gemm_f32(x: &[f32], k: usize, w: &[f32], y: &mut Out) {
    if y.rows() >= GEMM_MIN_ROWS {
        // SAFETY: this table is only handed out after checking AVX-512 F.
        unsafe { sgemm(x, k, w, y) }
    } else {
        // SAFETY: as above.
        unsafe { gemv_float(x, k, w, y) }
    }
}

pub(super) fn gemm_f16(x: &[f32], k: usize, w: &[f16], y: &mut Out) {
    // SAFETY: AVX-512 F/BW/VL and F16C are checked before the table is handed out.
    unsafe { gemv_float(x, k, w, y) }
}

pub(super) fn gemm_bf16(x: &[f32], k: usize, w: &[bf16], y: &mut Out) {
    // SAFETY: as above.
    unsafe { gemv_float(x, k, w, y) }
}

/// A weight element type that loads as 16 f32 lanes.
trait Widen: Copy {
    /// # Safety
    /// 16 elements readable at `p`; AVX-512 F/BW available.
    unsafe fn load(p: *const Self) -> __m512;
    /// # Safety
    /// The lanes in `m` readable at `p`; AVX-512 F/BW available.
    unsafe fn load_masked(p: *const Self, m: u16) -> __m512;
}

impl Widen for f32 {
    #[inline(always)]
    unsafe fn load(p: *const f32) -> __m512 {
        unsafe { _mm512_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn load_masked(p: *const f32, m: u16) -> __m512 {
        unsafe { _mm512_maskz_loadu_ps(m, p) }
    }
}

impl Widen for f16 {
    #[inline(always)]
    unsafe fn load(p: *const f16) -> __m512 {
        unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(p.cast())) }
    }
    #[inline(always)]
    unsafe fn load_masked(p: *const f16, m: u16) -> __m512 {
        unsafe { _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p.cast())) }
    }
}

impl Widen for bf16 {
    // bf16 → f32 is a 16-bit left shift: exact.
    #[inline(always)]
    unsafe fn load(p: *const bf16) -> __m512 {
        unsafe {
            _mm512_castsi512_ps(_mm512_slli_epi32(
                _mm512_cvtepu16_epi32(_mm256_loadu_si256(p.cast())),
                16,
            ))
        }
    }
    #[inline(always)]
    unsafe fn load_masked(p: *const bf16, m: u16) -> __m512 {
        unsafe {
            _mm512_castsi512_ps(_mm512_slli_epi32(
                _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p.cast())),
                16,
            ))
        }
    }
}

/// Streams weight rows 4 at a time against every activation row (few rows: decoding).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,f16c,fma")]
unsafe fn gemv_float<W: Widen>(x: &[f32], k: usize, w: &[W], y: &mut Out) {
    let (m, n) = (y.rows(), y.cols());
    assert!(x.len() >= m * k && w.len() >= n * k);
    let full = k / 16;
    let tail = mask16(k - full * 16);
    let mut j = 0;
    while j < n {
        let rows = (n - j).min(4);
        for i in 0..m {
            let xr = x[i * k..].as_ptr();
            let mut acc = [_mm512_setzero_ps(); 4];
            for c in 0..full {
                // SAFETY: 16 elements of row i and of weight rows j..j+rows, inside the asserted lengths.
                unsafe {
                    let xv = _mm512_loadu_ps(xr.add(c * 16));
                    for (r, a) in acc.iter_mut().enumerate().take(rows) {
                        *a = _mm512_fmadd_ps(xv, W::load(w.as_ptr().add((j + r) * k + c * 16)), *a);
                    }
                }
            }
            if tail != 0 {
                // SAFETY: masked loads of the last k % 16 elements.
                unsafe {
                    let xv = _mm512_maskz_loadu_ps(tail, xr.add(full * 16));
                    for (r, a) in acc.iter_mut().enumerate().take(rows) {
                        let wv = W::load_masked(w.as_ptr().add((j + r) * k + full * 16), tail);
                        *a = _mm512_fmadd_ps(xv, wv, *a);
                    }
                }
            }
            let out = y.row(i);
            for r in 0..rows {
                out[j + r] = _mm512_reduce_add_ps(acc[r]);
            }
        }
        j += rows;
    }
}

/// Tile: MR activation rows × NR = 32 output columns (two zmm), 24 accumulators.
const MR: usize = 12;
const NR: usize = 32;
/// Depth of one packed weight panel: 256 × 32 floats = 32 KiB, half of L1 beside the 12 KiB of
/// activations it meets.
const KC: usize = 256;

/// `Y = X · Wᵀ` for many rows: the shared packed driver with this level's 12×32 tile.
unsafe fn sgemm(x: &[f32], k: usize, w: &[f32], y: &mut Out) {
    // SAFETY: `tile` needs the features this table was handed out for.
    unsafe { super::packed_sgemm::<MR, NR, KC>(x, k, w, y, tile) }
}

/// One MR×NR tile over `kc` steps; `accumulate` adds to what is in `y` (later K panels).
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,fma")]
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
    let mut c = [[_mm512_setzero_ps(); 2]; MR];
    macro_rules! body {
        ($r:expr) => {{
            for kk in 0..kc {
                // SAFETY: panel has kc × 32 floats; x has `rows` rows of ≥ kc floats.
                unsafe {
                    let b0 = _mm512_loadu_ps(panel.add(kk * NR));
                    let b1 = _mm512_loadu_ps(panel.add(kk * NR + 16));
                    for r in 0..$r {
                        let a = _mm512_set1_ps(*x.add(r * ldx + kk));
                        c[r][0] = _mm512_fmadd_ps(a, b0, c[r][0]);
                        c[r][1] = _mm512_fmadd_ps(a, b1, c[r][1]);
                    }
                }
            }
        }};
    }
    // A constant row count lets the compiler keep all accumulators in registers.
    match rows {
        12 => body!(12),
        11 => body!(11),
        10 => body!(10),
        9 => body!(9),
        8 => body!(8),
        7 => body!(7),
        6 => body!(6),
        5 => body!(5),
        4 => body!(4),
        3 => body!(3),
        2 => body!(2),
        _ => body!(1),
    }
    let m0 = mask16(cols);
    let m1 = mask16(cols.saturating_sub(16));
    for (r, cr) in c.iter().enumerate().take(rows) {
        let out = y.row(i0 + r)[j0..].as_mut_ptr();
        // SAFETY: masks cover exactly `cols` ≤ 32 elements of row i0 + r from column j0.
        unsafe {
            let (mut v0, mut v1) = (cr[0], cr[1]);
            if accumulate {
                v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, out));
                v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, out.wrapping_add(16)));
            }
            _mm512_mask_storeu_ps(out, m0, v0);
            _mm512_mask_storeu_ps(out.wrapping_add(16), m1, v1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every streaming plan gives the scalar kernel's bits (whatever plan this CPU chose).
    #[test]
    fn every_gemv_plan_matches_scalar() {
        if !super::super::has_avx512() {
            return;
        }
        for (n, k) in [(203, 700), (2, 700), (1, 40), (5, 64)] {
            check_plans(n, k);
        }
    }

    fn check_plans(n: usize, k: usize) {
        let w: Vec<i8> = (0..n * k)
            .map(|i| ((i * 37 + 11) % 255) as i32 as i8)
            .collect();
        let ws: Vec<f32> = (0..n).map(|j| 0.01 + j as f32 * 1e-4).collect();
        let q: Vec<i8> = (0..k).map(|i| ((i * 53 + 5) % 255) as i32 as i8).collect();
        let x = QActs {
            q: &q,
            scales: &[0.02],
            m: 1,
            k,
        };
        let mut want = vec![0f32; n];
        crate::kernels::scalar::gemm_q8(&x, &w, &ws, &mut Out::new(&mut want, 1, n));
        for streams in 1..=3 {
            for prefetch in [0, 2048] {
                let mut got = vec![0f32; n];
                let plan = GemvPlan { streams, prefetch };
                // SAFETY: the caller checked AVX-512.
                unsafe { q8_gemv_one_by(plan, &x, 0, &w, &ws, &mut Out::new(&mut got, 1, n)) };
                let same = got
                    .iter()
                    .zip(&want)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{plan:?} n={n} k={k}");
            }
        }
    }
}
