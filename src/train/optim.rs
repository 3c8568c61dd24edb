//! AdamW with decoupled weight decay, the learning-rate schedules, and gradient clipping.

use serde::{Deserialize, Serialize};

use super::layers::Ctx;
use super::model::Param;

/// Learning rate over steps: linear warm-up to the peak, then a decay.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Schedule {
    /// `peak · min(step / warmup, sqrt(warmup / step))` (the Transformer paper's shape).
    InverseSqrt { warmup: u64 },
    /// Cosine from the peak at `warmup` down to `peak · min_ratio` at `total`.
    Cosine {
        warmup: u64,
        total: u64,
        min_ratio: f64,
    },
    /// Warm-up, then constant.
    Constant { warmup: u64 },
}

impl Schedule {
    /// The learning rate of step `step` (1-based) for peak `peak`.
    pub fn lr(&self, peak: f64, step: u64) -> f64 {
        let s = step.max(1) as f64;
        match *self {
            Schedule::InverseSqrt { warmup } => {
                let w = warmup.max(1) as f64;
                peak * (s / w).min((w / s).sqrt())
            }
            Schedule::Cosine {
                warmup,
                total,
                min_ratio,
            } => {
                if step < warmup {
                    return peak * s / warmup as f64;
                }
                let span = total.saturating_sub(warmup).max(1) as f64;
                let t = ((step - warmup) as f64 / span).min(1.0);
                peak * (min_ratio
                    + (1.0 - min_ratio) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos()))
            }
            Schedule::Constant { warmup } => peak * (s / warmup.max(1) as f64).min(1.0),
        }
    }
}

/// AdamW hyperparameters.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdamWOptions {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWOptions {
    fn default() -> Self {
        AdamWOptions {
            beta1: 0.9,
            beta2: 0.98,
            eps: 1e-9,
            weight_decay: 0.0,
        }
    }
}

/// AdamW state: first and second moments, one per parameter.
pub struct AdamW {
    pub opts: AdamWOptions,
    pub m: Vec<f32>,
    pub v: Vec<f32>,
    /// Updates done.
    pub t: u64,
    /// Per element: weight decay applies.
    decay: Vec<bool>,
}

impl AdamW {
    pub fn new(opts: AdamWOptions, params: &[Param], len: usize) -> AdamW {
        let mut decay = vec![false; len];
        for p in params {
            decay[p.range()].fill(p.decay);
        }
        AdamW {
            opts,
            m: vec![0.0; len],
            v: vec![0.0; len],
            t: 0,
            decay,
        }
    }

    /// One update of `params` from `grads` at learning rate `lr`.
    pub fn step(&mut self, ctx: Ctx, params: &mut [f32], grads: &[f32], lr: f64) {
        self.t += 1;
        let o = self.opts;
        let bc1 = 1.0 - o.beta1.powi(self.t as i32);
        let bc2 = 1.0 - o.beta2.powi(self.t as i32);
        let (b1, b2) = (o.beta1 as f32, o.beta2 as f32);
        let step = (lr / bc1) as f32;
        let inv_bc2 = (1.0 / bc2) as f32;
        let (eps, wd) = (o.eps as f32, (lr * o.weight_decay) as f32);
        const CHUNK: usize = 1 << 16;
        let decay = &self.decay;
        type Part<'a> = (&'a mut [f32], (&'a mut [f32], &'a mut [f32]));
        let mut work: Vec<Part> = params
            .chunks_mut(CHUNK)
            .zip(self.m.chunks_mut(CHUNK).zip(self.v.chunks_mut(CHUNK)))
            .collect();
        ctx.chunks(&mut work, 1, |i, item| {
            let (p, (m, v)) = &mut item[0];
            let base = i * CHUNK;
            for j in 0..p.len() {
                let g = grads[base + j];
                m[j] = b1 * m[j] + (1.0 - b1) * g;
                v[j] = b2 * v[j] + (1.0 - b2) * g * g;
                if decay[base + j] {
                    p[j] -= wd * p[j];
                }
                p[j] -= step * m[j] / ((v[j] * inv_bc2).sqrt() + eps);
            }
        });
    }
}

/// The global L2 norm of `grads`; when it exceeds `max`, scales them down to `max`.
pub fn clip_grad_norm(grads: &mut [f32], max: f64) -> f64 {
    let norm = grads
        .iter()
        .map(|&g| g as f64 * g as f64)
        .sum::<f64>()
        .sqrt();
    if max > 0.0 && norm > max {
        let s = (max / norm) as f32;
        grads.iter_mut().for_each(|g| *g *= s);
    }
    norm
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::{Pool, kernels};

    #[test]
    fn schedules_have_their_shapes() {
        let s = Schedule::InverseSqrt { warmup: 100 };
        assert!((s.lr(1.0, 50) - 0.5).abs() < 1e-12);
        assert!((s.lr(1.0, 100) - 1.0).abs() < 1e-12);
        assert!((s.lr(1.0, 400) - 0.5).abs() < 1e-12);
        let c = Schedule::Cosine {
            warmup: 10,
            total: 110,
            min_ratio: 0.1,
        };
        assert!((c.lr(2.0, 5) - 1.0).abs() < 1e-12);
        assert!((c.lr(2.0, 10) - 2.0).abs() < 1e-12);
        assert!((c.lr(2.0, 60) - 1.1).abs() < 1e-12);
        assert!((c.lr(2.0, 110) - 0.2).abs() < 1e-12);
        assert!((c.lr(2.0, 500) - 0.2).abs() < 1e-12);
    }

    #[test]
    fn adamw_matches_the_update_rule_by_hand() {
        let params = vec![Param {
            name: "w".into(),
            shape: vec![2],
            offset: 0,
            decay: true,
        }];
        let mut opt = AdamW::new(
            AdamWOptions {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 0.1,
            },
            &params,
            2,
        );
        let pool = Pool::single();
        let ctx = Ctx {
            pool: &pool,
            kern: kernels(),
        };
        let mut p = vec![1.0f32, -2.0];
        opt.step(ctx, &mut p, &[0.5, -1.0], 0.01);
        // Step 1: m̂ = g, v̂ = g², so the step is lr·sign(g) (up to eps), after decay p·(1 − lr·wd).
        assert!(
            (p[0] - (1.0 * (1.0 - 0.001) - 0.01)).abs() < 1e-6,
            "{}",
            p[0]
        );
        assert!(
            (p[1] - (-2.0 * (1.0 - 0.001) + 0.01)).abs() < 1e-6,
            "{}",
            p[1]
        );
        opt.step(ctx, &mut p, &[0.5, -1.0], 0.01);
        // Constant gradients keep m̂/sqrt(v̂) = sign(g).
        assert!((p[0] - ((1.0 * 0.999 - 0.01) * 0.999 - 0.01)).abs() < 1e-6);
    }

    #[test]
    fn clipping_scales_to_the_bound() {
        let mut g = vec![3.0f32, 4.0];
        assert_eq!(clip_grad_norm(&mut g, 1.0), 5.0);
        assert!((g[0] - 0.6).abs() < 1e-7 && (g[1] - 0.8).abs() < 1e-7);
        let mut g = vec![0.3f32, 0.4];
        clip_grad_norm(&mut g, 1.0);
        assert_eq!(g, vec![0.3, 0.4]);
    }
}
