//! AVX2 + FMA + F16C.

use crate::kernels::generic;
use crate::kernels::{Out, QActs};

generic::instantiate_all!("avx2,fma,f16c");
