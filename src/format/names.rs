//! quill's canonical tensor names, spelled once (the table is `docs/architectures.md`,
//! `docs/lstm.md`): the runtime's loaders read them, the trainer's builder and the converters
//! write them.
//!
//! A Transformer: an optional shared `embed.weight`, then per stack (`encoder`, `decoder`)
//! `{stack}.embed.weight`, `{stack}.pos.weight`, `{stack}.embed_norm`, `{stack}.rel_bias.weight`,
//! `{stack}.final_norm` and the layers `{stack}.layers.{i}.{self_attn,cross_attn}.{q,k,v,o}`,
//! `.self_attn_norm`, `.cross_attn_norm`, `.ffn.{up,gate,down}`, `.ffn_norm`,
//! `.{self_attn,ffn}_post_norm`; `lm_head.weight`,
//! `lm_head.bias`. Names without `.weight` are prefixes: a linear layer or a norm is
//! `{prefix}.weight` (and `{prefix}.bias` when it has one), see [`weight`] and [`bias`].

// ---- Names with a fixed meaning in every file.

/// The tokenizer (Hugging Face `tokenizer.json`, UTF-8), as a `U8 [n]` tensor.
pub const TOKENIZER: &str = "quill.tokenizer";
/// A separate target-side tokenizer (Marian with two vocabularies), same layout.
pub const TARGET_TOKENIZER: &str = "quill.tokenizer.target";
/// Padding tensors are named `__pad.N`; every name starting with `__` is reserved.
pub const PAD_PREFIX: &str = "__pad.";
/// The scales of quantized weight `W` are the tensor `W.scale`.
pub const SCALE_SUFFIX: &str = ".scale";

/// Reserved names (padding) are invisible to everything above the reader.
pub fn is_reserved(name: &str) -> bool {
    name.starts_with("__")
}

/// Tensors that are not network weights: the tokenizer and anything else under `quill.`.
pub fn is_quill_data(name: &str) -> bool {
    name.starts_with("quill.")
}

// ---- The networks' weights.

/// The embedding table both stacks share (when they do).
pub const EMBED: &str = "embed.weight";
/// A learned position table both stacks share (when they do).
pub const POS: &str = "pos.weight";
/// The output projection (absent when tied to the decoder's embedding) and its bias.
pub const LM_HEAD: &str = "lm_head.weight";
pub const LM_HEAD_BIAS: &str = "lm_head.bias";

/// `{prefix}.weight`.
pub fn weight(prefix: &str) -> String {
    format!("{prefix}.weight")
}

/// `{prefix}.bias`.
pub fn bias(prefix: &str) -> String {
    format!("{prefix}.bias")
}

/// The names of one stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stack(&'static str);

pub const ENCODER: Stack = Stack("encoder");
pub const DECODER: Stack = Stack("decoder");

impl Stack {
    pub fn name(self) -> &'static str {
        self.0
    }
    /// The stack's own embedding table.
    pub fn embed(self) -> String {
        format!("{}.embed.weight", self.0)
    }
    /// The stack's own learned position table.
    pub fn pos(self) -> String {
        format!("{}.pos.weight", self.0)
    }
    /// Norm prefix.
    pub fn embed_norm(self) -> String {
        format!("{}.embed_norm", self.0)
    }
    /// T5's relative attention bias `[buckets, heads]`.
    pub fn rel_bias(self) -> String {
        format!("{}.rel_bias.weight", self.0)
    }
    /// Norm prefix.
    pub fn final_norm(self) -> String {
        format!("{}.final_norm", self.0)
    }
    pub fn layer(self, i: usize) -> Layer {
        Layer(format!("{}.layers.{i}", self.0))
    }
}

/// The projections of an attention block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proj {
    Q,
    K,
    V,
    O,
}

impl Proj {
    pub const ALL: [Proj; 4] = [Proj::Q, Proj::K, Proj::V, Proj::O];
    fn as_str(self) -> &'static str {
        match self {
            Proj::Q => "q",
            Proj::K => "k",
            Proj::V => "v",
            Proj::O => "o",
        }
    }
}

/// The linear layers of a feed-forward block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ffn {
    Up,
    Gate,
    Down,
}

impl Ffn {
    fn as_str(self) -> &'static str {
        match self {
            Ffn::Up => "up",
            Ffn::Gate => "gate",
            Ffn::Down => "down",
        }
    }
}

/// The names of one layer (`{stack}.layers.{i}`); each method gives a prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layer(String);

impl Layer {
    pub fn self_attn(&self, p: Proj) -> String {
        format!("{}.self_attn.{}", self.0, p.as_str())
    }
    pub fn self_attn_norm(&self) -> String {
        format!("{}.self_attn_norm", self.0)
    }
    /// RMSNorm of each query head before rotary positions (Qwen3), weight `[head_dim]`.
    pub fn self_attn_q_norm(&self) -> String {
        format!("{}.self_attn.q_norm", self.0)
    }
    /// RMSNorm of each key head before rotary positions (Qwen3), weight `[head_dim]`.
    pub fn self_attn_k_norm(&self) -> String {
        format!("{}.self_attn.k_norm", self.0)
    }
    pub fn cross_attn(&self, p: Proj) -> String {
        format!("{}.cross_attn.{}", self.0, p.as_str())
    }
    pub fn cross_attn_norm(&self) -> String {
        format!("{}.cross_attn_norm", self.0)
    }
    pub fn ffn(&self, f: Ffn) -> String {
        format!("{}.ffn.{}", self.0, f.as_str())
    }
    pub fn ffn_norm(&self) -> String {
        format!("{}.ffn_norm", self.0)
    }
    /// Norm of the self-attention's output before its residual add (Gemma 2), optional.
    pub fn self_attn_post_norm(&self) -> String {
        format!("{}.self_attn_post_norm", self.0)
    }
    /// Norm of the feed-forward's output before its residual add (Gemma 2), optional.
    pub fn ffn_post_norm(&self) -> String {
        format!("{}.ffn_post_norm", self.0)
    }
}

// ---- The LSTM encoder-decoder's own names (`docs/lstm.md`); it shares `embed.weight` or
// `{stack}.embed.weight`, `lm_head.weight` and `lm_head.bias` with the Transformer.

/// One LSTM layer in one direction: `{prefix}.ih.weight` `[4·units, input]`,
/// `{prefix}.hh.weight` `[4·units, units]`, `{prefix}.bias` `[4·units]` (gates i, f, g, o).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LstmCell(String);

impl LstmCell {
    /// Encoder layer `i`, reading forwards (`backward` false) or backwards.
    pub fn encoder(i: usize, backward: bool) -> LstmCell {
        let dir = if backward { "bwd" } else { "fwd" };
        LstmCell(format!("{}.layers.{i}.{dir}", ENCODER.0))
    }
    /// Decoder layer `i`.
    pub fn decoder(i: usize) -> LstmCell {
        LstmCell(format!("{}.layers.{i}", DECODER.0))
    }
    pub fn ih(&self) -> String {
        format!("{}.ih.weight", self.0)
    }
    pub fn hh(&self) -> String {
        format!("{}.hh.weight", self.0)
    }
    pub fn bias(&self) -> String {
        format!("{}.bias", self.0)
    }
}

/// General attention's `W` (the query is `W h`), `[H, H]`.
pub const LSTM_ATTN_IN: &str = "decoder.attn.in.weight";
/// Additive attention `v · tanh(W_q h + b_q + W_k m)`: the query projection (a prefix, with an
/// optional bias), the key projection and `v`.
pub const LSTM_ATTN_QUERY: &str = "decoder.attn.query";
pub const LSTM_ATTN_KEY: &str = "decoder.attn.key.weight";
pub const LSTM_ATTN_V: &str = "decoder.attn.v.weight";
/// `h̃ = tanh(W_out [context; h])`, `[H, 2H]`.
pub const LSTM_ATTN_OUT: &str = "decoder.attn.out.weight";

/// Whether a tensor is kept in float when a model is quantized: position tables and T5's
/// relative bias (small, and quantizing them hurts more than it saves).
pub fn keep_float(name: &str) -> bool {
    name.ends_with("pos.weight") || name.ends_with("rel_bias.weight")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_documented_ones() {
        let l = DECODER.layer(3);
        assert_eq!(
            weight(&l.self_attn(Proj::Q)),
            "decoder.layers.3.self_attn.q.weight"
        );
        assert_eq!(
            bias(&l.cross_attn(Proj::O)),
            "decoder.layers.3.cross_attn.o.bias"
        );
        assert_eq!(
            weight(&l.ffn(Ffn::Gate)),
            "decoder.layers.3.ffn.gate.weight"
        );
        assert_eq!(weight(&l.ffn_norm()), "decoder.layers.3.ffn_norm.weight");
        assert_eq!(weight(&ENCODER.final_norm()), "encoder.final_norm.weight");
        assert_eq!(ENCODER.rel_bias(), "encoder.rel_bias.weight");
        assert!(keep_float(&DECODER.pos()) && !keep_float(EMBED));
        assert_eq!(
            LstmCell::encoder(1, true).ih(),
            "encoder.layers.1.bwd.ih.weight"
        );
        assert_eq!(LstmCell::decoder(0).bias(), "decoder.layers.0.bias");
        assert_eq!(weight(LSTM_ATTN_QUERY), "decoder.attn.query.weight");
    }
}
