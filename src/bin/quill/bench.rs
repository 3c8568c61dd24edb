//! `quill bench`: the figures a device cares about, measured the way the peer engines'
//! benchmarks measure them (batch of random inputs, exactly N new tokens, median of runs).

use std::path::Path;
use std::time::Instant;

use quill::decode::{BeamOptions, GenerateOptions, Strategy, generate};
use quill::{Arch, Limits, Model, OpenOptions, Session};
use serde::Serialize;

#[derive(Serialize)]
pub struct BenchResult {
    pub model: String,
    pub arch: String,
    pub isa: String,
    pub threads: usize,
    pub batch: usize,
    pub input_len: usize,
    pub new_tokens: usize,
    /// Opening and validating the file and gathering the weights (median), ms.
    pub open_ms: f64,
    /// From `start` (encoder or prompt prefill) to the first token's logits (median), ms.
    pub first_token_ms: f64,
    /// From opening the file to the first token's logits, one cold-ish run, ms.
    pub open_to_first_token_ms: f64,
    /// Generated tokens per second over the whole call, encoder or prefill included (median over
    /// runs; all sequences counted) — the peers' benchmark figure.
    pub tokens_per_s: f64,
    /// Generated tokens per second after the first (the incremental step rate).
    pub decode_tokens_per_s: f64,
    /// Peak resident memory of the process, MiB.
    pub peak_rss_mib: f64,
    /// Beam search (when --beams > 1): milliseconds per decoding step of the whole batch and the
    /// same for greedy decoding, exactly `new_tokens` steps, median of runs.
    pub beams: usize,
    pub beam_step_ms: Option<f64>,
    pub greedy_step_ms: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Peak resident set size from /proc (Linux); 0 elsewhere.
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

pub fn run(
    path: &Path,
    input_len: usize,
    new_tokens: usize,
    batch: usize,
    threads: usize,
    runs: usize,
    beams: usize,
) -> quill::Result<BenchResult> {
    let runs = runs.max(1);
    let options = OpenOptions {
        threads,
        ..Default::default()
    };
    let t0 = Instant::now();
    let model = Model::open(path, &options)?;
    let open_once = t0.elapsed().as_secs_f64();
    let c = model.config().clone();
    let limits = Limits {
        max_batch: batch,
        max_input_len: input_len,
        max_new_tokens: new_tokens,
        beams: beams.max(1),
        ..Default::default()
    };
    // Deterministic pseudo-random inputs, away from the special ids at the ends of the vocabulary.
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let inputs: Vec<Vec<u32>> = (0..batch)
        .map(|_| {
            (0..input_len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (10 + state % (c.vocab_size as u64 - 20)) as u32
                })
                .collect()
        })
        .collect();
    let refs: Vec<&[u32]> = inputs.iter().map(|v| v.as_slice()).collect();
    let start_token = c.decoder_start_id;
    let first = |s: &mut Session| -> quill::Result<()> {
        s.start(&refs)?;
        if model.arch() != Arch::DecoderOnly {
            s.step(&vec![start_token.expect("seq2seq"); batch])?;
        }
        Ok(())
    };
    // Open → session → first token, once (the file is in the page cache after the open above).
    let t = Instant::now();
    let m2 = Model::open(path, &options)?;
    let mut s2 = Session::new(&m2, limits)?;
    s2.start(&refs)?;
    if m2.arch() != Arch::DecoderOnly {
        s2.step(&vec![start_token.expect("seq2seq"); batch])?;
    }
    let open_to_first = t.elapsed().as_secs_f64();
    drop(s2);
    drop(m2);

    let mut opens = vec![open_once];
    for _ in 1..runs {
        let t = Instant::now();
        drop(Model::open(path, &options)?);
        opens.push(t.elapsed().as_secs_f64());
    }
    let mut s = Session::new(&model, limits)?;
    first(&mut s)?; // warm-up
    let mut ttft = Vec::new();
    let mut rates = Vec::new();
    let mut totals = Vec::new();
    let vocab = c.vocab_size;
    let mut next = vec![0u32; batch];
    for _ in 0..runs {
        let t = Instant::now();
        first(&mut s)?;
        ttft.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        for _ in 1..new_tokens {
            let logits = s.logits();
            for (b, n) in next.iter_mut().enumerate() {
                *n = quill::kernels::scalar::argmax(&logits[b * vocab..(b + 1) * vocab]) as u32;
            }
            s.step(&next)?;
        }
        let dt = t.elapsed().as_secs_f64();
        rates.push(((new_tokens - 1) * batch) as f64 / dt);
        totals.push((new_tokens * batch) as f64 / (dt + ttft.last().expect("pushed above")));
    }
    // Exactly `new_tokens` steps through the decoding loop, greedy and (optionally) beam search.
    let timed = |s: &mut Session, strategy: Strategy| -> quill::Result<f64> {
        let o = GenerateOptions {
            strategy,
            max_new_tokens: new_tokens,
            min_new_tokens: new_tokens,
            ..Default::default()
        };
        let mut v = Vec::new();
        for _ in 0..runs {
            let t = Instant::now();
            generate(s, &refs, &o, None, None)?;
            v.push(t.elapsed().as_secs_f64() * 1e3 / new_tokens as f64);
        }
        Ok(median(v))
    };
    let greedy_step_ms = timed(&mut s, Strategy::Greedy)?;
    let beam_step_ms = if beams > 1 {
        Some(timed(
            &mut s,
            Strategy::Beam(BeamOptions {
                beams,
                ..Default::default()
            }),
        )?)
    } else {
        None
    };
    Ok(BenchResult {
        beams,
        beam_step_ms,
        greedy_step_ms,
        model: path.display().to_string(),
        arch: model.arch().as_str().to_string(),
        isa: model.isa().name().to_string(),
        threads: model.threads(),
        batch,
        input_len,
        new_tokens,
        open_ms: median(opens) * 1e3,
        first_token_ms: median(ttft) * 1e3,
        open_to_first_token_ms: open_to_first * 1e3,
        tokens_per_s: median(totals),
        decode_tokens_per_s: median(rates),
        peak_rss_mib: peak_rss_mib(),
    })
}
