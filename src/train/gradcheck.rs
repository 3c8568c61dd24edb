//! Gradient checks: every backward pass against central finite differences of its forward pass
//! (the independent reference for gradients), layer by layer and for whole tiny models.
//!
//! A layer `y = f(x, θ)` is checked through the scalar `L = Σ r ⊙ y` with a fixed random `r`:
//! its backward pass with `dy = r` must give `∂L/∂x` and `∂L/∂θ`. Each comparison is a
//! directional derivative along a random direction over a whole tensor, plus a few single
//! coordinates, both in f64 arithmetic around f32 forward passes.

use super::layers::{self as ly, AttnShape, Ctx, Dx, Scratch};
use super::lstm::Lstm;
use super::model::{Batch, Structure, Transformer};
use super::net::{Net, NetActs};
use crate::format::{Activation, Arch, Config, LstmAttention, Norm, Positions};
use crate::kernels::{Pool, kernels};
use crate::rng::Rng;

fn rand_vec(rng: &mut Rng, n: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|_| ((rng.uniform() * 2.0 - 1.0) as f32) * scale)
        .collect()
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
}

/// Checks the analytic gradient `grad` of `loss` at `x` (a copy is perturbed): the directional
/// derivative along a random direction, and `coords` single coordinates.
fn check(
    name: &str,
    x: &[f32],
    grad: &[f32],
    coords: usize,
    h: f32,
    loss: &mut dyn FnMut(&[f32]) -> f64,
) {
    let mut rng = Rng::new(name.len() as u64 * 7919);
    let mut xp = x.to_vec();
    let numeric = |xp: &mut Vec<f32>, dir: &[f32], loss: &mut dyn FnMut(&[f32]) -> f64| {
        for (v, (&x0, &d)) in xp.iter_mut().zip(x.iter().zip(dir)) {
            *v = x0 + h * d;
        }
        let plus = loss(xp);
        for (v, (&x0, &d)) in xp.iter_mut().zip(x.iter().zip(dir)) {
            *v = x0 - h * d;
        }
        let minus = loss(xp);
        xp.copy_from_slice(x);
        (plus - minus) / (2.0 * h as f64)
    };
    let ok = |a: f64, n: f64| (a - n).abs() <= 2e-2 * a.abs().max(n.abs()) + 2e-3;
    let dir = rand_vec(&mut rng, x.len(), 1.0);
    let (a, n) = (dot(grad, &dir), numeric(&mut xp, &dir, loss));
    assert!(
        ok(a, n),
        "{name}: directional derivative {a} vs finite difference {n}"
    );
    for _ in 0..coords {
        let i = (rng.next_u64() % x.len() as u64) as usize;
        let mut dir = vec![0f32; x.len()];
        dir[i] = 1.0;
        let (a, n) = (grad[i] as f64, numeric(&mut xp, &dir, loss));
        assert!(
            ok(a, n),
            "{name}[{i}]: gradient {a} vs finite difference {n}"
        );
    }
}

fn ctx(pool: &Pool) -> Ctx<'_> {
    Ctx {
        pool,
        kern: kernels(),
    }
}

#[test]
fn linear_gradients() {
    let pool = Pool::single();
    let c = ctx(&pool);
    let mut rng = Rng::new(1);
    let (n, out, inp) = (5, 7, 6);
    let x = rand_vec(&mut rng, n * inp, 1.0);
    let w = rand_vec(&mut rng, out * inp, 0.5);
    let b = rand_vec(&mut rng, out, 0.5);
    let r = rand_vec(&mut rng, n * out, 1.0);
    let fwd = |x: &[f32], w: &[f32], b: &[f32]| {
        let mut y = vec![0f32; n * out];
        ly::linear_forward(c, x, n, w, Some(b), out, inp, &mut y);
        dot(&y, &r)
    };
    let (mut dx, mut dw, mut db) = (vec![0f32; n * inp], vec![0f32; out * inp], vec![0f32; out]);
    let mut s = Scratch::default();
    ly::linear_backward(
        c,
        &mut s,
        &r,
        &x,
        n,
        &w,
        out,
        inp,
        Dx::Set(&mut dx),
        &mut dw,
        Some(&mut db),
    );
    check("linear.x", &x, &dx, 3, 1e-2, &mut |v| fwd(v, &w, &b));
    check("linear.w", &w, &dw, 3, 1e-2, &mut |v| fwd(&x, v, &b));
    check("linear.b", &b, &db, 3, 1e-2, &mut |v| fwd(&x, &w, v));
    // Dx::Add adds to what is there.
    let mut dx2 = vec![1f32; n * inp];
    ly::linear_backward(
        c,
        &mut s,
        &r,
        &x,
        n,
        &w,
        out,
        inp,
        Dx::Add(&mut dx2),
        &mut dw,
        None,
    );
    for (a, b) in dx2.iter().zip(&dx) {
        assert!((a - 1.0 - b).abs() < 1e-5);
    }
}

#[test]
fn norm_gradients() {
    let mut rng = Rng::new(2);
    let (n, c) = (4, 9);
    for kind in [Norm::LayerNorm, Norm::RmsNorm] {
        let x = rand_vec(&mut rng, n * c, 2.0);
        let w = rand_vec(&mut rng, c, 1.0);
        let b = rand_vec(&mut rng, c, 1.0);
        let r = rand_vec(&mut rng, n * c, 1.0);
        let bias = (kind == Norm::LayerNorm).then_some(&b[..]);
        let fwd = |x: &[f32], w: &[f32], b: Option<&[f32]>| {
            let (mut y, mut m, mut s) = (vec![0f32; n * c], vec![0f32; n], vec![0f32; n]);
            ly::norm_forward(kernels(), kind, x, c, w, b, 1e-5, &mut y, &mut m, &mut s);
            (dot(&y, &r), m, s)
        };
        let (_, mean, rstd) = fwd(&x, &w, bias);
        let (mut dx, mut dw, mut db) = (vec![0f32; n * c], vec![0f32; c], vec![0f32; c]);
        let db_opt = (kind == Norm::LayerNorm).then_some(&mut db[..]);
        ly::norm_backward(kind, &r, &x, c, &w, &mean, &rstd, &mut dx, &mut dw, db_opt);
        let k = format!("{kind:?}");
        check(&format!("{k}.x"), &x, &dx, 3, 1e-2, &mut |v| {
            fwd(v, &w, bias).0
        });
        check(&format!("{k}.w"), &w, &dw, 3, 1e-2, &mut |v| {
            fwd(&x, v, bias).0
        });
        if kind == Norm::LayerNorm {
            check(&format!("{k}.b"), &b, &db, 3, 1e-2, &mut |v| {
                fwd(&x, &w, Some(v)).0
            });
        }
    }
}

#[test]
fn activation_gradients() {
    let mut rng = Rng::new(3);
    for act in [
        Activation::Relu,
        Activation::Gelu,
        Activation::GeluTanh,
        Activation::Silu,
    ] {
        let mut x = rand_vec(&mut rng, 40, 3.0);
        // Keep ReLU's inputs away from its kink.
        x.iter_mut().for_each(|v| {
            if v.abs() < 0.05 {
                *v = 0.5
            }
        });
        let r = rand_vec(&mut rng, 40, 1.0);
        let mut dx = vec![0f32; 40];
        ly::act_backward(act, &x, &r, &mut dx);
        check(&format!("{act:?}"), &x, &dx, 5, 1e-3, &mut |v| {
            let mut y = vec![0f32; 40];
            ly::act_forward(kernels(), act, v, &mut y);
            dot(&y, &r)
        });
    }
}

#[test]
fn embedding_gradients() {
    let mut rng = Rng::new(4);
    let (v, c, l) = (6, 4, 3);
    let ids = [1u32, 5, 1, 0, 2, 5];
    let table = rand_vec(&mut rng, v * c, 1.0);
    let pos = rand_vec(&mut rng, (l + 2) * c, 1.0);
    let r = rand_vec(&mut rng, ids.len() * c, 1.0);
    let fwd = |t: &[f32], p: &[f32]| {
        let mut y = vec![0f32; ids.len() * c];
        let pi = ly::PosInput {
            table: p,
            offset: 2,
        };
        ly::embedding_forward(t, c, &ids, l, 1.7, Some(&pi), &mut y);
        dot(&y, &r)
    };
    let (mut dt, mut dp) = (vec![0f32; v * c], vec![0f32; (l + 2) * c]);
    ly::embedding_backward(&r, c, &ids, l, 1.7, &mut dt, Some((&mut dp, 2)));
    check("embed.table", &table, &dt, 4, 1e-2, &mut |t| fwd(t, &pos));
    check("embed.pos", &pos, &dp, 4, 1e-2, &mut |p| fwd(&table, p));
}

#[test]
fn rope_backward_is_the_inverse_rotation() {
    let mut rng = Rng::new(5);
    let (heads, d, l) = (2, 8, 3);
    let (cos, sin) = crate::model::positions::rope_tables(l, d, 10_000.0, None);
    let neg: Vec<f32> = sin.iter().map(|s| -s).collect();
    for interleaved in [false, true] {
        let x = rand_vec(&mut rng, 2 * l * heads * d, 1.0);
        let r = rand_vec(&mut rng, x.len(), 1.0);
        let mut dx = r.clone();
        ly::rope_apply(kernels(), &mut dx, heads, d, l, &cos, &neg, interleaved);
        check("rope", &x, &dx, 3, 1e-2, &mut |v| {
            let mut y = v.to_vec();
            ly::rope_apply(kernels(), &mut y, heads, d, l, &cos, &sin, interleaved);
            dot(&y, &r)
        });
    }
}

#[test]
fn attention_gradients() {
    let pool = Pool::single();
    let c = ctx(&pool);
    let mut rng = Rng::new(6);
    // Self-attention (causal, padded second sequence), cross-attention with grouped heads.
    for (s, key_len) in [
        (
            AttnShape {
                b: 2,
                lq: 4,
                lk: 4,
                heads: 2,
                kv_heads: 2,
                d: 3,
                causal: true,
                scale: 0.6,
            },
            vec![4, 3],
        ),
        (
            AttnShape {
                b: 2,
                lq: 3,
                lk: 5,
                heads: 4,
                kv_heads: 2,
                d: 2,
                causal: false,
                scale: 0.7,
            },
            vec![5, 2],
        ),
    ] {
        let (hd, gd) = (s.heads * s.d, s.kv_heads * s.d);
        let q = rand_vec(&mut rng, s.b * s.lq * hd, 1.0);
        let k = rand_vec(&mut rng, s.b * s.lk * gd, 1.0);
        let v = rand_vec(&mut rng, s.b * s.lk * gd, 1.0);
        let r = rand_vec(&mut rng, s.b * s.lq * hd, 1.0);
        let fwd = |q: &[f32], k: &[f32], v: &[f32]| {
            let mut probs = vec![0f32; s.b * s.heads * s.lq * s.lk];
            let mut out = vec![0f32; s.b * s.lq * hd];
            ly::attention_forward(c, &s, q, k, v, &key_len, &mut probs, &mut out);
            (dot(&out, &r), probs)
        };
        let (_, probs) = fwd(&q, &k, &v);
        let (mut dq, mut dk, mut dv) = (
            vec![0f32; q.len()],
            vec![9f32; k.len()],
            vec![9f32; v.len()],
        );
        ly::attention_backward(
            c, &s, &r, &q, &k, &v, &key_len, &probs, &mut dq, &mut dk, &mut dv,
        );
        let tag = if s.causal { "self" } else { "cross" };
        check(&format!("{tag}.q"), &q, &dq, 4, 1e-2, &mut |x| {
            fwd(x, &k, &v).0
        });
        check(&format!("{tag}.k"), &k, &dk, 4, 1e-2, &mut |x| {
            fwd(&q, x, &v).0
        });
        check(&format!("{tag}.v"), &v, &dv, 4, 1e-2, &mut |x| {
            fwd(&q, &k, x).0
        });
        // Padded keys get no gradient.
        let pad = (s.lk - 1) * gd + s.lk * gd;
        assert!(dk[pad..pad + gd].iter().all(|&g| g == 0.0) || key_len[1] == s.lk);
    }
}

#[test]
fn cross_entropy_gradient_and_value() {
    let pool = Pool::single();
    let c = ctx(&pool);
    let mut rng = Rng::new(7);
    let v = 7;
    let labels = [3u32, ly::IGNORE, 0, 6];
    let z = rand_vec(&mut rng, labels.len() * v, 3.0);
    for eps in [0.0f32, 0.1] {
        let mut g = z.clone();
        let sums = ly::cross_entropy(c, &mut g, v, &labels, eps, Some(1.0));
        assert_eq!(sums.tokens, 3);
        assert!(
            g[v..2 * v].iter().all(|&x| x == 0.0),
            "ignored row has no gradient"
        );
        check("cross_entropy", &z, &g, 5, 1e-2, &mut |x| {
            let mut x = x.to_vec();
            ly::cross_entropy(c, &mut x, v, &labels, eps, None).loss
        });
        // The value, computed directly: -log softmax at the label (eps = 0).
        if eps == 0.0 {
            let mut want = 0.0;
            for (r, &y) in labels.iter().enumerate() {
                if y == ly::IGNORE {
                    continue;
                }
                let row = &z[r * v..(r + 1) * v];
                let lse = row.iter().map(|&x| (x as f64).exp()).sum::<f64>().ln();
                want += lse - row[y as usize] as f64;
            }
            assert!((sums.loss - want).abs() < 1e-5 && (sums.nll - want).abs() < 1e-5);
        }
    }
}

/// A tiny model of each supported shape, and a padded batch for it.
fn tiny(
    arch: Arch,
    pre_norm: bool,
    positions: Positions,
    norm: Norm,
    gated: bool,
    kv_heads: Option<usize>,
) -> (Transformer, Batch) {
    let cfg = Config {
        vocab_size: 11,
        d_model: 8,
        encoder_layers: if arch == Arch::Seq2Seq { 2 } else { 0 },
        decoder_layers: 2,
        heads: 2,
        kv_heads,
        head_dim: None,
        ffn_dim: 12,
        decoder_heads: None,
        decoder_ffn_dim: None,
        activation: if gated {
            Activation::Silu
        } else {
            Activation::Gelu
        },
        gated_ffn: gated,
        norm,
        norm_eps: 1e-5,
        pre_norm,
        positions,
        max_positions: 8,
        position_offset: if positions == Positions::Learned {
            2
        } else {
            0
        },
        rope_theta: 10_000.0,
        rope_scaling: None,
        rope_interleaved: false,
        relative_buckets: 0,
        relative_max_distance: 0,
        sliding_window: 0,
        sliding_layers: Vec::new(),
        attn_softcap: 0.0,
        final_softcap: 0.0,
        scale_embedding: true,
        attention_scale: None,
        logits_scale: if pre_norm { 1.0 } else { 0.8 },
        bidirectional: false,
        embed_dim: None,
        attention: None,
        input_feeding: false,
        bos_id: None,
        eos_ids: vec![2],
        pad_id: Some(0),
        unk_id: None,
        decoder_start_id: (arch == Arch::Seq2Seq).then_some(0),
    };
    let structure = Structure {
        bias: norm == Norm::LayerNorm,
        tied_output: arch == Arch::Seq2Seq,
        embed_norm: !pre_norm,
    };
    let m = Transformer::new(arch, &cfg, structure).expect("valid tiny model");
    let i = ly::IGNORE;
    let batch = if arch == Arch::Seq2Seq {
        Batch {
            b: 2,
            s: 4,
            src: vec![5, 6, 7, 2, 8, 2, 0, 0],
            src_len: vec![4, 2],
            t: 3,
            tgt: vec![0, 9, 4, 0, 3, 0],
            tgt_len: vec![3, 2],
            labels: vec![9, 4, 2, 3, 2, i],
        }
    } else {
        Batch {
            b: 2,
            s: 0,
            t: 4,
            tgt: vec![5, 6, 7, 8, 3, 4, 0, 0],
            tgt_len: vec![4, 2],
            labels: vec![6, 7, 8, 2, 4, 2, i, i],
            ..Batch::default()
        }
    };
    (m, batch)
}

/// Checks every parameter tensor of a whole model: the gradient of the label-smoothed loss
/// against finite differences, one tensor perturbed at a time; each tensor must get some
/// gradient. `scale` enlarges the initial weights so every path carries a visible gradient.
fn check_net(net: Net, batch: &Batch, seed: u64, scale: f32) {
    let pool = Pool::single();
    let c = ctx(&pool);
    let mut p = net.init(seed);
    p.iter_mut().for_each(|v| *v *= scale);
    let mut acts = NetActs::default();
    let mut g = vec![0f32; net.len()];
    net.train_step(c, &p, &mut g, batch, &mut acts, 0.1, 1.0, None);
    let mut eval = NetActs::default();
    let mut loss = |q: &[f32]| net.eval_loss(c, q, batch, &mut eval, 0.1).loss;
    for t in net.params() {
        let r = t.range();
        let mut full = p.clone();
        check(&t.name, &p[r.clone()], &g[r.clone()], 2, 2e-3, &mut |x| {
            full[r.clone()].copy_from_slice(x);
            loss(&full)
        });
        assert!(g[r].iter().any(|&v| v != 0.0), "{}: no gradient", t.name);
    }
}

fn check_model(m: &Transformer, batch: &Batch) {
    check_net(m.clone().into(), batch, 11, 1.0);
}

#[test]
fn seq2seq_pre_norm_sinusoidal_gradients() {
    let (m, b) = tiny(
        Arch::Seq2Seq,
        true,
        Positions::Sinusoidal,
        Norm::LayerNorm,
        false,
        None,
    );
    check_model(&m, &b);
}

#[test]
fn seq2seq_post_norm_learned_positions_gradients() {
    let (m, b) = tiny(
        Arch::Seq2Seq,
        false,
        Positions::Learned,
        Norm::LayerNorm,
        false,
        None,
    );
    check_model(&m, &b);
}

/// The decoder with its own heads (one, so a wider head and another attention scale) and
/// feed-forward width.
#[test]
fn seq2seq_decoder_with_its_own_heads_and_ffn_gradients() {
    let (m, b) = tiny(
        Arch::Seq2Seq,
        true,
        Positions::Sinusoidal,
        Norm::LayerNorm,
        false,
        None,
    );
    let mut cfg = m.config.clone();
    (cfg.decoder_heads, cfg.decoder_ffn_dim) = (Some(1), Some(6));
    let structure = Structure {
        bias: true,
        tied_output: true,
        embed_norm: false,
    };
    let m = Transformer::new(Arch::Seq2Seq, &cfg, structure).unwrap();
    let shape = |n: &str| m.params.iter().find(|p| p.name == n).unwrap().shape.clone();
    assert_eq!(shape("decoder.layers.0.ffn.up.weight"), [6, 8]);
    assert_eq!(shape("encoder.layers.0.ffn.up.weight"), [12, 8]);
    check_model(&m, &b);
}

#[test]
fn decoder_only_rotary_rmsnorm_swiglu_gqa_gradients() {
    let (m, b) = tiny(
        Arch::DecoderOnly,
        true,
        Positions::Rotary,
        Norm::RmsNorm,
        true,
        Some(1),
    );
    check_model(&m, &b);
}

#[test]
fn dropout_gradient_follows_the_mask() {
    let mut rng = Rng::new(8);
    let mut x = vec![1f32; 1000];
    let mut mask = vec![0f32; 1000];
    ly::dropout_forward(&mut x, 0.25, &mut rng, &mut mask);
    let dropped = mask.iter().filter(|&&m| m == 0.0).count();
    assert!(
        (200..300).contains(&dropped),
        "{dropped} of 1000 dropped at p = 0.25"
    );
    assert!(
        x.iter()
            .zip(&mask)
            .all(|(a, b)| a == b && (*b == 0.0 || (*b - 4.0 / 3.0).abs() < 1e-6))
    );
    let mut d = vec![1f32; 1000];
    ly::dropout_backward(&mut d, &mask);
    assert_eq!(d, mask);
}

/// A tiny LSTM model and a padded batch (sources of 4 and 2 tokens, targets of 3 and 2).
fn tiny_lstm(
    attention: LstmAttention,
    bidirectional: bool,
    feeding: bool,
    layers: usize,
    tied: bool,
) -> (Lstm, Batch) {
    let (_, mut batch) = tiny(
        Arch::Seq2Seq,
        true,
        Positions::Sinusoidal,
        Norm::LayerNorm,
        false,
        None,
    );
    batch.labels[5] = super::layers::IGNORE;
    let cfg = Config {
        vocab_size: 11,
        d_model: 6,
        encoder_layers: layers,
        decoder_layers: layers,
        heads: 0,
        ffn_dim: 0,
        decoder_heads: None,
        decoder_ffn_dim: None,
        positions: Positions::None,
        bidirectional,
        embed_dim: if tied { None } else { Some(5) },
        attention: Some(attention),
        input_feeding: feeding,
        ..tiny(
            Arch::Seq2Seq,
            true,
            Positions::Sinusoidal,
            Norm::LayerNorm,
            false,
            None,
        )
        .0
        .config
    };
    (Lstm::new(&cfg, tied).expect("valid tiny LSTM"), batch)
}

fn check_lstm(m: &Lstm, batch: &Batch) {
    check_net(m.clone().into(), batch, 13, 2.0);
}

#[test]
fn lstm_bidirectional_general_input_feeding_gradients() {
    let (m, b) = tiny_lstm(LstmAttention::General, true, true, 2, false);
    check_lstm(&m, &b);
}

#[test]
fn lstm_unidirectional_dot_tied_gradients() {
    let (m, b) = tiny_lstm(LstmAttention::Dot, false, false, 1, true);
    check_lstm(&m, &b);
}

#[test]
fn lstm_additive_gradients() {
    let (m, b) = tiny_lstm(LstmAttention::Additive, true, true, 1, false);
    check_lstm(&m, &b);
}
