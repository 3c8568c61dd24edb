//! AVX-512 F/BW/VL + VNNI.

use crate::kernels::generic;
use crate::kernels::{Out, QActs};

generic::instantiate_all!("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c");
