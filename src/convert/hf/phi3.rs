//! Phi-3 (`model_type` `phi3`): the Llama shape with fused projections — `qkv_proj`
//! (`[heads·hd + 2·kv·hd, d]`, q then k then v) and `gate_up_proj` (`[2f, d]`, gate then up) —
//! split here into quill's q, k, v and gate, up. The 128k-context models' LongRoPE (`su`,
//! `longrope`) runs within the original context (`llama::rope_scaling`); a partial rotary
//! factor is refused by name.

use super::llama;
use super::{Hf, Op, Planned, Sources, plan, plan_linear, plan_norm};
use crate::error::{Error, Result};
use crate::format::names::{self, Ffn, Proj};
use crate::format::{Arch, Config};

pub(super) fn phi3(hf: &Hf, src: &Sources) -> Result<(Arch, Config, Vec<Planned>)> {
    let c = llama::config(hf, src)?;
    // transformers 5 keeps it in rope_parameters, earlier versions at the top level.
    let factor = hf.0["rope_parameters"]["partial_rotary_factor"].as_f64();
    if let Some(f) = factor.or(hf.opt_f64("partial_rotary_factor")?)
        && f != 1.0
    {
        return Err(Error::bad_config(
            "partial_rotary_factor",
            format!("{f} is not supported (quill rotates whole heads: 1.0)"),
        ));
    }
    let (hd, f) = (c.head_dim(), c.ffn_dim);
    let (qd, kvd) = (c.heads * hd, c.kv_heads() * hd);
    let mut p = Vec::new();
    plan(&mut p, names::EMBED, "model.embed_tokens.weight", Op::Copy);
    for i in 0..c.decoder_layers {
        let (l, hl) = (names::DECODER.layer(i), format!("model.layers.{i}"));
        let qkv = format!("{hl}.self_attn.qkv_proj.weight");
        for (proj, lo, hi) in [
            (Proj::Q, 0, qd),
            (Proj::K, qd, qd + kvd),
            (Proj::V, qd + kvd, qd + 2 * kvd),
        ] {
            plan(
                &mut p,
                names::weight(&l.self_attn(proj)),
                &qkv,
                Op::Rows(lo, hi),
            );
        }
        if src.has(&format!("{hl}.self_attn.qkv_proj.bias")) {
            return Err(Error::bad_config(
                "attention_bias",
                "biases on the fused qkv projection are not supported",
            ));
        }
        plan_linear(
            &mut p,
            src,
            &l.self_attn(Proj::O),
            &format!("{hl}.self_attn.o_proj"),
        );
        plan_norm(
            &mut p,
            src,
            &l.self_attn_norm(),
            &format!("{hl}.input_layernorm"),
        );
        let gate_up = format!("{hl}.mlp.gate_up_proj.weight");
        plan(
            &mut p,
            names::weight(&l.ffn(Ffn::Gate)),
            &gate_up,
            Op::Rows(0, f),
        );
        plan(
            &mut p,
            names::weight(&l.ffn(Ffn::Up)),
            &gate_up,
            Op::Rows(f, 2 * f),
        );
        plan_linear(
            &mut p,
            src,
            &l.ffn(Ffn::Down),
            &format!("{hl}.mlp.down_proj"),
        );
        plan_norm(
            &mut p,
            src,
            &l.ffn_norm(),
            &format!("{hl}.post_attention_layernorm"),
        );
    }
    llama::plan_tail(&mut p, src)?;
    Ok((Arch::DecoderOnly, c, p))
}
