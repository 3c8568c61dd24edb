//! Every kernel of every ISA this CPU runs, against the scalar reference, on random shapes with
//! tails and odd sizes. int8 products must be bit-identical; float kernels agree within the named
//! tolerances below. `QUILL_FORCE_ISA=<level> cargo test --test kernels` additionally checks that
//! the process-wide choice honours the variable (CI runs each level that way).

mod common;

use common::Rng;
use half::{bf16, f16};
use quill::convert::quantize::{quantize_q4, quantize_q8};
use quill::kernels::attention::{Mask, Rows, attend_block};
use quill::kernels::{ActScratch, Isa, Kernels, Out, Pool, QActs, kernels, scalar};
use quill::tensor::{Matrix, Weights};

/// Float products: |y − y_ref| ≤ GEMM_RTOL · Σ|x·w| (summation order differs between ISAs).
const GEMM_RTOL: f32 = 2e-6;
/// Element-wise kernels with a polynomial exp / erf: relative error bound.
const ACT_RTOL: f32 = 2e-6;
/// ... and the absolute floor for values near zero.
const ACT_ATOL: f32 = 1e-6;
/// Norms and softmax: relative error.
const NORM_RTOL: f32 = 1e-5;

const MS: [usize; 6] = [1, 2, 3, 4, 7, 13];
const NS: [usize; 6] = [1, 7, 16, 17, 33, 64];
const KS: [usize; 8] = [1, 3, 15, 16, 31, 64, 100, 257];
const KS_Q4: [usize; 4] = [32, 64, 96, 288];

fn simd_tables() -> Vec<&'static Kernels> {
    Isa::available()
        .into_iter()
        .filter(|&i| i != Isa::Scalar)
        .map(|i| Kernels::for_isa(i).unwrap())
        .collect()
}

fn reference() -> &'static Kernels {
    Kernels::for_isa(Isa::Scalar).unwrap()
}

#[test]
fn scalar_is_always_available_and_forcing_is_honoured() {
    assert_eq!(reference().isa, Isa::Scalar);
    assert!(Isa::available().contains(&Isa::best()));
    if let Ok(forced) = std::env::var("QUILL_FORCE_ISA") {
        assert_eq!(kernels().isa.name(), forced, "QUILL_FORCE_ISA not honoured");
    } else {
        assert_eq!(kernels().isa, Isa::best());
    }
    eprintln!("available: {:?}", Isa::available());
}

fn quantized(x: &[f32], m: usize, k: usize, kern: &Kernels) -> (Vec<i8>, Vec<f32>) {
    let (mut q, mut s) = (vec![0i8; m * k], vec![0f32; m]);
    (kern.quantize_rows)(x, k, &mut q, &mut s);
    (q, s)
}

#[test]
fn quantize_rows_is_bit_identical() {
    let mut rng = Rng::new(10);
    for kern in simd_tables() {
        for &k in &KS {
            for &m in &MS {
                let mut x = rng.gaussians(m * k);
                if m > 2 {
                    x[k..2 * k].fill(0.0); // an all-zero row
                    x[2 * k] = 1e-30; // a tiny one
                    x[1] = f32::NAN; // NaN quantizes to 0, the rest of its row as usual
                }
                if m > 3 && k >= 8 {
                    // Exact halves (scale 1): round half to even, both signs.
                    let halves = [127.0, 63.5, -0.5, 0.5, 1.5, 2.5, -2.5, -126.5];
                    x[3 * k..3 * k + 8].copy_from_slice(&halves);
                    x[3 * k + 8..4 * k].fill(0.25);
                }
                let a = quantized(&x, m, k, reference());
                let b = quantized(&x, m, k, kern);
                assert_eq!(a.0, b.0, "{:?} q m={m} k={k}", kern.isa);
                assert_eq!(bits(&a.1), bits(&b.1), "{:?} scales m={m} k={k}", kern.isa);
            }
        }
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[allow(clippy::too_many_arguments)]
fn run_q8(
    kern: &Kernels,
    q: &[i8],
    s: &[f32],
    m: usize,
    k: usize,
    w: &[i8],
    ws: &[f32],
    n: usize,
) -> Vec<f32> {
    let mut y = vec![f32::NAN; m * n];
    let acts = QActs { q, scales: s, m, k };
    (kern.gemm_q8)(&acts, w, ws, &mut Out::new(&mut y, m, n));
    y
}

#[test]
fn gemm_q8_is_bit_identical() {
    let mut rng = Rng::new(11);
    for kern in simd_tables() {
        for &k in &KS {
            for &n in &NS {
                let (w, ws) = quantize_q8(&rng.gaussians(n * k), n, k);
                // Extreme weights too: -128 and 127 everywhere in one row (saturation traps).
                let mut w = w;
                if n > 1 {
                    for (c, v) in w[k..2 * k].iter_mut().enumerate() {
                        *v = if c % 2 == 0 { -128 } else { 127 };
                    }
                }
                for &m in &MS {
                    let mut x = rng.gaussians(m * k);
                    x[0] = -100.0; // → -127 after quantization
                    let (q, s) = quantized(&x, m, k, reference());
                    let a = run_q8(reference(), &q, &s, m, k, &w, &ws, n);
                    let b = run_q8(kern, &q, &s, m, k, &w, &ws, n);
                    assert_eq!(bits(&a), bits(&b), "{:?} m={m} n={n} k={k}", kern.isa);
                }
            }
        }
    }
}

fn close(a: &[f32], b: &[f32], bound: impl Fn(usize) -> f32, what: &str) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let tol = bound(i);
        assert!(
            (x - y).abs() <= tol,
            "{what}: [{i}] {x} vs {y} (tolerance {tol})"
        );
    }
}

/// Σ_k |x_ik · w_jk| for each output, the scale of a dot product's rounding error.
fn magnitudes(x: &[f32], w: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
    let mut out = vec![0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            out[i * n + j] = (0..k).map(|t| (x[i * k + t] * w[j * k + t]).abs()).sum();
        }
    }
    out
}

#[test]
fn gemm_q4_matches_scalar() {
    let mut rng = Rng::new(12);
    for kern in simd_tables() {
        for &k in &KS_Q4 {
            for &n in &NS {
                let wf = rng.gaussians(n * k);
                let (codes, ws) = quantize_q4(&wf, n, k).unwrap();
                let deq = Matrix {
                    rows: n,
                    cols: k,
                    weights: Weights::Q4 {
                        packed: &codes,
                        scales: &ws,
                    },
                }
                .to_f32_vec();
                for &m in &MS {
                    let x = rng.gaussians(m * k);
                    let (q, s) = quantized(&x, m, k, reference());
                    let acts = QActs {
                        q: &q,
                        scales: &s,
                        m,
                        k,
                    };
                    let (mut a, mut b) = (vec![0f32; m * n], vec![0f32; m * n]);
                    (reference().gemm_q4)(&acts, &codes, &ws, &mut Out::new(&mut a, m, n));
                    (kern.gemm_q4)(&acts, &codes, &ws, &mut Out::new(&mut b, m, n));
                    let xq: Vec<f32> = q
                        .iter()
                        .enumerate()
                        .map(|(i, &v)| v as f32 * s[i / k])
                        .collect();
                    let mag = magnitudes(&xq, &deq, m, n, k);
                    close(
                        &a,
                        &b,
                        |i| GEMM_RTOL * mag[i] + 1e-7,
                        &format!("{:?} q4 m={m} n={n} k={k}", kern.isa),
                    );
                }
            }
        }
    }
}

#[test]
fn gemm_float_weights_match_scalar() {
    let mut rng = Rng::new(13);
    for kern in simd_tables() {
        for &k in &KS {
            for &n in &NS {
                let w = rng.gaussians(n * k);
                let h: Vec<f16> = w.iter().map(|&v| f16::from_f32(v)).collect();
                let b16: Vec<bf16> = w.iter().map(|&v| bf16::from_f32(v)).collect();
                for &m in &MS {
                    let x = rng.gaussians(m * k);
                    let mag = magnitudes(&x, &w, m, n, k);
                    let tol = |i: usize| GEMM_RTOL * 1.01 * mag[i] + 1e-7;
                    let what = |t: &str| format!("{:?} {t} m={m} n={n} k={k}", kern.isa);
                    let run = |f: &dyn Fn(&mut Out)| {
                        let mut y = vec![f32::NAN; m * n];
                        f(&mut Out::new(&mut y, m, n));
                        y
                    };
                    let a = run(&|o| (reference().gemm_f32)(&x, k, &w, o));
                    let b = run(&|o| (kern.gemm_f32)(&x, k, &w, o));
                    close(&a, &b, tol, &what("f32"));
                    let a = run(&|o| (reference().gemm_f16)(&x, k, &h, o));
                    let b = run(&|o| (kern.gemm_f16)(&x, k, &h, o));
                    close(&a, &b, tol, &what("f16"));
                    let a = run(&|o| (reference().gemm_bf16)(&x, k, &b16, o));
                    let b = run(&|o| (kern.gemm_bf16)(&x, k, &b16, o));
                    close(&a, &b, tol, &what("bf16"));
                }
            }
        }
    }
}

#[test]
fn gemm_f32_large_blocked_shapes() {
    // Shapes that cross every cache-blocking boundary of the packed GEMM (16 × 1000 and
    // 25 × 700: several column blocks of the AVX2 int8 product, with left-over columns; 33 × 31 ×
    // 255 and 65 × 17 × 64: a last short register tile with a partial last word, and with none).
    let mut rng = Rng::new(14);
    for kern in simd_tables() {
        for (m, n, k) in [
            (64, 96, 300),
            (37, 129, 513),
            (130, 70, 1030),
            (16, 1000, 512),
            (25, 700, 2048),
            (33, 31, 255),
            (65, 17, 64),
        ] {
            let (x, w) = (rng.gaussians(m * k), rng.gaussians(n * k));
            let (mut a, mut b) = (vec![0f32; m * n], vec![0f32; m * n]);
            (reference().gemm_f32)(&x, k, &w, &mut Out::new(&mut a, m, n));
            (kern.gemm_f32)(&x, k, &w, &mut Out::new(&mut b, m, n));
            let mag = magnitudes(&x, &w, m, n, k);
            close(
                &a,
                &b,
                |i| GEMM_RTOL * mag[i] + 1e-7,
                &format!("{:?} f32 {m}x{n}x{k}", kern.isa),
            );
            // And the int8 path on the same shapes, bit for bit.
            let (wq, ws) = quantize_q8(&w, n, k);
            let (q, s) = quantized(&x, m, k, reference());
            let a = run_q8(reference(), &q, &s, m, k, &wq, &ws, n);
            let b = run_q8(kern, &q, &s, m, k, &wq, &ws, n);
            assert_eq!(bits(&a), bits(&b), "{:?} q8 {m}x{n}x{k}", kern.isa);
        }
    }
}

#[test]
fn linear_splits_over_threads_like_one_thread() {
    let mut rng = Rng::new(15);
    // Large enough that every layout is split at 2 threads (each task ≥ 512 KiB of weight bytes
    // × rows: int4 needs n ≥ 2 · 2^19 / (k/2 · m) = 512 columns).
    let (m, n, k) = (4, 600, 1024);
    let wf = rng.gaussians(n * k);
    let x = rng.gaussians(m * k);
    let (q, s) = quantize_q8(&wf, n, k);
    let (c, cs) = quantize_q4(&wf, n, k).unwrap();
    let layouts = [
        Matrix {
            rows: n,
            cols: k,
            weights: Weights::F32(&wf),
        },
        Matrix {
            rows: n,
            cols: k,
            weights: Weights::Q8 { q: &q, scales: &s },
        },
        Matrix {
            rows: n,
            cols: k,
            weights: Weights::Q4 {
                packed: &c,
                scales: &cs,
            },
        },
    ];
    let one = Pool::single();
    let two = Pool::new(2).unwrap();
    for kern in Isa::available()
        .into_iter()
        .map(|i| Kernels::for_isa(i).unwrap())
    {
        for w in &layouts {
            let mut scratch = ActScratch::default();
            let (mut a, mut b) = (vec![0f32; m * n], vec![0f32; m * n]);
            kern.linear(&one, &x, m, w, &mut a, &mut scratch);
            kern.linear(&two, &x, m, w, &mut b, &mut scratch);
            assert_eq!(bits(&a), bits(&b), "{:?} {}", kern.isa, w.kind());
            // On one of the pool's workers (where sessions run), one row of a small matrix is
            // split too: the row-0 product must be the same.
            let mut c = vec![0f32; n];
            two.install(|| {
                let mut scratch = ActScratch::default();
                kern.linear(&two, &x[..k], 1, w, &mut c, &mut scratch)
            });
            assert_eq!(
                bits(&a[..n]),
                bits(&c),
                "{:?} {} on a worker",
                kern.isa,
                w.kind()
            );
            // And against the dequantized matrix in f64, loosely (quantization error included).
            let deq = w.to_f32_vec();
            for i in 0..m {
                for j in 0..n {
                    let r: f64 = (0..k)
                        .map(|t| x[i * k + t] as f64 * deq[j * k + t] as f64)
                        .sum();
                    assert!(
                        (a[i * n + j] as f64 - r).abs() < 0.05 * (k as f64).sqrt(),
                        "{} {}",
                        w.kind(),
                        r
                    );
                }
            }
        }
    }
}

fn check_unary(name: &str, f: impl Fn(&Kernels) -> fn(&mut [f32])) {
    let mut rng = Rng::new(16);
    for kern in simd_tables() {
        for &n in &[1usize, 5, 16, 33, 100] {
            let mut x: Vec<f32> = rng.gaussians(n).iter().map(|v| v * 4.0).collect();
            x[0] = if n > 1 { -30.0 } else { 0.0 };
            let (mut a, mut b) = (x.clone(), x.clone());
            f(reference())(&mut a);
            f(kern)(&mut b);
            close(
                &a,
                &b,
                |i| ACT_RTOL * a[i].abs() + ACT_ATOL,
                &format!("{:?} {name} n={n}", kern.isa),
            );
        }
    }
}

#[test]
fn activations_match_scalar() {
    check_unary("gelu", |k| k.gelu);
    check_unary("gelu_tanh", |k| k.gelu_tanh);
    check_unary("silu", |k| k.silu);
    check_unary("relu", |k| k.relu);
}

#[test]
fn lstm_cell_matches_scalar() {
    let mut rng = Rng::new(18);
    for kern in simd_tables() {
        for &n in &[1usize, 7, 16, 33, 256] {
            let gates: Vec<f32> = rng.gaussians(4 * n).iter().map(|v| v * 4.0).collect();
            let c0: Vec<f32> = rng.gaussians(n);
            let (mut ca, mut ha, mut cb, mut hb) = (c0.clone(), vec![0.0; n], c0, vec![0.0; n]);
            (reference().lstm_cell)(&gates, &mut ca, &mut ha);
            (kern.lstm_cell)(&gates, &mut cb, &mut hb);
            let what = format!("{:?} lstm_cell n={n}", kern.isa);
            close(&ca, &cb, |i| ACT_RTOL * ca[i].abs() + ACT_ATOL, &what);
            close(&ha, &hb, |i| ACT_RTOL * ha[i].abs() + ACT_ATOL, &what);
        }
    }
}

#[test]
fn softmax_matches_scalar_with_masks() {
    let mut rng = Rng::new(17);
    for kern in simd_tables() {
        for &n in &[1usize, 2, 17, 64, 1000] {
            let mut x: Vec<f32> = rng.gaussians(n).iter().map(|v| v * 10.0).collect();
            if n > 2 {
                x[1] = f32::NEG_INFINITY;
            }
            let (mut a, mut b) = (x.clone(), x.clone());
            (reference().softmax)(&mut a);
            (kern.softmax)(&mut b);
            close(
                &a,
                &b,
                |i| NORM_RTOL * a[i] + 1e-9,
                &format!("{:?} softmax n={n}", kern.isa),
            );
            if n > 2 {
                assert_eq!(b[1], 0.0);
            }
        }
        let mut all = vec![f32::NEG_INFINITY; 5];
        (kern.softmax)(&mut all);
        assert_eq!(all, vec![0.0; 5]);
    }
}

#[test]
fn attention_dots_and_mix_match_scalar() {
    let mut rng = Rng::new(29);
    for kern in simd_tables() {
        for &(d, stride, n) in &[
            (1usize, 1usize, 1usize),
            (32, 256, 48),
            (64, 64, 7),
            (128, 512, 9),
            (80, 200, 33),
        ] {
            let rows = rng.gaussians((n - 1) * stride + d);
            let q = rng.gaussians(d);
            let (mut a, mut b) = (vec![0f32; n], vec![0f32; n]);
            (reference().dots)(&q, &rows, stride, 0.125, &mut a);
            (kern.dots)(&q, &rows, stride, 0.125, &mut b);
            for j in 0..n {
                let mag: f32 = (0..d).map(|c| (q[c] * rows[j * stride + c]).abs()).sum();
                assert!(
                    (a[j] - b[j]).abs() <= GEMM_RTOL * 0.125 * mag + 1e-7,
                    "{:?} dots d={d} n={n} j={j}: {} vs {}",
                    kern.isa,
                    a[j],
                    b[j]
                );
            }
            // Weights with zeros (masked keys), as after a softmax.
            let mut p: Vec<f32> = rng.gaussians(n).iter().map(|v| v.abs()).collect();
            p[0] = 0.0;
            let (mut a, mut b) = (vec![f32::NAN; d], vec![f32::NAN; d]);
            (reference().mix)(&p, &rows, stride, &mut a);
            (kern.mix)(&p, &rows, stride, &mut b);
            for c in 0..d {
                let mag: f32 = (0..n).map(|j| (p[j] * rows[j * stride + c]).abs()).sum();
                assert!(
                    (a[c] - b[c]).abs() <= GEMM_RTOL * mag + 1e-7,
                    "{:?} mix d={d} n={n} c={c}: {} vs {}",
                    kern.isa,
                    a[c],
                    b[c]
                );
            }
        }
    }
}

#[test]
fn log_sum_exp_matches_scalar_with_masks() {
    let mut rng = Rng::new(23);
    for kern in simd_tables() {
        for &n in &[1usize, 2, 17, 64, 1000, 49_152] {
            let mut x: Vec<f32> = rng.gaussians(n).iter().map(|v| v * 10.0 - 3.0).collect();
            if n > 2 {
                x[1] = f32::NEG_INFINITY;
                x[n - 1] = f32::NEG_INFINITY;
            }
            let (a, b) = ((reference().log_sum_exp)(&x), (kern.log_sum_exp)(&x));
            // Absolute error of ln Σ: the relative error of the sum (f32 lanes, polynomial exp).
            assert!(
                (a - b).abs() <= 2e-6 * a.abs().max(1.0),
                "{:?} log_sum_exp n={n}: {a} vs {b}",
                kern.isa
            );
        }
        assert_eq!(
            (kern.log_sum_exp)(&[f32::NEG_INFINITY; 5]),
            f32::NEG_INFINITY
        );
        assert_eq!((kern.log_sum_exp)(&[]), f32::NEG_INFINITY);
        // One finite value among masked ones: exactly that value.
        assert_eq!(
            (kern.log_sum_exp)(&[f32::NEG_INFINITY, 2.5, f32::NEG_INFINITY]),
            2.5
        );
    }
}

#[test]
fn norms_and_vector_ops_match_scalar() {
    let mut rng = Rng::new(18);
    for kern in simd_tables() {
        for &n in &[1usize, 7, 16, 64, 515] {
            let x: Vec<f32> = rng.gaussians(n).iter().map(|v| v * 3.0 + 1.0).collect();
            let g = rng.gaussians(n);
            let b = rng.gaussians(n);
            let what = |t: &str| format!("{:?} {t} n={n}", kern.isa);
            let (mut a, mut c) = (vec![0f32; n], vec![0f32; n]);
            (reference().layer_norm)(&x, &g, Some(&b), 1e-5, &mut a);
            (kern.layer_norm)(&x, &g, Some(&b), 1e-5, &mut c);
            let scale: Vec<f32> = g.iter().map(|v| v.abs() * 4.0 + 1.0).collect();
            close(&a, &c, |i| NORM_RTOL * scale[i], &what("layer_norm"));
            (reference().layer_norm)(&x, &g, None, 1e-5, &mut a);
            (kern.layer_norm)(&x, &g, None, 1e-5, &mut c);
            close(
                &a,
                &c,
                |i| NORM_RTOL * scale[i],
                &what("layer_norm no bias"),
            );
            (reference().rms_norm)(&x, &g, 1e-6, &mut a);
            (kern.rms_norm)(&x, &g, 1e-6, &mut c);
            close(&a, &c, |i| NORM_RTOL * scale[i], &what("rms_norm"));

            let mag: f32 = x.iter().zip(&g).map(|(p, q)| (p * q).abs()).sum();
            let d0 = (reference().dot)(&x, &g);
            let d1 = (kern.dot)(&x, &g);
            assert!(
                (d0 - d1).abs() <= GEMM_RTOL * mag + 1e-7,
                "{} {d0} {d1}",
                what("dot")
            );

            let exact = |f: &dyn Fn(&Kernels, &mut [f32])| {
                let (mut p, mut q) = (x.clone(), x.clone());
                f(reference(), &mut p);
                f(kern, &mut q);
                assert_eq!(bits(&p), bits(&q));
            };
            exact(&|k, y| (k.axpy)(0.37, &g, y));
            exact(&|k, y| (k.add)(y, &g));
            exact(&|k, y| (k.mul)(y, &g));
            exact(&|k, y| (k.scale)(y, -1.5));
            assert_eq!((reference().argmax)(&x), (kern.argmax)(&x));
        }
        // argmax ties resolve to the first index.
        assert_eq!((kern.argmax)(&[1.0, 3.0, 3.0, -1.0]), 1);
        // NaN is never chosen (unless all are NaN: index 0), also past a SIMD block.
        let mut long = vec![f32::NAN; 40];
        assert_eq!((kern.argmax)(&long), 0);
        long[37] = -5.0;
        long[38] = -5.0;
        assert_eq!((kern.argmax)(&long), 37);
        assert_eq!((kern.argmax)(&[f32::NEG_INFINITY; 3]), 0);
    }
}

#[test]
fn rope_matches_scalar_in_both_layouts() {
    let mut rng = Rng::new(19);
    for kern in simd_tables() {
        for &d in &[2usize, 8, 64, 128] {
            let x = rng.gaussians(d);
            let theta: Vec<f32> = (0..d / 2)
                .map(|i| 7.0 * 10000f32.powf(-2.0 * i as f32 / d as f32))
                .collect();
            let (cos, sin): (Vec<f32>, Vec<f32>) = theta.iter().map(|t| (t.cos(), t.sin())).unzip();
            for inter in [false, true] {
                let (mut a, mut b) = (x.clone(), x.clone());
                (reference().rope)(&mut a, &cos, &sin, inter);
                (kern.rope)(&mut b, &cos, &sin, inter);
                close(
                    &a,
                    &b,
                    |_| 1e-6,
                    &format!("{:?} rope d={d} interleaved={inter}", kern.isa),
                );
            }
        }
    }
}

#[test]
fn rope_rotates_pairs_as_documented() {
    // Rotate-half pairs (i, i + d/2); interleaved pairs (2i, 2i+1): a 90° turn of (1, 0) is (0, 1).
    let mut x = [1.0, 0.0, 0.0, 0.0];
    scalar::rope(&mut x, &[0.0, 1.0], &[1.0, 0.0], false);
    assert_eq!(x, [0.0, 0.0, 1.0, 0.0]);
    let mut x = [1.0, 0.0, 0.0, 0.0];
    scalar::rope(&mut x, &[0.0, 1.0], &[1.0, 0.0], true);
    assert_eq!(x, [0.0, 1.0, 0.0, 0.0]);
}

/// Attention against a direct f64 evaluation of the formula, for every ISA.
#[test]
fn attention_matches_the_formula() {
    let mut rng = Rng::new(20);
    let (d, n, q_rows, stride) = (16, 9, 4, 40); // keys/values live in a wider buffer (stride)
    let keys = rng.gaussians(n * stride);
    let values = rng.gaussians(n * stride);
    let q = rng.gaussians(q_rows * d);
    let bias = rng.gaussians(q_rows * n);
    let valid: Vec<bool> = (0..n).map(|j| j != 2).collect();
    let scale = 1.0 / (d as f32).sqrt();
    for kern in Isa::available()
        .into_iter()
        .map(|i| Kernels::for_isa(i).unwrap())
    {
        for causal in [None, Some(3)] {
            let mut out = vec![0f32; q_rows * d];
            let mut scores = vec![0f32; n];
            let mask = Mask {
                causal_offset: causal,
                keys_valid: Some(&valid),
            };
            let kr = Rows {
                data: &keys,
                stride,
                width: d,
            };
            let vr = Rows {
                data: &values,
                stride,
                width: d,
            };
            let qr = Rows {
                data: &q,
                stride: d,
                width: d,
            };
            attend_block(
                kern,
                qr,
                q_rows,
                kr,
                vr,
                n,
                scale,
                Some(&bias),
                mask,
                &mut scores,
                &mut out,
                d,
            );
            for i in 0..q_rows {
                let visible = causal.map_or(n, |o| (o + i + 1).min(n));
                let s: Vec<f64> = (0..visible)
                    .map(|j| {
                        if !valid[j] {
                            return f64::NEG_INFINITY;
                        }
                        let dot: f64 = (0..d)
                            .map(|t| q[i * d + t] as f64 * keys[j * stride + t] as f64)
                            .sum();
                        dot * scale as f64 + bias[i * n + j] as f64
                    })
                    .collect();
                let max = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = s.iter().map(|v| (v - max).exp()).collect();
                let z: f64 = e.iter().sum();
                for t in 0..d {
                    let r: f64 = (0..visible)
                        .map(|j| e[j] / z * values[j * stride + t] as f64)
                        .sum();
                    let got = out[i * d + t] as f64;
                    assert!(
                        (got - r).abs() < 1e-5,
                        "{:?} causal={causal:?} q{i} [{t}] {got} vs {r}",
                        kern.isa
                    );
                }
            }
        }
    }
}

#[test]
fn top_k_returns_the_largest_in_order() {
    let mut rng = Rng::new(21);
    let mut out = Vec::new();
    for n in [1usize, 5, 100, 1000] {
        let mut x = rng.gaussians(n);
        if n > 3 {
            x[3] = f32::NAN;
            x[1] = x[0]; // a tie
        }
        for k in [1usize, 3, 10, n + 5] {
            quill::kernels::top_k(&x, k, &mut out);
            let mut expect: Vec<(usize, f32)> = x
                .iter()
                .cloned()
                .enumerate()
                .filter(|(_, v)| !v.is_nan())
                .collect();
            expect.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap().then(a.0.cmp(&b.0)));
            expect.truncate(k);
            assert_eq!(out, expect, "n={n} k={k}");
        }
    }
    quill::kernels::top_k(&[1.0, 2.0], 0, &mut out);
    assert!(out.is_empty());
}

#[test]
fn embed_gathers_a_dequantized_row() {
    let mut rng = Rng::new(22);
    let w = rng.gaussians(10 * 64);
    let (q, s) = quantize_q8(&w, 10, 64);
    let m = Matrix {
        rows: 10,
        cols: 64,
        weights: Weights::Q8 { q: &q, scales: &s },
    };
    let mut out = vec![0f32; 64];
    for kern in Isa::available()
        .into_iter()
        .map(|i| Kernels::for_isa(i).unwrap())
    {
        kern.embed(&m, 7, &mut out);
        for (c, v) in out.iter().enumerate() {
            assert_eq!(*v, q[7 * 64 + c] as f32 * s[7]);
        }
    }
}
