//! The hot loops of every model, chosen once at run time.
//!
//! Three tiers, as in `docs/kernels.md`: [`scalar`] is the readable reference and the spec;
//! `generic` is portable lane-blocked code that the compiler vectorizes when it is instantiated
//! inside an ISA module; `x86/` (AVX2, AVX-512 with VNNI) and `aarch64/` (NEON, with `sdot` where
//! the CPU has it) hold hand-written products. One [`Kernels`] table per ISA; the rest of quill
//! never names an ISA. An ISA's table can only be obtained after the CPU was checked for it.
//!
//! `QUILL_FORCE_ISA=scalar|avx2|avx512|neon` forces a lower level (tests run every level).
//! Try it: `quill info`.

#[cfg(target_arch = "aarch64")]
mod aarch64;
pub mod attention;
mod generic;
pub mod pool;
pub mod scalar;
#[cfg(target_arch = "x86_64")]
mod x86;

use std::marker::PhantomData;
use std::sync::OnceLock;

use half::{bf16, f16};

pub use pool::Pool;

use crate::tensor::{Matrix, Weights};

/// An instruction-set level, lowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    Scalar,
    /// AVX2 + FMA + F16C (int8 through `vpmaddwd`, never the saturating `vpmaddubsw`).
    Avx2,
    /// AVX-512 F/BW/VL with VNNI (`vpdpbusd`).
    Avx512,
    /// aarch64 NEON (int8 through `sdot` where the CPU has the dot-product extension).
    Neon,
}

impl Isa {
    pub const ALL: [Isa; 4] = [Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Neon];

    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
            Isa::Neon => "neon",
        }
    }

    pub fn parse(s: &str) -> Option<Isa> {
        Isa::ALL.into_iter().find(|i| i.name() == s)
    }

    /// Whether this CPU can run the level.
    pub fn is_available(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => x86::has_avx2(),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => x86::has_avx512(),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => true, // NEON is part of the aarch64 baseline
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// Every level this CPU can run, lowest first.
    pub fn available() -> Vec<Isa> {
        Isa::ALL.into_iter().filter(|i| i.is_available()).collect()
    }

    /// The best level this CPU can run.
    pub fn best() -> Isa {
        *Isa::available().last().expect("scalar is always available")
    }
}

/// Quantized activations: `m` rows of `k` int8 values with one f32 scale per row.
#[derive(Clone, Copy, Debug)]
pub struct QActs<'a> {
    pub q: &'a [i8],
    pub scales: &'a [f32],
    pub m: usize,
    pub k: usize,
}

/// A mutable `[rows, cols]` window of a row-major f32 matrix with row stride `ld ≥ cols`. Column
/// windows of one matrix can be handed to different threads: they never overlap.
pub struct Out<'a> {
    ptr: *mut f32,
    rows: usize,
    cols: usize,
    ld: usize,
    _borrow: PhantomData<&'a mut [f32]>,
}

// SAFETY: an Out is an exclusive borrow of the elements it covers, like `&mut [f32]`.
unsafe impl Send for Out<'_> {}

impl<'a> Out<'a> {
    /// The whole of `y` as `[rows, cols]`.
    pub fn new(y: &'a mut [f32], rows: usize, cols: usize) -> Self {
        assert!(y.len() >= rows * cols, "output {} < {rows}x{cols}", y.len());
        Out {
            ptr: y.as_mut_ptr(),
            rows,
            cols,
            ld: cols,
            _borrow: PhantomData,
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Row `i` of the window.
    pub fn row(&mut self, i: usize) -> &mut [f32] {
        assert!(i < self.rows);
        // SAFETY: row i of the window lies inside the borrowed matrix (checked at construction
        // and preserved by `split_cols`), and `&mut self` makes the slice exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(i * self.ld), self.cols) }
    }

    /// Splits into columns `[0, at)` and `[at, cols)`.
    pub fn split_cols(self, at: usize) -> (Out<'a>, Out<'a>) {
        assert!(at <= self.cols);
        let left = Out { cols: at, ..self };
        let right = Out {
            // SAFETY: `at ≤ cols`, so the pointer stays inside (or one past) row 0.
            ptr: unsafe { self.ptr.add(at) },
            cols: self.cols - at,
            ..self
        };
        (left, right)
    }
}

type GemmFloat<W> = fn(x: &[f32], k: usize, w: &[W], y: &mut Out);
type LayerNormFn = fn(x: &[f32], gamma: &[f32], beta: Option<&[f32]>, eps: f32, out: &mut [f32]);

/// An elementwise activation of the tables ([`Kernels::activate`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    Relu,
    /// GELU, the exact erf form.
    Gelu,
    /// GELU, the tanh approximation.
    GeluTanh,
    /// SiLU (swish).
    Silu,
}

/// One ISA's kernels. Products compute `Y[m, n] = X[m, k] · W[n, k]ᵀ` (see [`scalar`]).
pub struct Kernels {
    pub isa: Isa,
    /// Per-row symmetric int8 quantization of activations (feeds `gemm_q8` / `gemm_q4`).
    pub quantize_rows: fn(x: &[f32], k: usize, q: &mut [i8], scales: &mut [f32]),
    pub gemm_f32: GemmFloat<f32>,
    pub gemm_f16: GemmFloat<f16>,
    pub gemm_bf16: GemmFloat<bf16>,
    pub gemm_q8: fn(x: &QActs, w: &[i8], scales: &[f32], y: &mut Out),
    pub gemm_q4: fn(x: &QActs, codes: &[u8], scales: &[f16], y: &mut Out),
    pub dot: fn(&[f32], &[f32]) -> f32,
    pub axpy: fn(f32, &[f32], &mut [f32]),
    pub add: fn(&mut [f32], &[f32]),
    pub mul: fn(&mut [f32], &[f32]),
    pub scale: fn(&mut [f32], f32),
    pub layer_norm: LayerNormFn,
    pub rms_norm: fn(x: &[f32], gamma: &[f32], eps: f32, out: &mut [f32]),
    pub softmax: fn(&mut [f32]),
    pub gelu: fn(&mut [f32]),
    pub gelu_tanh: fn(&mut [f32]),
    pub silu: fn(&mut [f32]),
    pub relu: fn(&mut [f32]),
    /// One LSTM cell update: gates `[i|f|g|o]` (4·n) → `c`, `h` (n each).
    pub lstm_cell: fn(gates: &[f32], c: &mut [f32], h: &mut [f32]),
    pub rope: fn(x: &mut [f32], cos: &[f32], sin: &[f32], interleaved: bool),
    pub argmax: fn(&[f32]) -> usize,
    /// `ln Σ exp(x)` (the log-softmax normalizer; −∞ for an all −∞ row).
    pub log_sum_exp: fn(&[f32]) -> f32,
    /// Attention scores of one query against `out.len()` keys stored at a stride.
    pub dots: fn(q: &[f32], rows: &[f32], stride: usize, scale: f32, out: &mut [f32]),
    /// Attention output: the value rows (at a stride) weighted by `p`.
    pub mix: fn(p: &[f32], rows: &[f32], stride: usize, out: &mut [f32]),
}

static SCALAR: Kernels = Kernels {
    isa: Isa::Scalar,
    quantize_rows: scalar::quantize_rows,
    gemm_f32: scalar::gemm_f32,
    gemm_f16: scalar::gemm_f16,
    gemm_bf16: scalar::gemm_bf16,
    gemm_q8: scalar::gemm_q8,
    gemm_q4: scalar::gemm_q4,
    dot: scalar::dot,
    axpy: scalar::axpy,
    add: scalar::add,
    mul: generic::scalar_mul,
    scale: scalar::scale,
    layer_norm: scalar::layer_norm,
    rms_norm: scalar::rms_norm,
    softmax: scalar::softmax,
    gelu: scalar::gelu,
    gelu_tanh: scalar::gelu_tanh,
    silu: scalar::silu,
    relu: scalar::relu,
    lstm_cell: scalar::lstm_cell,
    rope: scalar::rope,
    argmax: scalar::argmax,
    log_sum_exp: scalar::log_sum_exp,
    dots: scalar::dots,
    mix: scalar::mix,
};

impl Kernels {
    /// The table of `isa`, or `None` when this CPU cannot run it.
    pub fn for_isa(isa: Isa) -> Option<&'static Kernels> {
        if !isa.is_available() {
            return None;
        }
        match isa {
            Isa::Scalar => Some(&SCALAR),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => Some(x86::avx2_table()),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => Some(x86::avx512_table()),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => Some(aarch64::neon_table()),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    /// Applies `act` in place.
    pub fn activate(&self, act: Act, x: &mut [f32]) {
        match act {
            Act::Relu => (self.relu)(x),
            Act::Gelu => (self.gelu)(x),
            Act::GeluTanh => (self.gelu_tanh)(x),
            Act::Silu => (self.silu)(x),
        }
    }

    /// Embedding lookup: row `id` of `table` (any layout) dequantized into `out`. One row per
    /// token, never a hot loop, so every level shares the reference dequantization.
    pub fn embed(&self, table: &Matrix, id: usize, out: &mut [f32]) {
        table.dequantize_row(id, out);
    }

    /// Gated feed-forward: `gate = act(gate) ⊙ up`.
    pub fn gated(&self, act: Act, gate: &mut [f32], up: &[f32]) {
        self.activate(act, gate);
        (self.mul)(gate, up);
    }

    /// `Y[m, n] = X[m, k] · Wᵀ` for a weight matrix `w` (`n = w.rows`, `k = w.cols`) in any
    /// layout, split over `pool`'s threads by output columns. `scratch` holds the quantized
    /// activations for int8/int4 weights; it grows once to the largest `m · k` and is reused.
    pub fn linear(
        &self,
        pool: &Pool,
        x: &[f32],
        m: usize,
        w: &Matrix,
        y: &mut [f32],
        scratch: &mut ActScratch,
    ) {
        let (n, k) = (w.rows, w.cols);
        assert_eq!(x.len(), m * k, "x is not [{m}, {k}]");
        let out = Out::new(y, m, n);
        let acts = match w.weights {
            Weights::Q8 { .. } | Weights::Q4 { .. } => {
                scratch.fit(m, k);
                let (q, s) = (&mut scratch.q[..m * k], &mut scratch.scales[..m]);
                (self.quantize_rows)(x, k, q, s);
                Some(QActs { q, scales: s, m, k })
            }
            _ => None,
        };
        // Bytes of weight per output column.
        let row_bytes = match w.weights {
            Weights::F32(_) => 4 * k,
            Weights::F16(_) | Weights::BF16(_) => 2 * k,
            Weights::Q8 { .. } => k,
            Weights::Q4 { .. } => k / 2,
        }
        .max(1);
        // A task must be worth handing to another worker: at least `pool.split_work()` bytes of
        // weights times activation rows.
        let min_cols = (pool.split_work() / (row_bytes * m.max(1))).max(16);
        pool.split_columns(out, min_cols, &|c0, mut part| {
            let c1 = c0 + part.cols();
            match w.weights {
                Weights::F32(wd) => (self.gemm_f32)(x, k, &wd[c0 * k..c1 * k], &mut part),
                Weights::F16(wd) => (self.gemm_f16)(x, k, &wd[c0 * k..c1 * k], &mut part),
                Weights::BF16(wd) => (self.gemm_bf16)(x, k, &wd[c0 * k..c1 * k], &mut part),
                Weights::Q8 { q, scales } => {
                    let a = acts.as_ref().expect("quantized above");
                    (self.gemm_q8)(a, &q[c0 * k..c1 * k], &scales[c0..c1], &mut part)
                }
                Weights::Q4 { packed, scales } => {
                    let a = acts.as_ref().expect("quantized above");
                    let g = k / crate::tensor::Q4_GROUP;
                    (self.gemm_q4)(
                        a,
                        &packed[c0 * k / 2..c1 * k / 2],
                        &scales[c0 * g..c1 * g],
                        &mut part,
                    )
                }
            }
        });
    }
}

/// The `k` largest values of `x` as `(index, value)`, largest first (ties: lower index first),
/// written into `out` (cleared first; reuse it to avoid allocation). NaN values are never chosen.
pub fn top_k(x: &[f32], k: usize, out: &mut Vec<(usize, f32)>) {
    out.clear();
    let k = k.min(x.len());
    if k == 0 {
        return;
    }
    // Keep the best k seen so far sorted (largest first); insertion is cheap for the small k of
    // sampling and beam search, and the common case (value below the k-th) is one compare.
    let better = |a: (usize, f32), b: (usize, f32)| a.1 > b.1 || (a.1 == b.1 && a.0 < b.0);
    // Blocks of 16 whose largest value does not beat the k-th best are skipped whole: a later
    // index never wins a tie, so "not greater" is enough (NaN never counts).
    const BLOCK: usize = 16;
    for (bi, block) in x.chunks(BLOCK).enumerate() {
        if out.len() == k {
            let top = block.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v));
            if top <= out[k - 1].1 {
                continue;
            }
        }
        for (j, &v) in block.iter().enumerate() {
            let i = bi * BLOCK + j;
            if v.is_nan() {
                continue;
            }
            if out.len() == k {
                if !better((i, v), out[k - 1]) {
                    continue;
                }
                out.pop();
            }
            let pos = out.partition_point(|&e| better(e, (i, v)));
            out.insert(pos, (i, v));
        }
    }
}

/// Reusable buffers for quantized activations.
#[derive(Default)]
pub struct ActScratch {
    q: Vec<i8>,
    scales: Vec<f32>,
}

impl ActScratch {
    /// Buffers for up to `m` rows of `k` values (allocate at session creation).
    pub fn with_capacity(m: usize, k: usize) -> Self {
        let mut s = ActScratch::default();
        s.fit(m, k);
        s
    }

    fn fit(&mut self, m: usize, k: usize) {
        if self.q.len() < m * k {
            self.q.resize(m * k, 0);
        }
        if self.scales.len() < m {
            self.scales.resize(m, 0.0);
        }
    }
}

/// The kernels chosen for this process: the best level of this CPU, or the level
/// `QUILL_FORCE_ISA` names (a level the CPU lacks falls back to the best, with a warning).
pub fn kernels() -> &'static Kernels {
    static CHOSEN: OnceLock<&'static Kernels> = OnceLock::new();
    CHOSEN.get_or_init(|| {
        let best = Isa::best();
        let isa = match std::env::var("QUILL_FORCE_ISA") {
            Err(_) => best,
            Ok(v) => match Isa::parse(v.trim()) {
                Some(i) if i.is_available() => i,
                _ => {
                    let available: Vec<&str> = Isa::available().iter().map(|i| i.name()).collect();
                    crate::log::log(
                        crate::log::Level::Warn,
                        &format!(
                            "QUILL_FORCE_ISA={v} is not a level this CPU runs (available: {}); using {}",
                            available.join(", "),
                            best.name()
                        ),
                    );
                    best
                }
            },
        };
        Kernels::for_isa(isa).expect("available")
    })
}
