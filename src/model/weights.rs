//! The weights of a Transformer, gathered once at load by their canonical names
//! (`docs/architectures.md`) and checked against the config: matrices stay in the file (a
//! [`MatrixRef`] each), vectors (norms, biases, T5's relative bias table) are converted to f32.

use crate::error::{Error, Result};
use crate::format::{Arch, Config, MatrixRef, Positions, QuillFile};

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

pub(crate) struct Attention {
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    pub o: Linear,
}

pub(crate) struct FeedForward {
    pub up: Linear,
    /// Gated feed-forward (SwiGLU, GEGLU): `act(x·W_gateᵀ) ⊙ (x·W_upᵀ)`.
    pub gate: Option<Linear>,
    pub down: Linear,
}

pub(crate) struct Layer {
    pub self_attn: Attention,
    pub self_attn_norm: Norm,
    /// Cross-attention over the encoder output (decoder of a seq2seq model).
    pub cross: Option<(Attention, Norm)>,
    pub ffn: FeedForward,
    pub ffn_norm: Norm,
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

/// The rows of [`sinusoids`], computed `SINUSOID_CHUNK` rows at a time when a position is first
/// used: a whole table (two of `[max_positions, d]` for an encoder-decoder, ~1 M `sin_cos` for
/// Marian) would be most of the time it takes to open a model.
pub(crate) struct Sinusoids {
    rows: usize,
    d: usize,
    chunks: Vec<std::sync::OnceLock<Vec<f32>>>,
}

const SINUSOID_CHUNK: usize = 64;

impl Sinusoids {
    pub fn new(rows: usize, d: usize) -> Self {
        Sinusoids {
            rows,
            d,
            chunks: (0..rows.div_ceil(SINUSOID_CHUNK))
                .map(|_| std::sync::OnceLock::new())
                .collect(),
        }
    }

    /// How many positions the table has.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Row `pos` (< `rows()`), equal to row `pos` of `sinusoids(rows, d)`.
    pub fn row(&self, pos: usize) -> &[f32] {
        assert!(
            pos < self.rows,
            "position {pos} past the {} sinusoids",
            self.rows
        );
        let r = pos % SINUSOID_CHUNK;
        &self.chunk(pos / SINUSOID_CHUNK)[r * self.d..(r + 1) * self.d]
    }

    /// Computes the rows below `upto` now (sessions call it when they are made, so that decoding
    /// never allocates).
    pub fn prepare(&self, upto: usize) {
        for c in 0..upto.min(self.rows).div_ceil(SINUSOID_CHUNK) {
            self.chunk(c);
        }
    }

    fn chunk(&self, c: usize) -> &[f32] {
        self.chunks[c].get_or_init(|| {
            let first = c * SINUSOID_CHUNK;
            let n = (self.rows - first).min(SINUSOID_CHUNK);
            sinusoid_rows(first, n, self.d)
        })
    }
}

/// An encoder or a decoder: embeddings, layers, final norm.
pub(crate) struct Stack {
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
    pub lm_head: MatrixRef,
    pub lm_bias: Option<Vec<f32>>,
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
        let r = self.file.matrix_ref(name)?;
        let m = self.file.resolve(r);
        if (m.rows, m.cols) != (rows, cols) {
            return Err(Error::WrongTensorType {
                tensor: name.into(),
                expected: format!("[{rows}, {cols}] (from the config)"),
                found: format!("[{}, {}]", m.rows, m.cols),
            });
        }
        Ok(r)
    }

    fn linear(&self, prefix: &str, out: usize, inp: usize) -> Result<Linear> {
        Ok(Linear {
            w: self.matrix(&format!("{prefix}.weight"), out, inp)?,
            b: self.opt_vector(&format!("{prefix}.bias"), out)?,
            out,
        })
    }

    fn norm(&self, prefix: &str) -> Result<Norm> {
        let d = self.cfg.d_model;
        Ok(Norm {
            weight: self.vector(&format!("{prefix}.weight"), d)?,
            bias: self.opt_vector(&format!("{prefix}.bias"), d)?,
        })
    }

    fn opt_norm(&self, prefix: &str) -> Result<Option<Norm>> {
        if self.has(&format!("{prefix}.weight")) {
            self.norm(prefix).map(Some)
        } else {
            Ok(None)
        }
    }

    fn attention(&self, prefix: &str) -> Result<Attention> {
        let c = self.cfg;
        let (d, q_dim, kv_dim) = (
            c.d_model,
            c.heads * c.head_dim(),
            c.kv_heads() * c.head_dim(),
        );
        Ok(Attention {
            q: self.linear(&format!("{prefix}.q"), q_dim, d)?,
            k: self.linear(&format!("{prefix}.k"), kv_dim, d)?,
            v: self.linear(&format!("{prefix}.v"), kv_dim, d)?,
            o: self.linear(&format!("{prefix}.o"), d, q_dim)?,
        })
    }

    fn ffn(&self, prefix: &str) -> Result<FeedForward> {
        let (d, f) = (self.cfg.d_model, self.cfg.ffn_dim);
        let gate_name = format!("{prefix}.gate.weight");
        let gate = match (self.cfg.gated_ffn, self.has(&gate_name)) {
            (true, true) => Some(self.linear(&format!("{prefix}.gate"), f, d)?),
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
            up: self.linear(&format!("{prefix}.up"), f, d)?,
            gate,
            down: self.linear(&format!("{prefix}.down"), d, f)?,
        })
    }

    fn stack(
        &self,
        name: &str,
        layers: usize,
        cross: bool,
        shared_embed: Option<MatrixRef>,
    ) -> Result<Stack> {
        let c = self.cfg;
        let embed_name = format!("{name}.embed.weight");
        let embed = if self.has(&embed_name) {
            self.matrix(&embed_name, c.vocab_size, c.d_model)?
        } else {
            shared_embed.ok_or_else(|| Error::MissingTensor("embed.weight".into()))?
        };
        let pos = match c.positions {
            Positions::Learned => {
                let own = format!("{name}.pos.weight");
                let tname = if self.has(&own) {
                    own
                } else {
                    "pos.weight".to_string()
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
            let name = format!("{name}.rel_bias.weight");
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
            let p = format!("{name}.layers.{i}");
            out.push(Layer {
                self_attn: self.attention(&format!("{p}.self_attn"))?,
                self_attn_norm: self.norm(&format!("{p}.self_attn_norm"))?,
                cross: if cross {
                    Some((
                        self.attention(&format!("{p}.cross_attn"))?,
                        self.norm(&format!("{p}.cross_attn_norm"))?,
                    ))
                } else {
                    None
                },
                ffn: self.ffn(&format!("{p}.ffn"))?,
                ffn_norm: self.norm(&format!("{p}.ffn_norm"))?,
            });
        }
        Ok(Stack {
            embed,
            pos,
            embed_norm: self.opt_norm(&format!("{name}.embed_norm"))?,
            rel_bias,
            layers: out,
            final_norm: self.opt_norm(&format!("{name}.final_norm"))?,
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
    let shared = if l.has("embed.weight") {
        Some(l.matrix("embed.weight", cfg.vocab_size, cfg.d_model)?)
    } else {
        None
    };
    let encoder = match arch {
        Arch::Seq2Seq => Some(l.stack("encoder", cfg.encoder_layers, false, shared)?),
        _ => None,
    };
    let decoder = l.stack("decoder", cfg.decoder_layers, arch == Arch::Seq2Seq, shared)?;
    // The output projection: its own tensor when the file has one, else the decoder's embedding.
    let lm_head = if l.has("lm_head.weight") {
        l.matrix("lm_head.weight", cfg.vocab_size, cfg.d_model)?
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
            .opt_vector("lm_head.bias", cfg.vocab_size)?
            .filter(|b| b.iter().any(|&v| v != 0.0)),
    })
}

/// Sinusoidal positions as in "Attention Is All You Need" with the Marian / fairseq layout:
/// row `p`, column `i < d/2`: `sin(p / 10000^(2i/d))`; column `d/2 + i`: the matching cosine.
/// Computed in f64, stored as f32.
pub(crate) fn sinusoids(rows: usize, d: usize) -> Vec<f32> {
    sinusoid_rows(0, rows, d)
}

/// Rows `first..first + n` of [`sinusoids`].
fn sinusoid_rows(first: usize, n: usize, d: usize) -> Vec<f32> {
    let half = d / 2;
    let div: Vec<f64> = (0..half)
        .map(|i| 10000f64.powf(2.0 * i as f64 / d as f64))
        .collect();
    let mut t = vec![0f32; n * d];
    // Row `first` directly, each next row by rotating the previous one by `1 / div` (angle
    // addition in f64): two `sin_cos` per column instead of one per entry, which made most of
    // the time it takes to make a session. Over a chunk the f64 values drift by ~1e-14 from
    // `sin(p / div)`, far below an f32 ulp (the test below bounds the difference).
    for (i, &dv) in div.iter().enumerate() {
        let (mut s, mut c) = (first as f64 / dv).sin_cos();
        let (ds, dc) = (1.0 / dv).sin_cos();
        for r in 0..n {
            t[r * d + i] = s as f32;
            t[r * d + half + i] = c as f32;
            (s, c) = (s * dc + c * ds, c * dc - s * ds);
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Hugging Face formula (Marian's `_init_weight`): `sin` / `cos` of `p / 10000^(2i/d)`
    /// in f64, rounded to f32, entry by entry.
    fn direct(rows: usize, d: usize) -> Vec<f32> {
        let half = d / 2;
        let mut t = vec![0f32; rows * d];
        for p in 0..rows {
            for i in 0..half {
                let a = p as f64 / 10000f64.powf(2.0 * i as f64 / d as f64);
                t[p * d + i] = a.sin() as f32;
                t[p * d + half + i] = a.cos() as f32;
            }
        }
        t
    }

    #[test]
    fn sinusoids_match_the_direct_formula() {
        // Marian-base's table (d 512, 512 positions) and an odd-sized one read through chunks.
        for (rows, d) in [(512, 512), (130, 6)] {
            let want = direct(rows, d);
            let table = Sinusoids::new(rows, d);
            let mut differ = 0;
            for p in 0..rows {
                for (i, (&a, &b)) in table
                    .row(p)
                    .iter()
                    .zip(&want[p * d..(p + 1) * d])
                    .enumerate()
                {
                    // At most one f32 ulp apart, and only where the exact value lies within
                    // the f64 drift of a rounding boundary.
                    let ulps = (a.to_bits() as i64 - b.to_bits() as i64).abs();
                    assert!(
                        ulps <= 1 || (a - b).abs() < 1e-12,
                        "row {p} col {i}: {a} vs {b}"
                    );
                    differ += (a != b) as usize;
                }
            }
            assert!(
                differ * 10_000 <= rows * d,
                "{differ} of {} entries differ",
                rows * d
            );
            assert_eq!(sinusoids(rows, d), {
                (0..rows)
                    .flat_map(|p| table.row(p).to_vec())
                    .collect::<Vec<_>>()
            });
        }
    }
}
