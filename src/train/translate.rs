//! Translating a test set with the runtime, and scoring it: what `quill eval` and the trainer's
//! evaluations run.

use std::time::Instant;

use super::metrics::{Bleu, corpus_bleu, corpus_chrf};
use crate::decode::{GenerateOptions, Strategy, generate};
use crate::error::Result;
use crate::model::{Limits, Model, Session};

/// Outputs of [`translate`].
pub struct Translations {
    /// One per input, in input order.
    pub texts: Vec<String>,
    /// Tokens generated in all (end-of-sequence included).
    pub tokens: usize,
    pub seconds: f64,
}

/// Translates (or continues) `inputs` with `options`, `batch` inputs at a time (sorted by length
/// so batches waste little), and decodes the outputs with the model's target tokenizer.
pub fn translate(
    model: &Model,
    inputs: &[String],
    options: &GenerateOptions,
    batch: usize,
) -> Result<Translations> {
    let t0 = Instant::now();
    let tok = model.tokenizer()?;
    let target = model.target_tokenizer()?;
    let special = model.special_ids();
    let ids: Vec<Vec<u32>> = inputs
        .iter()
        .map(|t| tok.encode(t, true))
        .collect::<Result<_>>()?;
    let mut order: Vec<usize> = (0..ids.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(ids[i].len()));
    let beams = match &options.strategy {
        Strategy::Beam(b) => b.beams,
        _ => 1,
    };
    let batch = batch.max(1);
    let longest = ids.iter().map(Vec::len).max().unwrap_or(1).max(1);
    let limits = Limits {
        max_batch: batch.min(ids.len().max(1)),
        max_input_len: longest,
        max_new_tokens: options.max_new_tokens,
        beams,
        ..Default::default()
    }
    .fit(model);
    let mut session = Session::new(model, limits)?;
    let mut texts = vec![String::new(); ids.len()];
    let mut tokens = 0;
    for group in order.chunks(batch) {
        let refs: Vec<&[u32]> = group.iter().map(|&i| ids[i].as_slice()).collect();
        let out = generate(&mut session, &refs, options, None, None)?;
        for (&i, hyps) in group.iter().zip(&out.outputs) {
            let h = &hyps[0];
            tokens += h.ids.len();
            let kept: Vec<u32> = h
                .ids
                .iter()
                .copied()
                .filter(|t| !special.contains(t))
                .collect();
            texts[i] = target.decode(&kept, true)?;
        }
    }
    Ok(Translations {
        texts,
        tokens,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// Scores of a translated test set.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Scores {
    pub bleu: f64,
    pub chrf: f64,
    pub sentences: usize,
    pub tokens_per_s: f64,
    pub seconds: f64,
    #[serde(skip)]
    pub detail: Option<Bleu>,
}

/// Translates the sources of `pairs` and scores them against the targets.
pub fn evaluate(
    model: &Model,
    pairs: &[(String, String)],
    options: &GenerateOptions,
    batch: usize,
) -> Result<(Scores, Vec<String>)> {
    let sources: Vec<String> = pairs.iter().map(|p| p.0.clone()).collect();
    let refs: Vec<&str> = pairs.iter().map(|p| p.1.as_str()).collect();
    let out = translate(model, &sources, options, batch)?;
    let hyps: Vec<&str> = out.texts.iter().map(String::as_str).collect();
    let bleu = corpus_bleu(&hyps, &refs);
    let scores = Scores {
        bleu: bleu.score,
        chrf: corpus_chrf(&hyps, &refs),
        sentences: pairs.len(),
        tokens_per_s: out.tokens as f64 / out.seconds.max(1e-9),
        seconds: out.seconds,
        detail: Some(bleu),
    };
    Ok((scores, out.texts))
}
