//! Evaluation: generating for a test set with the runtime and scoring it against references,
//! what `quill eval` and the trainer's evaluations run (no trainer needed).
//!
//! - [`metrics`]: BLEU and chrF, sacreBLEU-compatible (held to the real sacrebleu's goldens);
//!   [`rouge`]: ROUGE-1/2/L F1, `rouge-score`-compatible (held to its goldens), with or without
//!   its stemmer ([`porter`]: NLTK's Porter stemmer, held to NLTK's stems);
//! - [`translate`]: generate for many inputs in length-sorted batches, through the text layer
//!   (`decode::text`), so the texts are what every other front end shows; an encoder-decoder's
//!   input longer than its positions is cut to its first tokens (end-of-sequence kept) and
//!   counted in [`Translations::truncated`], which `quill eval` reports;
//! - [`evaluate`]: translate and score; [`read_pairs`]: `source<TAB>reference` test sets.
//!
//! Try it: `quill eval models/en-de-ui.quill test.tsv`.

pub mod metrics;
pub mod porter;
pub mod rouge;

mod forced;

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::time::Instant;

use crate::decode::{GenerateOptions, Strategy, generate, text};
use crate::error::{Error, Result};
use crate::model::{Limits, Model, Session};
use metrics::{Bleu, corpus_bleu, corpus_chrf};
use rouge::{Rouge, corpus_rouge, corpus_rouge_stemmed};

/// Outputs of [`translate`].
pub struct Translations {
    /// One per input, in input order.
    pub texts: Vec<String>,
    /// Tokens generated in all (end-of-sequence included).
    pub tokens: usize,
    pub seconds: f64,
    /// Inputs longer than the model takes, cut to their first [`Translations::max_input_len`]
    /// tokens (encoder-decoders only; a decoder-only model's prompt too long is an error).
    pub truncated: usize,
    pub max_input_len: usize,
}

/// `full` (an input with the tokenizer's special tokens) cut to `max` ids: the special prefix
/// and suffix the tokenizer added around `plain` (the same text without them: language tags,
/// end-of-sequence) are kept, the text's ids are cut at the end. `full` itself when it fits.
pub fn truncate_input(full: &[u32], plain: &[u32], max: usize) -> Vec<u32> {
    if full.len() <= max {
        return full.to_vec();
    }
    let at = (0..=full.len().saturating_sub(plain.len()))
        .find(|&k| full[k..].starts_with(plain))
        .filter(|_| !plain.is_empty());
    match at {
        Some(k) if full.len() - plain.len() < max => {
            let (prefix, suffix) = (&full[..k], &full[k + plain.len()..]);
            let keep = max - prefix.len() - suffix.len();
            [prefix, &plain[..keep], suffix].concat()
        }
        _ => full[..max].to_vec(),
    }
}

/// Translates (or summarizes, or continues) `inputs` with `options`, `batch` inputs at a time
/// (sorted by length so batches waste little); each input as the model's task defines it
/// ([`text::task_input`]); the texts are what users see of the outputs.
pub fn translate(
    model: &Model,
    inputs: &[String],
    options: &GenerateOptions,
    batch: usize,
) -> Result<Translations> {
    let t0 = Instant::now();
    let task = text::TaskInput::new(model)?;
    let mut ids: Vec<Vec<u32>> = inputs.iter().map(|t| task.ids(t)).collect::<Result<_>>()?;
    let mut truncated = 0;
    let cap = match model.max_positions() {
        Some(p) if model.arch() != crate::format::Arch::DecoderOnly => p,
        _ => usize::MAX,
    };
    for (v, t) in ids.iter_mut().zip(inputs) {
        if v.len() > cap {
            *v = truncate_input(v, &text::encode(model, t, false)?, cap);
            truncated += 1;
        }
    }
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
            tokens += hyps[0].ids.len();
            texts[i] = text::text_of(model, &hyps[0].ids)?;
        }
    }
    Ok(Translations {
        texts,
        tokens,
        seconds: t0.elapsed().as_secs_f64(),
        truncated,
        max_input_len: limits.max_input_len,
    })
}

/// A language model's perplexity on texts ([`perplexity`]).
#[derive(Clone, Debug, serde::Serialize)]
pub struct Perplexity {
    /// exp(nll / tokens).
    pub perplexity: f64,
    /// Σ −ln p(token | the tokens before it in its window), over the scored tokens.
    pub nll: f64,
    /// Tokens scored: every token but the first of each window.
    pub tokens: usize,
    /// Windows the texts were cut into (a text longer than the model's window is cut); for an
    /// encoder-decoder, the pairs.
    pub windows: usize,
    /// Encoder-decoder pairs whose source or target was cut to the model's positions.
    pub truncated: usize,
    pub seconds: f64,
}

impl Perplexity {
    fn of(nll: f64, tokens: usize, windows: usize, truncated: usize, t0: Instant) -> Perplexity {
        Perplexity {
            perplexity: (nll / tokens.max(1) as f64).exp(),
            nll,
            tokens,
            windows,
            truncated,
            seconds: t0.elapsed().as_secs_f64(),
        }
    }
}

/// The perplexity of a decoder-only model on `seqs` of token ids, each cut into windows of at
/// most `window` tokens scored on their own: token `t` of a window is scored by the
/// log-softmax of the model's logits after tokens `0..t`. `batch` windows go through the
/// runtime together (one decoding step each token), so the figure is the shipped model's,
/// quantized weights and kernels included.
pub fn perplexity_ids(
    model: &Model,
    seqs: &[Vec<u32>],
    window: usize,
    batch: usize,
) -> Result<Perplexity> {
    let t0 = Instant::now();
    let (mut nll, mut tokens) = (0f64, 0usize);
    let windows = forced::decoder_only(&[model], seqs, window, batch, &mut |rows, target| {
        nll -= log_softmax_at(rows[0], target as usize);
        tokens += 1;
    })?;
    Ok(Perplexity::of(nll, tokens, windows, 0, t0))
}

/// The perplexity of an encoder-decoder model on `(source, labels)` pairs of ids, as
/// `transformers` computes its loss with `labels=`: the decoder reads its start id and the
/// labels but the last, and each label is scored by the log-softmax of the logits before it.
/// A source or label sequence longer than the model's positions is cut to them (counted in
/// `truncated`). `batch` pairs go through the runtime together, one decoding step a label.
pub fn perplexity_pairs_ids(
    model: &Model,
    pairs: &[(Vec<u32>, Vec<u32>)],
    batch: usize,
) -> Result<Perplexity> {
    let t0 = Instant::now();
    let (mut nll, mut tokens) = (0f64, 0usize);
    let (n, truncated) = forced::seq2seq(&[model], pairs, batch, &mut |rows, label| {
        nll -= log_softmax_at(rows[0], label as usize);
        tokens += 1;
    })?;
    Ok(Perplexity::of(nll, tokens, n, truncated, t0))
}

/// How far a model's next-token distributions are from a reference model's (the same model
/// before quantization, say) on the same teacher-forced tokens: what `llama-perplexity
/// --kl-divergence` reports for llama.cpp's quantizations.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Divergence {
    /// Mean over the scored positions of KL(reference ‖ model), in nats.
    pub kl_mean: f64,
    /// The largest KL of one position.
    pub kl_max: f64,
    /// Positions where both models rank the same token first, as a fraction.
    pub top1_agreement: f64,
    /// Perplexities of the model and of the reference on the targets.
    pub perplexity: f64,
    pub reference_perplexity: f64,
    pub tokens: usize,
}

/// [`Divergence`] of `model` from `reference` (same vocabulary and architecture) on
/// decoder-only sequences (`seqs`, windows as [`perplexity_ids`]) or encoder-decoder pairs
/// (`pairs`, as [`perplexity_pairs_ids`]), whichever the architecture takes.
pub fn divergence_ids(
    model: &Model,
    reference: &Model,
    seqs: &[Vec<u32>],
    pairs: &[(Vec<u32>, Vec<u32>)],
    window: usize,
    batch: usize,
) -> Result<Divergence> {
    let (a, b) = (model.config(), reference.config());
    if model.arch() != reference.arch() || a.vocab_size != b.vocab_size {
        return Err(Error::InvalidArgument(format!(
            "the reference is a {} model of {} tokens, the model a {} of {}",
            reference.arch().as_str(),
            b.vocab_size,
            model.arch().as_str(),
            a.vocab_size
        )));
    }
    let (mut kl_sum, mut kl_max, mut same, mut tokens) = (0f64, 0f64, 0usize, 0usize);
    let (mut nll, mut ref_nll) = (0f64, 0f64);
    let (mut lp, mut lr) = (Vec::new(), Vec::new());
    let mut visit = |rows: &[&[f32]], target: u32| {
        log_softmax(rows[0], &mut lp);
        log_softmax(rows[1], &mut lr);
        let kl: f64 = lr.iter().zip(&lp).map(|(r, m)| r.exp() * (r - m)).sum();
        kl_sum += kl;
        kl_max = kl_max.max(kl);
        same += usize::from(argmax(rows[0]) == argmax(rows[1]));
        nll -= lp[target as usize];
        ref_nll -= lr[target as usize];
        tokens += 1;
    };
    let models = [model, reference];
    if model.arch() == crate::format::Arch::DecoderOnly {
        forced::decoder_only(&models, seqs, window, batch, &mut visit)?;
    } else {
        forced::seq2seq(&models, pairs, batch, &mut visit)?;
    }
    let n = tokens.max(1) as f64;
    Ok(Divergence {
        kl_mean: kl_sum / n,
        kl_max,
        top1_agreement: same as f64 / n,
        perplexity: (nll / n).exp(),
        reference_perplexity: (ref_nll / n).exp(),
        tokens,
    })
}

/// ln softmax(row), in f64, into `out`.
fn log_softmax(row: &[f32], out: &mut Vec<f64>) {
    let max = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
    let sum: f64 = row.iter().map(|&x| (x as f64 - max).exp()).sum();
    let ln = sum.ln();
    out.clear();
    out.extend(row.iter().map(|&x| x as f64 - max - ln));
}

/// The first index of the largest value.
fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in row.iter().enumerate() {
        if x > row[best] {
            best = i;
        }
    }
    best
}

/// [`perplexity_pairs_ids`] of `(source, reference)` texts, encoded as `quill-train` encodes
/// them: the source with the tokenizer's special tokens, the reference without, ended by the
/// model's first end-of-sequence id.
pub fn perplexity_pairs(
    model: &Model,
    pairs: &[(String, String)],
    batch: usize,
) -> Result<Perplexity> {
    perplexity_pairs_ids(model, &pair_ids(model, pairs)?, batch)
}

/// `(source, reference)` texts as [`perplexity_pairs`] encodes them.
fn pair_ids(model: &Model, pairs: &[(String, String)]) -> Result<Vec<(Vec<u32>, Vec<u32>)>> {
    let eos = model.config().eos_ids.first().copied();
    let task = text::TaskInput::new(model)?;
    pairs
        .iter()
        .map(|(s, r)| {
            let mut labels = text::encode(model, r, false)?;
            labels.extend(eos);
            Ok((task.ids(s)?, labels))
        })
        .collect()
}

/// Texts as [`perplexity`] encodes them, and the window it cuts them into.
fn text_ids(model: &Model, texts: &[String]) -> Result<(Vec<Vec<u32>>, usize)> {
    let eos = model.config().eos_ids.first().copied();
    let seqs = texts
        .iter()
        .map(|t| {
            let mut ids = text::encode(model, t, true)?;
            ids.extend(eos);
            Ok(ids)
        })
        .collect::<Result<_>>()?;
    Ok((seqs, model.max_positions().unwrap_or(1024).min(1024)))
}

/// [`divergence_ids`] on texts (a language model) or `(source, reference)` pairs (an
/// encoder-decoder), encoded as [`perplexity`] and [`perplexity_pairs`] encode them.
pub fn divergence(
    model: &Model,
    reference: &Model,
    texts: &[String],
    pairs: &[(String, String)],
    batch: usize,
) -> Result<Divergence> {
    if model.arch() == crate::format::Arch::DecoderOnly {
        let (seqs, window) = text_ids(model, texts)?;
        divergence_ids(model, reference, &seqs, &[], window, batch)
    } else {
        divergence_ids(model, reference, &[], &pair_ids(model, pairs)?, 0, batch)
    }
}

/// ln softmax(row)[i], in f64.
fn log_softmax_at(row: &[f32], i: usize) -> f64 {
    let max = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
    let sum: f64 = row.iter().map(|&x| (x as f64 - max).exp()).sum();
    row[i] as f64 - max - sum.ln()
}

/// [`perplexity_ids`] of texts: each encoded with the tokenizer's special tokens (a
/// beginning-of-sequence id where the model has one) and ended by the model's first
/// end-of-sequence id, as `quill-train` reads a language-model corpus (one text a line). The
/// window: the model's positions, at most 1,024.
pub fn perplexity(model: &Model, texts: &[String], batch: usize) -> Result<Perplexity> {
    let (seqs, window) = text_ids(model, texts)?;
    perplexity_ids(model, &seqs, window, batch)
}

/// Scores of a translated test set.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Scores {
    pub bleu: f64,
    pub chrf: f64,
    /// ROUGE-1/2/L F1 (`rouge-score`): the summarization scores.
    pub rouge: Rouge,
    /// Whether ROUGE stemmed the words (`rouge-score`'s `use_stemmer=True`).
    pub rouge_stemmer: bool,
    pub sentences: usize,
    /// Sources cut to the model's longest input ([`Translations::truncated`]).
    pub truncated: usize,
    pub max_input_len: usize,
    pub tokens_per_s: f64,
    pub seconds: f64,
    #[serde(skip)]
    pub detail: Option<Bleu>,
}

/// Translates the sources of `pairs` and scores them against the targets (ROUGE without
/// stemming).
pub fn evaluate(
    model: &Model,
    pairs: &[(String, String)],
    options: &GenerateOptions,
    batch: usize,
) -> Result<(Scores, Vec<String>)> {
    evaluate_with(model, pairs, options, batch, false)
}

/// [`evaluate`], ROUGE with `rouge-score`'s Porter stemmer when `rouge_stemmer`.
pub fn evaluate_with(
    model: &Model,
    pairs: &[(String, String)],
    options: &GenerateOptions,
    batch: usize,
    rouge_stemmer: bool,
) -> Result<(Scores, Vec<String>)> {
    let sources: Vec<String> = pairs.iter().map(|p| p.0.clone()).collect();
    let refs: Vec<&str> = pairs.iter().map(|p| p.1.as_str()).collect();
    let out = translate(model, &sources, options, batch)?;
    let hyps: Vec<&str> = out.texts.iter().map(String::as_str).collect();
    let bleu = corpus_bleu(&hyps, &refs);
    let scores = Scores {
        bleu: bleu.score,
        chrf: corpus_chrf(&hyps, &refs),
        rouge: if rouge_stemmer {
            corpus_rouge_stemmed(&hyps, &refs)
        } else {
            corpus_rouge(&hyps, &refs)
        },
        rouge_stemmer,
        sentences: pairs.len(),
        truncated: out.truncated,
        max_input_len: out.max_input_len,
        tokens_per_s: out.tokens as f64 / out.seconds.max(1e-9),
        seconds: out.seconds,
        detail: Some(bleu),
    };
    Ok((scores, out.texts))
}

/// `source<TAB>target` of a TSV line (further columns ignored); `None` when either is empty.
pub fn parse_pair(line: &str) -> Option<(&str, &str)> {
    let line = line.trim_end_matches(['\n', '\r']);
    let (s, t) = line.split_once('\t')?;
    let t = t.split('\t').next().unwrap_or(t);
    (!s.trim().is_empty() && !t.trim().is_empty()).then_some((s, t))
}

/// Calls `f` on each line of a text file (without its line ending) until it returns false.
pub fn for_each_line(path: &Path, mut f: impl FnMut(&str) -> bool) -> Result<()> {
    let io = |e: std::io::Error| Error::io(path.display().to_string(), e);
    let mut r = BufReader::new(File::open(path).map_err(io)?);
    let mut buf = String::new();
    loop {
        buf.clear();
        if r.read_line(&mut buf).map_err(io)? == 0 || !f(buf.trim_end_matches(['\n', '\r'])) {
            return Ok(());
        }
    }
}

/// Every `source<TAB>reference` pair of a TSV test set.
pub fn read_pairs(path: &Path) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for_each_line(path, |l| {
        if let Some((s, t)) = parse_pair(l) {
            out.push((s.to_string(), t.to_string()));
        }
        true
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::truncate_input;

    #[test]
    fn truncation_keeps_the_special_tokens_around_the_text() {
        // A tag before the text and end-of-sequence after it, as a multilingual tokenizer adds.
        let plain: Vec<u32> = (10..20).collect();
        let full = [&[7u32][..], &plain, &[2]].concat();
        assert_eq!(truncate_input(&full, &plain, 12), full);
        assert_eq!(truncate_input(&full, &plain, 5), vec![7, 10, 11, 12, 2]);
        assert_eq!(truncate_input(&full, &plain, 3), vec![7, 10, 2]);
        // No room for any text between them: the first ids, not a text-less input.
        assert_eq!(truncate_input(&full, &plain, 2), vec![7, 10]);
        // Special tokens that do not surround the text as one run: cut at the end.
        assert_eq!(truncate_input(&[1, 2, 3, 4], &[9, 9], 3), vec![1, 2, 3]);
    }
}
