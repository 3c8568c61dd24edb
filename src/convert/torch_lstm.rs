//! PyTorch `nn.LSTM` encoder-decoders with attention in quill's reference layout
//! (`docs/lstm.md`, `tests/reference/lstm_reference.py`): `config.json` with
//! `model_type: quill-lstm`, converted like a Hugging Face checkpoint.

use super::hf::{Hf, Op, Planned, Sources, base_config, plan, plan_linear};
use crate::error::{Error, Result};
use crate::format::names::{self, LstmCell};
use crate::format::{Arch, Config, Positions};

/// The source block of each of quill's gates i, f, g, o, from a gate order such as `ifgo`
/// (PyTorch), `ifco` (Keras: the same order, `c` names the candidate) or `ijfo` (TensorFlow's
/// LSTMCell, `j` the candidate).
fn gate_order(s: &str) -> Result<[usize; 4]> {
    let bad = || {
        Error::bad_config(
            "gate_order",
            format!(
                "\"{s}\": expected the four gates i, f, o and the candidate (g, c or j) in \
                     their stored order, e.g. ifgo (PyTorch), ifco (Keras), ijfo (TensorFlow)"
            ),
        )
    };
    let letters: Vec<char> = s.chars().collect();
    if letters.len() != 4 {
        return Err(bad());
    }
    let mut order = [usize::MAX; 4];
    for (pos, ch) in letters.iter().enumerate() {
        let gate = match ch {
            'i' => 0,
            'f' => 1,
            'g' | 'c' | 'j' => 2,
            'o' => 3,
            _ => return Err(bad()),
        };
        if order[gate] != usize::MAX {
            return Err(bad());
        }
        order[gate] = pos;
    }
    Ok(order)
}

/// PyTorch `nn.LSTM` seq2seq checkpoints with quill's reference layout (`docs/lstm.md`,
/// `tests/reference/lstm_reference.py`): `config.json` with `model_type: quill-lstm`.
pub(super) fn lstm(hf: &Hf, src: &Sources) -> Result<(Arch, Config, Vec<Planned>)> {
    let (v, h) = (hf.usize("vocab_size")?, hf.usize("hidden_size")?);
    let mut c = base_config(v, h);
    c.embed_dim = hf.opt_usize("embed_dim")?.filter(|&e| e != h);
    c.encoder_layers = src.layers("encoder_layers", hf.usize("encoder_layers")?)?;
    c.decoder_layers = src.layers("decoder_layers", hf.usize("decoder_layers")?)?;
    c.bidirectional = hf.opt_bool("bidirectional")?.unwrap_or(false);
    c.input_feeding = hf.opt_bool("input_feeding")?.unwrap_or(false);
    c.positions = Positions::None;
    c.attention = Some(match hf.str("attention") {
        Some("dot") => crate::format::LstmAttention::Dot,
        Some("general") => crate::format::LstmAttention::General,
        Some("additive" | "mlp" | "bahdanau") => crate::format::LstmAttention::Additive,
        other => {
            return Err(Error::bad_config(
                "attention",
                format!("{other:?}: expected dot, general or additive"),
            ));
        }
    });
    c.pad_id = hf.id("pad_token_id")?;
    c.unk_id = hf.id("unk_token_id")?;
    c.bos_id = hf.id("bos_token_id")?;
    c.eos_ids = hf.ids("eos_token_id")?;
    c.decoder_start_id = hf.id("decoder_start_token_id")?.or(c.bos_id);
    let order = gate_order(hf.str("gate_order").unwrap_or("ifgo"))?;
    let keras = hf.str("layout") == Some("keras");
    let gates = |add: Option<String>, weight: bool| Op::LstmGates {
        order,
        add,
        transpose: keras && weight,
    };
    let mut p = Vec::new();
    // The reference layout's embeddings already have quill's names.
    for stack in [names::ENCODER, names::DECODER] {
        plan(&mut p, stack.embed(), stack.embed(), Op::Copy);
    }
    // One LSTM layer (direction): weight_ih, weight_hh and the summed biases.
    let cell =
        |p: &mut Vec<Planned>, dst: LstmCell, ih: String, hh: String, bi: String, bh: String| {
            plan(p, dst.ih(), ih, gates(None, true));
            plan(p, dst.hh(), hh, gates(None, true));
            let add = src.has(&bh).then_some(bh);
            plan(p, dst.bias(), bi, gates(add, false));
        };
    for k in 0..c.encoder_layers {
        let dirs: &[(bool, &str)] = if c.bidirectional {
            &[(false, ""), (true, "_reverse")]
        } else {
            &[(false, "")]
        };
        for &(backward, sfx) in dirs {
            let s = |w: &str| format!("encoder.lstm.{w}_l{k}{sfx}");
            cell(
                &mut p,
                LstmCell::encoder(k, backward),
                s("weight_ih"),
                s("weight_hh"),
                s("bias_ih"),
                s("bias_hh"),
            );
        }
    }
    for k in 0..c.decoder_layers {
        let s = |w: &str| format!("decoder.cells.{k}.{w}");
        cell(
            &mut p,
            LstmCell::decoder(k),
            s("weight_ih"),
            s("weight_hh"),
            s("bias_ih"),
            s("bias_hh"),
        );
    }
    match c.attention {
        Some(crate::format::LstmAttention::General) => plan(
            &mut p,
            names::LSTM_ATTN_IN,
            "decoder.attn.linear_in.weight",
            Op::Copy,
        ),
        Some(crate::format::LstmAttention::Additive) => {
            plan_linear(&mut p, src, names::LSTM_ATTN_QUERY, "decoder.attn.query");
            plan(
                &mut p,
                names::LSTM_ATTN_KEY,
                "decoder.attn.context.weight",
                Op::Copy,
            );
            plan(
                &mut p,
                names::LSTM_ATTN_V,
                "decoder.attn.v.weight",
                Op::Flatten,
            );
        }
        _ => {}
    }
    plan(
        &mut p,
        names::LSTM_ATTN_OUT,
        "decoder.attn.linear_out.weight",
        Op::Copy,
    );
    let tied = hf.opt_bool("tie_output")?.unwrap_or(false) || !src.has("generator.weight");
    if !tied {
        plan(&mut p, names::LM_HEAD, "generator.weight", Op::Copy);
    }
    if src.has("generator.bias") {
        plan(&mut p, names::LM_HEAD_BIAS, "generator.bias", Op::Copy);
    }
    Ok((Arch::LstmSeq2Seq, c, p))
}
