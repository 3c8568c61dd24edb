//! The Llama family (`model_type` `llama`, `mistral`, `qwen2`, `qwen3`): rotary positions, RMS
//! norms, gated SiLU feed-forwards, grouped-query attention; Qwen3's per-head q/k norms.

use super::{Hf, Op, Planned, Sources, activation, base_config, plan, plan_linear, plan_norm};
use crate::error::{Error, Result};
use crate::format::names::{self, Ffn, Proj};
use crate::format::{Arch, Config, Norm, Positions, RopeScaling};
use serde_json::Value;

/// `qk_norm`: Qwen3's per-head RMSNorm of queries and keys (`self_attn.{q,k}_norm`, before
/// rotary positions), required.
pub(super) fn llama(hf: &Hf, src: &Sources, qk_norm: bool) -> Result<(Arch, Config, Vec<Planned>)> {
    let c = config(hf, src)?;
    let mut p = Vec::new();
    plan(&mut p, names::EMBED, "model.embed_tokens.weight", Op::Copy);
    for i in 0..c.decoder_layers {
        let (l, hl) = (names::DECODER.layer(i), format!("model.layers.{i}"));
        plan_projections(&mut p, src, &l, &hl);
        plan_norm(
            &mut p,
            src,
            &l.self_attn_norm(),
            &format!("{hl}.input_layernorm"),
        );
        if qk_norm {
            let q = format!("{hl}.self_attn.q_norm");
            plan_norm(&mut p, src, &l.self_attn_q_norm(), &q);
            plan_norm(
                &mut p,
                src,
                &l.self_attn_k_norm(),
                &format!("{hl}.self_attn.k_norm"),
            );
        }
        plan_norm(
            &mut p,
            src,
            &l.ffn_norm(),
            &format!("{hl}.post_attention_layernorm"),
        );
    }
    plan_tail(&mut p, src)?;
    Ok((Arch::DecoderOnly, c, p))
}

/// Layer `hl`'s separate q, k, v, o projections and gated feed-forward (gate, up, down), as the
/// Llama-shaped checkpoints name them.
pub(super) fn plan_projections(p: &mut Vec<Planned>, src: &Sources, l: &names::Layer, hl: &str) {
    for (q, hq) in Proj::ALL.into_iter().zip(["q", "k", "v", "o"]) {
        plan_linear(
            p,
            src,
            &l.self_attn(q),
            &format!("{hl}.self_attn.{hq}_proj"),
        );
    }
    for (f, hf) in [(Ffn::Gate, "gate"), (Ffn::Up, "up"), (Ffn::Down, "down")] {
        plan_linear(p, src, &l.ffn(f), &format!("{hl}.mlp.{hf}_proj"));
    }
}

/// The final norm and the output projection (unless tied to the embeddings).
pub(super) fn plan_tail(p: &mut Vec<Planned>, src: &Sources) -> Result<()> {
    plan_norm(p, src, &names::DECODER.final_norm(), "model.norm");
    if src.has("lm_head.weight") && !src.same("lm_head.weight", "model.embed_tokens.weight")? {
        plan(p, names::LM_HEAD, "lm_head.weight", Op::Copy);
    }
    Ok(())
}

/// The sliding window and the layers it applies to (Mistral, Phi-3, Qwen2/Qwen3 with
/// `use_sliding_window`): the layers whose `layer_types` entry is `sliding_attention`; without
/// `layer_types`, Qwen's layers from `max_window_layers` on, else every layer. Returns the window
/// (0: none) and the sliding layers (empty: all of them).
fn sliding_window(hf: &Hf, layers: usize) -> Result<(usize, Vec<usize>)> {
    if hf.opt_bool("use_sliding_window")? == Some(false) {
        return Ok((0, Vec::new()));
    }
    let default = |i: usize| -> Result<bool> {
        // Without layer_types (older configs): Qwen's layers slide from max_window_layers on.
        Ok(match hf.opt_usize("max_window_layers")? {
            Some(m) if hf.opt_bool("use_sliding_window")? == Some(true) => i >= m,
            _ => true,
        })
    };
    sliding_layers(hf, layers, default)
}

/// The window of `sliding_window` and the layers it applies to: those whose `layer_types`
/// entry is `sliding_attention` (any other type than `full_attention` is refused), or, without
/// `layer_types`, those `default` picks. None sliding is a window of 0; all, an empty list.
pub(super) fn sliding_layers(
    hf: &Hf,
    layers: usize,
    default: impl Fn(usize) -> Result<bool>,
) -> Result<(usize, Vec<usize>)> {
    let Some(window) = hf.opt_usize("sliding_window")? else {
        return Ok((0, Vec::new()));
    };
    let sliding: Vec<usize> = match hf.0["layer_types"].as_array() {
        Some(types) => {
            if types.len() != layers {
                return Err(Error::bad_config(
                    "layer_types",
                    format!("has {} entries for {layers} layers", types.len()),
                ));
            }
            let mut out = Vec::new();
            for (i, t) in types.iter().enumerate() {
                match t.as_str() {
                    Some("sliding_attention") => out.push(i),
                    Some("full_attention") => {}
                    other => {
                        return Err(Error::bad_config(
                            "layer_types",
                            format!(
                                "{other:?} is not supported (sliding_attention, full_attention)"
                            ),
                        ));
                    }
                }
            }
            out
        }
        None => {
            let mut out = Vec::new();
            for i in 0..layers {
                if default(i)? {
                    out.push(i);
                }
            }
            out
        }
    };
    Ok(match sliding.len() {
        0 => (0, Vec::new()),
        n if n == layers => (window, Vec::new()),
        _ => (window, sliding),
    })
}

/// The rotary scaling of `rope_parameters` (or the older `rope_scaling`): none, `linear`,
/// `llama3`, or `longrope` (`su`; Phi-3's long-context models: short factors within the original
/// context, long ones past it); any other scheme (`dynamic`, `yarn`...) is refused, naming it.
/// Also a cap on positions it implies (none of these has one).
pub(super) fn rope_scaling(rope: &Value, hf: &Hf) -> Result<(Option<RopeScaling>, Option<usize>)> {
    let field = |k: &str| format!("rope_parameters.{k}");
    let kind = rope["rope_type"].as_str().or(rope["type"].as_str());
    let num = |k: &str| -> Result<f64> {
        rope[k]
            .as_f64()
            .ok_or_else(|| Error::bad_config(&field(k), "missing or not a number"))
    };
    Ok(match kind {
        None | Some("default") => (None, None),
        Some("linear") => (
            Some(RopeScaling::Linear {
                factor: num("factor")?,
            }),
            None,
        ),
        Some("llama3") => (
            Some(RopeScaling::Llama3 {
                factor: num("factor")?,
                low_freq_factor: num("low_freq_factor")?,
                high_freq_factor: num("high_freq_factor")?,
                original_max_positions: num("original_max_position_embeddings")? as usize,
            }),
            None,
        ),
        Some("longrope" | "su") => {
            let original = match rope["original_max_position_embeddings"].as_u64() {
                Some(n) => n as usize,
                None => hf.usize("original_max_position_embeddings")?,
            };
            if original == 0 {
                return Err(Error::bad_config(
                    "original_max_position_embeddings",
                    "must be > 0",
                ));
            }
            let factor = match rope["factor"].as_f64() {
                Some(f) => f,
                None => hf.usize("max_position_embeddings")? as f64 / original as f64,
            };
            let attention_factor = match rope["attention_factor"].as_f64() {
                Some(a) => a,
                None if factor <= 1.0 => 1.0,
                None => (1.0 + factor.ln() / (original as f64).ln()).sqrt(),
            };
            let factors = |k: &str| {
                rope[k]
                    .as_array()
                    .and_then(|a| a.iter().map(Value::as_f64).collect::<Option<Vec<f64>>>())
                    .ok_or_else(|| Error::bad_config(&field(k), "missing or not numbers"))
            };
            (
                Some(RopeScaling::Longrope {
                    short_factor: factors("short_factor")?,
                    long_factor: factors("long_factor")?,
                    original_max_positions: original,
                    attention_factor,
                }),
                None,
            )
        }
        Some(k) => {
            return Err(Error::bad_config(
                &field("rope_type"),
                format!("\"{k}\" is not supported (default, linear, llama3 and longrope are)"),
            ));
        }
    })
}

/// The configuration the Llama-shaped families share: widths, grouped-query heads, rotary
/// positions (linear and Llama 3 scaling; other schemes refused), a sliding window.
pub(super) fn config(hf: &Hf, src: &Sources) -> Result<Config> {
    let mut c = shape(hf, src)?;
    (c.sliding_window, c.sliding_layers) = sliding_window(hf, c.decoder_layers)?;
    Ok(c)
}

/// [`config`] without the sliding window (a family that reads its own).
pub(super) fn shape(hf: &Hf, src: &Sources) -> Result<Config> {
    let d = hf.usize("hidden_size")?;
    let mut c = base_config(hf.usize("vocab_size")?, d);
    c.decoder_layers = src.layers("num_hidden_layers", hf.usize("num_hidden_layers")?)?;
    c.heads = hf.usize("num_attention_heads")?;
    c.kv_heads = hf.opt_usize("num_key_value_heads")?;
    c.head_dim = hf.opt_usize("head_dim")?;
    c.ffn_dim = hf.usize("intermediate_size")?;
    c.gated_ffn = true;
    c.activation = activation("hidden_act", hf.str("hidden_act").unwrap_or("silu"))?;
    c.norm = Norm::RmsNorm;
    c.norm_eps = hf.opt_f64("rms_norm_eps")?.unwrap_or(1e-6);
    c.positions = Positions::Rotary;
    let rope = &hf.0["rope_parameters"];
    let rope = if rope.is_object() {
        rope
    } else {
        &hf.0["rope_scaling"]
    };
    let (scaling, cap) = rope_scaling(rope, hf)?;
    c.rope_scaling = scaling;
    c.rope_theta = rope["rope_theta"]
        .as_f64()
        .or(hf.opt_f64("rope_theta")?)
        .unwrap_or(10_000.0);
    // Rotary positions have no table: like transformers, quill runs past max_position_embeddings
    // (max_positions 0 = no limit).
    c.max_positions = cap.unwrap_or(0);
    c.bos_id = hf.id("bos_token_id")?;
    c.eos_ids = hf.ids("eos_token_id")?;
    c.pad_id = hf.id("pad_token_id")?;
    Ok(c)
}
