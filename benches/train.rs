//! Training speed: full updates (forward, label-smoothed loss, backward, clipping, AdamW) of the
//! Transformer that `tests/reference/torch_train_speed.py` builds in PyTorch, on the same
//! synthetic batch shapes, printed as one JSON line in the same fields so the two compare as a
//! ratio. Run both in the same session:
//!
//! ```text
//! cargo bench --bench train -- --threads 1
//! ~/quill-ref/venv/bin/python tests/reference/torch_train_speed.py --threads 1
//! ```
//!
//! Flags (same names and defaults as the PyTorch script): --vocab 8000 --d-model 256 --heads 4
//! --ffn 1024 --enc-layers 3 --dec-layers 3 --batch 64 --src-len 24 --tgt-len 24 --steps 20
//! --warmup 3 --threads 1 --dropout 0.1 --ragged --seed 0.

use std::time::Instant;

use quill::format::{Activation, Arch, Config, Norm, Positions};
use quill::kernels::{Pool, kernels};
use quill::rng::Rng;
use quill::train::layers::{Ctx, IGNORE};
use quill::train::model::{Batch, Structure, Transformer};
use quill::train::net::{Net, NetActs};
use quill::train::optim::{AdamW, AdamWOptions, clip_grad_norm};

fn main() {
    let mut flags = std::collections::HashMap::new();
    let mut ragged = false;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--ragged" => ragged = true,
            "--bench" => {}
            a if a.starts_with("--") && i + 1 < args.len() => {
                flags.insert(a.trim_start_matches("--").to_string(), args[i + 1].clone());
                i += 1;
            }
            _ => {}
        }
        i += 1;
    }
    let get = |k: &str, d: f64| flags.get(k).map_or(d, |v| v.parse().expect("a number"));
    let (vocab, d, heads, ffn) = (
        get("vocab", 8000.0) as usize,
        get("d-model", 256.0) as usize,
        get("heads", 4.0) as usize,
        get("ffn", 1024.0) as usize,
    );
    let (enc, dec) = (
        get("enc-layers", 3.0) as usize,
        get("dec-layers", 3.0) as usize,
    );
    let (b, s, t) = (
        get("batch", 64.0) as usize,
        get("src-len", 24.0) as usize,
        get("tgt-len", 24.0) as usize,
    );
    let (steps, warmup, threads) = (
        get("steps", 20.0) as usize,
        get("warmup", 3.0) as usize,
        get("threads", 1.0) as usize,
    );
    let dropout = get("dropout", 0.1) as f32;
    let seed = get("seed", 0.0) as u64;

    let cfg = Config {
        vocab_size: vocab,
        d_model: d,
        encoder_layers: enc,
        decoder_layers: dec,
        heads,
        kv_heads: None,
        head_dim: None,
        ffn_dim: ffn,
        decoder_heads: None,
        decoder_ffn_dim: None,
        activation: Activation::Relu,
        gated_ffn: false,
        norm: Norm::LayerNorm,
        norm_eps: 1e-5,
        pre_norm: true,
        positions: Positions::Sinusoidal,
        max_positions: s.max(t) + 1,
        position_offset: 0,
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
        logits_scale: 1.0,
        bidirectional: false,
        embed_dim: None,
        attention: None,
        input_feeding: false,
        bos_id: Some(2),
        eos_ids: vec![3],
        pad_id: Some(0),
        unk_id: None,
        decoder_start_id: Some(2),
    };
    let structure = Structure {
        bias: true,
        tied_output: true,
        embed_norm: false,
    };
    let mut model: Net = Transformer::new(Arch::Seq2Seq, &cfg, structure)
        .expect("valid config")
        .into();
    model.set_dropout(dropout);
    let mut params = model.init(seed);
    let mut grads = vec![0f32; model.len()];
    let mut opt = AdamW::new(AdamWOptions::default(), model.params(), model.len());
    let pool = Pool::new(threads).expect("threads");
    let ctx = Ctx {
        pool: &pool,
        kern: kernels(),
    };

    // The batches, made before timing (as the PyTorch script does).
    let mut rng = Rng::new(seed + 1);
    let rand_id = |rng: &mut Rng| 4 + (rng.next_u64() % (vocab as u64 - 4)) as u32;
    let batches: Vec<Batch> = (0..warmup + steps)
        .map(|_| {
            let mut batch = Batch {
                b,
                s,
                t,
                ..Batch::default()
            };
            for _ in 0..b {
                let (sl, tl) = if ragged {
                    (
                        s / 2 + (rng.next_u64() % (s - s / 2 + 1) as u64) as usize,
                        t / 2 + (rng.next_u64() % (t - t / 2 + 1) as u64) as usize,
                    )
                } else {
                    (s, t)
                };
                for j in 0..s {
                    batch.src.push(if j < sl { rand_id(&mut rng) } else { 0 });
                }
                batch.src_len.push(sl);
                let ids: Vec<u32> = (0..t).map(|_| rand_id(&mut rng)).collect();
                batch.tgt.push(2);
                batch.tgt.extend(&ids[..t - 1]);
                for (j, &id) in ids.iter().enumerate() {
                    batch.labels.push(if j < tl { id } else { IGNORE });
                }
                let row = batch.tgt.len() - t;
                for j in tl.max(1)..t {
                    batch.tgt[row + j] = 0;
                }
                batch.tgt_len.push(tl);
            }
            batch
        })
        .collect();

    let mut acts = NetActs::default();
    let mut step = |batch: &Batch, n: u64| {
        grads.fill(0.0);
        let total = batch.target_tokens();
        let mut drop = Rng::new(seed ^ n);
        let l = model.train_step(
            ctx,
            &params,
            &mut grads,
            batch,
            &mut acts,
            0.1,
            1.0 / total as f32,
            Some(&mut drop),
        );
        clip_grad_norm(&mut grads, 1.0);
        opt.step(ctx, &mut params, &grads, 5e-4);
        l.loss / l.tokens as f64
    };
    for (n, batch) in batches[..warmup].iter().enumerate() {
        step(batch, n as u64);
    }
    let t0 = Instant::now();
    let mut loss = 0.0;
    for (n, batch) in batches[warmup..].iter().enumerate() {
        loss = step(batch, (warmup + n) as u64);
    }
    let secs = t0.elapsed().as_secs_f64();
    let tokens: usize = batches[warmup..].iter().map(Batch::tokens).sum();
    let tgt: usize = batches[warmup..].iter().map(Batch::target_tokens).sum();
    println!(
        "{}",
        serde_json::json!({
            "framework": "quill", "isa": kernels().isa.name(), "threads": threads,
            "config": {"vocab": vocab, "d_model": d, "heads": heads, "ffn": ffn,
                       "enc_layers": enc, "dec_layers": dec, "batch": b, "src_len": s,
                       "tgt_len": t, "dropout": dropout, "ragged": ragged},
            "steps": steps, "seconds": secs,
            "tokens_per_s": tokens as f64 / secs,
            "tgt_tokens_per_s": tgt as f64 / secs,
            "ms_per_step": 1e3 * secs / steps as f64,
            "params": model.len(), "final_loss": loss,
        })
    );
}
