//! The trainable Transformer: the parameter layout (canonical `.quill` names over one flat f32
//! buffer), and the forward and backward passes of an encoder-decoder or a decoder-only model
//! built from the layers of [`super::layers`]. It computes what the runtime computes
//! (`src/model/session.rs`), with padded batches instead of a KV cache.

use super::layers::{self as ly, AttnShape, Ctx, Dx, LossSums, PosInput, Scratch};
use crate::error::{Error, Result};
use crate::format::names::{self, Ffn, Proj};
use crate::format::{Activation, Arch, Config, Norm, Positions};
use crate::rng::Rng;

/// One named parameter tensor inside the flat buffer.
#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    pub name: String,
    pub shape: Vec<usize>,
    pub offset: usize,
    /// Weight decay applies (matrices); not to biases, norms or position tables.
    pub decay: bool,
}

impl Param {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn range(&self) -> std::ops::Range<usize> {
        self.offset..self.offset + self.len()
    }
}

#[derive(Clone, Copy, Debug)]
struct Lin {
    w: usize,
    b: Option<usize>,
    out: usize,
    inp: usize,
}

#[derive(Clone, Copy, Debug)]
struct NormP {
    w: usize,
    b: Option<usize>,
}

#[derive(Clone, Debug)]
struct AttnP {
    q: Lin,
    k: Lin,
    v: Lin,
    o: Lin,
}

#[derive(Clone, Debug)]
struct FfnP {
    up: Lin,
    gate: Option<Lin>,
    down: Lin,
}

#[derive(Clone, Debug)]
struct LayerP {
    self_attn: AttnP,
    self_norm: NormP,
    cross: Option<(AttnP, NormP)>,
    ffn: FfnP,
    ffn_norm: NormP,
}

#[derive(Clone, Debug)]
struct StackP {
    embed: usize,
    /// Learned position table: offset and rows.
    pos: Option<(usize, usize)>,
    embed_norm: Option<NormP>,
    layers: Vec<LayerP>,
    final_norm: Option<NormP>,
}

/// Optional parts of a new model (a model read from a file has whatever tensors it has).
#[derive(Clone, Copy, Debug)]
pub struct Structure {
    /// Biases in linear layers and LayerNorms.
    pub bias: bool,
    /// The output projection is the embedding table.
    pub tied_output: bool,
    /// A norm right after the embeddings (BART's `layernorm_embedding`).
    pub embed_norm: bool,
}

/// The parameter layout of a Transformer and the passes over it.
#[derive(Clone, Debug)]
pub struct Transformer {
    pub arch: Arch,
    pub config: Config,
    pub params: Vec<Param>,
    pub len: usize,
    encoder: Option<StackP>,
    decoder: StackP,
    lm_head: usize,
    lm_bias: Option<usize>,
    sinusoids: Vec<f32>,
    rope: Option<(Vec<f32>, Vec<f32>, Vec<f32>)>,
    /// Dropout probability on embeddings and sub-layer outputs while training.
    pub dropout: f32,
}

struct Builder<'a> {
    cfg: &'a Config,
    has: &'a dyn Fn(&str) -> bool,
    shape_of: &'a dyn Fn(&str) -> Option<Vec<usize>>,
    params: Vec<Param>,
    len: usize,
}

impl Builder<'_> {
    fn add(&mut self, name: &str, shape: &[usize], decay: bool) -> usize {
        let offset = self.len;
        self.len += shape.iter().product::<usize>();
        self.params.push(Param {
            name: name.to_string(),
            shape: shape.to_vec(),
            offset,
            decay,
        });
        offset
    }

    fn linear(&mut self, p: &str, out: usize, inp: usize) -> Lin {
        let w = self.add(&names::weight(p), &[out, inp], true);
        let bname = names::bias(p);
        let b = (self.has)(&bname).then(|| self.add(&bname, &[out], false));
        Lin { w, b, out, inp }
    }

    fn norm(&mut self, p: &str) -> NormP {
        let d = self.cfg.d_model;
        let w = self.add(&names::weight(p), &[d], false);
        let bname = names::bias(p);
        let b = (self.cfg.norm == Norm::LayerNorm && (self.has)(&bname))
            .then(|| self.add(&bname, &[d], false));
        NormP { w, b }
    }

    /// An attention block whose projections are named by `proj`.
    fn attention(&mut self, proj: impl Fn(Proj) -> String) -> AttnP {
        let c = self.cfg;
        let (d, qd, kvd) = (
            c.d_model,
            c.heads * c.head_dim(),
            c.kv_heads() * c.head_dim(),
        );
        AttnP {
            q: self.linear(&proj(Proj::Q), qd, d),
            k: self.linear(&proj(Proj::K), kvd, d),
            v: self.linear(&proj(Proj::V), kvd, d),
            o: self.linear(&proj(Proj::O), d, qd),
        }
    }

    fn stack(
        &mut self,
        name: names::Stack,
        layers: usize,
        cross: bool,
        shared: Option<usize>,
    ) -> StackP {
        let c = self.cfg;
        let own = name.embed();
        let embed = match shared {
            Some(off) if !(self.has)(&own) => off,
            _ => self.add(&own, &[c.vocab_size, c.d_model], true),
        };
        let pos = (c.positions == Positions::Learned).then(|| {
            let own = name.pos();
            let rows = (self.shape_of)(&own)
                .map(|s| s[0])
                .unwrap_or(c.max_positions + c.position_offset);
            (self.add(&own, &[rows, c.d_model], false), rows)
        });
        let embed_norm =
            (self.has)(&names::weight(&name.embed_norm())).then(|| self.norm(&name.embed_norm()));
        let mut out = Vec::with_capacity(layers);
        for i in 0..layers {
            let l = name.layer(i);
            let self_attn = self.attention(|p| l.self_attn(p));
            let self_norm = self.norm(&l.self_attn_norm());
            let cross = cross.then(|| {
                (
                    self.attention(|p| l.cross_attn(p)),
                    self.norm(&l.cross_attn_norm()),
                )
            });
            let (d, f) = (c.d_model, c.ffn_dim);
            let up = self.linear(&l.ffn(Ffn::Up), f, d);
            let gate = c.gated_ffn.then(|| self.linear(&l.ffn(Ffn::Gate), f, d));
            let down = self.linear(&l.ffn(Ffn::Down), d, f);
            let ffn_norm = self.norm(&l.ffn_norm());
            out.push(LayerP {
                self_attn,
                self_norm,
                cross,
                ffn: FfnP { up, gate, down },
                ffn_norm,
            });
        }
        let final_norm =
            (self.has)(&names::weight(&name.final_norm())).then(|| self.norm(&name.final_norm()));
        StackP {
            embed,
            pos,
            embed_norm,
            layers: out,
            final_norm,
        }
    }
}

impl Transformer {
    /// A new model of `arch` described by `config`, with the optional parts of `structure`.
    pub fn new(arch: Arch, config: &Config, structure: Structure) -> Result<Transformer> {
        let pre = config.pre_norm;
        let has = |n: &str| -> bool {
            if n == names::EMBED {
                return true;
            }
            if n == names::LM_HEAD {
                return !structure.tied_output;
            }
            if n.ends_with(".embed.weight") || n == names::LM_HEAD_BIAS {
                return false;
            }
            if n.ends_with("final_norm.weight") {
                return pre;
            }
            if n.ends_with("embed_norm.weight") {
                return structure.embed_norm;
            }
            if n.ends_with(".bias") {
                return structure.bias;
            }
            true
        };
        Self::build(arch, config, &has, &|_| None)
    }

    /// The layout of an existing model: the optional tensors are those `has` reports, the
    /// learned position tables have the rows `shape_of` reports.
    pub fn build(
        arch: Arch,
        config: &Config,
        has: &dyn Fn(&str) -> bool,
        shape_of: &dyn Fn(&str) -> Option<Vec<usize>>,
    ) -> Result<Transformer> {
        config.validate(arch)?;
        match arch {
            Arch::Seq2Seq | Arch::DecoderOnly => {}
            Arch::LstmSeq2Seq => {
                return Err(Error::Unsupported(
                    "the Transformer trainer does not train LSTM models".into(),
                ));
            }
        }
        if config.positions == Positions::Relative {
            return Err(Error::Unsupported(
                "training with T5 relative positions is not supported yet (positions: relative)"
                    .into(),
            ));
        }
        let mut b = Builder {
            cfg: config,
            has,
            shape_of,
            params: Vec::new(),
            len: 0,
        };
        let shared = has(names::EMBED)
            .then(|| b.add(names::EMBED, &[config.vocab_size, config.d_model], true));
        let encoder = (arch == Arch::Seq2Seq)
            .then(|| b.stack(names::ENCODER, config.encoder_layers, false, shared));
        let decoder = b.stack(
            names::DECODER,
            config.decoder_layers,
            arch == Arch::Seq2Seq,
            shared,
        );
        let lm_head = if has(names::LM_HEAD) {
            b.add(names::LM_HEAD, &[config.vocab_size, config.d_model], true)
        } else {
            decoder.embed
        };
        let lm_bias = has(names::LM_HEAD_BIAS)
            .then(|| b.add(names::LM_HEAD_BIAS, &[config.vocab_size], false));
        let sinusoids = if config.positions == Positions::Sinusoidal {
            crate::model::positions::sinusoids(config.max_positions.max(1), config.d_model)
        } else {
            Vec::new()
        };
        let rope = (config.positions == Positions::Rotary).then(|| {
            let len = if config.max_positions > 0 {
                config.max_positions
            } else {
                4096
            };
            let (cos, sin) =
                crate::model::positions::rope_tables(len, config.head_dim(), config.rope_theta);
            let neg: Vec<f32> = sin.iter().map(|s| -s).collect();
            (cos, sin, neg)
        });
        Ok(Transformer {
            arch,
            config: config.clone(),
            params: b.params,
            len: b.len,
            encoder,
            decoder,
            lm_head,
            lm_bias,
            sinusoids,
            rope,
            dropout: 0.0,
        })
    }

    /// Fresh parameters: matrices Xavier-uniform, embeddings normal with std `d^-1/2` (so that
    /// scaled embeddings have unit variance), norms 1, biases and learned positions small.
    pub fn init(&self, seed: u64) -> Vec<f32> {
        let mut p = vec![0f32; self.len];
        let mut rng = Rng::new(seed);
        let d = self.config.d_model as f64;
        for t in &self.params {
            let v = &mut p[t.range()];
            let n = t.name.as_str();
            if n.ends_with("norm.weight") {
                v.fill(1.0);
            } else if n.ends_with(".bias") {
                v.fill(0.0);
            } else if n.ends_with("pos.weight") {
                v.iter_mut()
                    .for_each(|x| *x = (normal(&mut rng) * 0.02) as f32);
            } else if n.ends_with("embed.weight") {
                let std = if self.config.scale_embedding {
                    d.powf(-0.5)
                } else {
                    0.02
                };
                v.iter_mut()
                    .for_each(|x| *x = (normal(&mut rng) * std) as f32);
            } else {
                let (out, inp) = (t.shape[0] as f64, t.shape[1] as f64);
                let a = (6.0 / (out + inp)).sqrt();
                v.iter_mut()
                    .for_each(|x| *x = ((2.0 * rng.uniform() - 1.0) * a) as f32);
            }
        }
        p
    }

    fn pos_input<'a>(&'a self, stack: &StackP, params: &'a [f32]) -> Option<PosInput<'a>> {
        let c = &self.config;
        match (c.positions, stack.pos) {
            (Positions::Learned, Some((off, rows))) => Some(PosInput {
                table: &params[off..off + rows * c.d_model],
                offset: c.position_offset,
            }),
            (Positions::Sinusoidal, _) => Some(PosInput {
                table: &self.sinusoids,
                offset: 0,
            }),
            _ => None,
        }
    }

    /// The longest sequence the position scheme covers.
    pub fn max_len(&self) -> usize {
        let c = &self.config;
        match c.positions {
            Positions::Sinusoidal => c.max_positions,
            Positions::Learned => self
                .encoder
                .iter()
                .chain(std::iter::once(&self.decoder))
                .filter_map(|s| s.pos)
                .map(|(_, rows)| rows - c.position_offset)
                .min()
                .unwrap_or(usize::MAX),
            Positions::Rotary => self
                .rope
                .as_ref()
                .map_or(0, |r| r.0.len() / (c.head_dim() / 2)),
            _ => usize::MAX,
        }
    }
}

fn normal(rng: &mut Rng) -> f64 {
    // Box–Muller.
    let u1 = rng.uniform().max(1e-300);
    let u2 = rng.uniform();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// A padded batch. Seq2seq: `src[B, S]` feeds the encoder; decoder-only models have `s = 0`.
/// The decoder reads `tgt[B, T]` and predicts `labels[B, T]` ([`ly::IGNORE`] where padded).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Batch {
    pub b: usize,
    pub s: usize,
    pub src: Vec<u32>,
    pub src_len: Vec<usize>,
    pub t: usize,
    pub tgt: Vec<u32>,
    pub tgt_len: Vec<usize>,
    pub labels: Vec<u32>,
}

impl Batch {
    /// Positions that count in the loss.
    pub fn target_tokens(&self) -> usize {
        self.labels.iter().filter(|&&l| l != ly::IGNORE).count()
    }

    /// Real (non-padding) tokens on both sides.
    pub fn tokens(&self) -> usize {
        self.src_len.iter().sum::<usize>() + self.tgt_len.iter().sum::<usize>()
    }
}

/// Activations of one residual sub-layer.
#[derive(Default)]
struct SubActs {
    /// Stream entering the sub-layer `[N, C]`.
    x: Vec<f32>,
    /// Sub-layer input: `norm(x)` (pre-norm) or `x` (post-norm).
    a: Vec<f32>,
    /// Post-norm: `x + o`, the norm's input.
    s: Vec<f32>,
    mean: Vec<f32>,
    rstd: Vec<f32>,
    /// Dropout mask of the sub-layer output (empty without dropout).
    mask: Vec<f32>,
}

#[derive(Default)]
struct AttnActs {
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    probs: Vec<f32>,
    att: Vec<f32>,
}

#[derive(Default)]
struct LayerActs {
    sa: SubActs,
    attn: AttnActs,
    ca: SubActs,
    cross: AttnActs,
    fa: SubActs,
    /// Feed-forward: `up` output, `gate` output, and the input of `down`.
    h: Vec<f32>,
    g: Vec<f32>,
    act: Vec<f32>,
}

#[derive(Default)]
struct StackActs {
    /// Embeddings before the embedding norm, and its statistics.
    emb: Vec<f32>,
    emb_mean: Vec<f32>,
    emb_rstd: Vec<f32>,
    emb_mask: Vec<f32>,
    layers: Vec<LayerActs>,
    /// Stream after the last layer (input of the final norm).
    last: Vec<f32>,
    fin_mean: Vec<f32>,
    fin_rstd: Vec<f32>,
    /// Output of the stack `[N, C]`.
    out: Vec<f32>,
}

/// Everything a forward pass keeps for its backward pass, reused from batch to batch.
#[derive(Default)]
pub struct Acts {
    enc: StackActs,
    dec: StackActs,
    /// Input of the output projection (after final norm and logits scale).
    head_in: Vec<f32>,
    /// `[N, V]` logits; after [`Transformer::train_step`] their gradients.
    pub logits: Vec<f32>,
    // Backward work buffers.
    dx: Vec<f32>,
    ds: Vec<f32>,
    d_o: Vec<f32>,
    da: Vec<f32>,
    datt: Vec<f32>,
    dq: Vec<f32>,
    dk: Vec<f32>,
    dv: Vec<f32>,
    dh: Vec<f32>,
    dg: Vec<f32>,
    dact: Vec<f32>,
    d_enc: Vec<f32>,
    scratch: Scratch,
}

fn fit(v: &mut Vec<f32>, n: usize) -> &mut [f32] {
    v.resize(n, 0.0);
    &mut v[..n]
}

/// The inputs of one stack pass.
struct StackIn<'a> {
    ids: &'a [u32],
    l: usize,
    lens: &'a [usize],
    causal: bool,
    /// Cross-attention memory `[B·S, C]`, its length `S` and the real lengths.
    memory: Option<(&'a [f32], usize, &'a [usize])>,
}

fn norm_slices<'a>(p: &'a [f32], n: &NormP, d: usize) -> (&'a [f32], Option<&'a [f32]>) {
    (&p[n.w..n.w + d], n.b.map(|b| &p[b..b + d]))
}

/// Gradients of a norm's weight and bias (weight allocated before bias).
fn norm_grads<'a>(g: &'a mut [f32], n: &NormP, d: usize) -> (&'a mut [f32], Option<&'a mut [f32]>) {
    match n.b {
        Some(b) => {
            let (lo, hi) = g.split_at_mut(b);
            (&mut lo[n.w..n.w + d], Some(&mut hi[..d]))
        }
        None => (&mut g[n.w..n.w + d], None),
    }
}

fn lin_fwd(ctx: Ctx, p: &[f32], l: &Lin, x: &[f32], n: usize, y: &mut Vec<f32>) {
    lin_fwd_into(ctx, p, l, x, n, fit(y, n * l.out));
}

#[allow(clippy::too_many_arguments)]
fn lin_bwd(
    ctx: Ctx,
    s: &mut Scratch,
    p: &[f32],
    g: &mut [f32],
    l: &Lin,
    dy: &[f32],
    x: &[f32],
    n: usize,
    dx: Dx,
) {
    let w = &p[l.w..l.w + l.out * l.inp];
    let (dw, db) = match l.b {
        Some(b) => {
            let (lo, hi) = g.split_at_mut(b);
            (&mut lo[l.w..l.w + l.out * l.inp], Some(&mut hi[..l.out]))
        }
        None => (&mut g[l.w..l.w + l.out * l.inp], None),
    };
    ly::linear_backward(ctx, s, dy, x, n, w, l.out, l.inp, dx, dw, db);
}

impl Transformer {
    fn norm_fwd(
        &self,
        p: &[f32],
        np: &NormP,
        x: &[f32],
        out: &mut [f32],
        mean: &mut Vec<f32>,
        rstd: &mut Vec<f32>,
    ) {
        let d = self.config.d_model;
        let n = x.len() / d;
        let (w, b) = norm_slices(p, np, d);
        ly::norm_forward(
            crate::kernels::kernels(),
            self.config.norm,
            x,
            d,
            w,
            b,
            self.config.norm_eps as f32,
            out,
            fit(mean, n),
            fit(rstd, n),
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn norm_bwd(
        &self,
        p: &[f32],
        g: &mut [f32],
        np: &NormP,
        dout: &[f32],
        x: &[f32],
        mean: &[f32],
        rstd: &[f32],
        dx: &mut [f32],
    ) {
        let d = self.config.d_model;
        let (w, _) = norm_slices(p, np, d);
        let (dw, db) = norm_grads(g, np, d);
        ly::norm_backward(self.config.norm, dout, x, d, w, mean, rstd, dx, dw, db);
    }

    /// Sub-layer entry: keeps `x` and computes the sub-layer input.
    fn sub_begin(&self, p: &[f32], np: &NormP, x: &[f32], sa: &mut SubActs) {
        sa.x.clear();
        sa.x.extend_from_slice(x);
        let a = fit(&mut sa.a, x.len());
        if self.config.pre_norm {
            self.norm_fwd(p, np, x, a, &mut sa.mean, &mut sa.rstd);
        } else {
            a.copy_from_slice(x);
        }
    }

    /// Sub-layer exit: dropout on `o`, residual add, post-norm; the new stream goes to `x`.
    fn sub_end(
        &self,
        p: &[f32],
        np: &NormP,
        o: &mut [f32],
        sa: &mut SubActs,
        rng: Option<&mut Rng>,
        x: &mut [f32],
    ) {
        match rng {
            Some(rng) if self.dropout > 0.0 => {
                let mask = fit(&mut sa.mask, o.len());
                ly::dropout_forward(o, self.dropout, rng, mask);
            }
            _ => sa.mask.clear(),
        }
        if self.config.pre_norm {
            for ((y, &xv), &ov) in x.iter_mut().zip(&sa.x).zip(o.iter()) {
                *y = xv + ov;
            }
        } else {
            let s = fit(&mut sa.s, o.len());
            for ((s, &xv), &ov) in s.iter_mut().zip(&sa.x).zip(o.iter()) {
                *s = xv + ov;
            }
            let s = std::mem::take(&mut sa.s);
            self.norm_fwd(p, np, &s, x, &mut sa.mean, &mut sa.rstd);
            sa.s = s;
        }
    }

    /// Backward of [`Self::sub_end`]: from `dx` (gradient of the stream after the sub-layer)
    /// computes `d_o` (gradient of the sub-layer output) and leaves in `dx` the gradient of the
    /// stream before it through the residual path.
    #[allow(clippy::too_many_arguments)]
    fn sub_end_bwd(
        &self,
        p: &[f32],
        g: &mut [f32],
        np: &NormP,
        sa: &SubActs,
        dx: &mut [f32],
        ds: &mut [f32],
        d_o: &mut [f32],
    ) {
        if !self.config.pre_norm {
            ds.fill(0.0);
            self.norm_bwd(p, g, np, dx, &sa.s, &sa.mean, &sa.rstd, ds);
            dx.copy_from_slice(ds);
        }
        d_o.copy_from_slice(dx);
        if !sa.mask.is_empty() {
            ly::dropout_backward(d_o, &sa.mask);
        }
    }

    /// Backward of [`Self::sub_begin`]: adds the gradient of the sub-layer input into `dx`.
    fn sub_begin_bwd(
        &self,
        p: &[f32],
        g: &mut [f32],
        np: &NormP,
        sa: &SubActs,
        da: &[f32],
        dx: &mut [f32],
    ) {
        if self.config.pre_norm {
            self.norm_bwd(p, g, np, da, &sa.x, &sa.mean, &sa.rstd, dx);
        } else {
            (crate::kernels::scalar::add)(dx, da);
        }
    }

    fn attn_shape(&self, b: usize, lq: usize, lk: usize, causal: bool) -> AttnShape {
        let c = &self.config;
        AttnShape {
            b,
            lq,
            lk,
            heads: c.heads,
            kv_heads: c.kv_heads(),
            d: c.head_dim(),
            causal,
            scale: c.attention_scale(),
        }
    }

    fn stack_forward(
        &self,
        ctx: Ctx,
        p: &[f32],
        st: &StackP,
        inp: &StackIn,
        acts: &mut StackActs,
        mut rng: Option<&mut Rng>,
    ) {
        let c = &self.config;
        let d = c.d_model;
        let n = inp.ids.len();
        let b = n / inp.l;
        let scale = if c.scale_embedding {
            (d as f32).sqrt()
        } else {
            1.0
        };
        let emb = fit(&mut acts.emb, n * d);
        ly::embedding_forward(
            &p[st.embed..st.embed + c.vocab_size * d],
            d,
            inp.ids,
            inp.l,
            scale,
            self.pos_input(st, p).as_ref(),
            emb,
        );
        let mut x = vec![0f32; n * d];
        match &st.embed_norm {
            Some(np) => self.norm_fwd(
                p,
                np,
                &acts.emb,
                &mut x,
                &mut acts.emb_mean,
                &mut acts.emb_rstd,
            ),
            None => x.copy_from_slice(&acts.emb),
        }
        match rng.as_deref_mut() {
            Some(r) if self.dropout > 0.0 => {
                ly::dropout_forward(&mut x, self.dropout, r, fit(&mut acts.emb_mask, n * d))
            }
            _ => acts.emb_mask.clear(),
        }
        acts.layers.resize_with(st.layers.len(), LayerActs::default);
        let mut o = vec![0f32; n * d];
        for (lp, la) in st.layers.iter().zip(acts.layers.iter_mut()) {
            // ---- self-attention
            self.sub_begin(p, &lp.self_norm, &x, &mut la.sa);
            let at = &lp.self_attn;
            lin_fwd(ctx, p, &at.q, &la.sa.a, n, &mut la.attn.q);
            lin_fwd(ctx, p, &at.k, &la.sa.a, n, &mut la.attn.k);
            lin_fwd(ctx, p, &at.v, &la.sa.a, n, &mut la.attn.v);
            if let Some((cos, sin, _)) = &self.rope {
                let (hd, h, g) = (c.head_dim(), c.heads, c.kv_heads());
                ly::rope_apply(
                    ctx.kern,
                    &mut la.attn.q,
                    h,
                    hd,
                    inp.l,
                    cos,
                    sin,
                    c.rope_interleaved,
                );
                ly::rope_apply(
                    ctx.kern,
                    &mut la.attn.k,
                    g,
                    hd,
                    inp.l,
                    cos,
                    sin,
                    c.rope_interleaved,
                );
            }
            let shape = self.attn_shape(b, inp.l, inp.l, inp.causal);
            let qd = c.heads * c.head_dim();
            ly::attention_forward(
                ctx,
                &shape,
                &la.attn.q,
                &la.attn.k,
                &la.attn.v,
                inp.lens,
                fit(&mut la.attn.probs, b * c.heads * inp.l * inp.l),
                fit(&mut la.attn.att, n * qd),
            );
            lin_fwd_into(ctx, p, &at.o, &la.attn.att, n, &mut o);
            self.sub_end(
                p,
                &lp.self_norm,
                &mut o,
                &mut la.sa,
                rng.as_deref_mut(),
                &mut x,
            );

            // ---- cross-attention
            if let (Some((cp, cn)), Some((mem, s, src_len))) = (&lp.cross, inp.memory) {
                self.sub_begin(p, cn, &x, &mut la.ca);
                lin_fwd(ctx, p, &cp.q, &la.ca.a, n, &mut la.cross.q);
                lin_fwd(ctx, p, &cp.k, mem, b * s, &mut la.cross.k);
                lin_fwd(ctx, p, &cp.v, mem, b * s, &mut la.cross.v);
                let shape = self.attn_shape(b, inp.l, s, false);
                ly::attention_forward(
                    ctx,
                    &shape,
                    &la.cross.q,
                    &la.cross.k,
                    &la.cross.v,
                    src_len,
                    fit(&mut la.cross.probs, b * c.heads * inp.l * s),
                    fit(&mut la.cross.att, n * qd),
                );
                lin_fwd_into(ctx, p, &cp.o, &la.cross.att, n, &mut o);
                self.sub_end(p, cn, &mut o, &mut la.ca, rng.as_deref_mut(), &mut x);
            }

            // ---- feed-forward
            self.sub_begin(p, &lp.ffn_norm, &x, &mut la.fa);
            let f = &lp.ffn;
            lin_fwd(ctx, p, &f.up, &la.fa.a, n, &mut la.h);
            let act = fit(&mut la.act, n * c.ffn_dim);
            match &f.gate {
                Some(gl) => {
                    lin_fwd(ctx, p, gl, &la.fa.a, n, &mut la.g);
                    ly::act_forward(ctx.kern, c.activation, &la.g, act);
                    (ctx.kern.mul)(act, &la.h);
                }
                None => ly::act_forward(ctx.kern, c.activation, &la.h, act),
            }
            lin_fwd_into(ctx, p, &f.down, &la.act, n, &mut o);
            self.sub_end(
                p,
                &lp.ffn_norm,
                &mut o,
                &mut la.fa,
                rng.as_deref_mut(),
                &mut x,
            );
        }
        acts.last = x;
        let out = fit(&mut acts.out, n * d);
        match &st.final_norm {
            Some(np) => self.norm_fwd(
                p,
                np,
                &acts.last,
                out,
                &mut acts.fin_mean,
                &mut acts.fin_rstd,
            ),
            None => out.copy_from_slice(&acts.last),
        }
    }

    /// Backward of [`Self::stack_forward`] from `dout` (gradient of the stack output, in
    /// `w.dx` on entry). Adds the memory's gradient into `w.d_enc` for a decoder with
    /// cross-attention.
    #[allow(clippy::too_many_arguments)]
    fn stack_backward(
        &self,
        ctx: Ctx,
        p: &[f32],
        g: &mut [f32],
        st: &StackP,
        inp: &StackIn,
        acts: &StackActs,
        w: &mut Acts,
    ) {
        let c = &self.config;
        let d = c.d_model;
        let n = inp.ids.len();
        let b = n / inp.l;
        let (qd, kvd, f) = (
            c.heads * c.head_dim(),
            c.kv_heads() * c.head_dim(),
            c.ffn_dim,
        );
        let mut dx = std::mem::take(&mut w.dx);
        dx.resize(n * d, 0.0);
        let ds = fit(&mut w.ds, n * d);
        if let Some(np) = &st.final_norm {
            ds.fill(0.0);
            self.norm_bwd(
                p,
                g,
                np,
                &dx,
                &acts.last,
                &acts.fin_mean,
                &acts.fin_rstd,
                ds,
            );
            dx.copy_from_slice(ds);
        }
        fit(&mut w.d_o, n * d);
        fit(&mut w.da, n * d);
        for (lp, la) in st.layers.iter().zip(acts.layers.iter()).rev() {
            // ---- feed-forward
            self.sub_end_bwd(p, g, &lp.ffn_norm, &la.fa, &mut dx, &mut w.ds, &mut w.d_o);
            let ff = &lp.ffn;
            let dact = fit(&mut w.dact, n * f);
            lin_bwd(
                ctx,
                &mut w.scratch,
                p,
                g,
                &ff.down,
                &w.d_o,
                &la.act,
                n,
                Dx::Set(dact),
            );
            let dh = fit(&mut w.dh, n * f);
            match &ff.gate {
                Some(gl) => {
                    let dg = fit(&mut w.dg, n * f);
                    for i in 0..n * f {
                        let a = ly::act_grad(c.activation, la.g[i]);
                        let mut av = [la.g[i]];
                        ctx.kern.activate(c.activation.into(), &mut av);
                        dg[i] = w.dact[i] * la.h[i] * a;
                        dh[i] = w.dact[i] * av[0];
                    }
                    lin_bwd(
                        ctx,
                        &mut w.scratch,
                        p,
                        g,
                        gl,
                        &w.dg,
                        &la.fa.a,
                        n,
                        Dx::Set(&mut w.da),
                    );
                    lin_bwd(
                        ctx,
                        &mut w.scratch,
                        p,
                        g,
                        &ff.up,
                        &w.dh,
                        &la.fa.a,
                        n,
                        Dx::Add(&mut w.da),
                    );
                }
                None => {
                    ly::act_backward(c.activation, &la.h, &w.dact, dh);
                    lin_bwd(
                        ctx,
                        &mut w.scratch,
                        p,
                        g,
                        &ff.up,
                        &w.dh,
                        &la.fa.a,
                        n,
                        Dx::Set(&mut w.da),
                    );
                }
            }
            self.sub_begin_bwd(p, g, &lp.ffn_norm, &la.fa, &w.da, &mut dx);

            // ---- cross-attention
            if let (Some((cp, cn)), Some((mem, s, src_len))) = (&lp.cross, inp.memory) {
                self.sub_end_bwd(p, g, cn, &la.ca, &mut dx, &mut w.ds, &mut w.d_o);
                let datt = fit(&mut w.datt, n * qd);
                lin_bwd(
                    ctx,
                    &mut w.scratch,
                    p,
                    g,
                    &cp.o,
                    &w.d_o,
                    &la.cross.att,
                    n,
                    Dx::Set(datt),
                );
                let shape = self.attn_shape(b, inp.l, s, false);
                ly::attention_backward(
                    ctx,
                    &shape,
                    &w.datt,
                    &la.cross.q,
                    &la.cross.k,
                    &la.cross.v,
                    src_len,
                    &la.cross.probs,
                    fit(&mut w.dq, n * qd),
                    fit(&mut w.dk, b * s * kvd),
                    fit(&mut w.dv, b * s * kvd),
                );
                lin_bwd(
                    ctx,
                    &mut w.scratch,
                    p,
                    g,
                    &cp.q,
                    &w.dq,
                    &la.ca.a,
                    n,
                    Dx::Set(&mut w.da),
                );
                let d_enc = &mut w.d_enc[..b * s * d];
                lin_bwd(
                    ctx,
                    &mut w.scratch,
                    p,
                    g,
                    &cp.k,
                    &w.dk,
                    mem,
                    b * s,
                    Dx::Add(d_enc),
                );
                lin_bwd(
                    ctx,
                    &mut w.scratch,
                    p,
                    g,
                    &cp.v,
                    &w.dv,
                    mem,
                    b * s,
                    Dx::Add(d_enc),
                );
                self.sub_begin_bwd(p, g, cn, &la.ca, &w.da, &mut dx);
            }

            // ---- self-attention
            self.sub_end_bwd(p, g, &lp.self_norm, &la.sa, &mut dx, &mut w.ds, &mut w.d_o);
            let at = &lp.self_attn;
            let datt = fit(&mut w.datt, n * qd);
            lin_bwd(
                ctx,
                &mut w.scratch,
                p,
                g,
                &at.o,
                &w.d_o,
                &la.attn.att,
                n,
                Dx::Set(datt),
            );
            let shape = self.attn_shape(b, inp.l, inp.l, inp.causal);
            ly::attention_backward(
                ctx,
                &shape,
                &w.datt,
                &la.attn.q,
                &la.attn.k,
                &la.attn.v,
                inp.lens,
                &la.attn.probs,
                fit(&mut w.dq, n * qd),
                fit(&mut w.dk, n * kvd),
                fit(&mut w.dv, n * kvd),
            );
            if let Some((cos, _, neg)) = &self.rope {
                let (hd, h, gh) = (c.head_dim(), c.heads, c.kv_heads());
                ly::rope_apply(
                    ctx.kern,
                    &mut w.dq,
                    h,
                    hd,
                    inp.l,
                    cos,
                    neg,
                    c.rope_interleaved,
                );
                ly::rope_apply(
                    ctx.kern,
                    &mut w.dk,
                    gh,
                    hd,
                    inp.l,
                    cos,
                    neg,
                    c.rope_interleaved,
                );
            }
            lin_bwd(
                ctx,
                &mut w.scratch,
                p,
                g,
                &at.q,
                &w.dq,
                &la.sa.a,
                n,
                Dx::Set(&mut w.da),
            );
            lin_bwd(
                ctx,
                &mut w.scratch,
                p,
                g,
                &at.k,
                &w.dk,
                &la.sa.a,
                n,
                Dx::Add(&mut w.da),
            );
            lin_bwd(
                ctx,
                &mut w.scratch,
                p,
                g,
                &at.v,
                &w.dv,
                &la.sa.a,
                n,
                Dx::Add(&mut w.da),
            );
            self.sub_begin_bwd(p, g, &lp.self_norm, &la.sa, &w.da, &mut dx);
        }
        // ---- embeddings
        if !acts.emb_mask.is_empty() {
            ly::dropout_backward(&mut dx, &acts.emb_mask);
        }
        if let Some(np) = &st.embed_norm {
            let ds = fit(&mut w.ds, n * d);
            ds.fill(0.0);
            self.norm_bwd(p, g, np, &dx, &acts.emb, &acts.emb_mean, &acts.emb_rstd, ds);
            dx.copy_from_slice(ds);
        }
        let scale = if c.scale_embedding {
            (d as f32).sqrt()
        } else {
            1.0
        };
        let (emb_g, pos_g) = match st.pos {
            Some((off, rows)) if c.positions == Positions::Learned => {
                // The embedding table and the position table are disjoint ranges.
                let (lo, hi) = g.split_at_mut(off.max(st.embed));
                if off > st.embed {
                    (
                        &mut lo[st.embed..],
                        Some((&mut hi[..rows * d], c.position_offset)),
                    )
                } else {
                    (
                        &mut hi[..],
                        Some((&mut lo[off..off + rows * d], c.position_offset)),
                    )
                }
            }
            _ => (&mut g[st.embed..], None),
        };
        ly::embedding_backward(&dx, d, inp.ids, inp.l, scale, emb_g, pos_g);
        w.dx = dx;
    }

    /// Runs the model on `batch`, leaving logits `[B·T, V]` in `acts.logits`. `rng`: dropout
    /// (training); `None` evaluates.
    pub fn forward(
        &self,
        ctx: Ctx,
        p: &[f32],
        batch: &Batch,
        acts: &mut Acts,
        mut rng: Option<&mut Rng>,
    ) {
        let c = &self.config;
        let d = c.d_model;
        if let Some(enc) = &self.encoder {
            let inp = StackIn {
                ids: &batch.src,
                l: batch.s,
                lens: &batch.src_len,
                causal: false,
                memory: None,
            };
            self.stack_forward(ctx, p, enc, &inp, &mut acts.enc, rng.as_deref_mut());
        }
        let memory = self
            .encoder
            .as_ref()
            .map(|_| (&acts.enc.out[..], batch.s, &batch.src_len[..]));
        let inp = StackIn {
            ids: &batch.tgt,
            l: batch.t,
            lens: &batch.tgt_len,
            causal: true,
            memory,
        };
        let mut dec = std::mem::take(&mut acts.dec);
        self.stack_forward(ctx, p, &self.decoder, &inp, &mut dec, rng);
        acts.dec = dec;
        let n = batch.b * batch.t;
        let head_in = fit(&mut acts.head_in, n * d);
        head_in.copy_from_slice(&acts.dec.out);
        if c.logits_scale != 1.0 {
            (ctx.kern.scale)(head_in, c.logits_scale as f32);
        }
        let v = c.vocab_size;
        let logits = fit(&mut acts.logits, n * v);
        ly::linear_forward(
            ctx,
            &acts.head_in,
            n,
            &p[self.lm_head..self.lm_head + v * d],
            self.lm_bias.map(|b| &p[b..b + v]),
            v,
            d,
            logits,
        );
    }

    /// The loss of `batch` without gradients.
    pub fn eval_loss(
        &self,
        ctx: Ctx,
        p: &[f32],
        batch: &Batch,
        acts: &mut Acts,
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

    /// Forward, loss and backward of `batch`: adds `grad_scale · ∂Σloss/∂params` into `g`.
    /// `rng`: dropout (`None`: no dropout).
    #[allow(clippy::too_many_arguments)]
    pub fn train_step(
        &self,
        ctx: Ctx,
        p: &[f32],
        g: &mut [f32],
        batch: &Batch,
        acts: &mut Acts,
        smoothing: f32,
        grad_scale: f32,
        rng: Option<&mut Rng>,
    ) -> LossSums {
        let c = &self.config;
        let (d, v) = (c.d_model, c.vocab_size);
        self.forward(ctx, p, batch, acts, rng);
        let sums = ly::cross_entropy(
            ctx,
            &mut acts.logits,
            v,
            &batch.labels,
            smoothing,
            Some(grad_scale),
        );
        let n = batch.b * batch.t;
        // Output projection.
        let lm = Lin {
            w: self.lm_head,
            b: self.lm_bias,
            out: v,
            inp: d,
        };
        let mut dx = std::mem::take(&mut acts.dx);
        let dxs = fit(&mut dx, n * d);
        lin_bwd(
            ctx,
            &mut acts.scratch,
            p,
            g,
            &lm,
            &acts.logits,
            &acts.head_in,
            n,
            Dx::Set(dxs),
        );
        if c.logits_scale != 1.0 {
            (ctx.kern.scale)(dxs, c.logits_scale as f32);
        }
        acts.dx = dx;
        if self.encoder.is_some() {
            let zeros = fit(&mut acts.d_enc, batch.b * batch.s * d);
            zeros.fill(0.0);
        }
        let memory_len = batch.s;
        let dec = std::mem::take(&mut acts.dec);
        let enc_out = std::mem::take(&mut acts.enc.out);
        {
            let inp = StackIn {
                ids: &batch.tgt,
                l: batch.t,
                lens: &batch.tgt_len,
                causal: true,
                memory: self
                    .encoder
                    .as_ref()
                    .map(|_| (&enc_out[..], memory_len, &batch.src_len[..])),
            };
            self.stack_backward(ctx, p, g, &self.decoder, &inp, &dec, acts);
        }
        acts.dec = dec;
        acts.enc.out = enc_out;
        if let Some(enc) = &self.encoder {
            let inp = StackIn {
                ids: &batch.src,
                l: batch.s,
                lens: &batch.src_len,
                causal: false,
                memory: None,
            };
            std::mem::swap(&mut acts.dx, &mut acts.d_enc);
            let ea = std::mem::take(&mut acts.enc);
            self.stack_backward(ctx, p, g, enc, &inp, &ea, acts);
            acts.enc = ea;
        }
        sums
    }
}

fn lin_fwd_into(ctx: Ctx, p: &[f32], l: &Lin, x: &[f32], n: usize, y: &mut [f32]) {
    ly::linear_forward(
        ctx,
        x,
        n,
        &p[l.w..l.w + l.out * l.inp],
        l.b.map(|b| &p[b..b + l.out]),
        l.out,
        l.inp,
        &mut y[..n * l.out],
    );
}

/// The activation function a name on the command line means.
pub fn parse_activation(s: &str) -> Result<Activation> {
    Ok(match s {
        "relu" => Activation::Relu,
        "gelu" => Activation::Gelu,
        "gelu_tanh" => Activation::GeluTanh,
        "silu" | "swish" => Activation::Silu,
        _ => {
            return Err(Error::InvalidArgument(format!(
                "activation `{s}`: expected relu, gelu, gelu_tanh or silu"
            )));
        }
    })
}
