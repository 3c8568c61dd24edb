//! The weights of a Transformer, gathered once at load by their canonical names
//! (`docs/architectures.md`) and checked against the config: matrices stay in the file (a
//! [`MatrixRef`] each), vectors (norms, biases, T5's relative bias table) are converted to f32.
//! The structs are the blocks of [`super::blocks`], which give each its `forward`.
//!
//! Dimensions: `d` model width, `hd` head width, `heads` query heads, `kv` key/value heads,
//! `f` feed-forward width, `V` vocabulary.

use crate::error::{Error, Result};
use crate::format::names::{self, Ffn, Proj};
use crate::format::{Arch, Config, MatrixRef, Positions, QuillFile};
use crate::model::positions::Sinusoids;

/// A normalization layer: LayerNorm (`bias` optional) or RMSNorm (`bias` always `None`).
pub(crate) struct Norm {
    pub weight: Vec<f32>,
    pub bias: Option<Vec<f32>>,
}

/// A linear layer `y = x·Wᵀ + b`.
pub(crate) struct Linear {
    pub w: MatrixRef,
    pub b: Option<Vec<f32>>,
    /// Output features.
    pub out: usize,
}

/// The projections of an attention block.
pub(crate) struct Attention {
    /// `[heads·hd, d]`
    pub q: Linear,
    /// `[kv·hd, d]`
    pub k: Linear,
    /// `[kv·hd, d]`
    pub v: Linear,
    /// `[d, heads·hd]`
    pub o: Linear,
}

/// Self-attention (causal through the KV cache in a decoder, bidirectional in an encoder) and
/// its norm.
pub(crate) struct SelfAttention {
    pub proj: Attention,
    /// `[d]`
    pub norm: Norm,
    /// Per-head RMSNorm weights (`[head_dim]`) of the queries and keys, applied before rotary
    /// positions (Qwen3); both or neither.
    pub qk_norm: Option<(Vec<f32>, Vec<f32>)>,
    /// Norm of the output before the residual add (Gemma 2's sandwich norms), optional.
    pub post_norm: Option<Norm>,
}

/// Cross-attention over the encoder output (decoder of a seq2seq model) and its norm.
pub(crate) struct CrossAttention {
    pub proj: Attention,
    /// `[d]`
    pub norm: Norm,
}

/// The feed-forward block and its norm: `down(act(up(x)))`, or gated (SwiGLU, GEGLU):
/// `down(act(gate(x)) ⊙ up(x))`.
pub(crate) struct FeedForward {
    /// `[f, d]`
    pub up: Linear,
    /// `[f, d]`
    pub gate: Option<Linear>,
    /// `[d, f]`
    pub down: Linear,
    /// `[d]`
    pub norm: Norm,
    /// Norm of the output before the residual add (Gemma 2), optional.
    pub post_norm: Option<Norm>,
}

pub(crate) struct Layer {
    pub self_attn: SelfAttention,
    pub cross: Option<CrossAttention>,
    pub ffn: FeedForward,
}

/// Position information added to the embeddings.
pub(crate) enum PosTable {
    /// Rows of a table in the file, read at `position + offset`.
    Learned {
        table: MatrixRef,
        offset: usize,
        rows: usize,
    },
    /// Sinusoids (sin in the first half of a row, cos in the second), computed on first use.
    Sinusoidal(Sinusoids),
}

/// An encoder or a decoder: embeddings, layers, final norm.
pub(crate) struct Stack {
    /// The shape its blocks run with: the model's config, with the decoder's own heads and
    /// feed-forward width in a decoder ([`Config::for_decoder`]).
    pub config: Config,
    /// `[V, d]`
    pub embed: MatrixRef,
    pub pos: Option<PosTable>,
    pub embed_norm: Option<Norm>,
    /// T5 relative attention bias `[buckets, heads]`, shared by all layers of the stack.
    pub rel_bias: Option<Vec<f32>>,
    pub layers: Vec<Layer>,
    pub final_norm: Option<Norm>,
}

pub(crate) struct TransformerWeights {
    pub encoder: Option<Stack>,
    pub decoder: Stack,
    /// `[V, d]`
    pub lm_head: MatrixRef,
    /// `[V]`
    pub lm_bias: Option<Vec<f32>>,
}

impl TransformerWeights {
    /// The longest sequence the position tables cover (learned or sinusoidal tables, a rotary
    /// model's `max_positions`); `None` when positions set no limit.
    pub fn max_positions(&self, c: &Config) -> Option<usize> {
        let tables = [self.encoder.as_ref(), Some(&self.decoder)]
            .into_iter()
            .flatten()
            .filter_map(|s| match &s.pos {
                Some(PosTable::Learned { rows, offset, .. }) => Some(rows - offset),
                Some(PosTable::Sinusoidal(t)) => Some(t.rows()),
                None => None,
            })
            .min();
        let rotary =
            (c.positions == Positions::Rotary && c.max_positions > 0).then_some(c.max_positions);
        tables.into_iter().chain(rotary).min()
    }
}

struct Loader<'a> {
    file: &'a QuillFile,
    cfg: &'a Config,
}

impl Loader<'_> {
    fn has(&self, name: &str) -> bool {
        self.file.contains(name)
    }

    fn vector(&self, name: &str, len: usize) -> Result<Vec<f32>> {
        let t = self.file.tensor(name)?;
        if t.numel() != len || t.shape.len() > 2 || (t.shape.len() == 2 && t.shape[0] != 1) {
            return Err(Error::WrongTensorType {
                tensor: name.into(),
                expected: format!("a vector of {len}"),
                found: format!("shape {:?}", t.shape),
            });
        }
        t.to_f32_vec()
    }

    fn opt_vector(&self, name: &str, len: usize) -> Result<Option<Vec<f32>>> {
        if self.has(name) {
            self.vector(name, len).map(Some)
        } else {
            Ok(None)
        }
    }

    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<MatrixRef> {
        crate::model::shaped_matrix(self.file, name, rows, cols)
    }

    fn linear(&self, prefix: &str, out: usize, inp: usize) -> Result<Linear> {
        Ok(Linear {
            w: self.matrix(&names::weight(prefix), out, inp)?,
            b: self.opt_vector(&names::bias(prefix), out)?,
            out,
        })
    }

    fn norm(&self, prefix: &str) -> Result<Norm> {
        let d = self.cfg.d_model;
        Ok(Norm {
            weight: self.vector(&names::weight(prefix), d)?,
            bias: self.opt_vector(&names::bias(prefix), d)?,
        })
    }

    fn opt_norm(&self, prefix: &str) -> Result<Option<Norm>> {
        if self.has(&names::weight(prefix)) {
            self.norm(prefix).map(Some)
        } else {
            Ok(None)
        }
    }

    /// A sub-layer's output norm, when the file has one: pre-norm models only (a post-norm
    /// model already normalizes after the residual add).
    fn post_norm(&self, prefix: &str) -> Result<Option<Norm>> {
        let norm = self.opt_norm(prefix)?;
        if norm.is_some() && !self.cfg.pre_norm {
            return Err(Error::bad_config(
                "pre_norm",
                format!("is false but the file has `{}`", names::weight(prefix)),
            ));
        }
        Ok(norm)
    }

    /// The per-head query and key norms of a layer's self-attention, when it has them (RMSNorm:
    /// the model's norm must be `rms_norm`).
    fn qk_norm(&self, l: &names::Layer) -> Result<Option<(Vec<f32>, Vec<f32>)>> {
        let hd = self.cfg.head_dim();
        let (q, k) = (
            names::weight(&l.self_attn_q_norm()),
            names::weight(&l.self_attn_k_norm()),
        );
        match (self.has(&q), self.has(&k)) {
            (false, false) => Ok(None),
            (true, true) if self.cfg.norm == crate::format::Norm::RmsNorm => {
                Ok(Some((self.vector(&q, hd)?, self.vector(&k, hd)?)))
            }
            (true, true) => Err(Error::bad_config(
                "norm",
                format!("`{q}` is an RMSNorm weight, but the model's norm is layer_norm"),
            )),
            (true, false) => Err(Error::MissingTensor(k)),
            (false, true) => Err(Error::MissingTensor(q)),
        }
    }

    /// An attention block whose projections are named by `proj`.
    fn attention(&self, proj: impl Fn(Proj) -> String) -> Result<Attention> {
        let c = self.cfg;
        let (d, q_dim, kv_dim) = (
            c.d_model,
            c.heads * c.head_dim(),
            c.kv_heads() * c.head_dim(),
        );
        Ok(Attention {
            q: self.linear(&proj(Proj::Q), q_dim, d)?,
            k: self.linear(&proj(Proj::K), kv_dim, d)?,
            v: self.linear(&proj(Proj::V), kv_dim, d)?,
            o: self.linear(&proj(Proj::O), d, q_dim)?,
        })
    }

    fn ffn(&self, layer: &names::Layer) -> Result<FeedForward> {
        let (d, f) = (self.cfg.d_model, self.cfg.ffn_dim);
        let gate_name = names::weight(&layer.ffn(Ffn::Gate));
        let gate = match (self.cfg.gated_ffn, self.has(&gate_name)) {
            (true, true) => Some(self.linear(&layer.ffn(Ffn::Gate), f, d)?),
            (false, false) => None,
            (true, false) => return Err(Error::MissingTensor(gate_name)),
            (false, true) => {
                return Err(Error::bad_config(
                    "gated_ffn",
                    format!("is false but the file has `{gate_name}`"),
                ));
            }
        };
        Ok(FeedForward {
            up: self.linear(&layer.ffn(Ffn::Up), f, d)?,
            gate,
            down: self.linear(&layer.ffn(Ffn::Down), d, f)?,
            norm: self.norm(&layer.ffn_norm())?,
            post_norm: self.post_norm(&layer.ffn_post_norm())?,
        })
    }

    fn stack(
        &self,
        name: names::Stack,
        layers: usize,
        cross: bool,
        shared_embed: Option<MatrixRef>,
    ) -> Result<Stack> {
        let c = self.cfg;
        let embed_name = name.embed();
        let embed = if self.has(&embed_name) {
            self.matrix(&embed_name, c.vocab_size, c.d_model)?
        } else {
            shared_embed.ok_or_else(|| Error::MissingTensor(names::EMBED.into()))?
        };
        let pos = match c.positions {
            Positions::Learned => {
                let own = name.pos();
                let tname = if self.has(&own) {
                    own
                } else {
                    names::POS.to_string()
                };
                let r = self.file.matrix_ref(&tname)?;
                let m = self.file.resolve(r);
                if m.cols != c.d_model || m.rows <= c.position_offset {
                    return Err(Error::WrongTensorType {
                        tensor: tname,
                        expected: format!("[positions + {}, {}]", c.position_offset, c.d_model),
                        found: format!("[{}, {}]", m.rows, m.cols),
                    });
                }
                Some(PosTable::Learned {
                    table: r,
                    offset: c.position_offset,
                    rows: m.rows,
                })
            }
            Positions::Sinusoidal => Some(PosTable::Sinusoidal(Sinusoids::new(
                c.max_positions.max(1),
                c.d_model,
            ))),
            Positions::None | Positions::Relative | Positions::Rotary => None,
        };
        let rel_bias = if c.positions == Positions::Relative {
            let name = name.rel_bias();
            let t = self.file.tensor(&name)?;
            if t.shape != [c.relative_buckets, c.heads] {
                return Err(Error::WrongTensorType {
                    tensor: name,
                    expected: format!(
                        "[{}, {}] (relative_buckets, heads)",
                        c.relative_buckets, c.heads
                    ),
                    found: format!("{:?}", t.shape),
                });
            }
            Some(t.to_f32_vec()?)
        } else {
            None
        };
        let mut out = Vec::with_capacity(layers);
        for i in 0..layers {
            let l = name.layer(i);
            out.push(Layer {
                self_attn: SelfAttention {
                    proj: self.attention(|p| l.self_attn(p))?,
                    norm: self.norm(&l.self_attn_norm())?,
                    qk_norm: self.qk_norm(&l)?,
                    post_norm: self.post_norm(&l.self_attn_post_norm())?,
                },
                cross: if cross {
                    Some(CrossAttention {
                        proj: self.attention(|p| l.cross_attn(p))?,
                        norm: self.norm(&l.cross_attn_norm())?,
                    })
                } else {
                    None
                },
                ffn: self.ffn(&l)?,
            });
        }
        Ok(Stack {
            config: c.clone(),
            embed,
            pos,
            embed_norm: self.opt_norm(&name.embed_norm())?,
            rel_bias,
            layers: out,
            final_norm: self.opt_norm(&name.final_norm())?,
        })
    }
}

/// Gathers and checks the weights of a Transformer (`seq2seq` or `decoder-only`).
pub(crate) fn load_transformer(
    file: &QuillFile,
    arch: Arch,
    cfg: &Config,
) -> Result<TransformerWeights> {
    let l = Loader { file, cfg };
    let dec_cfg = cfg.for_decoder();
    let dec = Loader {
        file,
        cfg: &dec_cfg,
    };
    let shared = if l.has(names::EMBED) {
        Some(l.matrix(names::EMBED, cfg.vocab_size, cfg.d_model)?)
    } else {
        None
    };
    let encoder = match arch {
        Arch::Seq2Seq => Some(l.stack(names::ENCODER, cfg.encoder_layers, false, shared)?),
        _ => None,
    };
    let decoder = dec.stack(
        names::DECODER,
        cfg.decoder_layers,
        arch == Arch::Seq2Seq,
        shared,
    )?;
    // The output projection: its own tensor when the file has one, else the decoder's embedding.
    let lm_head = if l.has(names::LM_HEAD) {
        l.matrix(names::LM_HEAD, cfg.vocab_size, cfg.d_model)?
    } else {
        decoder.embed
    };
    Ok(TransformerWeights {
        encoder,
        decoder,
        lm_head,
        // An all-zero bias (Marian checkpoints carry one) is dropped: adding it would cost a
        // pass over every row of logits at every step.
        lm_bias: l
            .opt_vector(names::LM_HEAD_BIAS, cfg.vocab_size)?
            .filter(|b| b.iter().any(|&v| v != 0.0)),
    })
}
