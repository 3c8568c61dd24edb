//! aarch64 kernels: NEON (baseline on aarch64).

use super::generic;
use super::{Isa, Kernels, Out, QActs};

mod neon {
    use super::*;
    generic::instantiate_all!("neon");
}

static NEON: Kernels = Kernels {
    isa: Isa::Neon,
    quantize_rows: neon::quantize_rows,
    gemm_f32: neon::gemm_f32,
    gemm_f16: neon::gemm_f16,
    gemm_bf16: neon::gemm_bf16,
    gemm_q8: neon::gemm_q8,
    gemm_q4: neon::gemm_q4,
    dot: neon::dot,
    axpy: neon::axpy,
    add: neon::add,
    mul: neon::mul,
    scale: neon::scale,
    layer_norm: neon::layer_norm,
    rms_norm: neon::rms_norm,
    softmax: neon::softmax,
    gelu: neon::gelu,
    gelu_tanh: neon::gelu_tanh,
    silu: neon::silu,
    relu: neon::relu,
    rope: neon::rope,
    argmax: neon::argmax,
};

pub(super) fn neon_table() -> &'static Kernels {
    &NEON
}
