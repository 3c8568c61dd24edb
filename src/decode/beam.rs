//! The decoding loop for every strategy: greedy and sampling are beam search with one beam and
//! their own choice of token. Beam search follows `transformers` 5 (`GenerationMixin._beam_search`):
//! the `2·beams` best continuations by accumulated log-probability; the best `beams` that do not
//! end the sequence continue; those ending it among the first `beams` ranks are scored
//! `logprob_sum / generated_len^length_penalty` and kept if among the `beams` best finished; at
//! the last step every continuation ends; the search of an input stops when its `beams` finished
//! hypotheses cannot be beaten by the best running beam at its current length, or at the longest
//! it could reach (`EarlyStopping`).

use super::processors::{log_softmax, process, sample};
use super::{
    Callback, CancelHandle, EarlyStopping, Flow, GenerateOptions, Generation, Hypothesis, Rng,
    Strategy, StreamEvent,
};
use crate::error::Result;
use crate::model::Session;

pub(crate) struct Context<'a> {
    pub options: &'a GenerateOptions,
    pub eos: &'a [u32],
    pub max_new: usize,
    /// The decoder start id of a seq2seq model (`None` for decoder-only models).
    pub decoder_start: Option<u32>,
    pub cancel: Option<&'a CancelHandle>,
    /// Stop strings, when the options have any.
    pub stop: Option<StopStrings<'a>>,
}

/// Ends a hypothesis once its text (what a user sees: `decode::text`) contains one of the stop
/// strings (the tokens that produced it are kept, as `transformers`' `stop_strings` does).
pub(crate) struct StopStrings<'a> {
    pub model: &'a crate::model::Model,
    pub strings: &'a [String],
    /// Ids that never show as text (end of sequence, padding, ...).
    pub special: Vec<u32>,
}

impl StopStrings<'_> {
    fn hit(&self, ids: &[u32], tok: u32) -> bool {
        if self.special.contains(&tok) {
            return false;
        }
        // Only the tail can contain a new match: the longest stop string, in tokens, is at most
        // its length in bytes (plus one token of context for the decoder).
        let longest = self.strings.iter().map(String::len).max().unwrap_or(0) + 1;
        let from = ids.len().saturating_sub(longest);
        let mut tail = super::text::visible_ids(&self.special, &ids[from..]);
        let text = |ids: &[u32]| super::text::decode(self.model, ids, true).unwrap_or_default();
        let before = text(&tail);
        tail.push(tok);
        let after = text(&tail);
        // A match that ends in the new token's text.
        self.strings
            .iter()
            .any(|s| after.contains(s.as_str()) && !before.contains(s.as_str()))
    }
}

#[derive(Clone, Debug)]
struct Beam {
    slot: usize,
    ids: Vec<u32>,
    logprobs: Vec<f32>,
    /// Sum of log-probabilities.
    sum: f32,
    /// Per id, the cross-attention alignment (when requested).
    align: Vec<Vec<f32>>,
}

struct InputState {
    /// Prompt (decoder-only) or decoder start id (seq2seq): what processors see before the
    /// generated ids.
    history0: Vec<u32>,
    running: Vec<Beam>,
    /// `(normalized score, hypothesis)`, best first, at most `beams`.
    finished: Vec<(f32, Beam)>,
    /// Still searching (the early-stop heuristic is not satisfied).
    active: bool,
    /// Ids already streamed.
    emitted: usize,
}

/// A continuation: `(accumulated log-prob, running beam index, token, its log-prob)`.
type Cand = (f32, usize, u32, f32);

/// How the loop begins: a fresh batch, or the conversation already in the session (whose
/// logits are current; `history` is what processors see before the reply).
pub(crate) enum Begin<'a> {
    Fresh,
    Continue { history: &'a [u32] },
}

pub(crate) fn run(
    session: &mut Session,
    inputs: &[&[u32]],
    k: usize,
    ctx: &Context,
    mut callback: Option<Callback>,
    begin: Begin,
) -> Result<Generation> {
    let o = ctx.options;
    let vocab = session.model().config().vocab_size;
    // Stopped before the first token: one empty hypothesis per input.
    let stopped_at_start = || Generation {
        outputs: vec![vec![Hypothesis::default()]; inputs.len()],
        stopped: true,
    };
    if ctx.cancel.is_some_and(|c| c.is_cancelled()) {
        return Ok(stopped_at_start());
    }
    if let Begin::Fresh = begin {
        session.set_cancel(ctx.cancel.cloned());
        let started = session.start_beams(inputs, k);
        session.set_cancel(None);
        match started {
            Err(crate::error::Error::Cancelled) => return Ok(stopped_at_start()),
            r => r?,
        }
    }
    let n = inputs.len();
    let mut states: Vec<InputState> = (0..n)
        .map(|i| InputState {
            history0: match (&begin, ctx.decoder_start) {
                (Begin::Continue { history }, _) => history.to_vec(),
                (_, Some(s)) => vec![s],
                (_, None) => inputs[i].to_vec(),
            },
            running: vec![Beam {
                slot: i * k,
                ids: Vec::new(),
                logprobs: Vec::new(),
                sum: 0.0,
                align: Vec::new(),
            }],
            finished: Vec::new(),
            active: true,
            emitted: 0,
        })
        .collect();
    let mut rng = match &o.strategy {
        Strategy::Sample(s) => Some(Rng::new(s.seed)),
        _ => None,
    };
    // Rows of the current logits: (input, running beam index).
    let align = o.return_alignment && ctx.decoder_start.is_some();
    session.record_alignment(align);
    let mut rows: Vec<(usize, usize)> = (0..n).map(|i| (i, 0)).collect();
    if let (Begin::Fresh, Some(start)) = (&begin, ctx.decoder_start) {
        let slots: Vec<usize> = (0..n).map(|i| i * k).collect();
        session.step_slots(&slots, &vec![start; n])?;
    }
    let mut stopped = false;
    let kern = crate::kernels::kernels();
    let mut scratch: Vec<(u32, f32)> = Vec::new();
    let mut history: Vec<u32> = Vec::new();
    for t in 0..ctx.max_new {
        if ctx.cancel.is_some_and(|c| c.is_cancelled()) {
            stopped = true;
            break;
        }
        let last = t + 1 == ctx.max_new;
        // Candidates per input, from its rows.
        let mut cands: Vec<Vec<Cand>> = vec![Vec::new(); n];
        {
            let logits = session.logits_mut();
            for (r, &(i, b)) in rows.iter().enumerate() {
                let st = &states[i];
                let beam = &st.running[b];
                // Processed in place: the session computes fresh logits every step.
                let row_scores = &mut logits[r * vocab..(r + 1) * vocab];
                history.clear();
                history.extend_from_slice(&st.history0);
                history.extend_from_slice(&beam.ids);
                let forced = o.prefix.get(t).copied();
                match &o.strategy {
                    Strategy::Beam(_) => {
                        log_softmax(row_scores);
                        process(o, ctx.eos, ctx.max_new, &history, t, row_scores);
                        if let Some(f) = forced {
                            let lp = row_scores[f as usize];
                            cands[i].push((beam.sum + lp, b, f, lp));
                            continue;
                        }
                        // The best 2k of this beam are enough for the best 2k of the input.
                        let keep = k * (1 + ctx.eos.len()).max(2);
                        let mut top = Vec::with_capacity(keep);
                        crate::kernels::top_k(row_scores, keep, &mut top);
                        cands[i].extend(
                            top.iter()
                                .map(|&(tok, lp)| (beam.sum + lp, b, tok as u32, lp)),
                        );
                    }
                    Strategy::Greedy | Strategy::Sample(_) => {
                        process(o, ctx.eos, ctx.max_new, &history, t, row_scores);
                        let (tok, lp) = if let Some(f) = forced {
                            (f, log_prob(kern, row_scores, f as usize))
                        } else if let (Strategy::Sample(s), Some(rng)) = (&o.strategy, rng.as_mut())
                        {
                            sample(s, row_scores, rng, &mut scratch)
                        } else {
                            let tok = (kern.argmax)(row_scores);
                            (tok as u32, log_prob(kern, row_scores, tok))
                        };
                        cands[i].push((beam.sum + lp, b, tok, lp));
                    }
                }
            }
        }
        // Select, per active input.
        let mut next_slots = Vec::new();
        let mut next_tokens = Vec::new();
        let mut next_rows = Vec::new();
        for (i, st) in states.iter_mut().enumerate() {
            if !st.active {
                continue;
            }
            let c = &mut cands[i];
            let beam_opts = match &o.strategy {
                Strategy::Beam(b) => Some(b),
                _ => None,
            };
            let lp_pow = beam_opts.map_or(0.0, |b| b.length_penalty);
            let gen_len = (t + 1) as f32;
            let norm = gen_len.powf(lp_pow);
            let to_keep = if beam_opts.is_some() {
                k * (1 + ctx.eos.len()).max(2)
            } else {
                1
            };
            // Highest first; ties by beam then token (torch.topk leaves ties unspecified).
            c.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
            c.truncate(to_keep);
            let running = &st.running;
            let ends = |b: usize, tok: u32| {
                last || ctx.eos.contains(&tok)
                    || ctx
                        .stop
                        .as_ref()
                        .is_some_and(|s| s.hit(&running[b].ids, tok))
            };
            // Finished: continuations ending the sequence among the first k ranks.
            for (rank, &(acc, b, tok, lp)) in c.iter().enumerate() {
                if rank < k && ends(b, tok) {
                    let mut h = st.running[b].clone();
                    h.ids.push(tok);
                    h.logprobs.push(lp);
                    if align {
                        h.align.push(session.alignment(h.slot).to_vec());
                    }
                    h.sum = acc;
                    let score = if beam_opts.is_some() { acc / norm } else { acc };
                    insert_finished(&mut st.finished, k, score, h);
                }
            }
            // Running: the best k continuations that do not end the sequence.
            let cont: Vec<Cand> = c
                .iter()
                .copied()
                .filter(|&(_, b, tok, _)| !ends(b, tok))
                .take(k)
                .collect();
            let mut new_running: Vec<Beam> = Vec::with_capacity(cont.len());
            let mut used = vec![false; st.running.len()];
            let mut free: Vec<usize> = Vec::new();
            for (b, beam) in st.running.iter().enumerate() {
                if !cont.iter().any(|c| c.1 == b) {
                    free.push(beam.slot);
                }
            }
            // Spare slots of this input that no running beam holds yet.
            for s in i * k..(i + 1) * k {
                if !st.running.iter().any(|b| b.slot == s) {
                    free.push(s);
                }
            }
            for &(acc, b, tok, lp) in &cont {
                let parent = &st.running[b];
                let slot = if !used[b] {
                    used[b] = true;
                    parent.slot
                } else {
                    let s = free.pop().expect("k beams never need more than k slots");
                    session.copy_slot(parent.slot, s);
                    s
                };
                let mut ids = parent.ids.clone();
                ids.push(tok);
                let mut logprobs = parent.logprobs.clone();
                logprobs.push(lp);
                let mut alignment = parent.align.clone();
                if align {
                    // The parent's slot still holds the attention of the step that chose `tok`.
                    alignment.push(session.alignment(parent.slot).to_vec());
                }
                new_running.push(Beam {
                    slot,
                    ids,
                    logprobs,
                    sum: acc,
                    align: alignment,
                });
            }
            st.running = new_running;
            // Stop when the finished set is full and the best running beam cannot beat its worst.
            let full = st.finished.len() >= k;
            st.active = !st.running.is_empty()
                && !last
                && match beam_opts {
                    Some(b) if full => {
                        // The length the best running beam is scored at, at best.
                        let len = match b.early_stopping {
                            EarlyStopping::Finished => None,
                            EarlyStopping::Never if b.length_penalty > 0.0 => {
                                Some(ctx.max_new as f32)
                            }
                            EarlyStopping::Heuristic | EarlyStopping::Never => Some(gen_len),
                        };
                        len.is_some_and(|len| {
                            let best = st.running[0].sum / len.powf(b.length_penalty);
                            best > st.finished.last().expect("full").0
                        })
                    }
                    Some(_) => true,
                    None => st.finished.is_empty(),
                };
            if st.active {
                for (b, beam) in st.running.iter().enumerate() {
                    next_slots.push(beam.slot);
                    next_tokens.push(*beam.ids.last().expect("one token per step"));
                    next_rows.push((i, b));
                }
            }
        }
        // Stream what became final.
        if let Some(cb) = callback.as_mut() {
            for (i, st) in states.iter_mut().enumerate() {
                let fin = if st.active {
                    common_prefix(st)
                } else {
                    best(st).ids.clone()
                };
                if fin.len() > st.emitted {
                    let flow = cb(StreamEvent {
                        input: i,
                        ids: &fin[st.emitted..],
                    });
                    st.emitted = fin.len();
                    if flow == Flow::Stop {
                        stopped = true;
                    }
                }
            }
        }
        if stopped || next_slots.is_empty() {
            break;
        }
        session.step_slots(&next_slots, &next_tokens)?;
        rows = next_rows;
    }
    let outputs = states
        .into_iter()
        .map(|st| {
            let n_best = match &o.strategy {
                Strategy::Beam(b) => b.n_best,
                _ => 1,
            };
            let mut all = st.finished;
            if all.is_empty() {
                // Stopped early: what the running beams have so far.
                all = st.running.into_iter().map(|b| (b.sum, b)).collect();
            }
            all.into_iter()
                .take(n_best)
                .map(|(score, b)| Hypothesis {
                    ids: b.ids,
                    logprobs: b.logprobs,
                    score,
                    alignment: b.align,
                })
                .collect()
        })
        .collect();
    session.record_alignment(false);
    Ok(Generation { outputs, stopped })
}

/// `log_softmax(row)[tok]` without rewriting the row (−∞ when every score is −∞).
fn log_prob(kern: &crate::kernels::Kernels, row: &[f32], tok: usize) -> f32 {
    let lse = (kern.log_sum_exp)(row);
    if lse == f32::NEG_INFINITY {
        f32::NEG_INFINITY
    } else {
        row[tok] - lse
    }
}

fn insert_finished(finished: &mut Vec<(f32, Beam)>, k: usize, score: f32, h: Beam) {
    let pos = finished.partition_point(|(s, _)| *s >= score);
    if pos < k {
        finished.insert(pos, (score, h));
        finished.truncate(k);
    }
}

fn best(st: &InputState) -> &Beam {
    st.finished
        .first()
        .map(|(_, b)| b)
        .or(st.running.first())
        .expect("a hypothesis exists")
}

/// The ids every hypothesis that can still win shares: running beams and finished ones.
fn common_prefix(st: &InputState) -> Vec<u32> {
    let mut all = st.running.iter().chain(st.finished.iter().map(|(_, b)| b));
    let Some(first) = all.next() else {
        return Vec::new();
    };
    let mut len = first.ids.len();
    for b in all {
        len = len.min(
            b.ids
                .iter()
                .zip(&first.ids)
                .take_while(|(x, y)| x == y)
                .count(),
        );
    }
    first.ids[..len].to_vec()
}
