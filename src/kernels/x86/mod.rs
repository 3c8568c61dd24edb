//! x86-64 kernels: AVX2 (+FMA, F16C) and AVX-512 (F, BW, VL, VNNI). Each level's table uses the
//! generic kernels compiled with its features plus the hand-written products of its module.

mod avx2;
mod avx512;

use std::cell::RefCell;

use super::{Isa, Kernels, Out};

pub(super) fn has_avx2() -> bool {
    is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c")
}

pub(super) fn has_avx512() -> bool {
    has_avx2()
        && is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx512vnni")
}

macro_rules! table {
    ($isa:expr, $m:ident) => {
        Kernels {
            isa: $isa,
            quantize_rows: $m::quantize_rows,
            gemm_f32: $m::gemm_f32,
            gemm_f16: $m::gemm_f16,
            gemm_bf16: $m::gemm_bf16,
            gemm_q8: $m::gemm_q8,
            gemm_q4: $m::gemm_q4,
            dot: $m::dot,
            axpy: $m::axpy,
            add: $m::add,
            mul: $m::mul,
            scale: $m::scale,
            layer_norm: $m::layer_norm,
            rms_norm: $m::rms_norm,
            softmax: $m::softmax,
            gelu: $m::gelu,
            gelu_tanh: $m::gelu_tanh,
            silu: $m::silu,
            relu: $m::relu,
            lstm_cell: $m::lstm_cell,
            rope: $m::rope,
            argmax: $m::argmax,
            log_sum_exp: $m::log_sum_exp,
            dots: $m::dots,
            mix: $m::mix,
        }
    };
}

// The tables exist statically but are only handed out by `Kernels::for_isa` after the check.
static AVX2: Kernels = table!(Isa::Avx2, avx2);
static AVX512: Kernels = table!(Isa::Avx512, avx512);

pub(super) fn avx2_table() -> &'static Kernels {
    debug_assert!(has_avx2());
    &AVX2
}

pub(super) fn avx512_table() -> &'static Kernels {
    debug_assert!(has_avx512());
    &AVX512
}

/// One register tile of a packed f32 GEMM: `rows` activation rows at `x` (row stride `ldx`)
/// times the packed panel (`kc` steps of `NR` floats) into rows `i0..`, columns `j0..j0+cols` of
/// `y`; `accumulate` adds to what `y` holds (later depth panels).
pub(super) type Tile = unsafe fn(
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
);

thread_local! {
    /// The packed weight panel of the f32 GEMM, allocated once per thread.
    static PANEL: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `Y = X · Wᵀ` for many rows, shared by the ISA levels: for each panel of `NR` weight rows and
/// `KC` columns, pack it transposed (`[KC][NR]`, missing rows zero), then sweep the activation
/// rows through it `MR` at a time with the level's `tile`.
///
/// # Safety
/// `tile` must be runnable on this CPU (its table was handed out after the feature check).
pub(super) unsafe fn packed_sgemm<const MR: usize, const NR: usize, const KC: usize>(
    x: &[f32],
    k: usize,
    w: &[f32],
    y: &mut Out,
    tile: Tile,
) {
    let (m, n) = (y.rows(), y.cols());
    assert!(x.len() >= m * k && w.len() >= n * k);
    PANEL.with(|panel| {
        let mut panel = panel.borrow_mut();
        if panel.len() < KC * NR {
            panel.resize(KC * NR, 0.0);
        }
        let mut j0 = 0;
        while j0 < n {
            let cols = (n - j0).min(NR);
            let mut k0 = 0;
            while k0 < k {
                let kc = (k - k0).min(KC);
                for kk in 0..kc {
                    for (jj, d) in panel[kk * NR..(kk + 1) * NR].iter_mut().enumerate() {
                        *d = if jj < cols {
                            w[(j0 + jj) * k + k0 + kk]
                        } else {
                            0.0
                        };
                    }
                }
                let mut i0 = 0;
                while i0 < m {
                    let rows = (m - i0).min(MR);
                    // SAFETY: the tile reads rows i0..i0+rows of x at columns k0..k0+kc and the
                    // packed panel; it writes rows i0..i0+rows, columns j0..j0+cols of y; the
                    // caller vouches for the CPU features.
                    unsafe {
                        tile(
                            rows,
                            x.as_ptr().add(i0 * k + k0),
                            k,
                            panel.as_ptr(),
                            kc,
                            y,
                            i0,
                            j0,
                            cols,
                            k0 > 0,
                        )
                    };
                    i0 += rows;
                }
                k0 += kc;
            }
            j0 += cols;
        }
    });
}
