//! x86-64 kernels: AVX2 (+FMA, F16C) and AVX-512 (F, BW, VL, VNNI). Each level's table uses the
//! generic kernels compiled with its features plus the hand-written products of its module.

mod avx2;
mod avx512;

use super::{Isa, Kernels};

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
            rope: $m::rope,
            argmax: $m::argmax,
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
