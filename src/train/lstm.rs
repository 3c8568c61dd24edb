//! The trainable LSTM encoder-decoder with attention (`lstm-seq2seq`, `docs/lstm.md`): the
//! parameter layout under the runtime's canonical names, the forward pass over a padded batch
//! (teacher forcing) and backpropagation through time.
//!
//! Layouts: encoder tensors are batch-major (`[B·S, ·]`, row `b·S + t`), decoder step tensors
//! time-major (`[T][B][·]`), so each time step is one contiguous `[B, ·]` block for the
//! matrix products. Padded source steps leave a row's state unchanged (and pass its gradient
//! through unchanged).

use super::layers::{self as ly, Ctx, Dx, LossSums, Scratch};
use super::model::{Batch, Param};
use crate::error::{Error, Result};
use crate::format::{Arch, Config, LstmAttention};
use crate::rng::Rng;

#[derive(Clone, Copy, Debug)]
struct CellP {
    ih: usize,
    hh: usize,
    b: usize,
    units: usize,
    inp: usize,
}

#[derive(Clone, Copy, Debug)]
enum ScoreP {
    Dot,
    General(usize),
    Additive {
        q: usize,
        qb: Option<usize>,
        k: usize,
        v: usize,
    },
}

/// The parameter layout of an LSTM encoder-decoder and its passes.
#[derive(Clone, Debug)]
pub struct Lstm {
    pub config: Config,
    pub params: Vec<Param>,
    pub len: usize,
    /// Dropout on embeddings, between stacked layers and on h̃ while training.
    pub dropout: f32,
    enc_embed: usize,
    dec_embed: usize,
    enc: Vec<(CellP, Option<CellP>)>,
    dec: Vec<CellP>,
    scoring: ScoreP,
    attn_out: usize,
    lm_head: usize,
    lm_bias: Option<usize>,
}

struct Builder<'a> {
    has: &'a dyn Fn(&str) -> bool,
    params: Vec<Param>,
    len: usize,
}

impl Builder<'_> {
    fn add(&mut self, name: &str, shape: &[usize], decay: bool) -> usize {
        let offset = self.len;
        self.len += shape.iter().product::<usize>();
        self.params.push(Param {
            name: name.into(),
            shape: shape.to_vec(),
            offset,
            decay,
        });
        offset
    }

    fn cell(&mut self, p: &str, units: usize, inp: usize) -> CellP {
        CellP {
            ih: self.add(&format!("{p}.ih.weight"), &[4 * units, inp], true),
            hh: self.add(&format!("{p}.hh.weight"), &[4 * units, units], true),
            b: self.add(&format!("{p}.bias"), &[4 * units], false),
            units,
            inp,
        }
    }
}

impl Lstm {
    /// A new model: one embedding table shared by encoder and decoder, and (when
    /// `tied_output` and `embed_dim = d_model`) by the output projection.
    pub fn new(config: &Config, tied_output: bool) -> Result<Lstm> {
        let tied = tied_output && config.embed_dim() == config.d_model;
        let has = |n: &str| match n {
            "embed.weight" => true,
            "lm_head.weight" => !tied,
            "lm_head.bias" | "decoder.attn.query.bias" => true,
            _ => false,
        };
        Self::build(config, &has)
    }

    /// The layout of a model whose optional tensors are those `has` reports.
    pub fn build(c: &Config, has: &dyn Fn(&str) -> bool) -> Result<Lstm> {
        c.validate(Arch::LstmSeq2Seq)?;
        let (v, e, h) = (c.vocab_size, c.embed_dim(), c.d_model);
        let mut b = Builder {
            has,
            params: Vec::new(),
            len: 0,
        };
        let (enc_embed, dec_embed) = if has("embed.weight") {
            let off = b.add("embed.weight", &[v, e], true);
            (off, off)
        } else {
            (
                b.add("encoder.embed.weight", &[v, e], true),
                b.add("decoder.embed.weight", &[v, e], true),
            )
        };
        let u = if c.bidirectional { h / 2 } else { h };
        let mut enc = Vec::new();
        for l in 0..c.encoder_layers {
            let inp = if l == 0 { e } else { h };
            let fwd = b.cell(&format!("encoder.layers.{l}.fwd"), u, inp);
            let bwd = c
                .bidirectional
                .then(|| b.cell(&format!("encoder.layers.{l}.bwd"), u, inp));
            enc.push((fwd, bwd));
        }
        let mut dec = Vec::new();
        for l in 0..c.decoder_layers {
            let inp = match l {
                0 if c.input_feeding => e + h,
                0 => e,
                _ => h,
            };
            dec.push(b.cell(&format!("decoder.layers.{l}"), h, inp));
        }
        let scoring = match c.attention.expect("validated") {
            LstmAttention::Dot => ScoreP::Dot,
            LstmAttention::General => {
                ScoreP::General(b.add("decoder.attn.in.weight", &[h, h], true))
            }
            LstmAttention::Additive => {
                let q = b.add("decoder.attn.query.weight", &[h, h], true);
                let qb = (b.has)("decoder.attn.query.bias")
                    .then(|| b.add("decoder.attn.query.bias", &[h], false));
                let k = b.add("decoder.attn.key.weight", &[h, h], true);
                let v = b.add("decoder.attn.v.weight", &[h], false);
                ScoreP::Additive { q, qb, k, v }
            }
        };
        let attn_out = b.add("decoder.attn.out.weight", &[h, 2 * h], true);
        let lm_head = if has("lm_head.weight") {
            b.add("lm_head.weight", &[v, h], true)
        } else if e == h {
            dec_embed
        } else {
            return Err(Error::InvalidArgument(format!(
                "a tied output projection needs embed_dim = d_model ({e} ≠ {h})"
            )));
        };
        let lm_bias = has("lm_head.bias").then(|| b.add("lm_head.bias", &[v], false));
        Ok(Lstm {
            config: c.clone(),
            params: b.params,
            len: b.len,
            dropout: 0.0,
            enc_embed,
            dec_embed,
            enc,
            dec,
            scoring,
            attn_out,
            lm_head,
            lm_bias,
        })
    }

    /// Fresh parameters: everything, embeddings included, uniform in ±1/√H (the classic LSTM
    /// initialization); forget-gate biases 1.
    pub fn init(&self, seed: u64) -> Vec<f32> {
        let mut p = vec![0f32; self.len];
        let mut rng = Rng::new(seed);
        let h = self.config.d_model as f64;
        let a = 1.0 / h.sqrt();
        for t in &self.params {
            let vals = &mut p[t.range()];
            for x in vals.iter_mut() {
                *x = ((2.0 * rng.uniform() - 1.0) * a) as f32;
            }
            if t.name.ends_with(".bias") && t.name.contains("layers.") {
                let u = t.shape[0] / 4;
                vals[u..2 * u].fill(1.0);
            }
        }
        p
    }
}

/// Per direction of an encoder layer: gate activations and states per step (time-major).
#[derive(Default)]
struct DirActs {
    /// Activated gates `[S][B][4u]` (i, f, g, o after σ / tanh).
    gates: Vec<f32>,
    /// State after each step `[S][B][u]`.
    h: Vec<f32>,
    c: Vec<f32>,
    /// Input projections `[B·S, 4u]` (batch-major).
    proj: Vec<f32>,
}

#[derive(Default)]
struct EncLayer {
    /// Input `[B·S, in]` (after dropout).
    x: Vec<f32>,
    drop: Vec<f32>,
    fwd: DirActs,
    bwd: DirActs,
    /// Output `[B·S, H]`.
    out: Vec<f32>,
}

/// Decoder activations of one time step and layer.
#[derive(Default)]
struct DecCell {
    x: Vec<f32>,
    h_prev: Vec<f32>,
    c_prev: Vec<f32>,
    gates: Vec<f32>,
    c: Vec<f32>,
    h: Vec<f32>,
    /// Dropout mask on this layer's output (input of the next layer).
    drop: Vec<f32>,
}

#[derive(Default)]
struct DecStep {
    cells: Vec<DecCell>,
    /// Query `[B, H]` (general: `W_in h`; additive: `W_q h + b`).
    q: Vec<f32>,
    /// Additive: `tanh(Q + K_s)` `[B, S, H]`.
    a: Vec<f32>,
    alpha: Vec<f32>,
    cat: Vec<f32>,
    /// h̃ before dropout, and the mask.
    tilde: Vec<f32>,
    drop: Vec<f32>,
}

/// What a forward pass keeps for its backward pass.
#[derive(Default)]
pub struct LstmActs {
    dec_emb: Vec<f32>,
    dec_emb_drop: Vec<f32>,
    enc: Vec<EncLayer>,
    /// Encoder outputs `[B·S, H]` and additive keys `W_k m`.
    mem: Vec<f32>,
    keys: Vec<f32>,
    steps: Vec<DecStep>,
    /// h̃ after dropout, batch-major `[B·T, H]` (the output projection's input).
    head_in: Vec<f32>,
    pub logits: Vec<f32>,
    scratch: Scratch,
}

fn fit(v: &mut Vec<f32>, n: usize) -> &mut [f32] {
    v.resize(n, 0.0);
    &mut v[..n]
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Applies the cell to pre-activation gates `g[4u]` in place (they become the activations) and
/// updates `c`, `h`.
fn cell_forward(g: &mut [f32], c_prev: &[f32], c: &mut [f32], h: &mut [f32]) {
    let u = c.len();
    for j in 0..u {
        let (i, f, gg, o) = (
            sigmoid(g[j]),
            sigmoid(g[u + j]),
            g[2 * u + j].tanh(),
            sigmoid(g[3 * u + j]),
        );
        g[j] = i;
        g[u + j] = f;
        g[2 * u + j] = gg;
        g[3 * u + j] = o;
        c[j] = f * c_prev[j] + i * gg;
        h[j] = o * c[j].tanh();
    }
}

/// Backward of [`cell_forward`]: from `dh`, `dc` (gradient of this step's `c`, added to in
/// place) computes the pre-activation gate gradients `dg[4u]` and `dc_prev`.
fn cell_backward(
    a: &[f32],
    c_prev: &[f32],
    c: &[f32],
    dh: &[f32],
    dc: &mut [f32],
    dg: &mut [f32],
    dc_prev: &mut [f32],
) {
    let u = c.len();
    for j in 0..u {
        let (i, f, g, o) = (a[j], a[u + j], a[2 * u + j], a[3 * u + j]);
        let tc = c[j].tanh();
        let d_o = dh[j] * tc;
        let dcj = dc[j] + dh[j] * o * (1.0 - tc * tc);
        dg[j] = dcj * g * i * (1.0 - i);
        dg[u + j] = dcj * c_prev[j] * f * (1.0 - f);
        dg[2 * u + j] = dcj * i * (1.0 - g * g);
        dg[3 * u + j] = d_o * o * (1.0 - o);
        dc_prev[j] = dcj * f;
        dc[j] = dcj;
    }
}

fn slice(p: &[f32], off: usize, n: usize) -> &[f32] {
    &p[off..off + n]
}

impl Lstm {
    fn dropout_on(&self, rng: &Option<&mut Rng>) -> bool {
        rng.is_some() && self.dropout > 0.0
    }

    /// Runs one encoder direction over `x[B·S, in]` (batch-major), writing its half of `out`.
    #[allow(clippy::too_many_arguments)]
    fn enc_direction(
        &self,
        ctx: Ctx,
        p: &[f32],
        cp: &CellP,
        x: &[f32],
        batch: &Batch,
        reverse: bool,
        d: &mut DirActs,
        out: &mut [f32],
        off: usize,
    ) {
        let (b, s, u, h) = (batch.b, batch.s, cp.units, self.config.d_model);
        let proj = fit(&mut d.proj, b * s * 4 * u);
        ly::linear_forward(
            ctx,
            x,
            b * s,
            slice(p, cp.ih, 4 * u * cp.inp),
            Some(slice(p, cp.b, 4 * u)),
            4 * u,
            cp.inp,
            proj,
        );
        fit(&mut d.gates, s * b * 4 * u);
        fit(&mut d.h, s * b * u);
        fit(&mut d.c, s * b * u);
        let mut hprev = vec![0f32; b * u];
        let mut cprev = vec![0f32; b * u];
        let mut gh = vec![0f32; b * 4 * u];
        for step in 0..s {
            let t = if reverse { s - 1 - step } else { step };
            ly::matmul(
                ctx,
                &hprev,
                b,
                slice(p, cp.hh, 4 * u * u),
                4 * u,
                u,
                &mut gh,
            );
            for r in 0..b {
                let g = &mut d.gates[(t * b + r) * 4 * u..][..4 * u];
                let (hs, cs) = (
                    &mut d.h[(t * b + r) * u..][..u],
                    &mut d.c[(t * b + r) * u..][..u],
                );
                if t >= batch.src_len[r] {
                    // Padding: the state passes through.
                    g.fill(0.0);
                    hs.copy_from_slice(&hprev[r * u..(r + 1) * u]);
                    cs.copy_from_slice(&cprev[r * u..(r + 1) * u]);
                    out[(r * s + t) * h + off..][..u].fill(0.0);
                    continue;
                }
                for (k, gv) in g.iter_mut().enumerate() {
                    *gv = d.proj[(r * s + t) * 4 * u + k] + gh[r * 4 * u + k];
                }
                cell_forward(g, &cprev[r * u..(r + 1) * u], cs, hs);
                out[(r * s + t) * h + off..][..u].copy_from_slice(hs);
            }
            hprev.copy_from_slice(&d.h[t * b * u..(t + 1) * b * u]);
            cprev.copy_from_slice(&d.c[t * b * u..(t + 1) * b * u]);
        }
    }

    /// The final state of a direction: after its last step (forward: step S−1, which holds
    /// each row's state at its last real token; backward: step 0).
    fn final_state<'a>(
        d: &'a DirActs,
        batch: &Batch,
        u: usize,
        reverse: bool,
    ) -> (&'a [f32], &'a [f32]) {
        let t = if reverse { 0 } else { batch.s - 1 };
        let n = batch.b * u;
        (&d.h[t * n..(t + 1) * n], &d.c[t * n..(t + 1) * n])
    }

    /// Teacher-forced forward pass; logits `[B·T, V]` in `acts.logits`.
    pub fn forward(
        &self,
        ctx: Ctx,
        p: &[f32],
        batch: &Batch,
        acts: &mut LstmActs,
        mut rng: Option<&mut Rng>,
    ) {
        let c = &self.config;
        let (b, s, t_len) = (batch.b, batch.s, batch.t);
        let (v, e, h) = (c.vocab_size, c.embed_dim(), c.d_model);
        let drop = self.dropout_on(&rng);

        // ---- encoder
        acts.enc.resize_with(self.enc.len(), EncLayer::default);
        let mut x = vec![0f32; b * s * e];
        ly::embedding_forward(
            slice(p, self.enc_embed, v * e),
            e,
            &batch.src,
            s,
            1.0,
            None,
            &mut x,
        );
        let mut width = e;
        let mut init_h = vec![0f32; self.dec.len() * b * h];
        let mut init_c = vec![0f32; self.dec.len() * b * h];
        for (l, (fwd, bwd)) in self.enc.iter().enumerate() {
            let la = &mut acts.enc[l];
            match rng.as_deref_mut() {
                Some(r) if drop => {
                    ly::dropout_forward(&mut x, self.dropout, r, fit(&mut la.drop, b * s * width))
                }
                _ => la.drop.clear(),
            }
            la.x = x;
            let mut out = vec![0f32; b * s * h];
            self.enc_direction(ctx, p, fwd, &la.x, batch, false, &mut la.fwd, &mut out, 0);
            if let Some(bw) = bwd {
                self.enc_direction(
                    ctx,
                    p,
                    bw,
                    &la.x,
                    batch,
                    true,
                    &mut la.bwd,
                    &mut out,
                    fwd.units,
                );
            }
            let u = fwd.units;
            let (hf, cf) = Self::final_state(&la.fwd, batch, u, false);
            for r in 0..b {
                let at = (l * b + r) * h;
                init_h[at..at + u].copy_from_slice(&hf[r * u..(r + 1) * u]);
                init_c[at..at + u].copy_from_slice(&cf[r * u..(r + 1) * u]);
            }
            if bwd.is_some() {
                let (hb, cb) = Self::final_state(&la.bwd, batch, u, true);
                for r in 0..b {
                    let at = (l * b + r) * h + u;
                    init_h[at..at + u].copy_from_slice(&hb[r * u..(r + 1) * u]);
                    init_c[at..at + u].copy_from_slice(&cb[r * u..(r + 1) * u]);
                }
            }
            la.out = out.clone();
            x = out;
            width = h;
        }
        acts.mem = x;
        if let ScoreP::Additive { k, .. } = self.scoring {
            let keys = fit(&mut acts.keys, b * s * h);
            ly::matmul(ctx, &acts.mem, b * s, slice(p, k, h * h), h, h, keys);
        }

        // ---- decoder, time-major
        let de = fit(&mut acts.dec_emb, b * t_len * e);
        // Embed as [T][B][E]: transpose the batch-major ids.
        let ids_tm = time_major(&batch.tgt, b, t_len);
        ly::embedding_forward(
            slice(p, self.dec_embed, v * e),
            e,
            &ids_tm,
            t_len * b,
            1.0,
            None,
            de,
        );
        match rng.as_deref_mut() {
            Some(r) if drop => ly::dropout_forward(
                &mut acts.dec_emb,
                self.dropout,
                r,
                fit(&mut acts.dec_emb_drop, b * t_len * e),
            ),
            _ => acts.dec_emb_drop.clear(),
        }
        acts.steps.resize_with(t_len, DecStep::default);
        let layers = self.dec.len();
        let mut hs: Vec<Vec<f32>> = (0..layers)
            .map(|l| init_h[l * b * h..(l + 1) * b * h].to_vec())
            .collect();
        let mut cs: Vec<Vec<f32>> = (0..layers)
            .map(|l| init_c[l * b * h..(l + 1) * b * h].to_vec())
            .collect();
        let mut feed = vec![0f32; b * h];
        let head_in = fit(&mut acts.head_in, b * t_len * h);
        let mut gh = vec![0f32; b * 4 * h];
        for t in 0..t_len {
            let st = &mut acts.steps[t];
            st.cells.resize_with(layers, DecCell::default);
            for (l, cp) in self.dec.iter().enumerate() {
                let xin: Vec<f32> = if l == 0 {
                    let mut xin = vec![0f32; b * cp.inp];
                    for r in 0..b {
                        let row = &mut xin[r * cp.inp..(r + 1) * cp.inp];
                        row[..e].copy_from_slice(&acts.dec_emb[(t * b + r) * e..][..e]);
                        if c.input_feeding {
                            row[e..].copy_from_slice(&feed[r * h..(r + 1) * h]);
                        }
                    }
                    xin
                } else {
                    // The layer below's output, through its dropout mask.
                    let below = &st.cells[l - 1];
                    let mut xin = below.h.clone();
                    if !below.drop.is_empty() {
                        ly::dropout_backward(&mut xin, &below.drop);
                    }
                    xin
                };
                st.cells[l].x = xin;
                let cell = &mut st.cells[l];
                cell.h_prev = hs[l].clone();
                cell.c_prev = cs[l].clone();
                let g = fit(&mut cell.gates, b * 4 * h);
                ly::linear_forward(
                    ctx,
                    &cell.x,
                    b,
                    slice(p, cp.ih, 4 * h * cp.inp),
                    Some(slice(p, cp.b, 4 * h)),
                    4 * h,
                    cp.inp,
                    g,
                );
                ly::matmul(
                    ctx,
                    &cell.h_prev,
                    b,
                    slice(p, cp.hh, 4 * h * h),
                    4 * h,
                    h,
                    &mut gh,
                );
                (ctx.kern.add)(g, &gh);
                fit(&mut cell.c, b * h);
                fit(&mut cell.h, b * h);
                for r in 0..b {
                    cell_forward(
                        &mut cell.gates[r * 4 * h..(r + 1) * 4 * h],
                        &cell.c_prev[r * h..(r + 1) * h],
                        &mut cell.c[r * h..(r + 1) * h],
                        &mut cell.h[r * h..(r + 1) * h],
                    );
                }
                hs[l].copy_from_slice(&cell.h);
                cs[l].copy_from_slice(&cell.c);
                // Dropout between stacked layers: a mask for the next layer's input.
                match rng.as_deref_mut() {
                    Some(rg) if drop && l + 1 < layers => {
                        let mut ones = vec![1f32; b * h];
                        ly::dropout_forward(
                            &mut ones,
                            self.dropout,
                            rg,
                            fit(&mut cell.drop, b * h),
                        );
                    }
                    _ => cell.drop.clear(),
                }
            }
            // Attention over the memory.
            let top = st.cells[layers - 1].h.clone();
            let q = fit(&mut st.q, b * h);
            match self.scoring {
                ScoreP::Dot => q.copy_from_slice(&top),
                ScoreP::General(w) => ly::matmul(ctx, &top, b, slice(p, w, h * h), h, h, q),
                ScoreP::Additive { q: wq, qb, .. } => ly::linear_forward(
                    ctx,
                    &top,
                    b,
                    slice(p, wq, h * h),
                    qb.map(|o| slice(p, o, h)),
                    h,
                    h,
                    q,
                ),
            }
            fit(&mut st.alpha, b * s);
            fit(&mut st.cat, b * 2 * h);
            if matches!(self.scoring, ScoreP::Additive { .. }) {
                fit(&mut st.a, b * s * h);
            }
            for r in 0..b {
                let n = batch.src_len[r];
                let mem = &acts.mem[r * s * h..(r * s + n) * h];
                let qr = &st.q[r * h..(r + 1) * h];
                let al = &mut st.alpha[r * s..(r + 1) * s];
                al.fill(0.0);
                for j in 0..n {
                    al[j] = match self.scoring {
                        ScoreP::Additive { v: vo, .. } => {
                            let a = &mut st.a[(r * s + j) * h..(r * s + j + 1) * h];
                            let kj = &acts.keys[(r * s + j) * h..(r * s + j + 1) * h];
                            for z in 0..h {
                                a[z] = (qr[z] + kj[z]).tanh();
                            }
                            (ctx.kern.dot)(slice(p, vo, h), a)
                        }
                        _ => (ctx.kern.dot)(qr, &mem[j * h..(j + 1) * h]),
                    };
                }
                (ctx.kern.softmax)(&mut al[..n]);
                let cat = &mut st.cat[r * 2 * h..(r + 1) * 2 * h];
                cat[..h].fill(0.0);
                for j in 0..n {
                    (ctx.kern.axpy)(al[j], &mem[j * h..(j + 1) * h], &mut cat[..h]);
                }
                cat[h..].copy_from_slice(&top[r * h..(r + 1) * h]);
            }
            let tl = fit(&mut st.tilde, b * h);
            ly::matmul(
                ctx,
                &st.cat,
                b,
                slice(p, self.attn_out, 2 * h * h),
                h,
                2 * h,
                tl,
            );
            tl.iter_mut().for_each(|z| *z = z.tanh());
            let mut out = st.tilde.clone();
            match rng.as_deref_mut() {
                Some(rg) if drop => {
                    ly::dropout_forward(&mut out, self.dropout, rg, fit(&mut st.drop, b * h))
                }
                _ => st.drop.clear(),
            }
            feed.copy_from_slice(&out);
            for r in 0..b {
                head_in[(r * t_len + t) * h..(r * t_len + t + 1) * h]
                    .copy_from_slice(&out[r * h..(r + 1) * h]);
            }
        }
        let logits = fit(&mut acts.logits, b * t_len * v);
        ly::linear_forward(
            ctx,
            &acts.head_in,
            b * t_len,
            slice(p, self.lm_head, v * h),
            self.lm_bias.map(|o| slice(p, o, v)),
            v,
            h,
            logits,
        );
    }

    /// The loss of `batch` without gradients.
    pub fn eval_loss(
        &self,
        ctx: Ctx,
        p: &[f32],
        batch: &Batch,
        acts: &mut LstmActs,
        smoothing: f32,
    ) -> LossSums {
        self.forward(ctx, p, batch, acts, None);
        ly::cross_entropy(
            ctx,
            &mut acts.logits,
            self.config.vocab_size,
            &batch.labels,
            smoothing,
            None,
        )
    }

    /// Forward, loss and backpropagation through time: adds `grad_scale · ∂Σloss/∂params`
    /// into `g`.
    #[allow(clippy::too_many_arguments)]
    pub fn train_step(
        &self,
        ctx: Ctx,
        p: &[f32],
        g: &mut [f32],
        batch: &Batch,
        acts: &mut LstmActs,
        smoothing: f32,
        grad_scale: f32,
        rng: Option<&mut Rng>,
    ) -> LossSums {
        let c = &self.config;
        let (b, s, t_len) = (batch.b, batch.s, batch.t);
        let (v, e, h) = (c.vocab_size, c.embed_dim(), c.d_model);
        self.forward(ctx, p, batch, acts, rng);
        let sums = ly::cross_entropy(
            ctx,
            &mut acts.logits,
            v,
            &batch.labels,
            smoothing,
            Some(grad_scale),
        );
        let mut sc = std::mem::take(&mut acts.scratch);

        // ---- output projection
        let mut d_head = vec![0f32; b * t_len * h];
        lin_bwd(
            ctx,
            &mut sc,
            p,
            g,
            self.lm_head,
            self.lm_bias,
            &acts.logits,
            &acts.head_in,
            b * t_len,
            v,
            h,
            Dx::Set(&mut d_head),
        );

        // ---- decoder, backwards in time
        let layers = self.dec.len();
        let mut dh: Vec<Vec<f32>> = vec![vec![0f32; b * h]; layers];
        let mut dc: Vec<Vec<f32>> = vec![vec![0f32; b * h]; layers];
        let mut dfeed = vec![0f32; b * h];
        let mut d_mem = vec![0f32; b * s * h];
        let mut d_keys = vec![
            0f32;
            if matches!(self.scoring, ScoreP::Additive { .. }) {
                b * s * h
            } else {
                0
            }
        ];
        let mut d_emb = vec![0f32; b * t_len * e];
        let mut dg = vec![0f32; b * 4 * h];
        let mut dcp = vec![0f32; h];
        for t in (0..t_len).rev() {
            let st = &acts.steps[t];
            // h̃: from the logits and from the next step's input feeding.
            let mut dt = vec![0f32; b * h];
            for r in 0..b {
                dt[r * h..(r + 1) * h]
                    .copy_from_slice(&d_head[(r * t_len + t) * h..(r * t_len + t + 1) * h]);
            }
            (ctx.kern.add)(&mut dt, &dfeed);
            if !st.drop.is_empty() {
                ly::dropout_backward(&mut dt, &st.drop);
            }
            for (d, &y) in dt.iter_mut().zip(&st.tilde) {
                *d *= 1.0 - y * y;
            }
            let mut dcat = vec![0f32; b * 2 * h];
            lin_bwd(
                ctx,
                &mut sc,
                p,
                g,
                self.attn_out,
                None,
                &dt,
                &st.cat,
                b,
                h,
                2 * h,
                Dx::Set(&mut dcat),
            );
            // Attention.
            let mut dq = vec![0f32; b * h];
            let mut dtop = vec![0f32; b * h];
            for r in 0..b {
                let n = batch.src_len[r];
                let dctx = &dcat[r * 2 * h..r * 2 * h + h];
                dtop[r * h..(r + 1) * h].copy_from_slice(&dcat[r * 2 * h + h..(r + 1) * 2 * h]);
                let al = &st.alpha[r * s..r * s + n];
                let mem = &acts.mem[r * s * h..(r * s + n) * h];
                let mut da = vec![0f32; n];
                for j in 0..n {
                    da[j] = (ctx.kern.dot)(dctx, &mem[j * h..(j + 1) * h]);
                    (ctx.kern.axpy)(
                        al[j],
                        dctx,
                        &mut d_mem[(r * s + j) * h..(r * s + j + 1) * h],
                    );
                }
                let dot: f32 = al.iter().zip(&da).map(|(a, d)| a * d).sum();
                let qr = &st.q[r * h..(r + 1) * h];
                for j in 0..n {
                    let ds = al[j] * (da[j] - dot);
                    match self.scoring {
                        ScoreP::Additive { v: vo, .. } => {
                            let a = &st.a[(r * s + j) * h..(r * s + j + 1) * h];
                            let vv = slice(p, vo, h);
                            for z in 0..h {
                                g[vo + z] += ds * a[z];
                                let dpre = ds * vv[z] * (1.0 - a[z] * a[z]);
                                dq[r * h + z] += dpre;
                                d_keys[(r * s + j) * h + z] += dpre;
                            }
                        }
                        _ => {
                            (ctx.kern.axpy)(
                                ds,
                                &mem[j * h..(j + 1) * h],
                                &mut dq[r * h..(r + 1) * h],
                            );
                            (ctx.kern.axpy)(
                                ds,
                                qr,
                                &mut d_mem[(r * s + j) * h..(r * s + j + 1) * h],
                            );
                        }
                    }
                }
            }
            let top = &st.cells[layers - 1].h;
            match self.scoring {
                ScoreP::Dot => (ctx.kern.add)(&mut dtop, &dq),
                ScoreP::General(w) => lin_bwd(
                    ctx,
                    &mut sc,
                    p,
                    g,
                    w,
                    None,
                    &dq,
                    top,
                    b,
                    h,
                    h,
                    Dx::Add(&mut dtop),
                ),
                ScoreP::Additive { q: wq, qb, .. } => lin_bwd(
                    ctx,
                    &mut sc,
                    p,
                    g,
                    wq,
                    qb,
                    &dq,
                    top,
                    b,
                    h,
                    h,
                    Dx::Add(&mut dtop),
                ),
            }
            (ctx.kern.add)(&mut dh[layers - 1], &dtop);
            // The LSTM layers, top to bottom.
            for l in (0..layers).rev() {
                let cp = &self.dec[l];
                let cell = &st.cells[l];
                let mut dc_prev = vec![0f32; b * h];
                for r in 0..b {
                    cell_backward(
                        &cell.gates[r * 4 * h..(r + 1) * 4 * h],
                        &cell.c_prev[r * h..(r + 1) * h],
                        &cell.c[r * h..(r + 1) * h],
                        &dh[l][r * h..(r + 1) * h],
                        &mut dc[l][r * h..(r + 1) * h],
                        &mut dg[r * 4 * h..(r + 1) * 4 * h],
                        &mut dcp,
                    );
                    dc_prev[r * h..(r + 1) * h].copy_from_slice(&dcp);
                }
                dc[l] = dc_prev;
                let mut dx = vec![0f32; b * cp.inp];
                lin_bwd(
                    ctx,
                    &mut sc,
                    p,
                    g,
                    cp.ih,
                    Some(cp.b),
                    &dg,
                    &cell.x,
                    b,
                    4 * h,
                    cp.inp,
                    Dx::Set(&mut dx),
                );
                let mut dhp = vec![0f32; b * h];
                lin_bwd(
                    ctx,
                    &mut sc,
                    p,
                    g,
                    cp.hh,
                    None,
                    &dg,
                    &cell.h_prev,
                    b,
                    4 * h,
                    h,
                    Dx::Set(&mut dhp),
                );
                dh[l] = dhp;
                if l > 0 {
                    let below = &st.cells[l - 1];
                    if !below.drop.is_empty() {
                        ly::dropout_backward(&mut dx, &below.drop);
                    }
                    (ctx.kern.add)(&mut dh[l - 1], &dx);
                } else {
                    for r in 0..b {
                        let row = &dx[r * cp.inp..(r + 1) * cp.inp];
                        d_emb[(t * b + r) * e..(t * b + r + 1) * e].copy_from_slice(&row[..e]);
                        if c.input_feeding {
                            dfeed[r * h..(r + 1) * h].copy_from_slice(&row[e..]);
                        }
                    }
                }
            }
        }
        if !acts.dec_emb_drop.is_empty() {
            ly::dropout_backward(&mut d_emb, &acts.dec_emb_drop);
        }
        let ids_tm = time_major(&batch.tgt, b, t_len);
        ly::embedding_backward(
            &d_emb,
            e,
            &ids_tm,
            t_len * b,
            1.0,
            &mut g[self.dec_embed..self.dec_embed + v * e],
            None,
        );

        // ---- encoder: memory and final-state gradients, top layer first
        if let ScoreP::Additive { k, .. } = self.scoring {
            lin_bwd(
                ctx,
                &mut sc,
                p,
                g,
                k,
                None,
                &d_keys,
                &acts.mem,
                b * s,
                h,
                h,
                Dx::Add(&mut d_mem),
            );
        }
        let mut d_out = d_mem;
        for l in (0..self.enc.len()).rev() {
            let (fwd, bwd) = &self.enc[l];
            let la = &acts.enc[l];
            let u = fwd.units;
            let mut dx = vec![0f32; b * s * fwd.inp];
            // Final-state gradients: the decoder layer l's initial state.
            let (dh0, dc0) = (&dh[l], &dc[l]);
            let dirs: Vec<(&CellP, &DirActs, bool, usize)> =
                std::iter::once((fwd, &la.fwd, false, 0))
                    .chain(bwd.as_ref().map(|bw| (bw, &la.bwd, true, u)))
                    .collect();
            for (cp, d, reverse, off) in dirs {
                let mut dhr = vec![0f32; b * u];
                let mut dcr = vec![0f32; b * u];
                for r in 0..b {
                    dhr[r * u..(r + 1) * u].copy_from_slice(&dh0[r * h + off..r * h + off + u]);
                    dcr[r * u..(r + 1) * u].copy_from_slice(&dc0[r * h + off..r * h + off + u]);
                }
                let mut dgates = vec![0f32; b * s * 4 * u];
                let mut hprev_all = vec![0f32; b * s * u];
                let mut dgs = vec![0f32; b * 4 * u];
                let mut dcp = vec![0f32; u];
                let whh_t = transpose(slice(p, cp.hh, 4 * u * u), 4 * u, u);
                for step in (0..s).rev() {
                    let t = if reverse { s - 1 - step } else { step };
                    let prev_t = if reverse { t + 1 } else { t.wrapping_sub(1) };
                    dgs.fill(0.0);
                    for r in 0..b {
                        if t >= batch.src_len[r] {
                            continue; // padding passes the gradient through
                        }
                        let mut dhv = dhr[r * u..(r + 1) * u].to_vec();
                        (ctx.kern.add)(
                            &mut dhv,
                            &d_out[(r * s + t) * h + off..(r * s + t) * h + off + u],
                        );
                        let zeros = vec![0f32; u];
                        let c_prev = if prev_t < s {
                            &d.c[(prev_t * b + r) * u..][..u]
                        } else {
                            &zeros[..]
                        };
                        if prev_t < s {
                            hprev_all[(r * s + t) * u..][..u]
                                .copy_from_slice(&d.h[(prev_t * b + r) * u..][..u]);
                        }
                        cell_backward(
                            &d.gates[(t * b + r) * 4 * u..][..4 * u],
                            c_prev,
                            &d.c[(t * b + r) * u..][..u],
                            &dhv,
                            &mut dcr[r * u..(r + 1) * u],
                            &mut dgs[r * 4 * u..(r + 1) * 4 * u],
                            &mut dcp,
                        );
                        dcr[r * u..(r + 1) * u].copy_from_slice(&dcp);
                        dgates[(r * s + t) * 4 * u..][..4 * u]
                            .copy_from_slice(&dgs[r * 4 * u..(r + 1) * 4 * u]);
                    }
                    // dh of the previous step: dgates · W_hh (rows of padded steps stay).
                    let mut dhp = vec![0f32; b * 4 * u];
                    ly::matmul(ctx, &dgs, b, &whh_t, u, 4 * u, &mut dhp);
                    for r in 0..b {
                        if t < batch.src_len[r] {
                            dhr[r * u..(r + 1) * u].copy_from_slice(&dhp[r * u..(r + 1) * u]);
                        }
                    }
                }
                lin_bwd(
                    ctx,
                    &mut sc,
                    p,
                    g,
                    cp.ih,
                    Some(cp.b),
                    &dgates,
                    &la.x,
                    b * s,
                    4 * u,
                    cp.inp,
                    Dx::Add(&mut dx),
                );
                let mut dw = vec![0f32; 4 * u * u];
                let dgt = transpose(&dgates, b * s, 4 * u);
                let hpt = transpose(&hprev_all, b * s, u);
                ly::matmul(ctx, &dgt, 4 * u, &hpt, u, b * s, &mut dw);
                (ctx.kern.add)(&mut g[cp.hh..cp.hh + 4 * u * u], &dw);
            }
            if !la.drop.is_empty() {
                ly::dropout_backward(&mut dx, &la.drop);
            }
            d_out = dx;
        }
        ly::embedding_backward(
            &d_out,
            e,
            &batch.src,
            s,
            1.0,
            &mut g[self.enc_embed..self.enc_embed + v * e],
            None,
        );
        acts.scratch = sc;
        sums
    }
}

/// Batch-major ids `[B][T]` in time-major order `[T][B]` (the decoder's step layout).
fn time_major(ids: &[u32], b: usize, t: usize) -> Vec<u32> {
    (0..t)
        .flat_map(|j| (0..b).map(move |r| ids[r * t + j]))
        .collect()
}

fn transpose(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0f32; rows * cols];
    ly::transpose(&x[..rows * cols], rows, cols, &mut t);
    t
}

/// Backward of `y = x·Wᵀ (+ b)` with `W` at `w` (`[out, inp]`), bias at `b` (after `w`).
#[allow(clippy::too_many_arguments)]
fn lin_bwd(
    ctx: Ctx,
    s: &mut Scratch,
    p: &[f32],
    g: &mut [f32],
    w: usize,
    b: Option<usize>,
    dy: &[f32],
    x: &[f32],
    n: usize,
    out: usize,
    inp: usize,
    dx: Dx,
) {
    let (dw, db) = match b {
        Some(bo) if bo > w => {
            let (lo, hi) = g.split_at_mut(bo);
            (&mut lo[w..w + out * inp], Some(&mut hi[..out]))
        }
        Some(bo) => {
            let (lo, hi) = g.split_at_mut(w);
            (&mut hi[..out * inp], Some(&mut lo[bo..bo + out]))
        }
        None => (&mut g[w..w + out * inp], None),
    };
    ly::linear_backward(
        ctx,
        s,
        dy,
        x,
        n,
        slice(p, w, out * inp),
        out,
        inp,
        dx,
        dw,
        db,
    );
}
