//! Forward/backward pairs of the layers the trainer composes (llm.c style): each `*_forward` has
//! a `*_backward` with mirrored arguments. Backward functions add into parameter gradients
//! (`dw`, `db`); what they do with input gradients is said on each one.
//!
//! Dimension letters used in comments and names:
//! - `N` rows (tokens of a batch, `B·L`), `C` model width, `F` feed-forward width, `V` vocabulary
//! - `B` sequences, `L` / `Lq` / `Lk` sequence lengths (padded), `H` query heads, `G` key/value
//!   heads, `D` head width.
//!
//! Products run on the runtime's f32 kernels (`Y = X·Wᵀ`); the backward products transpose their
//! operands first so the same kernel serves `dX = dY·W` and `dW = dYᵀ·X`.

use rayon::prelude::*;

use crate::format::{Activation, Norm};
use crate::kernels::{ActScratch, Kernels, Pool};
use crate::tensor::{Matrix, Weights};

/// The kernels and the worker threads of a training run.
#[derive(Clone, Copy)]
pub struct Ctx<'a> {
    pub pool: &'a Pool,
    pub kern: &'static Kernels,
}

impl Ctx<'_> {
    /// Runs `f(i, chunk)` over the `size`-element chunks of `data`, in parallel when the pool
    /// has more than one thread.
    pub fn chunks<T: Send>(&self, data: &mut [T], size: usize, f: impl Fn(usize, &mut [T]) + Sync) {
        if self.pool.threads() == 1 || data.len() <= size {
            data.chunks_mut(size).enumerate().for_each(|(i, c)| f(i, c));
        } else {
            self.pool.install(|| {
                data.par_chunks_mut(size)
                    .enumerate()
                    .for_each(|(i, c)| f(i, c))
            });
        }
    }
}

/// Reusable buffers of the backward products.
#[derive(Default)]
pub struct Scratch {
    wt: Vec<f32>,
    dyt: Vec<f32>,
    xt: Vec<f32>,
    prod: Vec<f32>,
}

fn grow(v: &mut Vec<f32>, n: usize) -> &mut [f32] {
    if v.len() < n {
        v.resize(n, 0.0);
    }
    &mut v[..n]
}

/// `dst[cols, rows] = src[rows, cols]ᵀ`, through 16×16 tiles held in registers / L1.
pub fn transpose(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    const T: usize = 16;
    let mut tile = [[0f32; T]; T];
    for r0 in (0..rows).step_by(T) {
        let rn = (rows - r0).min(T);
        for c0 in (0..cols).step_by(T) {
            let cn = (cols - c0).min(T);
            for (r, t) in tile.iter_mut().enumerate().take(rn) {
                t[..cn].copy_from_slice(&src[(r0 + r) * cols + c0..][..cn]);
            }
            for c in 0..cn {
                let d = &mut dst[(c0 + c) * rows + r0..][..rn];
                for (r, v) in d.iter_mut().enumerate() {
                    *v = tile[r][c];
                }
            }
        }
    }
}

/// `y[m, n] = x[m, k] · w[n, k]ᵀ` on the f32 kernels, split over the pool's threads.
pub fn matmul(ctx: Ctx, x: &[f32], m: usize, w: &[f32], n: usize, k: usize, y: &mut [f32]) {
    let mat = Matrix {
        rows: n,
        cols: k,
        weights: Weights::F32(&w[..n * k]),
    };
    let mut none = ActScratch::default(); // only quantized weights use it
    ctx.kern
        .linear(ctx.pool, &x[..m * k], m, &mat, &mut y[..m * n], &mut none);
}

// ---- linear ----

/// `y[N, out] = x[N, in] · w[out, in]ᵀ + b`.
#[allow(clippy::too_many_arguments)]
pub fn linear_forward(
    ctx: Ctx,
    x: &[f32],
    n: usize,
    w: &[f32],
    b: Option<&[f32]>,
    out: usize,
    inp: usize,
    y: &mut [f32],
) {
    matmul(ctx, x, n, w, out, inp, y);
    if let Some(b) = b {
        for row in y[..n * out].chunks_exact_mut(out) {
            (ctx.kern.add)(row, b);
        }
    }
}

/// What a backward pass does with an input gradient.
pub enum Dx<'a> {
    /// Not needed (the input is data).
    Skip,
    /// Overwrite the buffer.
    Set(&'a mut [f32]),
    /// Add into the buffer.
    Add(&'a mut [f32]),
}

/// The gradients of a linear layer inside the flat gradient buffer `g`: the weight `[out, inp]`
/// at offset `w` and the bias `[out]` at `b` (stored before or after the weight).
pub fn linear_grads(
    g: &mut [f32],
    w: usize,
    b: Option<usize>,
    out: usize,
    inp: usize,
) -> (&mut [f32], Option<&mut [f32]>) {
    match b {
        Some(b) if b > w => {
            let (lo, hi) = g.split_at_mut(b);
            (&mut lo[w..w + out * inp], Some(&mut hi[..out]))
        }
        Some(b) => {
            let (lo, hi) = g.split_at_mut(w);
            (&mut hi[..out * inp], Some(&mut lo[b..b + out]))
        }
        None => (&mut g[w..w + out * inp], None),
    }
}

/// Backward of [`linear_forward`]: `dx = dy·w` (as `dx` says), `dw += dyᵀ·x`, `db += Σ dy`.
#[allow(clippy::too_many_arguments)]
pub fn linear_backward(
    ctx: Ctx,
    s: &mut Scratch,
    dy: &[f32],
    x: &[f32],
    n: usize,
    w: &[f32],
    out: usize,
    inp: usize,
    dx: Dx,
    dw: &mut [f32],
    db: Option<&mut [f32]>,
) {
    let dy = &dy[..n * out];
    // dx[N, in] = dy[N, out] · (wᵀ)[in, out]ᵀ
    match dx {
        Dx::Skip => {}
        Dx::Set(dx) => {
            let wt = grow(&mut s.wt, inp * out);
            transpose(w, out, inp, wt);
            matmul(ctx, dy, n, wt, inp, out, dx);
        }
        Dx::Add(dx) => {
            let wt = grow(&mut s.wt, inp * out);
            transpose(w, out, inp, wt);
            let prod = grow(&mut s.prod, n * inp);
            matmul(ctx, dy, n, wt, inp, out, prod);
            (ctx.kern.add)(&mut dx[..n * inp], prod);
        }
    }
    // dw[out, in] += (dyᵀ)[out, N] · (xᵀ)[in, N]ᵀ
    let dyt = grow(&mut s.dyt, out * n);
    transpose(dy, n, out, dyt);
    let xt = grow(&mut s.xt, inp * n);
    transpose(&x[..n * inp], n, inp, xt);
    let prod = grow(&mut s.prod, out * inp);
    matmul(ctx, dyt, out, xt, inp, n, prod);
    (ctx.kern.add)(&mut dw[..out * inp], prod);
    if let Some(db) = db {
        for row in dy.chunks_exact(out) {
            (ctx.kern.add)(db, row);
        }
    }
}

// ---- normalization ----

/// LayerNorm or RMSNorm of each row of `x[N, C]` into `out`, keeping each row's mean (0 for
/// RMSNorm) and reciprocal standard deviation for the backward pass. The output comes from the
/// runtime's own norm kernels, so an exported model computes exactly what was trained.
#[allow(clippy::too_many_arguments)]
pub fn norm_forward(
    kern: &Kernels,
    kind: Norm,
    x: &[f32],
    c: usize,
    w: &[f32],
    b: Option<&[f32]>,
    eps: f32,
    out: &mut [f32],
    mean: &mut [f32],
    rstd: &mut [f32],
) {
    for (r, (xr, or)) in x.chunks_exact(c).zip(out.chunks_exact_mut(c)).enumerate() {
        let m = match kind {
            Norm::LayerNorm => xr.iter().sum::<f32>() / c as f32,
            Norm::RmsNorm => 0.0,
        };
        let var = xr.iter().map(|v| (v - m) * (v - m)).sum::<f32>() / c as f32;
        let rs = 1.0 / (var + eps).sqrt();
        match kind {
            Norm::LayerNorm => (kern.layer_norm)(xr, w, b, eps, or),
            Norm::RmsNorm => (kern.rms_norm)(xr, w, eps, or),
        }
        mean[r] = m;
        rstd[r] = rs;
    }
}

/// Backward of [`norm_forward`]: adds into `dx`, `dw` and `db`.
#[allow(clippy::too_many_arguments)]
pub fn norm_backward(
    kind: Norm,
    dout: &[f32],
    x: &[f32],
    c: usize,
    w: &[f32],
    mean: &[f32],
    rstd: &[f32],
    dx: &mut [f32],
    dw: &mut [f32],
    mut db: Option<&mut [f32]>,
) {
    let n = x.len() / c;
    for r in 0..n {
        let (xr, dr) = (&x[r * c..(r + 1) * c], &dout[r * c..(r + 1) * c]);
        let (m, rs) = (mean[r], rstd[r]);
        let (mut mean_g, mut mean_gx) = (0f32, 0f32);
        for i in 0..c {
            let xhat = (xr[i] - m) * rs;
            let g = dr[i] * w[i];
            mean_g += g;
            mean_gx += g * xhat;
            dw[i] += dr[i] * xhat;
            if let Some(db) = db.as_deref_mut() {
                db[i] += dr[i];
            }
        }
        mean_g /= c as f32;
        mean_gx /= c as f32;
        if kind == Norm::RmsNorm {
            mean_g = 0.0;
        }
        let dxr = &mut dx[r * c..(r + 1) * c];
        for i in 0..c {
            let xhat = (xr[i] - m) * rs;
            dxr[i] += rs * (dr[i] * w[i] - mean_g - xhat * mean_gx);
        }
    }
}

// ---- activations ----

/// `y = act(x)` elementwise.
pub fn act_forward(kern: &Kernels, act: Activation, x: &[f32], y: &mut [f32]) {
    y.copy_from_slice(x);
    kern.activate(act.into(), y);
}

/// The derivative of `act` at `x`.
pub fn act_grad(act: Activation, x: f32) -> f32 {
    match act {
        Activation::Relu => {
            if x > 0.0 {
                1.0
            } else {
                0.0
            }
        }
        Activation::Gelu => {
            let x = x as f64;
            let cdf =
                0.5 * (1.0 + crate::kernels::scalar::erf(x * std::f64::consts::FRAC_1_SQRT_2));
            let pdf = (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
            (cdf + x * pdf) as f32
        }
        Activation::GeluTanh => {
            const K: f32 = 0.797_884_6;
            let u = K * (x + 0.044715 * x * x * x);
            let t = u.tanh();
            0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * K * (1.0 + 3.0 * 0.044715 * x * x)
        }
        Activation::Silu => {
            let s = 1.0 / (1.0 + (-x).exp());
            s * (1.0 + x * (1.0 - s))
        }
    }
}

/// Backward of [`act_forward`]: `dx = dy · act'(x)` (overwrites `dx`).
pub fn act_backward(act: Activation, x: &[f32], dy: &[f32], dx: &mut [f32]) {
    for ((d, &xv), &g) in dx.iter_mut().zip(x).zip(dy) {
        *d = g * act_grad(act, xv);
    }
}

// ---- embeddings ----

/// Where token positions come from when embedding a batch.
pub struct PosInput<'a> {
    /// `[rows, C]` table added at `position + offset` (learned or sinusoidal).
    pub table: &'a [f32],
    pub offset: usize,
}

/// `out[r] = scale · table[ids[r]] + pos[r % L + offset]` for the `N = ids.len()` rows of
/// sequences of length `l`.
pub fn embedding_forward(
    table: &[f32],
    c: usize,
    ids: &[u32],
    l: usize,
    scale: f32,
    pos: Option<&PosInput>,
    out: &mut [f32],
) {
    for (r, (&id, o)) in ids.iter().zip(out.chunks_exact_mut(c)).enumerate() {
        let e = &table[id as usize * c..(id as usize + 1) * c];
        for (o, &e) in o.iter_mut().zip(e) {
            *o = scale * e;
        }
        if let Some(p) = pos {
            let row = r % l + p.offset;
            for (o, &v) in o.iter_mut().zip(&p.table[row * c..(row + 1) * c]) {
                *o += v;
            }
        }
    }
}

/// Backward of [`embedding_forward`]: adds into the rows of `dtable` and of `dpos` (learned
/// positions only).
pub fn embedding_backward(
    dout: &[f32],
    c: usize,
    ids: &[u32],
    l: usize,
    scale: f32,
    dtable: &mut [f32],
    dpos: Option<(&mut [f32], usize)>,
) {
    for (&id, d) in ids.iter().zip(dout.chunks_exact(c)) {
        let row = &mut dtable[id as usize * c..(id as usize + 1) * c];
        for (g, &d) in row.iter_mut().zip(d) {
            *g += scale * d;
        }
    }
    if let Some((dp, offset)) = dpos {
        for (r, d) in dout.chunks_exact(c).enumerate() {
            let row = r % l + offset;
            for (g, &d) in dp[row * c..(row + 1) * c].iter_mut().zip(d) {
                *g += d;
            }
        }
    }
}

// ---- rotary positions ----

/// Rotates each head of `x[N, heads·D]` by its row's position (`r % l`); `sin` negated undoes
/// it, which is the backward pass (the rotation is orthogonal).
#[allow(clippy::too_many_arguments)]
pub fn rope_apply(
    kern: &Kernels,
    x: &mut [f32],
    heads: usize,
    d: usize,
    l: usize,
    cos: &[f32],
    sin: &[f32],
    interleaved: bool,
) {
    let half = d / 2;
    for (r, row) in x.chunks_exact_mut(heads * d).enumerate() {
        let p = r % l;
        let (cs, sn) = (
            &cos[p * half..(p + 1) * half],
            &sin[p * half..(p + 1) * half],
        );
        for h in row.chunks_exact_mut(d) {
            (kern.rope)(h, cs, sn, interleaved);
        }
    }
}

// ---- attention ----

/// The shape of one attention: `B` sequences of `Lq` queries attending over `Lk` keys.
#[derive(Clone, Copy, Debug)]
pub struct AttnShape {
    pub b: usize,
    pub lq: usize,
    pub lk: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub d: usize,
    /// Query `i` sees keys `j ≤ i` only.
    pub causal: bool,
    pub scale: f32,
}

impl AttnShape {
    /// Keys query `i` of sequence `b` may see: `0..visible`.
    fn visible(&self, key_len: &[usize], b: usize, i: usize) -> usize {
        let n = key_len[b].min(self.lk);
        if self.causal { n.min(i + 1) } else { n }
    }
}

/// Scaled dot-product attention. `q[B·Lq, H·D]`, `k`, `v[B·Lk, G·D]`; `key_len[b]` keys of
/// sequence `b` are real (the rest padding). Writes `out[B·Lq, H·D]` and keeps the attention
/// weights `probs[B, H, Lq, Lk]` for the backward pass.
#[allow(clippy::too_many_arguments)]
pub fn attention_forward(
    ctx: Ctx,
    s: &AttnShape,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    key_len: &[usize],
    probs: &mut [f32],
    out: &mut [f32],
) {
    let (hd, gd) = (s.heads * s.d, s.kv_heads * s.d);
    let group = s.heads / s.kv_heads;
    let per_b = s.heads * s.lq * s.lk;
    let kern = ctx.kern;
    let mut work: Vec<(&mut [f32], &mut [f32])> = probs[..s.b * per_b]
        .chunks_mut(per_b)
        .zip(out[..s.b * s.lq * hd].chunks_mut(s.lq * hd))
        .collect();
    let task = |b: usize, (pb, ob): &mut (&mut [f32], &mut [f32])| {
        pb.fill(0.0);
        ob.fill(0.0);
        for h in 0..s.heads {
            let kh = h / group;
            for i in 0..s.lq {
                let n = s.visible(key_len, b, i);
                let qi = &q[(b * s.lq + i) * hd + h * s.d..][..s.d];
                let p = &mut pb[(h * s.lq + i) * s.lk..][..s.lk];
                for (j, pj) in p[..n].iter_mut().enumerate() {
                    let kj = &k[(b * s.lk + j) * gd + kh * s.d..][..s.d];
                    *pj = s.scale * (kern.dot)(qi, kj);
                }
                (kern.softmax)(&mut p[..n]);
                let o = &mut ob[i * hd + h * s.d..][..s.d];
                for (j, &pj) in p[..n].iter().enumerate() {
                    let vj = &v[(b * s.lk + j) * gd + kh * s.d..][..s.d];
                    (kern.axpy)(pj, vj, o);
                }
            }
        }
    };
    par_for_each(ctx, &mut work, task);
}

/// Backward of [`attention_forward`]: overwrites `dq`, `dk` and `dv`.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward(
    ctx: Ctx,
    s: &AttnShape,
    dout: &[f32],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    key_len: &[usize],
    probs: &[f32],
    dq: &mut [f32],
    dk: &mut [f32],
    dv: &mut [f32],
) {
    let (hd, gd) = (s.heads * s.d, s.kv_heads * s.d);
    let group = s.heads / s.kv_heads;
    let per_b = s.heads * s.lq * s.lk;
    let kern = ctx.kern;
    type Parts<'a> = (&'a mut [f32], (&'a mut [f32], &'a mut [f32]));
    let mut work: Vec<Parts> = dq[..s.b * s.lq * hd]
        .chunks_mut(s.lq * hd)
        .zip(
            dk[..s.b * s.lk * gd]
                .chunks_mut(s.lk * gd)
                .zip(dv[..s.b * s.lk * gd].chunks_mut(s.lk * gd)),
        )
        .collect();
    let task = |b: usize, (dqb, (dkb, dvb)): &mut Parts| {
        dqb.fill(0.0);
        dkb.fill(0.0);
        dvb.fill(0.0);
        let mut dp = vec![0f32; s.lk];
        for h in 0..s.heads {
            let kh = h / group;
            for i in 0..s.lq {
                let n = s.visible(key_len, b, i);
                let row = (b * s.lq + i) * hd + h * s.d;
                let (qi, doi) = (&q[row..row + s.d], &dout[row..row + s.d]);
                let p = &probs[b * per_b + (h * s.lq + i) * s.lk..][..s.lk];
                let mut sum = 0f32;
                for j in 0..n {
                    let vj = &v[(b * s.lk + j) * gd + kh * s.d..][..s.d];
                    dp[j] = (kern.dot)(doi, vj);
                    sum += p[j] * dp[j];
                    (kern.axpy)(p[j], doi, &mut dvb[j * gd + kh * s.d..][..s.d]);
                }
                let dqi = &mut dqb[i * hd + h * s.d..][..s.d];
                for j in 0..n {
                    let ds = p[j] * (dp[j] - sum) * s.scale;
                    let kj = &k[(b * s.lk + j) * gd + kh * s.d..][..s.d];
                    (kern.axpy)(ds, kj, dqi);
                    (kern.axpy)(ds, qi, &mut dkb[j * gd + kh * s.d..][..s.d]);
                }
            }
        }
    };
    par_for_each(ctx, &mut work, task);
}

/// Runs `f(i, item)` over `items`, in parallel when the pool has more than one thread.
fn par_for_each<T: Send>(ctx: Ctx, items: &mut [T], f: impl Fn(usize, &mut T) + Sync) {
    if ctx.pool.threads() == 1 {
        items.iter_mut().enumerate().for_each(|(i, t)| f(i, t));
    } else {
        ctx.pool
            .install(|| items.par_iter_mut().enumerate().for_each(|(i, t)| f(i, t)));
    }
}

// ---- loss ----

/// Label for a position that does not count (padding).
pub const IGNORE: u32 = u32::MAX;

/// Sums of a cross-entropy pass.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LossSums {
    /// Σ of the label-smoothed loss (what is minimized).
    pub loss: f64,
    /// Σ of −log p(label) (perplexity = exp(nll / tokens)).
    pub nll: f64,
    /// Counted positions.
    pub tokens: usize,
}

/// Softmax cross-entropy with label smoothing `eps` over `logits[N, V]`:
/// `loss = −(1 − eps)·log p(y) − (eps / V)·Σ_j log p(j)` for each row with a label other than
/// [`IGNORE`]. With `grad_scale = Some(g)`, `logits` is overwritten with `g · ∂loss/∂logits`
/// (ignored rows get 0); with `None`, it is left as it was.
pub fn cross_entropy(
    ctx: Ctx,
    logits: &mut [f32],
    v: usize,
    labels: &[u32],
    eps: f32,
    grad_scale: Option<f32>,
) -> LossSums {
    let n = labels.len();
    let mut rows: Vec<LossSums> = vec![LossSums::default(); n];
    let mut work: Vec<(&mut [f32], &mut LossSums)> =
        logits[..n * v].chunks_mut(v).zip(rows.iter_mut()).collect();
    let task = |r: usize, (z, out): &mut (&mut [f32], &mut LossSums)| {
        let y = labels[r];
        if y == IGNORE {
            if grad_scale.is_some() {
                z.fill(0.0);
            }
            return;
        }
        let max = z.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
        let mean_z: f64 = z.iter().map(|&x| x as f64).sum::<f64>() / v as f64;
        let zy = z[y as usize] as f64;
        let sum: f64 = match grad_scale {
            // Keep exp(z − max) in place for the gradient.
            Some(_) => z.iter_mut().fold(0.0, |s, x| {
                *x = (*x - max).exp();
                s + *x as f64
            }),
            None => z.iter().map(|&x| (x - max).exp() as f64).sum(),
        };
        let lse = max as f64 + sum.ln();
        let nll = lse - zy;
        let smooth = lse - mean_z;
        **out = LossSums {
            loss: (1.0 - eps as f64) * nll + eps as f64 * smooth,
            nll,
            tokens: 1,
        };
        if let Some(g) = grad_scale {
            let (off, inv) = (eps / v as f32, (1.0 / sum) as f32);
            for x in z.iter_mut() {
                *x = g * (*x * inv - off);
            }
            z[y as usize] -= g * (1.0 - eps);
        }
    };
    par_for_each(ctx, &mut work, task);
    rows.iter().fold(LossSums::default(), |a, r| LossSums {
        loss: a.loss + r.loss,
        nll: a.nll + r.nll,
        tokens: a.tokens + r.tokens,
    })
}

// ---- dropout ----

/// Inverted dropout: zeroes each element with probability `p` and scales the rest by
/// `1 / (1 − p)`; the mask (0 or the scale) is kept for the backward pass.
pub fn dropout_forward(x: &mut [f32], p: f32, rng: &mut crate::rng::Rng, mask: &mut [f32]) {
    let keep = 1.0 / (1.0 - p);
    for (v, m) in x.iter_mut().zip(mask.iter_mut()) {
        *m = if (rng.uniform() as f32) < p {
            0.0
        } else {
            keep
        };
        *v *= *m;
    }
}

/// Backward of [`dropout_forward`], in place.
pub fn dropout_backward(d: &mut [f32], mask: &[f32]) {
    for (g, m) in d.iter_mut().zip(mask) {
        *g *= m;
    }
}
