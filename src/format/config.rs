//! The model configuration stored in `quill.config`, and its architecture tag `quill.arch`.
//!
//! One `Config` describes every architecture quill runs; `docs/format.md` §4 lists the fields.
//! [`Config::validate`] checks everything that can be checked without the weights, with an error
//! that names the field; the model builder later checks the weights against it.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// `quill.arch`: which network the weights belong to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Arch {
    /// Transformer encoder-decoder (Marian, BART, T5, ...).
    #[serde(rename = "seq2seq")]
    Seq2Seq,
    /// Transformer decoder only (GPT-2, Llama, Qwen2, Mistral, ...).
    #[serde(rename = "decoder-only")]
    DecoderOnly,
    /// LSTM encoder-decoder with attention.
    #[serde(rename = "lstm-seq2seq")]
    LstmSeq2Seq,
}

impl Arch {
    pub const ALL: [Arch; 3] = [Arch::Seq2Seq, Arch::DecoderOnly, Arch::LstmSeq2Seq];

    pub fn as_str(self) -> &'static str {
        match self {
            Arch::Seq2Seq => "seq2seq",
            Arch::DecoderOnly => "decoder-only",
            Arch::LstmSeq2Seq => "lstm-seq2seq",
        }
    }

    pub fn parse(s: &str) -> Result<Arch> {
        Arch::ALL.into_iter().find(|a| a.as_str() == s).ok_or_else(|| {
            Error::bad_meta(
                "quill.arch",
                format!("unknown architecture \"{s}\" (expected seq2seq, decoder-only or lstm-seq2seq)"),
            )
        })
    }
}

/// Feed-forward activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    Relu,
    /// GELU with the exact erf form.
    Gelu,
    /// GELU with the tanh approximation ("gelu_new", "gelu_pytorch_tanh").
    GeluTanh,
    /// SiLU, also called swish.
    Silu,
}

/// Normalization layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Norm {
    LayerNorm,
    RmsNorm,
}

/// How an LSTM decoder scores the encoder outputs `m_s` against its top hidden state `h`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LstmAttention {
    /// Luong dot: `h · m_s`.
    Dot,
    /// Luong general: `m_s · (W h)` (`decoder.attn.in`).
    General,
    /// Bahdanau additive: `v · tanh(W_q h + b_q + W_k m_s)`.
    Additive,
}

/// How token positions enter the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Positions {
    /// No positional information (LSTM).
    None,
    /// Fixed sinusoids added to the embeddings.
    Sinusoidal,
    /// A learned table added to the embeddings, read at `position + position_offset`.
    Learned,
    /// T5's relative position buckets added to the attention scores.
    Relative,
    /// Rotary embeddings applied to queries and keys.
    Rotary,
}

fn default_eps() -> f64 {
    1e-5
}
fn yes() -> bool {
    true
}
fn one() -> f64 {
    1.0
}
fn is_false(v: &bool) -> bool {
    !*v
}
fn is_zero(v: &usize) -> bool {
    *v == 0
}
fn is_zero_f(v: &f64) -> bool {
    *v == 0.0
}
fn is_one(v: &f64) -> bool {
    *v == 1.0
}
fn default_rope_theta() -> f64 {
    10_000.0
}

/// How rotary frequencies are scaled for contexts longer than the model was first trained on
/// (Hugging Face `rope_scaling` / `rope_parameters`). Applied to the inverse frequencies
/// `θ^(−2i/head_dim)` once, at load; the angle of position `p` is `p · inv_freq[i]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum RopeScaling {
    /// Every frequency divided by `factor` (position interpolation).
    Linear { factor: f64 },
    /// Llama 3.1's: wavelengths longer than `original_max_positions / low_freq_factor` are
    /// divided by `factor`, shorter than `original_max_positions / high_freq_factor` kept, and
    /// the ones between blended linearly in `original_max_positions / wavelength`.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_positions: usize,
    },
    /// Phi-3's LongRoPE: `inv_freq[i] = 1 / (short_factor[i] · θ^(2i/head_dim))` (`head_dim / 2`
    /// factors), cos and sin × `attention_factor`. A pass whose last position reaches
    /// `original_max_positions` rotates all its rows with `long_factor` instead, as
    /// `transformers` does (it picks the factors by the longest position of each forward pass;
    /// rows already cached keep theirs). Without long factors (files written before them),
    /// positions are capped at the original context (`max_positions`).
    Longrope {
        short_factor: Vec<f64>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        long_factor: Vec<f64>,
        #[serde(default, skip_serializing_if = "is_zero")]
        original_max_positions: usize,
        attention_factor: f64,
    },
}

impl RopeScaling {
    /// The inverse frequencies of a rotary head of `head_dim` with base `theta`, scaled; computed
    /// in f32 as `transformers` computes them.
    pub fn inverse_frequencies(theta: f64, head_dim: usize, scaling: Option<&Self>) -> Vec<f32> {
        Self::frequencies(theta, head_dim, scaling, false)
    }

    /// The position from which a pass uses LongRoPE's long factors, when the scaling has them.
    pub fn long_from(&self) -> Option<usize> {
        match self {
            RopeScaling::Longrope {
                long_factor,
                original_max_positions,
                ..
            } if !long_factor.is_empty() && *original_max_positions > 0 => {
                Some(*original_max_positions)
            }
            _ => None,
        }
    }

    /// [`RopeScaling::inverse_frequencies`] with LongRoPE's long factors when `long`.
    pub fn frequencies(
        theta: f64,
        head_dim: usize,
        scaling: Option<&Self>,
        long: bool,
    ) -> Vec<f32> {
        let pow = |i: usize| (theta as f32).powf((2 * i) as f32 / head_dim as f32);
        let half = head_dim / 2;
        if let Some(RopeScaling::Longrope {
            short_factor,
            long_factor,
            ..
        }) = scaling
        {
            let f = if long && !long_factor.is_empty() {
                long_factor
            } else {
                short_factor
            };
            return (0..half).map(|i| 1.0 / (f[i] as f32 * pow(i))).collect();
        }
        let mut inv: Vec<f32> = (0..half).map(|i| 1.0 / pow(i)).collect();
        if let Some(s) = scaling {
            s.apply(&mut inv);
        }
        inv
    }

    /// What cos and sin are multiplied by (LongRoPE's attention factor; 1 otherwise).
    pub fn attention_factor(&self) -> f32 {
        match self {
            RopeScaling::Longrope {
                attention_factor, ..
            } => *attention_factor as f32,
            _ => 1.0,
        }
    }

    /// `inv` (the unscaled inverse frequencies) scaled (linear and Llama 3 scaling).
    fn apply(&self, inv: &mut [f32]) {
        match *self {
            RopeScaling::Longrope { .. } => {}
            RopeScaling::Linear { factor } => inv.iter_mut().for_each(|f| *f /= factor as f32),
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_positions,
            } => {
                let (factor, low, high) = (
                    factor as f32,
                    low_freq_factor as f32,
                    high_freq_factor as f32,
                );
                let old = original_max_positions as f32;
                let (low_wavelen, high_wavelen) = (old / low, old / high);
                for f in inv.iter_mut() {
                    let wavelen = 2.0 * std::f32::consts::PI / *f;
                    let scaled = if wavelen > low_wavelen {
                        *f / factor
                    } else {
                        *f
                    };
                    *f = if wavelen < high_wavelen || wavelen > low_wavelen {
                        scaled
                    } else {
                        let smooth = (old / wavelen - low) / (high - low);
                        (1.0 - smooth) * scaled / factor + smooth * scaled
                    };
                }
            }
        }
    }

    fn validate(&self, head_dim: usize) -> Result<()> {
        let bad = |why: &str| Err(Error::bad_config("rope_scaling", why.to_string()));
        if let RopeScaling::Longrope {
            short_factor,
            long_factor,
            attention_factor,
            ..
        } = self
        {
            let ok = |x: &f64| x.is_finite() && *x > 0.0;
            return if !long_factor.is_empty() && long_factor.len() != head_dim / 2 {
                bad(&format!(
                    "longrope needs head_dim / 2 = {} long factors, found {}",
                    head_dim / 2,
                    long_factor.len()
                ))
            } else if !long_factor.iter().all(ok) {
                bad("longrope factors must be > 0")
            } else if short_factor.len() != head_dim / 2 {
                bad(&format!(
                    "longrope needs head_dim / 2 = {} short factors, found {}",
                    head_dim / 2,
                    short_factor.len()
                ))
            } else if !(short_factor.iter().all(ok) && ok(attention_factor)) {
                bad("longrope factors must be > 0")
            } else {
                Ok(())
            };
        }
        match *self {
            RopeScaling::Linear { factor } if !(factor.is_finite() && factor > 0.0) => {
                bad("factor must be > 0")
            }
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_positions,
            } if !(factor.is_finite()
                && factor > 0.0
                && low_freq_factor.is_finite()
                && low_freq_factor > 0.0
                && high_freq_factor.is_finite()
                && high_freq_factor > low_freq_factor
                && original_max_positions > 0) =>
            {
                bad(
                    "llama3 needs factor > 0, 0 < low_freq_factor < high_freq_factor and original_max_positions > 0",
                )
            }
            _ => Ok(()),
        }
    }
}

/// The hyperparameters of a model (`quill.config`, JSON). Unknown fields are refused, so a file
/// written by a newer quill with a field this build does not understand fails loudly instead of
/// running wrongly.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Number of token ids (rows of the embedding table and of the output projection).
    pub vocab_size: usize,
    /// Width of the residual stream (Transformer) or of the hidden state (LSTM).
    pub d_model: usize,
    /// Encoder layers; 0 for decoder-only models.
    #[serde(default)]
    pub encoder_layers: usize,
    pub decoder_layers: usize,
    /// Attention heads (query heads).
    #[serde(default)]
    pub heads: usize,
    /// Key/value heads (grouped-query attention); defaults to `heads`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_heads: Option<usize>,
    /// Width of one head; defaults to `d_model / heads`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<usize>,
    /// Inner width of the feed-forward block (Transformer).
    #[serde(default)]
    pub ffn_dim: usize,
    /// Seq2seq: the decoder's attention heads (self and cross) where they differ from the
    /// encoder's `heads` (`decoder_attention_heads` of the BART family); absent: `heads`. Its
    /// head width is `head_dim`, else `d_model / decoder_heads`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decoder_heads: Option<usize>,
    /// Seq2seq: the decoder's feed-forward width where it differs from `ffn_dim`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decoder_ffn_dim: Option<usize>,
    #[serde(default = "default_activation")]
    pub activation: Activation,
    /// Gated feed-forward (SwiGLU, GEGLU): `act(x W_gate) * (x W_up)`.
    #[serde(default)]
    pub gated_ffn: bool,
    #[serde(default = "default_norm")]
    pub norm: Norm,
    #[serde(default = "default_eps")]
    pub norm_eps: f64,
    /// Normalize before each sub-layer (pre-norm) or after the residual add (post-norm).
    #[serde(default = "yes")]
    pub pre_norm: bool,
    #[serde(default = "default_positions")]
    pub positions: Positions,
    /// Longest sequence the position scheme supports (table size for learned positions).
    #[serde(default)]
    pub max_positions: usize,
    /// Learned positions are read at `position + position_offset` (BART uses 2).
    #[serde(default)]
    pub position_offset: usize,
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    /// Rotary frequency scaling ([`RopeScaling`]); none by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_scaling: Option<RopeScaling>,
    /// Rotary pairs are adjacent (GPT-J style) instead of the two halves (Llama "rotate half").
    #[serde(default)]
    pub rope_interleaved: bool,
    /// T5 relative attention: number of buckets and the largest distance told apart.
    #[serde(default)]
    pub relative_buckets: usize,
    #[serde(default)]
    pub relative_max_distance: usize,
    /// Sliding-window attention (Mistral, Phi-3): a decoder position attends to itself and the
    /// `sliding_window − 1` positions before it; 0 = the whole causal prefix.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub sliding_window: usize,
    /// The decoder layers that use the sliding window (Gemma 2 alternates: 0, 2, 4, ...), in
    /// increasing order; the others attend to the whole causal prefix. Empty: every layer
    /// (when `sliding_window` is set).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sliding_layers: Vec<usize>,
    /// Soft-capping of the attention scores (Gemma 2): after scaling, `s = cap·tanh(s / cap)`
    /// before the softmax. 0: none.
    #[serde(default, skip_serializing_if = "is_zero_f")]
    pub attn_softcap: f64,
    /// Soft-capping of the output logits (Gemma 2): `l = cap·tanh(l / cap)`. 0: none.
    #[serde(default, skip_serializing_if = "is_zero_f")]
    pub final_softcap: f64,
    /// Multiply embeddings by sqrt(d_model).
    #[serde(default)]
    pub scale_embedding: bool,
    /// Attention scores are multiplied by this before the softmax; absent: 1/sqrt(head_dim).
    /// (T5 folds the scaling into its weights and uses 1.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attention_scale: Option<f64>,
    /// The decoder's final hidden state is multiplied by this before the output projection
    /// (T5 v1.0 with tied embeddings: d_model^-0.5).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub logits_scale: f64,
    /// LSTM: bidirectional encoder (each direction has `d_model / 2` units).
    #[serde(default)]
    pub bidirectional: bool,
    /// LSTM: width of the embeddings; absent: `d_model`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embed_dim: Option<usize>,
    /// LSTM: how the decoder attends over the encoder outputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attention: Option<LstmAttention>,
    /// LSTM: input feeding, the previous attentional state joins each decoder input (Luong).
    #[serde(default, skip_serializing_if = "is_false")]
    pub input_feeding: bool,
    /// Token id that starts a sequence, if the model uses one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bos_id: Option<u32>,
    /// Token ids that end a sequence (at least one).
    pub eos_ids: Vec<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pad_id: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unk_id: Option<u32>,
    /// First decoder input of a seq2seq model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decoder_start_id: Option<u32>,
}

fn default_activation() -> Activation {
    Activation::Gelu
}
fn default_norm() -> Norm {
    Norm::LayerNorm
}
fn default_positions() -> Positions {
    Positions::Sinusoidal
}

impl Config {
    /// Parses and validates the JSON of `quill.config` for architecture `arch`.
    pub fn from_json(json: &str, arch: Arch) -> Result<Config> {
        let cfg: Config = serde_json::from_str(json).map_err(|e| {
            // serde names the offending field in its message ("missing field `d_model`",
            // "unknown field `foo`"); keep that, and say where it came from.
            let msg = e.to_string();
            let field = msg
                .split('`')
                .nth(1)
                .filter(|_| msg.contains("field"))
                .unwrap_or("quill.config")
                .to_string();
            Error::bad_config(&field, msg)
        })?;
        cfg.validate(arch)?;
        Ok(cfg)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a Config always serializes")
    }

    pub fn kv_heads(&self) -> usize {
        self.kv_heads.unwrap_or(self.heads)
    }

    /// The factor applied to attention scores.
    pub fn attention_scale(&self) -> f32 {
        self.attention_scale
            .unwrap_or(1.0 / (self.head_dim() as f64).sqrt()) as f32
    }

    /// LSTM: the width of the embeddings.
    pub fn embed_dim(&self) -> usize {
        self.embed_dim.unwrap_or(self.d_model)
    }

    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.d_model.checked_div(self.heads).unwrap_or(0))
    }

    /// The shape the decoder's layers run with: this config with `heads` and `ffn_dim` replaced
    /// by the decoder's own where they differ. The config itself is the encoder's shape (and
    /// the decoder's when nothing differs).
    pub fn for_decoder(&self) -> Config {
        let mut c = self.clone();
        c.heads = self.decoder_heads.unwrap_or(self.heads);
        c.ffn_dim = self.decoder_ffn_dim.unwrap_or(self.ffn_dim);
        (c.decoder_heads, c.decoder_ffn_dim) = (None, None);
        c
    }

    /// The decoder's own heads and feed-forward width: seq2seq only, each a valid shape.
    fn validate_decoder_shape(&self, arch: Arch) -> Result<()> {
        let dec = self.for_decoder();
        for (field, v) in [
            ("decoder_heads", self.decoder_heads),
            ("decoder_ffn_dim", self.decoder_ffn_dim),
        ] {
            match v {
                Some(_) if arch != Arch::Seq2Seq => {
                    return Err(Error::bad_config(
                        field,
                        "applies to the decoder of a seq2seq Transformer only",
                    ));
                }
                Some(0) => return Err(Error::bad_config(field, "must be at least 1")),
                _ => {}
            }
        }
        if self.decoder_heads.is_some() {
            if self.kv_heads.is_some() {
                return Err(Error::bad_config(
                    "decoder_heads",
                    "cannot differ from heads when kv_heads is set (grouped-query attention \
                     with a different head count per stack is not supported)",
                ));
            }
            if self.head_dim.is_none() && !self.d_model.is_multiple_of(dec.heads) {
                return Err(Error::bad_config(
                    "decoder_heads",
                    format!(
                        "{} does not divide d_model = {} (give head_dim explicitly)",
                        dec.heads, self.d_model
                    ),
                ));
            }
            if self.positions == Positions::Rotary && !dec.head_dim().is_multiple_of(2) {
                return Err(Error::bad_config(
                    "decoder_heads",
                    "rotary positions need an even head width in the decoder",
                ));
            }
        }
        Ok(())
    }

    /// The sliding window of decoder layer `layer`: `sliding_window` when the layer slides (all
    /// of them unless `sliding_layers` lists some), else 0 (the whole causal prefix).
    pub fn window_of(&self, layer: usize) -> usize {
        if self.sliding_layers.is_empty() || self.sliding_layers.binary_search(&layer).is_ok() {
            self.sliding_window
        } else {
            0
        }
    }

    /// Checks the configuration for `arch` on its own (the weights are checked against it when
    /// the model is built). The error names the first offending field.
    pub fn validate(&self, arch: Arch) -> Result<()> {
        let positive = |field: &str, v: usize| {
            if v == 0 {
                Err(Error::bad_config(field, "must be at least 1"))
            } else {
                Ok(())
            }
        };
        positive("vocab_size", self.vocab_size)?;
        positive("d_model", self.d_model)?;
        positive("decoder_layers", self.decoder_layers)?;
        if u32::try_from(self.vocab_size).is_err() {
            return Err(Error::bad_config("vocab_size", "must fit in 32 bits"));
        }
        match arch {
            Arch::Seq2Seq | Arch::LstmSeq2Seq => positive("encoder_layers", self.encoder_layers)?,
            Arch::DecoderOnly => {
                if self.encoder_layers != 0 {
                    return Err(Error::bad_config(
                        "encoder_layers",
                        format!(
                            "is {} but a decoder-only model has no encoder",
                            self.encoder_layers
                        ),
                    ));
                }
            }
        }
        self.validate_decoder_shape(arch)?;
        if arch == Arch::LstmSeq2Seq {
            if self.attention.is_none() {
                return Err(Error::bad_config(
                    "attention",
                    "missing: an lstm-seq2seq model needs dot, general or additive",
                ));
            }
            if self.encoder_layers != self.decoder_layers {
                return Err(Error::bad_config(
                    "decoder_layers",
                    format!(
                        "is {} but the encoder has {}: each decoder layer starts from the final \
                         state of the encoder layer below it",
                        self.decoder_layers, self.encoder_layers
                    ),
                ));
            }
            if self.bidirectional && !self.d_model.is_multiple_of(2) {
                return Err(Error::bad_config(
                    "d_model",
                    format!(
                        "{} is odd: a bidirectional encoder splits it in two",
                        self.d_model
                    ),
                ));
            }
            if self.embed_dim == Some(0) {
                return Err(Error::bad_config("embed_dim", "must be at least 1"));
            }
        } else {
            for (field, set) in [
                ("attention", self.attention.is_some()),
                ("embed_dim", self.embed_dim.is_some()),
                ("input_feeding", self.input_feeding),
            ] {
                if set {
                    return Err(Error::bad_config(field, "applies to lstm-seq2seq only"));
                }
            }
        }
        if arch != Arch::LstmSeq2Seq {
            positive("heads", self.heads)?;
            positive("ffn_dim", self.ffn_dim)?;
            let kv = self.kv_heads();
            if kv == 0 || !self.heads.is_multiple_of(kv) {
                return Err(Error::bad_config(
                    "kv_heads",
                    format!("{kv} does not divide heads = {}", self.heads),
                ));
            }
            if self.head_dim.is_none() && !self.d_model.is_multiple_of(self.heads) {
                return Err(Error::bad_config(
                    "heads",
                    format!(
                        "{} does not divide d_model = {} (give head_dim explicitly)",
                        self.heads, self.d_model
                    ),
                ));
            }
            positive("head_dim", self.head_dim())?;
            if self.bidirectional {
                return Err(Error::bad_config(
                    "bidirectional",
                    "applies to lstm-seq2seq only",
                ));
            }
        }
        for (field, v) in [
            ("attn_softcap", self.attn_softcap),
            ("final_softcap", self.final_softcap),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(Error::bad_config(
                    field,
                    format!("must be a number ≥ 0 (0: none), found {v}"),
                ));
            }
        }
        if !self.sliding_layers.is_empty() {
            if self.sliding_window == 0 {
                return Err(Error::bad_config(
                    "sliding_layers",
                    "needs a sliding_window",
                ));
            }
            let increasing = self.sliding_layers.windows(2).all(|p| p[0] < p[1]);
            if !increasing || self.sliding_layers.last() >= Some(&self.decoder_layers) {
                return Err(Error::bad_config(
                    "sliding_layers",
                    format!(
                        "must be increasing decoder layer indices below {}",
                        self.decoder_layers
                    ),
                ));
            }
        }
        for (field, v) in [
            ("attention_scale", self.attention_scale.unwrap_or(1.0)),
            ("logits_scale", self.logits_scale),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(Error::bad_config(
                    field,
                    format!("must be a positive number, found {v}"),
                ));
            }
        }
        if !(self.norm_eps.is_finite() && self.norm_eps > 0.0) {
            return Err(Error::bad_config(
                "norm_eps",
                format!("must be > 0, found {}", self.norm_eps),
            ));
        }
        match self.positions {
            Positions::Learned => positive("max_positions", self.max_positions)?,
            Positions::Rotary => {
                if !self.head_dim().is_multiple_of(2) {
                    return Err(Error::bad_config(
                        "head_dim",
                        format!(
                            "rotary positions need an even head_dim, found {}",
                            self.head_dim()
                        ),
                    ));
                }
                if !(self.rope_theta.is_finite() && self.rope_theta > 0.0) {
                    return Err(Error::bad_config("rope_theta", "must be > 0"));
                }
                if let Some(r) = &self.rope_scaling {
                    r.validate(self.head_dim())?;
                }
            }
            Positions::Relative => {
                positive("relative_buckets", self.relative_buckets)?;
                positive("relative_max_distance", self.relative_max_distance)?;
            }
            Positions::None | Positions::Sinusoidal => {}
        }
        if self.positions == Positions::None && arch != Arch::LstmSeq2Seq {
            return Err(Error::bad_config(
                "positions",
                "a Transformer needs a position scheme (sinusoidal, learned, relative or rotary)",
            ));
        }
        if self.eos_ids.is_empty() {
            return Err(Error::bad_config(
                "eos_ids",
                "needs at least one end-of-sequence id",
            ));
        }
        let ids = [
            ("bos_id", self.bos_id),
            ("pad_id", self.pad_id),
            ("unk_id", self.unk_id),
            ("decoder_start_id", self.decoder_start_id),
        ];
        for (field, id) in ids
            .into_iter()
            .chain(self.eos_ids.iter().map(|&e| ("eos_ids", Some(e))))
        {
            if let Some(id) = id
                && id as usize >= self.vocab_size
            {
                return Err(Error::bad_config(
                    field,
                    format!("id {id} is not below vocab_size = {}", self.vocab_size),
                ));
            }
        }
        if arch != Arch::DecoderOnly && self.decoder_start_id.is_none() {
            return Err(Error::bad_config(
                "decoder_start_id",
                "a seq2seq model needs the id its decoder starts from",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Linear scaling divides every frequency; Llama 3's keeps the short wavelengths, divides
    /// the long ones and blends between (the formula of transformers' `_compute_llama3_parameters`
    /// written out for one frequency of each kind).
    #[test]
    fn rope_scaling_applies_to_the_inverse_frequencies() {
        let mut inv = [1.0f32, 0.5];
        RopeScaling::Linear { factor: 4.0 }.apply(&mut inv);
        assert_eq!(inv, [0.25, 0.125]);
        let l3 = RopeScaling::Llama3 {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_positions: 64,
        };
        // wavelengths 2π (< 16: kept), 2π/0.2 ≈ 31.4 (between 16 and 64: blended), 2π/0.01 (> 64).
        let mut inv = [1.0f32, 0.2, 0.01];
        l3.apply(&mut inv);
        let smooth = (64.0 / (2.0 * std::f32::consts::PI / 0.2) - 1.0) / 3.0;
        let blended = (1.0 - smooth) * 0.2 / 8.0 + smooth * 0.2;
        assert_eq!(inv[0], 1.0);
        assert!((inv[1] - blended).abs() < 1e-7, "{} vs {blended}", inv[1]);
        assert_eq!(inv[2], 0.01 / 8.0);
    }

    pub(crate) fn marian_like() -> &'static str {
        r#"{"vocab_size":1000,"d_model":64,"encoder_layers":2,"decoder_layers":2,"heads":4,
            "ffn_dim":128,"activation":"silu","positions":"sinusoidal","scale_embedding":true,
            "eos_ids":[0],"pad_id":999,"decoder_start_id":999}"#
    }

    #[test]
    fn parses_and_defaults() {
        let c = Config::from_json(marian_like(), Arch::Seq2Seq).unwrap();
        assert_eq!(c.head_dim(), 16);
        assert_eq!(c.kv_heads(), 4);
        assert_eq!(c.norm, Norm::LayerNorm);
        assert!(c.pre_norm);
        let again = Config::from_json(&c.to_json(), Arch::Seq2Seq).unwrap();
        assert_eq!(again, c);
    }

    fn field_of(json: &str, arch: Arch) -> String {
        match Config::from_json(json, arch).unwrap_err() {
            Error::BadConfig { field, .. } => field,
            e => panic!("unexpected {e}"),
        }
    }

    #[test]
    fn errors_name_the_field() {
        let base = marian_like();
        assert_eq!(
            field_of(&base.replace("\"d_model\":64,", ""), Arch::Seq2Seq),
            "d_model"
        );
        assert_eq!(
            field_of(&base.replace("\"heads\":4", "\"heads\":5"), Arch::Seq2Seq),
            "heads"
        );
        assert_eq!(
            field_of(
                &base.replace("\"pad_id\":999", "\"pad_id\":1000"),
                Arch::Seq2Seq
            ),
            "pad_id"
        );
        assert_eq!(
            field_of(
                &base.replace("\"eos_ids\":[0]", "\"eos_ids\":[]"),
                Arch::Seq2Seq
            ),
            "eos_ids"
        );
        assert_eq!(
            field_of(&base.replace("{", "{\"colour\":1,"), Arch::Seq2Seq),
            "colour"
        );
        assert_eq!(field_of(base, Arch::DecoderOnly), "encoder_layers");
        assert_eq!(
            field_of(
                &base.replace("\"heads\":4", "\"heads\":4,\"kv_heads\":3"),
                Arch::Seq2Seq
            ),
            "kv_heads"
        );
        assert_eq!(
            field_of(
                &base.replace("\"activation\":\"silu\"", "\"activation\":\"tanh\""),
                Arch::Seq2Seq
            ),
            "quill.config"
        );
    }

    #[test]
    fn sliding_layers_and_softcaps_are_checked() {
        let base = marian_like();
        let with = |extra: &str| base.replace("\"heads\":4", &format!("\"heads\":4,{extra}"));
        let c = Config::from_json(
            &with("\"sliding_window\":8,\"sliding_layers\":[1],\"attn_softcap\":50"),
            Arch::Seq2Seq,
        )
        .unwrap();
        assert_eq!((c.window_of(0), c.window_of(1)), (0, 8));
        let all = Config::from_json(&with("\"sliding_window\":8"), Arch::Seq2Seq).unwrap();
        assert_eq!((all.window_of(0), all.window_of(1)), (8, 8));
        for bad in [
            "\"sliding_layers\":[0]",
            "\"sliding_window\":8,\"sliding_layers\":[1,0]",
            "\"sliding_window\":8,\"sliding_layers\":[9]",
        ] {
            assert_eq!(
                field_of(&with(bad), Arch::Seq2Seq),
                "sliding_layers",
                "{bad}"
            );
        }
        assert_eq!(
            field_of(&with("\"final_softcap\":-1"), Arch::Seq2Seq),
            "final_softcap"
        );
    }

    #[test]
    fn the_decoder_may_have_its_own_heads_and_feed_forward() {
        let base = marian_like();
        let asym = base.replace(
            "\"heads\":4",
            "\"heads\":4,\"decoder_heads\":2,\"decoder_ffn_dim\":80",
        );
        let c = Config::from_json(&asym, Arch::Seq2Seq).unwrap();
        let dec = c.for_decoder();
        assert_eq!((c.heads, c.head_dim(), c.ffn_dim), (4, 16, 128));
        assert_eq!((dec.heads, dec.head_dim(), dec.ffn_dim), (2, 32, 80));
        assert_eq!(dec.attention_scale(), 1.0 / 32f32.sqrt());
        assert_eq!(Config::from_json(&c.to_json(), Arch::Seq2Seq).unwrap(), c);
        // A config without them writes neither field (files stay as they were).
        assert!(
            !Config::from_json(base, Arch::Seq2Seq)
                .unwrap()
                .to_json()
                .contains("decoder_heads")
        );
        let bad = |from: &str, to: &str, arch| field_of(&base.replace(from, to), arch);
        assert_eq!(
            bad(
                "\"heads\":4",
                "\"heads\":4,\"decoder_heads\":5",
                Arch::Seq2Seq
            ),
            "decoder_heads"
        );
        assert_eq!(
            bad(
                "\"heads\":4",
                "\"heads\":4,\"decoder_ffn_dim\":0",
                Arch::Seq2Seq
            ),
            "decoder_ffn_dim"
        );
        assert_eq!(
            bad(
                "\"heads\":4",
                "\"heads\":4,\"kv_heads\":2,\"decoder_heads\":2",
                Arch::Seq2Seq
            ),
            "decoder_heads"
        );
        let decoder_only = base.replace("\"encoder_layers\":2,", "\"encoder_layers\":0,");
        assert_eq!(
            field_of(
                &decoder_only.replace("\"heads\":4", "\"heads\":4,\"decoder_heads\":2"),
                Arch::DecoderOnly
            ),
            "decoder_heads"
        );
    }
}
