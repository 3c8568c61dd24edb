//! Marian, BART, mBART, Pegasus and M2M100/NLLB (`model_type` `marian`, `bart`, `mbart`,
//! `pegasus`, `m2m_100`): encoder-decoders of one layout (post-norm Marian and BART, pre-norm
//! mBART, Pegasus and M2M100), learned or sinusoidal positions.

use super::{Hf, Op, Planned, Sources, activation, base_config, plan, plan_linear, plan_norm};
use crate::error::{Error, Result};
use crate::format::names::{self, Ffn, Proj};
use crate::format::{Arch, Config, Positions};

/// Marian, BART and mBART share one layout.
pub(super) fn bart_family(
    hf: &Hf,
    src: &Sources,
    model_type: &str,
) -> Result<(Arch, Config, Vec<Planned>)> {
    let d = hf.usize("d_model")?;
    let vocab = hf.usize("vocab_size")?;
    if let Some(dv) = hf.opt_usize("decoder_vocab_size")?
        && dv != vocab
    {
        return Err(Error::bad_config(
            "decoder_vocab_size",
            format!(
                "{dv} differs from vocab_size = {vocab}: separate target vocabularies are not supported"
            ),
        ));
    }
    let mut c = base_config(vocab, d);
    c.encoder_layers = src.layers("encoder_layers", hf.usize("encoder_layers")?)?;
    c.decoder_layers = src.layers("decoder_layers", hf.usize("decoder_layers")?)?;
    // The decoder's heads and feed-forward width may differ from the encoder's (distilled
    // students, asymmetric stacks).
    c.heads = hf.usize("encoder_attention_heads")?;
    c.ffn_dim = hf.usize("encoder_ffn_dim")?;
    c.decoder_heads = hf
        .opt_usize("decoder_attention_heads")?
        .filter(|&h| h != c.heads);
    c.decoder_ffn_dim = hf.opt_usize("decoder_ffn_dim")?.filter(|&f| f != c.ffn_dim);
    for (field, heads) in [
        ("encoder_attention_heads", c.heads),
        (
            "decoder_attention_heads",
            c.decoder_heads.unwrap_or(c.heads),
        ),
    ] {
        if heads == 0 || !d.is_multiple_of(heads) {
            return Err(Error::bad_config(
                field,
                format!("{heads} heads do not divide d_model = {d}"),
            ));
        }
    }
    c.activation = activation(
        "activation_function",
        hf.str("activation_function").unwrap_or("gelu"),
    )?;
    c.scale_embedding = hf.opt_bool("scale_embedding")?.unwrap_or(false);
    c.pre_norm = matches!(model_type, "mbart" | "pegasus" | "m2m_100");
    c.eos_ids = hf.ids("eos_token_id")?;
    c.bos_id = hf.id("bos_token_id")?;
    c.pad_id = hf.id("pad_token_id")?;
    c.decoder_start_id = hf.id("decoder_start_token_id")?;
    let max_pos = hf.usize("max_position_embeddings")?;
    let mut p = Vec::new();
    let shared = if src.has("model.shared.weight") {
        "model.shared.weight"
    } else {
        "model.encoder.embed_tokens.weight"
    };
    let enc_embed = "model.encoder.embed_tokens.weight";
    let dec_embed = "model.decoder.embed_tokens.weight";
    let separate = src.has(enc_embed) && src.has(dec_embed) && !src.same(enc_embed, dec_embed)?;
    if separate {
        plan(&mut p, names::ENCODER.embed(), enc_embed, Op::Copy);
        plan(&mut p, names::DECODER.embed(), dec_embed, Op::Copy);
    } else {
        plan(&mut p, names::EMBED, shared, Op::Copy);
    }
    if matches!(model_type, "marian" | "pegasus") {
        // Marian's and Pegasus's sinusoids (one formula) are not stored in the checkpoint: quill
        // computes them at load.
        c.positions = Positions::Sinusoidal;
        c.max_positions = max_pos;
    } else if model_type == "m2m_100" {
        // fairseq's sinusoids (another formula than Marian's) are not stored either: the
        // converter writes the table, read from row 2 on as M2M100 does (padding_idx + 1).
        c.positions = Positions::Learned;
        c.position_offset = 2;
        c.max_positions = max_pos;
        plan(&mut p, names::POS, FAIRSEQ_SINUSOIDS, Op::Copy);
    } else {
        c.positions = Positions::Learned;
        c.position_offset = 2;
        c.max_positions = max_pos;
        for stack in [names::ENCODER, names::DECODER] {
            let hf = format!("model.{}.embed_positions.weight", stack.name());
            plan(&mut p, stack.pos(), hf, Op::Copy);
        }
    }
    for (stack, n) in [
        (names::ENCODER, c.encoder_layers),
        (names::DECODER, c.decoder_layers),
    ] {
        let hs = format!("model.{}", stack.name());
        if src.has(&format!("{hs}.layernorm_embedding.weight")) {
            plan_norm(
                &mut p,
                src,
                &stack.embed_norm(),
                &format!("{hs}.layernorm_embedding"),
            );
        }
        if src.has(&format!("{hs}.layer_norm.weight")) {
            plan_norm(
                &mut p,
                src,
                &stack.final_norm(),
                &format!("{hs}.layer_norm"),
            );
        }
        let decoder = stack == names::DECODER;
        for i in 0..n {
            let (l, hl) = (stack.layer(i), format!("{hs}.layers.{i}"));
            for (q, hq) in Proj::ALL
                .into_iter()
                .zip(["q_proj", "k_proj", "v_proj", "out_proj"])
            {
                plan_linear(
                    &mut p,
                    src,
                    &l.self_attn(q),
                    &format!("{hl}.self_attn.{hq}"),
                );
                if decoder {
                    let s = format!("{hl}.encoder_attn.{hq}");
                    plan_linear(&mut p, src, &l.cross_attn(q), &s);
                }
            }
            let norm = format!("{hl}.self_attn_layer_norm");
            plan_norm(&mut p, src, &l.self_attn_norm(), &norm);
            if decoder {
                let norm = format!("{hl}.encoder_attn_layer_norm");
                plan_norm(&mut p, src, &l.cross_attn_norm(), &norm);
            }
            plan_linear(&mut p, src, &l.ffn(Ffn::Up), &format!("{hl}.fc1"));
            plan_linear(&mut p, src, &l.ffn(Ffn::Down), &format!("{hl}.fc2"));
            plan_norm(
                &mut p,
                src,
                &l.ffn_norm(),
                &format!("{hl}.final_layer_norm"),
            );
        }
    }
    if src.has("final_logits_bias") {
        plan(
            &mut p,
            names::LM_HEAD_BIAS,
            "final_logits_bias",
            Op::Flatten,
        );
    }
    let tied_to = if separate { dec_embed } else { shared };
    if src.has("lm_head.weight") && !src.same("lm_head.weight", tied_to)? {
        plan(&mut p, names::LM_HEAD, "lm_head.weight", Op::Copy);
    }
    Ok((Arch::Seq2Seq, c, p))
}

/// Source name standing for the computed fairseq position table (M2M100, NLLB).
pub(super) const FAIRSEQ_SINUSOIDS: &str = "<fairseq sinusoids>";

/// fairseq's sinusoidal positions (M2M100, NLLB): `[rows, d]`, row `p`: `sin(p·f_i)` for
/// `i < d/2`, then `cos(p·f_i)`, with `f_i = exp(−i · ln(10000) / (d/2 − 1))`; the padding row
/// is zero. Computed in f64.
pub(super) fn fairseq_sinusoids(rows: usize, d: usize, padding_idx: usize) -> Vec<f32> {
    let half = d / 2;
    let step = (10000f64).ln() / (half as f64 - 1.0).max(1.0);
    let mut t = vec![0f32; rows * d];
    for p in 0..rows {
        if p == padding_idx {
            continue;
        }
        for i in 0..half {
            let a = p as f64 * (-(i as f64) * step).exp();
            t[p * d + i] = a.sin() as f32;
            t[p * d + half + i] = a.cos() as f32;
        }
    }
    t
}
