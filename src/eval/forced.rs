//! Teacher-forced passes through the runtime: every model is fed the same known tokens, and a
//! visitor sees, at each scored position, each model's logits and the token that comes next.
//! Perplexity reads one model's; the divergence of a quantized model, two models' side by side.

use crate::error::{Error, Result};
use crate::format::Arch;
use crate::model::{Limits, Model, Session};

/// What a pass shows at each scored position: each model's logits row (in the order the models
/// were given) and the target token.
pub(crate) type Visit<'a> = dyn FnMut(&[&[f32]], u32) + 'a;

/// At most this many models go through a pass side by side (a model and its reference).
const MODELS: usize = 2;

/// One session per model, each sized by `limits`.
fn sessions(models: &[&Model], limits: Limits) -> Result<Vec<Session>> {
    assert!((1..=MODELS).contains(&models.len()), "one or two models");
    models.iter().map(|m| Session::new(m, limits)).collect()
}

/// Shows `visit` every session's logits row of input `i` and the target, without allocating.
fn show(sessions: &[Session], vocab: usize, i: usize, target: u32, visit: &mut Visit) {
    let mut rows: [&[f32]; MODELS] = [&[]; MODELS];
    for (row, s) in rows.iter_mut().zip(sessions) {
        *row = &s.logits()[i * vocab..(i + 1) * vocab];
    }
    visit(&rows[..sessions.len()], target);
}

/// Decoder-only models on `seqs`, each cut into windows of at most `window` tokens scored on
/// their own: token `t` of a window is visited with the logits after tokens `0..t`. `batch`
/// windows go through together. Returns the number of windows.
pub(crate) fn decoder_only(
    models: &[&Model],
    seqs: &[Vec<u32>],
    window: usize,
    batch: usize,
    visit: &mut Visit,
) -> Result<usize> {
    if let Some(m) = models.iter().find(|m| m.arch() != Arch::DecoderOnly) {
        return Err(Error::Unsupported(format!(
            "perplexity needs a language model (decoder-only), not {}",
            m.arch().as_str()
        )));
    }
    let window = window.max(2);
    let mut windows: Vec<&[u32]> = seqs
        .iter()
        .flat_map(|s| s.chunks(window))
        .filter(|w| w.len() >= 2)
        .collect();
    windows.sort_by_key(|w| std::cmp::Reverse(w.len()));
    let longest = windows.first().map_or(2, |w| w.len());
    let batch = batch.clamp(1, windows.len().max(1));
    let limits = Limits {
        max_batch: batch,
        max_input_len: 1,
        max_new_tokens: longest - 1,
        beams: 1,
        ..Default::default()
    };
    let mut sessions = sessions(models, limits)?;
    let vocab = models[0].config().vocab_size;
    let mut next = Vec::with_capacity(batch);
    for group in windows.chunks(batch) {
        let firsts: Vec<&[u32]> = group.iter().map(|w| &w[..1]).collect();
        for s in &mut sessions {
            s.start(&firsts)?;
        }
        let len = group[0].len();
        for t in 1..len {
            for (i, w) in group.iter().enumerate() {
                if let Some(&target) = w.get(t) {
                    show(&sessions, vocab, i, target, visit);
                }
            }
            if t + 1 < len {
                // Windows already scored to their end take their first id again (ignored).
                next.clear();
                next.extend(group.iter().map(|w| *w.get(t).unwrap_or(&w[0])));
                for s in &mut sessions {
                    s.step(&next)?;
                }
            }
        }
    }
    Ok(windows.len())
}

/// Encoder-decoder models on `(source, labels)` pairs: the decoder reads its start id and the
/// labels but the last, and each label is visited with the logits before it. Sources and label
/// sequences longer than the positions are cut. Returns the pairs scored and how many were cut.
pub(crate) fn seq2seq(
    models: &[&Model],
    pairs: &[(Vec<u32>, Vec<u32>)],
    batch: usize,
    visit: &mut Visit,
) -> Result<(usize, usize)> {
    let mut start = None;
    for m in models {
        match (m.arch(), m.config().decoder_start_id) {
            (Arch::DecoderOnly, _) | (_, None) => {
                return Err(Error::Unsupported(format!(
                    "the perplexity of source/target pairs needs an encoder-decoder, not {}",
                    m.arch().as_str()
                )));
            }
            (_, Some(id)) => start = start.or(Some(id)),
        }
    }
    let start = start.expect("at least one model");
    let cap = models
        .iter()
        .filter_map(|m| m.max_positions())
        .min()
        .unwrap_or(usize::MAX);
    let mut truncated = 0;
    let mut cut: Vec<(&[u32], &[u32])> = pairs
        .iter()
        .filter(|(s, l)| !s.is_empty() && !l.is_empty())
        .map(|(s, l)| {
            truncated += usize::from(s.len() > cap || l.len() > cap);
            (&s[..s.len().min(cap)], &l[..l.len().min(cap)])
        })
        .collect();
    cut.sort_by_key(|(s, l)| std::cmp::Reverse((l.len(), s.len())));
    let longest = |f: fn(&(&[u32], &[u32])) -> usize| cut.iter().map(f).max().unwrap_or(1);
    let batch = batch.clamp(1, cut.len().max(1));
    let limits = Limits {
        max_batch: batch,
        max_input_len: longest(|p| p.0.len()),
        // The decoder reads its start id and all labels but the last: as many positions as
        // labels, which the session counts as the start and `labels − 1` new tokens.
        max_new_tokens: longest(|p| p.1.len()).saturating_sub(1).max(1),
        beams: 1,
        ..Default::default()
    };
    let mut sessions = sessions(models, limits)?;
    let vocab = models[0].config().vocab_size;
    let mut next = Vec::with_capacity(batch);
    for group in cut.chunks(batch) {
        let sources: Vec<&[u32]> = group.iter().map(|p| p.0).collect();
        next.clear();
        next.resize(group.len(), start);
        for s in &mut sessions {
            s.start(&sources)?;
        }
        for t in 0..group[0].1.len() {
            for s in &mut sessions {
                s.step(&next)?;
            }
            for (i, (_, labels)) in group.iter().enumerate() {
                if let Some(&label) = labels.get(t) {
                    show(&sessions, vocab, i, label, visit);
                }
            }
            // Pairs already scored to their end feed their first label again (ignored).
            next.clear();
            next.extend(group.iter().map(|p| *p.1.get(t).unwrap_or(&p.1[0])));
        }
    }
    Ok((cut.len(), truncated))
}
