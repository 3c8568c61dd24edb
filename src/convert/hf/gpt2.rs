//! GPT-2 (`model_type` `gpt2`): Conv1D weights (`[in, out]`, transposed here), a fused `c_attn`
//! split into q, k, v, learned positions.

use super::{Hf, Op, Planned, Sources, activation, base_config, plan, plan_norm};
use crate::error::{Error, Result};
use crate::format::names::{self, Ffn, Proj};
use crate::format::{Arch, Config};

pub(super) fn gpt2(hf: &Hf, src: &Sources) -> Result<(Arch, Config, Vec<Planned>)> {
    let d = hf.usize("n_embd")?;
    let mut c = base_config(hf.usize("vocab_size")?, d);
    c.decoder_layers = src.layers("n_layer", hf.usize("n_layer")?)?;
    c.heads = hf.usize("n_head")?;
    c.ffn_dim = hf.opt_usize("n_inner")?.unwrap_or(4 * d);
    c.activation = activation(
        "activation_function",
        hf.str("activation_function").unwrap_or("gelu_new"),
    )?;
    c.norm_eps = hf.opt_f64("layer_norm_epsilon")?.unwrap_or(1e-5);
    c.max_positions = hf.usize("n_positions")?;
    c.bos_id = hf.id("bos_token_id")?;
    c.eos_ids = hf.ids("eos_token_id")?;
    c.pad_id = hf.id("pad_token_id")?;
    if hf.opt_bool("scale_attn_weights")? == Some(false) {
        return Err(Error::bad_config(
            "scale_attn_weights",
            "false is not supported",
        ));
    }
    if hf.opt_bool("scale_attn_by_inverse_layer_idx")? == Some(true) {
        return Err(Error::bad_config(
            "scale_attn_by_inverse_layer_idx",
            "true is not supported",
        ));
    }
    let pre = if src.has("transformer.wte.weight") {
        "transformer."
    } else {
        ""
    };
    let mut p = Vec::new();
    plan(&mut p, names::EMBED, format!("{pre}wte.weight"), Op::Copy);
    plan(
        &mut p,
        names::DECODER.pos(),
        format!("{pre}wpe.weight"),
        Op::Copy,
    );
    for i in 0..c.decoder_layers {
        let (l, hl) = (names::DECODER.layer(i), format!("{pre}h.{i}"));
        // The fused c_attn: q, k, v are its column blocks (Conv1D weights are [in, out]).
        for (j, q) in [Proj::Q, Proj::K, Proj::V].into_iter().enumerate() {
            let (lo, hi) = (j * d, (j + 1) * d);
            let w = format!("{hl}.attn.c_attn.weight");
            plan(
                &mut p,
                names::weight(&l.self_attn(q)),
                w,
                Op::TransposeRows(lo, hi),
            );
            let b = format!("{hl}.attn.c_attn.bias");
            plan(&mut p, names::bias(&l.self_attn(q)), b, Op::Rows(lo, hi));
        }
        for (dst, hf) in [
            (l.self_attn(Proj::O), "attn.c_proj"),
            (l.ffn(Ffn::Up), "mlp.c_fc"),
            (l.ffn(Ffn::Down), "mlp.c_proj"),
        ] {
            let w = format!("{hl}.{hf}.weight");
            plan(&mut p, names::weight(&dst), w, Op::Transpose);
            plan(
                &mut p,
                names::bias(&dst),
                format!("{hl}.{hf}.bias"),
                Op::Copy,
            );
        }
        plan_norm(&mut p, src, &l.self_attn_norm(), &format!("{hl}.ln_1"));
        plan_norm(&mut p, src, &l.ffn_norm(), &format!("{hl}.ln_2"));
    }
    plan_norm(
        &mut p,
        src,
        &names::DECODER.final_norm(),
        &format!("{pre}ln_f"),
    );
    if src.has("lm_head.weight") && !src.same("lm_head.weight", &format!("{pre}wte.weight"))? {
        plan(&mut p, names::LM_HEAD, "lm_head.weight", Op::Copy);
    }
    Ok((Arch::DecoderOnly, c, p))
}
