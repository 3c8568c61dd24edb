//! The trainable Transformer: the parameter layout (canonical `.quill` names over one flat f32
//! buffer), and the forward and backward passes of an encoder-decoder or a decoder-only model
//! built from the layers of [`super::layers`]. It computes what the runtime computes
//! (`src/model/transformer/`), with padded batches instead of a KV cache.
//!
//! This file holds the layout, its initialization and the activations a pass keeps for the
//! backward pass; the passes are `forward.rs` and `backward.rs`.

mod backward;
mod forward;

use super::layers::{self as ly, AttnShape, Ctx, Dx, PosInput, Scratch};
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

/// Parameter tensors laid out one after another in one flat buffer, as a builder adds them.
#[derive(Default)]
pub(super) struct Layout {
    pub params: Vec<Param>,
    pub len: usize,
}

impl Layout {
    /// Appends tensor `name`; returns its offset.
    pub fn add(&mut self, name: &str, shape: &[usize], decay: bool) -> usize {
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
    /// The stack's shape: the model's config, with the decoder's own heads and feed-forward
    /// width in a decoder ([`Config::for_decoder`]).
    config: Config,
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
    layout: Layout,
}

impl Builder<'_> {
    fn add(&mut self, name: &str, shape: &[usize], decay: bool) -> usize {
        self.layout.add(name, shape, decay)
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
            config: c.clone(),
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
        if config.sliding_window > 0 {
            return Err(Error::Unsupported(format!(
                "training with sliding-window attention is not supported yet (sliding_window {})",
                config.sliding_window
            )));
        }
        for (field, cap) in [
            ("attn_softcap", config.attn_softcap),
            ("final_softcap", config.final_softcap),
        ] {
            if cap != 0.0 {
                return Err(Error::Unsupported(format!(
                    "training with soft-capped scores is not supported yet ({field} {cap})"
                )));
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
            layout: Layout::default(),
        };
        let shared = has(names::EMBED)
            .then(|| b.add(names::EMBED, &[config.vocab_size, config.d_model], true));
        let encoder = (arch == Arch::Seq2Seq)
            .then(|| b.stack(names::ENCODER, config.encoder_layers, false, shared));
        let dec_cfg = config.for_decoder();
        b.cfg = &dec_cfg;
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
            let (cos, sin) = crate::model::positions::rope_tables(
                len,
                config.head_dim(),
                config.rope_theta,
                config.rope_scaling.as_ref(),
            );
            let neg: Vec<f32> = sin.iter().map(|s| -s).collect();
            (cos, sin, neg)
        });
        Ok(Transformer {
            arch,
            config: config.clone(),
            params: b.layout.params,
            len: b.layout.len,
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
    /// `[N, V]` logits; after the loss of a training step ([`super::net::Net::train_step`]),
    /// their gradients.
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

impl StackP {
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
}

impl<'a> StackIn<'a> {
    /// The encoder's input: the source side of `batch`.
    fn encoder(batch: &'a Batch) -> StackIn<'a> {
        StackIn {
            ids: &batch.src,
            l: batch.s,
            lens: &batch.src_len,
            causal: false,
            memory: None,
        }
    }

    /// The decoder's input: the target side of `batch`, attending to the encoder's output
    /// `enc_out` (`None`: a decoder-only model).
    fn decoder(batch: &'a Batch, enc_out: Option<&'a [f32]>) -> StackIn<'a> {
        StackIn {
            ids: &batch.tgt,
            l: batch.t,
            lens: &batch.tgt_len,
            causal: true,
            memory: enc_out.map(|m| (m, batch.s, &batch.src_len[..])),
        }
    }
}

fn norm_slices<'a>(p: &'a [f32], n: &NormP, d: usize) -> (&'a [f32], Option<&'a [f32]>) {
    (&p[n.w..n.w + d], n.b.map(|b| &p[b..b + d]))
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
