//! The trainable LSTM encoder-decoder with attention (`lstm-seq2seq`, `docs/lstm.md`): the
//! parameter layout under the runtime's canonical names, the forward pass over a padded batch
//! (teacher forcing) and backpropagation through time.
//!
//! Layouts: encoder tensors are batch-major (`[B·S, ·]`, row `b·S + t`), decoder step tensors
//! time-major (`[T][B][·]`), so each time step is one contiguous `[B, ·]` block for the
//! matrix products. Padded source steps leave a row's state unchanged (and pass its gradient
//! through unchanged).
//!
//! This file holds the layout and the activations; the passes are `forward.rs` and
//! `backward.rs`.

mod backward;
mod forward;

use super::layers::{self as ly, Ctx, Dx, Scratch};
use super::model::{Batch, Layout, Param};
use crate::error::{Error, Result};
use crate::format::names::{self, LstmCell};
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
    layout: Layout,
}

impl Builder<'_> {
    fn add(&mut self, name: &str, shape: &[usize], decay: bool) -> usize {
        self.layout.add(name, shape, decay)
    }

    fn cell(&mut self, p: &LstmCell, units: usize, inp: usize) -> CellP {
        CellP {
            ih: self.add(&p.ih(), &[4 * units, inp], true),
            hh: self.add(&p.hh(), &[4 * units, units], true),
            b: self.add(&p.bias(), &[4 * units], false),
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
        let query_bias = names::bias(names::LSTM_ATTN_QUERY);
        let has = |n: &str| match n {
            names::EMBED | names::LM_HEAD_BIAS => true,
            names::LM_HEAD => !tied,
            _ => n == query_bias,
        };
        Self::build(config, &has)
    }

    /// The layout of a model whose optional tensors are those `has` reports.
    pub fn build(c: &Config, has: &dyn Fn(&str) -> bool) -> Result<Lstm> {
        c.validate(Arch::LstmSeq2Seq)?;
        let (v, e, h) = (c.vocab_size, c.embed_dim(), c.d_model);
        let mut b = Builder {
            has,
            layout: Layout::default(),
        };
        let (enc_embed, dec_embed) = if has(names::EMBED) {
            let off = b.add(names::EMBED, &[v, e], true);
            (off, off)
        } else {
            (
                b.add(&names::ENCODER.embed(), &[v, e], true),
                b.add(&names::DECODER.embed(), &[v, e], true),
            )
        };
        let u = if c.bidirectional { h / 2 } else { h };
        let mut enc = Vec::new();
        for l in 0..c.encoder_layers {
            let inp = if l == 0 { e } else { h };
            let fwd = b.cell(&LstmCell::encoder(l, false), u, inp);
            let bwd = c
                .bidirectional
                .then(|| b.cell(&LstmCell::encoder(l, true), u, inp));
            enc.push((fwd, bwd));
        }
        let mut dec = Vec::new();
        for l in 0..c.decoder_layers {
            let inp = match l {
                0 if c.input_feeding => e + h,
                0 => e,
                _ => h,
            };
            dec.push(b.cell(&LstmCell::decoder(l), h, inp));
        }
        let scoring = match c.attention.expect("validated") {
            LstmAttention::Dot => ScoreP::Dot,
            LstmAttention::General => ScoreP::General(b.add(names::LSTM_ATTN_IN, &[h, h], true)),
            LstmAttention::Additive => {
                let q = b.add(&names::weight(names::LSTM_ATTN_QUERY), &[h, h], true);
                let query_bias = names::bias(names::LSTM_ATTN_QUERY);
                let qb = (b.has)(&query_bias).then(|| b.add(&query_bias, &[h], false));
                let k = b.add(names::LSTM_ATTN_KEY, &[h, h], true);
                let v = b.add(names::LSTM_ATTN_V, &[h], false);
                ScoreP::Additive { q, qb, k, v }
            }
        };
        let attn_out = b.add(names::LSTM_ATTN_OUT, &[h, 2 * h], true);
        let lm_head = if has(names::LM_HEAD) {
            b.add(names::LM_HEAD, &[v, h], true)
        } else if e == h {
            dec_embed
        } else {
            return Err(Error::InvalidArgument(format!(
                "a tied output projection needs embed_dim = d_model ({e} ≠ {h})"
            )));
        };
        let lm_bias = has(names::LM_HEAD_BIAS).then(|| b.add(names::LM_HEAD_BIAS, &[v], false));
        Ok(Lstm {
            config: c.clone(),
            params: b.layout.params,
            len: b.layout.len,
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

fn slice(p: &[f32], off: usize, n: usize) -> &[f32] {
    &p[off..off + n]
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
