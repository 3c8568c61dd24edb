//! aarch64 kernels: NEON (baseline on aarch64), with `sdot` where the CPU has the dot-product
//! extension. The products are hand-written in [`neon`]; the element-wise kernels are the generic
//! ones compiled for NEON. There are two tables, with and without `sdot`, and [`neon_table`]
//! hands out the one this CPU can run.

mod neon;

use super::generic;
use super::{Isa, Kernels, Out, QActs};

/// The generic kernels compiled for NEON.
mod portable {
    use super::*;
    generic::instantiate_all!("neon");
}

/// Whether this CPU has the dot-product extension (`SDOT`, FEAT_DotProd).
pub(super) fn has_dotprod() -> bool {
    std::arch::is_aarch64_feature_detected!("dotprod")
}

macro_rules! table {
    ($gemm_q8:path, $gemm_q4:path) => {
        Kernels {
            isa: Isa::Neon,
            quantize_rows: portable::quantize_rows,
            gemm_f32: neon::gemm_f32,
            gemm_f16: portable::gemm_f16,
            gemm_bf16: portable::gemm_bf16,
            gemm_q8: $gemm_q8,
            gemm_q4: $gemm_q4,
            dot: neon::dot,
            axpy: portable::axpy,
            add: portable::add,
            mul: portable::mul,
            scale: portable::scale,
            layer_norm: portable::layer_norm,
            rms_norm: portable::rms_norm,
            softmax: portable::softmax,
            gelu: portable::gelu,
            gelu_tanh: portable::gelu_tanh,
            silu: portable::silu,
            relu: portable::relu,
            lstm_cell: portable::lstm_cell,
            rope: portable::rope,
            argmax: portable::argmax,
            log_sum_exp: portable::log_sum_exp,
            dots: portable::dots,
            mix: portable::mix,
        }
    };
}

/// Baseline NEON: int8 products through widening multiplies.
static NEON: Kernels = table!(neon::gemm_q8_widen, neon::gemm_q4_widen);
/// NEON with `sdot`. Only handed out after `has_dotprod()`.
static NEON_DOTPROD: Kernels = table!(neon::gemm_q8_sdot, neon::gemm_q4_sdot);

pub(super) fn neon_table() -> &'static Kernels {
    if has_dotprod() { &NEON_DOTPROD } else { &NEON }
}

#[cfg(test)]
mod tests {
    //! `tests/kernels.rs` checks the table this CPU gets; these check the baseline int8 products
    //! as well on a CPU that has `sdot` (so one run covers both), against the scalar reference.

    use super::*;
    use crate::kernels::scalar;
    use half::f16;

    /// Deterministic int8 values covering the whole range, -128 included.
    fn bytes(n: usize, seed: u32) -> Vec<i8> {
        let mut s = seed.wrapping_mul(2_654_435_761) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s >> 24) as u8 as i8
            })
            .collect()
    }

    #[test]
    fn both_int8_variants_match_scalar() {
        let mut tables = vec![&NEON];
        if has_dotprod() {
            tables.push(&NEON_DOTPROD);
        }
        for kern in tables {
            for (m, n, k) in [(1, 1, 1), (1, 13, 47), (2, 9, 64), (3, 17, 100), (5, 4, 16)] {
                let (x, w) = (bytes(m * k, 1), bytes(n * k, 2));
                let xs: Vec<f32> = (0..m).map(|i| 0.01 + i as f32 * 0.003).collect();
                let ws: Vec<f32> = (0..n).map(|j| 0.02 - j as f32 * 0.0007).collect();
                let acts = QActs {
                    q: &x,
                    scales: &xs,
                    m,
                    k,
                };
                let (mut a, mut b) = (vec![0f32; m * n], vec![f32::NAN; m * n]);
                scalar::gemm_q8(&acts, &w, &ws, &mut Out::new(&mut a, m, n));
                (kern.gemm_q8)(&acts, &w, &ws, &mut Out::new(&mut b, m, n));
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&a), bits(&b), "q8 m={m} n={n} k={k}");

                // int4: same shapes with k rounded up to whole groups of 32.
                let k4 = k.div_ceil(32) * 32;
                let x4: Vec<i8> = bytes(m * k4, 3).iter().map(|&v| v.max(-127)).collect();
                let codes: Vec<u8> = bytes(n * k4 / 2, 4).iter().map(|&v| v as u8).collect();
                let s4: Vec<f16> = (0..n * k4 / 32)
                    .map(|g| f16::from_f32(0.001 * (g % 7 + 1) as f32))
                    .collect();
                let acts = QActs {
                    q: &x4,
                    scales: &xs,
                    m,
                    k: k4,
                };
                scalar::gemm_q4(&acts, &codes, &s4, &mut Out::new(&mut a, m, n));
                (kern.gemm_q4)(&acts, &codes, &s4, &mut Out::new(&mut b, m, n));
                assert_eq!(bits(&a), bits(&b), "q4 m={m} n={n} k={k4}");
            }
        }
    }
}
