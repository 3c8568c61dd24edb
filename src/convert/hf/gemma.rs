//! Gemma (`model_type` `gemma`) and Gemma 2 (`gemma2`): the Llama shape with GELU-tanh gated
//! feed-forwards, embeddings scaled by √d, and RMSNorms that scale by `1 + weight` (the
//! converter adds the one, so the runtime's RMSNorm applies them unchanged). Gemma 2 adds a norm
//! on the output of each sub-layer before its residual add, soft-capped attention scores and
//! logits, `query_pre_attn_scalar` for the attention scale, and a sliding window on some layers
//! (`layer_types`; by default every other layer, starting with the first).

use super::llama;
use super::{Hf, Op, Planned, Sources, activation, plan};
use crate::error::{Error, Result};
use crate::format::names;
use crate::format::{Arch, Config};

pub(super) fn gemma(hf: &Hf, src: &Sources, v2: bool) -> Result<(Arch, Config, Vec<Planned>)> {
    let mut c = llama::shape(hf, src)?;
    // Gemma 2 reads hidden_activation; Gemma reads hidden_act, where `transformers` takes the
    // legacy "gelu" of the first releases to mean the tanh approximation.
    let (field, act) = if v2 {
        ("hidden_activation", hf.str("hidden_activation"))
    } else {
        ("hidden_act", hf.str("hidden_act").filter(|&a| a != "gelu"))
    };
    c.activation = activation(field, act.unwrap_or("gelu_pytorch_tanh"))?;
    c.scale_embedding = true;
    if hf.opt_bool("use_bidirectional_attention")? == Some(true) {
        return Err(Error::bad_config(
            "use_bidirectional_attention",
            "true is not supported (quill's decoder is causal)",
        ));
    }
    if hf.opt_bool("attention_bias")? == Some(true) {
        return Err(Error::bad_config(
            "attention_bias",
            "true is not supported for Gemma",
        ));
    }
    if v2 {
        if let Some(s) = hf.opt_f64("query_pre_attn_scalar")? {
            c.attention_scale = Some(s.powf(-0.5));
        }
        c.attn_softcap = hf.opt_f64("attn_logit_softcapping")?.unwrap_or(0.0);
        c.final_softcap = hf.opt_f64("final_logit_softcapping")?.unwrap_or(0.0);
        // Without layer_types, transformers alternates: layers 0, 2, 4... slide.
        (c.sliding_window, c.sliding_layers) =
            llama::sliding_layers(hf, c.decoder_layers, |i| Ok(i % 2 == 0))?;
    }
    let mut p = Vec::new();
    plan(&mut p, names::EMBED, "model.embed_tokens.weight", Op::Copy);
    let norm = |p: &mut Vec<Planned>, dst: String, s: String| {
        plan(p, names::weight(&dst), format!("{s}.weight"), Op::PlusOne)
    };
    for i in 0..c.decoder_layers {
        let (l, hl) = (names::DECODER.layer(i), format!("model.layers.{i}"));
        llama::plan_projections(&mut p, src, &l, &hl);
        norm(&mut p, l.self_attn_norm(), format!("{hl}.input_layernorm"));
        if v2 {
            let post = format!("{hl}.post_attention_layernorm");
            norm(&mut p, l.self_attn_post_norm(), post);
            let pre = format!("{hl}.pre_feedforward_layernorm");
            norm(&mut p, l.ffn_norm(), pre);
            let post = format!("{hl}.post_feedforward_layernorm");
            norm(&mut p, l.ffn_post_norm(), post);
        } else {
            let pre = format!("{hl}.post_attention_layernorm");
            norm(&mut p, l.ffn_norm(), pre);
        }
    }
    norm(&mut p, names::DECODER.final_norm(), "model.norm".into());
    if src.has("lm_head.weight") && !src.same("lm_head.weight", "model.embed_tokens.weight")? {
        plan(&mut p, names::LM_HEAD, "lm_head.weight", Op::Copy);
    }
    Ok((Arch::DecoderOnly, c, p))
}
