//! T5 (`model_type` `t5`: v1.0, v1.1 / Flan-T5 with gated feed-forwards) and mT5 (`mt5`, the
//! v1.1 layout with a large multilingual vocabulary): relative position buckets, RMS norms, no
//! attention scaling.

use super::{Hf, Op, Planned, Sources, activation, base_config, plan, plan_linear, plan_norm};
use crate::error::Result;
use crate::format::names::{self, Ffn, Proj};
use crate::format::{Arch, Config, Norm, Positions};

pub(super) fn t5(hf: &Hf, src: &Sources) -> Result<(Arch, Config, Vec<Planned>)> {
    let d = hf.usize("d_model")?;
    let mut c = base_config(hf.usize("vocab_size")?, d);
    c.encoder_layers = src.layers("num_layers", hf.usize("num_layers")?)?;
    c.decoder_layers = src.layers(
        "num_decoder_layers",
        hf.opt_usize("num_decoder_layers")?
            .unwrap_or(c.encoder_layers),
    )?;
    c.heads = hf.usize("num_heads")?;
    c.head_dim = Some(hf.usize("d_kv")?);
    c.ffn_dim = hf.usize("d_ff")?;
    let proj = hf.str("feed_forward_proj").unwrap_or("relu");
    let (gated, act) = match proj.strip_prefix("gated-") {
        Some(a) => (true, a),
        None => (false, proj),
    };
    c.gated_ffn = gated;
    let act = if act == "gelu" && gated {
        "gelu_new"
    } else {
        act
    }; // transformers maps gated-gelu to gelu_new
    c.activation = activation("feed_forward_proj", hf.str("dense_act_fn").unwrap_or(act))?;
    c.norm = Norm::RmsNorm;
    c.norm_eps = hf.opt_f64("layer_norm_epsilon")?.unwrap_or(1e-6);
    c.positions = Positions::Relative;
    c.relative_buckets = hf
        .opt_usize("relative_attention_num_buckets")?
        .unwrap_or(32);
    c.relative_max_distance = hf
        .opt_usize("relative_attention_max_distance")?
        .unwrap_or(128);
    c.attention_scale = Some(1.0);
    c.eos_ids = hf.ids("eos_token_id")?;
    c.pad_id = hf.id("pad_token_id")?;
    c.decoder_start_id = hf.id("decoder_start_token_id")?.or(c.pad_id);
    let mut p = Vec::new();
    plan(&mut p, names::EMBED, "shared.weight", Op::Copy);
    for (stack, hs, n) in [
        (names::ENCODER, "encoder", c.encoder_layers),
        (names::DECODER, "decoder", c.decoder_layers),
    ] {
        let bias = format!("{hs}.block.0.layer.0.SelfAttention.relative_attention_bias.weight");
        plan(&mut p, stack.rel_bias(), bias, Op::Copy);
        plan_norm(
            &mut p,
            src,
            &stack.final_norm(),
            &format!("{hs}.final_layer_norm"),
        );
        for i in 0..n {
            let (l, hl) = (stack.layer(i), format!("{hs}.block.{i}.layer"));
            let qkvo = Proj::ALL.into_iter().zip(["q", "k", "v", "o"]);
            for (q, hq) in qkvo.clone() {
                let s = format!("{hl}.0.SelfAttention.{hq}");
                plan_linear(&mut p, src, &l.self_attn(q), &s);
            }
            plan_norm(
                &mut p,
                src,
                &l.self_attn_norm(),
                &format!("{hl}.0.layer_norm"),
            );
            // The feed-forward is sub-layer 1 of an encoder block, 2 of a decoder block (after
            // the cross-attention).
            let ff = if stack == names::DECODER {
                for (q, hq) in qkvo {
                    let s = format!("{hl}.1.EncDecAttention.{hq}");
                    plan_linear(&mut p, src, &l.cross_attn(q), &s);
                }
                plan_norm(
                    &mut p,
                    src,
                    &l.cross_attn_norm(),
                    &format!("{hl}.1.layer_norm"),
                );
                2
            } else {
                1
            };
            let dense = format!("{hl}.{ff}.DenseReluDense");
            if gated {
                plan_linear(&mut p, src, &l.ffn(Ffn::Gate), &format!("{dense}.wi_0"));
                plan_linear(&mut p, src, &l.ffn(Ffn::Up), &format!("{dense}.wi_1"));
            } else {
                plan_linear(&mut p, src, &l.ffn(Ffn::Up), &format!("{dense}.wi"));
            }
            plan_linear(&mut p, src, &l.ffn(Ffn::Down), &format!("{dense}.wo"));
            plan_norm(&mut p, src, &l.ffn_norm(), &format!("{hl}.{ff}.layer_norm"));
        }
    }
    // Tied or not is decided from the tensors (transformers 5 writes tie_word_embeddings: true
    // for every T5); the d_model^-0.5 rescale belongs to tied T5 v1.0 models.
    let untied = src.has("lm_head.weight") && !src.same("lm_head.weight", "shared.weight")?;
    if untied {
        plan(&mut p, names::LM_HEAD, "lm_head.weight", Op::Copy);
    }
    let scale = hf.opt_bool("scale_decoder_outputs")?.unwrap_or(!untied);
    if scale {
        c.logits_scale = (d as f64).powf(-0.5);
    }
    Ok((Arch::Seq2Seq, c, p))
}
