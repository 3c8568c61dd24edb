//! The matrix products through `Kernels::linear`, each reported as a fraction of a limit of this
//! machine measured in the same run (`docs/kernels.md` has the targets and the latest figures):
//!
//! - int8 GEMV (m = 1, 8192 × 8192, 64 MiB of weights; four such matrices in turn, see
//!   `GEMV_WORKING_SET`): weight bytes streamed per second against the read bandwidth of a 1 GiB
//!   buffer. Decode at batch 1 is memory-bound; target ≥ 80 %.
//! - f32 GEMM 512 × 2048 × 2048 against the f32 FMA peak; target ≥ 60 %.
//! - int8 GEMM at the same shape against the int8 VNNI (`vpdpbusd`) peak; target ≥ 40 %.
//! - f32 GEMV (4096 × 4096) and int4 GEMV (8192 × 8192) as GB/s, for completeness.
//!
//! Everything runs at 1 thread (`Pool::single()`) with the best ISA (`kernels()`, so
//! `QUILL_FORCE_ISA` applies), the GEMVs also with every other ISA this CPU runs; the int8 GEMV and
//! the f32 GEMM run again at 2 threads, reported separately (the second vCPU of the reference
//! machine is shared and unreliable). The limits are probed here, in Rust, with `std::arch`
//! intrinsics (x86-64 only; elsewhere the fractions are `n/a`), before and after the kernels; the
//! better of the two counts, and a warning says when they differ by more than 10 %.
//! `../shared/tools/machine-limits.c` is the C version of the same probes. A markdown table is
//! printed at the end.
//!
//!     cargo bench --bench kernels
//!     cargo bench --bench kernels -- gemv_q8     # criterion filter: one group only

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput};
use half::f16;
use quill::kernels::{ActScratch, Isa, Kernels, Pool, kernels};
use quill::tensor::{Matrix, Q4_GROUP, Weights};

/// Fractions of the limit the kernels should reach (docs/kernels.md, `../shared/DESIGN.md` §7).
const TARGET_GEMV_Q8: f64 = 0.80;
const TARGET_GEMM_F32: f64 = 0.60;
const TARGET_GEMM_Q8: f64 = 0.40;

/// Criterion samples per benchmark: every matrix here is larger than a few MiB.
const SAMPLES: usize = 10;

/// A GEMV cycles through copies of its matrix spanning this many bytes (8 × the 32 MiB L3 of the
/// reference machine), so every call streams its weights from memory, as a decoder does layer
/// after layer. One 64 MiB matrix read again and again is partly served by the L3 (its
/// replacement policy is not LRU): the figures would exceed the read bandwidth.
const GEMV_WORKING_SET: usize = 256 << 20;

// ---------------------------------------------------------------------------------------------
// Machine limits

/// One cache line of floats: the read-bandwidth buffer is a `Vec` of these, so it is 64-byte
/// aligned without any byte reinterpretation.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([f32; 16]);

/// A probe's result over several repetitions.
#[derive(Clone, Copy, Debug)]
struct Rate {
    best: f64,
    median: f64,
}

/// The limits at one thread count; `None` where this CPU or target has no probe.
#[derive(Clone, Copy, Debug, Default)]
struct Limits {
    /// Memory read bandwidth, GB/s.
    read: Option<Rate>,
    /// f32 FMA peak with 512-bit vectors, GFLOP/s.
    fma_zmm: Option<Rate>,
    /// f32 FMA peak with 256-bit vectors, GFLOP/s (the limit of the AVX2 level).
    fma_ymm: Option<Rate>,
    /// int8 `vpdpbusd` peak with 512-bit vectors, GOP/s (2 ops per multiply-add).
    vnni_zmm: Option<Rate>,
}

impl Limits {
    /// Each limit from whichever of `self` and `other` measured the higher best figure.
    fn better(&self, other: &Limits) -> Limits {
        let pick = |a: Option<Rate>, b: Option<Rate>| match (a, b) {
            (Some(a), Some(b)) => Some(if b.best > a.best { b } else { a }),
            (a, b) => a.or(b),
        };
        Limits {
            read: pick(self.read, other.read),
            fma_zmm: pick(self.fma_zmm, other.fma_zmm),
            fma_ymm: pick(self.fma_ymm, other.fma_ymm),
            vnni_zmm: pick(self.vnni_zmm, other.vnni_zmm),
        }
    }

    /// The f32 compute limit of ISA level `isa`, with its name.
    fn fma_for(&self, isa: Isa) -> Option<(f64, &'static str)> {
        match isa {
            Isa::Avx512 => self.fma_zmm.map(|r| (r.best, "FMA zmm")),
            Isa::Avx2 => self.fma_ymm.map(|r| (r.best, "FMA ymm")),
            _ => None,
        }
    }

    /// The int8 compute limit of ISA level `isa`, with its name.
    fn int8_for(&self, isa: Isa) -> Option<(f64, &'static str)> {
        match isa {
            Isa::Avx512 => self.vnni_zmm.map(|r| (r.best, "VNNI zmm")),
            _ => None,
        }
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs `f` `reps` times on `threads` threads at once and sums the threads' rates each time.
#[cfg(target_arch = "x86_64")]
fn peak(threads: usize, reps: usize, f: impl Fn() -> f64 + Sync) -> Rate {
    let mut v: Vec<f64> = (0..reps)
        .map(|_| {
            let start = std::sync::Barrier::new(threads);
            std::thread::scope(|s| {
                let hs: Vec<_> = (0..threads)
                    .map(|_| {
                        s.spawn(|| {
                            start.wait();
                            f()
                        })
                    })
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap()).sum::<f64>()
            })
        })
        .collect();
    let best = v.iter().copied().fold(0.0, f64::max);
    Rate {
        best,
        median: median(&mut v),
    }
}

/// Read bandwidth: `threads` threads each sum their share of `buf`; bytes / wall time from the
/// first start to the last finish, `reps` times.
#[cfg(target_arch = "x86_64")]
fn read_bandwidth(buf: &[Line], threads: usize, reps: usize, sum: fn(&[Line]) -> f32) -> Rate {
    let per = buf.len().div_ceil(threads);
    let bytes = std::mem::size_of_val(buf) as f64;
    let mut v: Vec<f64> = (0..reps)
        .map(|_| {
            let start = std::sync::Barrier::new(threads);
            let spans: Vec<(Instant, Instant)> = std::thread::scope(|s| {
                let hs: Vec<_> = buf
                    .chunks(per)
                    .map(|part| {
                        let start = &start;
                        s.spawn(move || {
                            start.wait();
                            let t0 = Instant::now();
                            black_box(sum(black_box(part)));
                            (t0, Instant::now())
                        })
                    })
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let t0 = spans.iter().map(|s| s.0).min().unwrap();
            let t1 = spans.iter().map(|s| s.1).max().unwrap();
            bytes / (t1 - t0).as_secs_f64() / 1e9
        })
        .collect();
    let best = v.iter().copied().fold(0.0, f64::max);
    Rate {
        best,
        median: median(&mut v),
    }
}

/// Probes the limits at 1 and 2 threads. `quick` (criterion's `--test`) uses a small buffer and
/// short loops: the figures are then meaningless, but every probe runs once.
fn probe_limits(quick: bool) -> [Limits; 2] {
    #[cfg(target_arch = "x86_64")]
    {
        let (buf_bytes, iters, reps) = if quick {
            (64 << 20, 1_000_000, 1)
        } else {
            (1 << 30, 50_000_000, 5)
        };
        let mut out = [Limits::default(); 2];
        if let Some(sum) = x86::read_probe() {
            // Every page is written here, so no pass measures page faults.
            let buf: Vec<Line> = (0..buf_bytes / 64)
                .map(|i| Line([(i & 1023) as f32 * 1e-3; 16]))
                .collect();
            black_box(sum(&buf)); // one untimed pass
            for (t, l) in out.iter_mut().enumerate() {
                l.read = Some(read_bandwidth(&buf, t + 1, reps.max(3), sum));
            }
        }
        for (t, l) in out.iter_mut().enumerate() {
            let threads = t + 1;
            if x86::has_avx512f() {
                l.fma_zmm = Some(peak(threads, reps, || x86::fma_zmm(iters)));
            }
            if x86::has_fma() {
                l.fma_ymm = Some(peak(threads, reps, || x86::fma_ymm(iters)));
            }
            if x86::has_vnni() {
                l.vnni_zmm = Some(peak(threads, reps, || x86::vnni_zmm(iters)));
            }
        }
        out
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = quick;
        println!(
            "machine-limit probes: not available on {} (x86-64 only); fractions are n/a",
            std::env::consts::ARCH
        );
        [Limits::default(); 2]
    }
}

/// The probes: `std::arch` intrinsics behind run-time feature checks. Each peak probe runs
/// independent dependency chains, enough of them to cover the instruction's latency × throughput
/// (Zen 5: 2 × 512-bit FMA per cycle at 4 cycles of latency → at least 8 chains); the inputs go
/// through `black_box`, so the compiler can neither fold nor merge the chains.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;
    use std::hint::black_box;
    use std::time::Instant;

    use super::Line;

    /// Chains per peak probe: 16 of the 32 zmm registers, 12 of the 16 ymm registers.
    const ZMM_CHAINS: usize = 16;
    const YMM_CHAINS: usize = 12;

    pub fn has_avx512f() -> bool {
        is_x86_feature_detected!("avx512f")
    }

    pub fn has_fma() -> bool {
        is_x86_feature_detected!("avx") && is_x86_feature_detected!("fma")
    }

    pub fn has_vnni() -> bool {
        has_avx512f() && is_x86_feature_detected!("avx512vnni")
    }

    /// The widest summing loop this CPU runs, or `None` below AVX.
    pub fn read_probe() -> Option<fn(&[Line]) -> f32> {
        if has_avx512f() {
            Some(|a| {
                // SAFETY: the CPU has AVX-512F (checked above).
                unsafe { sum_zmm(a) }
            })
        } else if is_x86_feature_detected!("avx") {
            Some(|a| {
                // SAFETY: the CPU has AVX (checked above).
                unsafe { sum_ymm(a) }
            })
        } else {
            None
        }
    }

    /// Sums all floats of `a` with aligned 512-bit loads into 8 accumulators.
    #[target_feature(enable = "avx512f")]
    fn sum_zmm(a: &[Line]) -> f32 {
        let mut acc = [_mm512_setzero_ps(); 8];
        let mut chunks = a.chunks_exact(8);
        for c in &mut chunks {
            for (s, l) in acc.iter_mut().zip(c) {
                // SAFETY: a `Line` is 16 floats, 64-byte aligned.
                *s = _mm512_add_ps(*s, unsafe { _mm512_load_ps(l.0.as_ptr()) });
            }
        }
        let mut s = acc[0];
        for v in &acc[1..] {
            s = _mm512_add_ps(s, *v);
        }
        _mm512_reduce_add_ps(s) + chunks.remainder().iter().flat_map(|l| l.0).sum::<f32>()
    }

    /// Sums all floats of `a` with aligned 256-bit loads into 8 accumulators.
    #[target_feature(enable = "avx")]
    fn sum_ymm(a: &[Line]) -> f32 {
        let mut acc = [_mm256_setzero_ps(); 8];
        let mut chunks = a.chunks_exact(4);
        for c in &mut chunks {
            for (j, l) in c.iter().enumerate() {
                let p = l.0.as_ptr();
                // SAFETY: a `Line` is 16 floats, 64-byte aligned: two aligned ymm loads.
                let (lo, hi) = unsafe { (_mm256_load_ps(p), _mm256_load_ps(p.add(8))) };
                acc[2 * j] = _mm256_add_ps(acc[2 * j], lo);
                acc[2 * j + 1] = _mm256_add_ps(acc[2 * j + 1], hi);
            }
        }
        let mut s = acc[0];
        for v in &acc[1..] {
            s = _mm256_add_ps(s, *v);
        }
        let mut lanes = [0f32; 8];
        // SAFETY: `lanes` holds 8 floats.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), s) };
        lanes.iter().sum::<f32>() + chunks.remainder().iter().flat_map(|l| l.0).sum::<f32>()
    }

    /// GFLOP/s of `iters` × 16 chained `vfmadd231ps zmm` (2 flops per lane).
    pub fn fma_zmm(iters: u64) -> f64 {
        let t = Instant::now();
        // SAFETY: called only when `has_avx512f()`.
        black_box(unsafe { fma_zmm_loop(black_box(iters)) });
        (iters * (ZMM_CHAINS * 16 * 2) as u64) as f64 / t.elapsed().as_secs_f64() / 1e9
    }

    #[target_feature(enable = "avx512f")]
    fn fma_zmm_loop(iters: u64) -> f32 {
        // a · b ≈ 1: the accumulators grow linearly, never towards overflow or denormals.
        let a = _mm512_set1_ps(black_box(1.000_000_1));
        let b = _mm512_set1_ps(black_box(0.999_999_9));
        let mut acc = [_mm512_setzero_ps(); ZMM_CHAINS];
        for (i, c) in acc.iter_mut().enumerate() {
            *c = _mm512_set1_ps(black_box(0.1 * (i + 1) as f32));
        }
        for _ in 0..iters {
            for c in acc.iter_mut() {
                *c = _mm512_fmadd_ps(a, b, *c);
            }
        }
        let mut s = acc[0];
        for v in &acc[1..] {
            s = _mm512_add_ps(s, *v);
        }
        _mm512_reduce_add_ps(s)
    }

    /// GFLOP/s of `iters` × 12 chained `vfmadd231ps ymm` (2 flops per lane).
    pub fn fma_ymm(iters: u64) -> f64 {
        let t = Instant::now();
        // SAFETY: called only when `has_fma()`.
        black_box(unsafe { fma_ymm_loop(black_box(iters)) });
        (iters * (YMM_CHAINS * 8 * 2) as u64) as f64 / t.elapsed().as_secs_f64() / 1e9
    }

    #[target_feature(enable = "avx,fma")]
    fn fma_ymm_loop(iters: u64) -> f32 {
        let a = _mm256_set1_ps(black_box(1.000_000_1));
        let b = _mm256_set1_ps(black_box(0.999_999_9));
        let mut acc = [_mm256_setzero_ps(); YMM_CHAINS];
        for (i, c) in acc.iter_mut().enumerate() {
            *c = _mm256_set1_ps(black_box(0.1 * (i + 1) as f32));
        }
        for _ in 0..iters {
            for c in acc.iter_mut() {
                *c = _mm256_fmadd_ps(a, b, *c);
            }
        }
        let mut s = acc[0];
        for v in &acc[1..] {
            s = _mm256_add_ps(s, *v);
        }
        let mut lanes = [0f32; 8];
        // SAFETY: `lanes` holds 8 floats.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), s) };
        lanes.iter().sum()
    }

    /// GOP/s of `iters` × 16 chained `vpdpbusd zmm` (64 u8·i8 multiply-adds = 128 ops each).
    pub fn vnni_zmm(iters: u64) -> f64 {
        let t = Instant::now();
        // SAFETY: called only when `has_vnni()`.
        black_box(unsafe { vnni_zmm_loop(black_box(iters)) });
        (iters * (ZMM_CHAINS * 64 * 2) as u64) as f64 / t.elapsed().as_secs_f64() / 1e9
    }

    #[target_feature(enable = "avx512f,avx512vnni")]
    fn vnni_zmm_loop(iters: u64) -> i32 {
        let a = _mm512_set1_epi8(black_box(3));
        let b = _mm512_set1_epi8(black_box(5));
        let mut acc = [_mm512_setzero_si512(); ZMM_CHAINS];
        for (i, c) in acc.iter_mut().enumerate() {
            *c = _mm512_set1_epi32(black_box(i as i32));
        }
        for _ in 0..iters {
            for c in acc.iter_mut() {
                // vpdpbusd wraps on overflow (no saturation), like the kernels' i32 sums.
                *c = _mm512_dpbusd_epi32(*c, a, b);
            }
        }
        let mut s = acc[0];
        for v in &acc[1..] {
            s = _mm512_add_epi32(s, *v);
        }
        _mm512_reduce_add_epi32(s)
    }
}

// ---------------------------------------------------------------------------------------------
// Weights and activations

/// `len` values starting on a 64-byte boundary, as every tensor of a mapped `.quill` file does;
/// the kernels see the alignment they will see in production.
struct Aligned<T> {
    buf: Vec<T>,
    off: usize,
    len: usize,
}

impl<T: Copy> Aligned<T> {
    /// Fills element `i` with `f(i)`, touching every page before any timing.
    fn new(len: usize, f: impl Fn(usize) -> T) -> Self {
        let pad = 64 / std::mem::size_of::<T>();
        let buf: Vec<T> = (0..len + pad).map(&f).collect();
        let off = buf.as_ptr().align_offset(64);
        assert!(
            off <= pad,
            "cannot align a buffer of {}",
            std::any::type_name::<T>()
        );
        Aligned { buf, off, len }
    }

    fn get(&self) -> &[T] {
        &self.buf[self.off..self.off + self.len]
    }
}

/// Activations in [-1, 1] from a cheap pattern.
fn activations(len: usize) -> Aligned<f32> {
    Aligned::new(len, |i| (i * 7919 % 2001) as f32 * 1e-3 - 1.0)
}

/// `f32` weights: `copies` matrices of `[n, k]`, one after the other.
struct F32Weights {
    n: usize,
    k: usize,
    copies: usize,
    w: Aligned<f32>,
}

impl F32Weights {
    fn new(n: usize, k: usize, copies: usize) -> Self {
        let w = Aligned::new(copies * n * k, |i| (i * 104_729 % 1999) as f32 * 1e-3 - 1.0);
        F32Weights { n, k, copies, w }
    }

    fn matrices(&self) -> Vec<Matrix<'_>> {
        let len = self.n * self.k;
        (0..self.copies)
            .map(|c| Matrix {
                rows: self.n,
                cols: self.k,
                weights: Weights::F32(&self.w.get()[c * len..(c + 1) * len]),
            })
            .collect()
    }
}

/// int8 weights in [-127, 127] with constant row scales (no 64M-float quantization needed):
/// `copies` matrices of `[n, k]`.
struct Q8Weights {
    n: usize,
    k: usize,
    copies: usize,
    q: Aligned<i8>,
    scales: Aligned<f32>,
}

impl Q8Weights {
    fn new(n: usize, k: usize, copies: usize) -> Self {
        let q = Aligned::new(copies * n * k, |i| ((i * 37 % 255) as i32 - 127) as i8);
        let scales = Aligned::new(copies * n, |_| 0.01);
        Q8Weights {
            n,
            k,
            copies,
            q,
            scales,
        }
    }

    fn matrices(&self) -> Vec<Matrix<'_>> {
        let (n, k) = (self.n, self.k);
        (0..self.copies)
            .map(|c| Matrix {
                rows: n,
                cols: k,
                weights: Weights::Q8 {
                    q: &self.q.get()[c * n * k..(c + 1) * n * k],
                    scales: &self.scales.get()[c * n..(c + 1) * n],
                },
            })
            .collect()
    }
}

/// int4 codes from a byte pattern with constant group scales: `copies` matrices of `[n, k]`.
struct Q4Weights {
    n: usize,
    k: usize,
    copies: usize,
    packed: Aligned<u8>,
    scales: Aligned<f16>,
}

impl Q4Weights {
    fn new(n: usize, k: usize, copies: usize) -> Self {
        let packed = Aligned::new(copies * n * k / 2, |i| (i * 37 % 256) as u8);
        let scales = Aligned::new(copies * n * k / Q4_GROUP, |_| f16::from_f32(0.01));
        Q4Weights {
            n,
            k,
            copies,
            packed,
            scales,
        }
    }

    fn matrices(&self) -> Vec<Matrix<'_>> {
        let (codes, groups) = (self.n * self.k / 2, self.n * self.k / Q4_GROUP);
        (0..self.copies)
            .map(|c| Matrix {
                rows: self.n,
                cols: self.k,
                weights: Weights::Q4 {
                    packed: &self.packed.get()[c * codes..(c + 1) * codes],
                    scales: &self.scales.get()[c * groups..(c + 1) * groups],
                },
            })
            .collect()
    }
}

/// Copies of a GEMV matrix of `bytes` bytes to cycle through so that they span
/// `GEMV_WORKING_SET`.
fn gemv_copies(bytes: usize) -> usize {
    GEMV_WORKING_SET.div_ceil(bytes).max(1)
}

/// Bytes of a matrix's storage (values and scales): what a GEMV must stream.
fn weight_bytes(w: &Matrix) -> u64 {
    (match w.weights {
        Weights::F32(v) => std::mem::size_of_val(v),
        Weights::F16(v) => std::mem::size_of_val(v),
        Weights::BF16(v) => std::mem::size_of_val(v),
        Weights::Q8 { q, scales } => std::mem::size_of_val(q) + std::mem::size_of_val(scales),
        Weights::Q4 { packed, scales } => {
            std::mem::size_of_val(packed) + std::mem::size_of_val(scales)
        }
    }) as u64
}

// ---------------------------------------------------------------------------------------------
// Benchmarks and the report

/// What a row of the table divides by.
#[derive(Clone, Copy)]
enum Limit {
    /// Read bandwidth at this many threads (GB/s).
    Read,
    /// f32 FMA peak of the ISA (GFLOP/s).
    Fma,
    /// int8 peak of the ISA (GOP/s).
    Int8,
}

struct Row {
    kernel: String,
    isa: Isa,
    threads: usize,
    /// Bytes (GEMV) or operations (GEMM) per call.
    work: u64,
    limit: Limit,
    target: Option<f64>,
    /// Median seconds per call over the measured samples; `None` when filtered out.
    secs: Option<f64>,
}

/// A criterion group of sample size `SAMPLES` in flat sampling (every sample runs the same
/// number of calls: the calls take milliseconds to a tenth of a second).
fn group<'a>(
    c: &'a mut Criterion,
    name: &str,
    throughput: Throughput,
) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(name);
    g.sample_size(SAMPLES)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sampling_mode(SamplingMode::Flat)
        .throughput(throughput);
    g
}

/// Benchmarks `Y = X · Wᵀ` through `kern.linear` on `pool` as `<isa>/<threads>t` in `g`, `W`
/// taking each matrix of `ws` in turn, and returns the median seconds per call over the measured
/// samples (`None` when filtered out).
/// Benchmarks the int8 GEMM `m × n × k` of `kern` on `pool`, cycling over `copies` matrices
/// (more than one: the weights come from memory), as a row of the table.
fn gemm_q8_row(
    c: &mut Criterion,
    kern: &Kernels,
    pool: &Pool,
    (m, n, k): (usize, usize, usize),
    copies: usize,
    target: Option<f64>,
) -> Row {
    let ops = 2 * (m * n * k) as u64;
    let wq = Q8Weights::new(n, k, copies);
    let w = wq.matrices();
    let x = activations(m * k);
    let mut g = group(
        c,
        &format!("gemm_q8_{m}x{n}x{k}"),
        Throughput::Elements(ops),
    );
    let secs = bench_linear(&mut g, kern, pool, x.get(), m, &w);
    g.finish();
    let from = if copies > 1 { ", from memory" } else { "" };
    Row {
        kernel: format!("int8 GEMM {m}×{n}×{k}{from}"),
        isa: kern.isa,
        threads: pool.threads(),
        work: ops,
        limit: Limit::Int8,
        target,
        secs,
    }
}

fn bench_linear(
    g: &mut BenchmarkGroup<WallTime>,
    kern: &Kernels,
    pool: &Pool,
    x: &[f32],
    m: usize,
    ws: &[Matrix],
) -> Option<f64> {
    let mut y = vec![0f32; m * ws[0].rows];
    let mut scratch = ActScratch::with_capacity(m, ws[0].cols);
    let mut next = 0;
    // Seconds per call of every sample, warm-up included; the measured ones come last.
    let mut per_call: Vec<f64> = Vec::new();
    let id = format!("{}/{}t", kern.isa.name(), pool.threads());
    g.bench_function(&id, |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                let w = &ws[next];
                next = (next + 1) % ws.len();
                kern.linear(pool, black_box(x), m, black_box(w), &mut y, &mut scratch);
                black_box(&mut y);
            }
            let d = t.elapsed();
            per_call.push(d.as_secs_f64() / iters as f64);
            d
        })
    });
    if per_call.is_empty() {
        return None;
    }
    let measured = per_call.len().saturating_sub(SAMPLES);
    Some(median(&mut per_call[measured..]))
}

fn fmt_rate(v: f64, unit: &str) -> String {
    format!("{v:.1} {unit}")
}

/// Prints the probes run before and after the kernels. Returns the largest relative change of a
/// best figure between the two, a sign of other work on the machine.
fn print_limits(before: &[Limits; 2], after: &[Limits; 2]) -> f64 {
    let mut drift = 0f64;
    let mut show = |name: &str, unit: &str, field: fn(&Limits) -> Option<Rate>| {
        for t in 0..2 {
            if let (Some(a), Some(b)) = (field(&before[t]), field(&after[t])) {
                drift = drift.max((a.best - b.best).abs() / a.best.max(b.best));
                println!(
                    "| {name} | {} | {} / {} | {} / {} |",
                    t + 1,
                    fmt_rate(a.best, unit),
                    fmt_rate(a.median, unit),
                    fmt_rate(b.best, unit),
                    fmt_rate(b.median, unit)
                );
            }
        }
    };
    println!("\n### Machine limits (probed in this run; a limit is the better best of the two)\n");
    println!("| probe | threads | before the kernels: best / median | after: best / median |");
    println!("|---|---|---|---|");
    show("read bandwidth, 1 GiB buffer", "GB/s", |l| l.read);
    show("f32 FMA zmm (16 chains)", "GFLOP/s", |l| l.fma_zmm);
    show("f32 FMA ymm (12 chains)", "GFLOP/s", |l| l.fma_ymm);
    show("int8 VNNI zmm (16 chains)", "GOP/s", |l| l.vnni_zmm);
    drift
}

fn print_table(title: &str, rows: &[&Row], limits: &[Limits; 2]) {
    println!("\n### {title}\n");
    println!("| kernel | ISA | threads | measured | limit | fraction | target |");
    println!("|---|---|---|---|---|---|---|");
    for r in rows {
        let l = &limits[(r.threads - 1).min(1)];
        let (unit, scale, limit) = match r.limit {
            Limit::Read => ("GB/s", 1e9, l.read.map(|x| (x.best, "read"))),
            Limit::Fma => ("GFLOP/s", 1e9, l.fma_for(r.isa)),
            Limit::Int8 => ("GOP/s", 1e9, l.int8_for(r.isa)),
        };
        let measured = r.secs.map(|s| r.work as f64 / s / scale);
        let measured_s = measured.map_or("skipped".to_string(), |v| fmt_rate(v, unit));
        let limit_s = limit.map_or("n/a".to_string(), |(v, what)| {
            format!("{} {what}", fmt_rate(v, unit))
        });
        let fraction = match (measured, limit) {
            (Some(v), Some((lim, _))) => format!("{:.1} %", 100.0 * v / lim),
            _ => "n/a".to_string(),
        };
        let target = r
            .target
            .map_or("—".to_string(), |t| format!("≥ {:.0} %", 100.0 * t));
        println!(
            "| {} | {} | {} | {measured_s} | {limit_s} | {fraction} | {target} |",
            r.kernel,
            r.isa.name(),
            r.threads
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let listing = args.iter().any(|a| a == "--list");
    let quick = args.iter().any(|a| a == "--test");
    let mut c = Criterion::default().configure_from_args();

    let probe = || {
        if listing {
            [Limits::default(); 2]
        } else {
            println!("probing this machine's limits (1 GiB read, FMA and VNNI peaks) ...");
            probe_limits(quick)
        }
    };
    let before = probe();

    let best = kernels();
    let isas: Vec<&Kernels> = Isa::available()
        .into_iter()
        .map(|i| Kernels::for_isa(i).expect("available"))
        .collect();
    let one = Pool::single();
    let two = Pool::new(2).expect("a pool of 2 threads");
    let mut rows: Vec<Row> = Vec::new();

    // int8 GEMV: m = 1, 8192 × 8192 (64 MiB), 4 copies.
    {
        let (n, k) = (8192, 8192);
        let wq = Q8Weights::new(n, k, gemv_copies(n * k));
        let w = wq.matrices();
        let x = activations(k);
        let bytes = weight_bytes(&w[0]);
        let mut g = group(&mut c, "gemv_q8_8192x8192", Throughput::BytesDecimal(bytes));
        let kernel = format!("int8 GEMV 1×{n}×{k} ({} MiB)", bytes >> 20);
        for (kern, pool) in isas
            .iter()
            .map(|&k| (k, &one))
            .chain(std::iter::once((best, &two)))
        {
            let secs = bench_linear(&mut g, kern, pool, x.get(), 1, &w);
            rows.push(Row {
                kernel: kernel.clone(),
                isa: kern.isa,
                threads: pool.threads(),
                work: bytes,
                limit: Limit::Read,
                target: (kern.isa != Isa::Scalar).then_some(TARGET_GEMV_Q8),
                secs,
            });
        }
        g.finish();
    }

    // f32 GEMV: m = 1, 4096 × 4096 (64 MiB), 4 copies.
    {
        let (n, k) = (4096, 4096);
        let wf = F32Weights::new(n, k, gemv_copies(4 * n * k));
        let w = wf.matrices();
        let x = activations(k);
        let bytes = weight_bytes(&w[0]);
        let mut g = group(
            &mut c,
            "gemv_f32_4096x4096",
            Throughput::BytesDecimal(bytes),
        );
        for &kern in &isas {
            let secs = bench_linear(&mut g, kern, &one, x.get(), 1, &w);
            rows.push(Row {
                kernel: format!("f32 GEMV 1×{n}×{k} ({} MiB)", bytes >> 20),
                isa: kern.isa,
                threads: 1,
                work: bytes,
                limit: Limit::Read,
                target: None,
                secs,
            });
        }
        g.finish();
    }

    // int4 GEMV: m = 1, 8192 × 8192 (32 MiB of codes + 4 MiB of f16 scales), 8 copies.
    {
        let (n, k) = (8192, 8192);
        let w4 = Q4Weights::new(n, k, gemv_copies(n * k / 2 + n * k / Q4_GROUP * 2));
        let w = w4.matrices();
        let x = activations(k);
        let bytes = weight_bytes(&w[0]);
        let mut g = group(&mut c, "gemv_q4_8192x8192", Throughput::BytesDecimal(bytes));
        for &kern in &isas {
            let secs = bench_linear(&mut g, kern, &one, x.get(), 1, &w);
            rows.push(Row {
                kernel: format!("int4 GEMV 1×{n}×{k} ({} MiB)", bytes >> 20),
                isa: kern.isa,
                threads: 1,
                work: bytes,
                limit: Limit::Read,
                target: None,
                secs,
            });
        }
        g.finish();
    }

    // GEMMs: m = 512, n = 2048, k = 2048 (the encoder / prefill / trainer shape), best ISA only,
    // one matrix: compute-bound, and the weights (16 MiB f32, 4 MiB int8) are meant to stay in
    // cache while a block of activation rows is multiplied by them.
    let (m, n, k) = (512, 2048, 2048);
    let ops = 2 * (m * n * k) as u64;
    let x = activations(m * k);
    {
        let wf = F32Weights::new(n, k, 1);
        let w = wf.matrices();
        let mut g = group(&mut c, "gemm_f32_512x2048x2048", Throughput::Elements(ops));
        for pool in [&one, &two] {
            let secs = bench_linear(&mut g, best, pool, x.get(), m, &w);
            rows.push(Row {
                kernel: format!("f32 GEMM {m}×{n}×{k}"),
                isa: best.isa,
                threads: pool.threads(),
                work: ops,
                limit: Limit::Fma,
                target: Some(TARGET_GEMM_F32),
                secs,
            });
        }
        g.finish();
    }
    rows.push(gemm_q8_row(
        &mut c,
        best,
        &one,
        (m, n, k),
        1,
        Some(TARGET_GEMM_Q8),
    ));

    // int8 GEMM with few rows and weights from memory: one 32-token input through an encoder's
    // feed-forward layer (32 × 2048 × 512), the matrix cycled past L3 as in a model's first pass.
    let copies = gemv_copies(2048 * 512);
    rows.push(gemm_q8_row(
        &mut c,
        best,
        &one,
        (32, 2048, 512),
        copies,
        None,
    ));

    // Probed again: a limit measured while other work ran would make every fraction too high.
    let after = probe();
    c.final_summary();
    if listing {
        return;
    }

    let drift = print_limits(&before, &after);
    let limits = [0, 1].map(|t| before[t].better(&after[t]));
    let by_threads = |t: usize| rows.iter().filter(|r| r.threads == t).collect::<Vec<_>>();
    print_table(
        &format!(
            "Kernels at 1 thread (ISA of `kernels()`: {}; measured = median of {SAMPLES} samples, limit = best probe)",
            best.isa.name()
        ),
        &by_threads(1),
        &limits,
    );
    print_table(
        "Kernels at 2 threads (the second vCPU may be shared: informational)",
        &by_threads(2),
        &limits,
    );
    if drift > 0.1 {
        println!(
            "\nwarning: a limit moved by {:.0} % between the probes: the machine was busy, rerun",
            100.0 * drift
        );
    }
    if quick {
        println!("\n(--test: short probes, one call per kernel; the figures mean nothing)");
    }
}
