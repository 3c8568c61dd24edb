//! Logits processors and sampling warpers, with Hugging Face `transformers` semantics.

use super::{GenerateOptions, Rng, SampleOptions};

/// Applies the options' processors to one row of scores (logits for greedy and sampling,
/// log-probabilities for beam search, as `transformers` does). `history` is the whole sequence so
/// far (prompt or decoder start id, then the generated ids); `generated` how many were generated.
pub(crate) fn process(
    o: &GenerateOptions,
    eos: &[u32],
    max_new: usize,
    history: &[u32],
    generated: usize,
    scores: &mut [f32],
) {
    if o.repetition_penalty != 1.0 {
        let p = o.repetition_penalty;
        for &t in history {
            if let Some(s) = scores.get_mut(t as usize) {
                *s = if *s < 0.0 { *s * p } else { *s / p };
            }
        }
    }
    let n = o.no_repeat_ngram_size;
    if n > 0 && history.len() + 1 >= n {
        // Ban every token that would complete an n-gram already in the history.
        let tail = &history[history.len() + 1 - n..];
        for w in history.windows(n) {
            if w[..n - 1] == *tail {
                scores[w[n - 1] as usize] = f32::NEG_INFINITY;
            }
        }
    }
    for bad in &o.bad_words_ids {
        if let Some((&last, head)) = bad.split_last()
            && history.ends_with(head)
        {
            scores[last as usize] = f32::NEG_INFINITY;
        }
    }
    for &t in &o.suppress_tokens {
        scores[t as usize] = f32::NEG_INFINITY;
    }
    if generated < o.min_new_tokens {
        for &e in eos {
            scores[e as usize] = f32::NEG_INFINITY;
        }
    }
    let force = |scores: &mut [f32], id: u32| {
        scores.fill(f32::NEG_INFINITY);
        scores[id as usize] = 0.0;
    };
    if generated == 0
        && let Some(b) = o.forced_bos_token_id
    {
        force(scores, b);
    }
    if generated + 1 == max_new
        && let Some(e) = o.forced_eos_token_id
    {
        force(scores, e);
    }
}

/// `log_softmax` in place, stable; an all −∞ row stays −∞.
pub(crate) fn log_softmax(x: &mut [f32]) {
    let lse = (crate::kernels::kernels().log_sum_exp)(x);
    if lse == f32::NEG_INFINITY {
        return;
    }
    for v in x {
        *v -= lse;
    }
}

/// Draws a token from processed logits with the sampling options (temperature, top-k, top-p,
/// min-p, in that order); returns the token and its log-probability under the final
/// distribution. `scratch` holds `(id, logit)` pairs (reused).
pub(crate) fn sample(
    s: &SampleOptions,
    logits: &mut [f32],
    rng: &mut Rng,
    scratch: &mut Vec<(u32, f32)>,
) -> (u32, f32) {
    if s.temperature < 1e-5 {
        let t = crate::kernels::scalar::argmax(logits) as u32;
        return (t, 0.0);
    }
    if s.temperature != 1.0 {
        for v in logits.iter_mut() {
            *v /= s.temperature;
        }
    }
    scratch.clear();
    scratch.extend(
        logits
            .iter()
            .enumerate()
            .filter(|(_, v)| **v > f32::NEG_INFINITY)
            .map(|(i, &v)| (i as u32, v)),
    );
    if scratch.is_empty() {
        return (0, f32::NEG_INFINITY);
    }
    // Largest first; ties by id, so results do not depend on the sort's stability.
    scratch.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    if s.top_k > 0 && s.top_k < scratch.len() {
        let threshold = scratch[s.top_k - 1].1;
        let keep = scratch.partition_point(|e| e.1 >= threshold); // ties at the threshold stay
        scratch.truncate(keep);
    }
    let max = scratch[0].1;
    let mut probs: Vec<f64> = scratch.iter().map(|e| ((e.1 - max) as f64).exp()).collect();
    let z: f64 = probs.iter().sum();
    probs.iter_mut().for_each(|p| *p /= z);
    if s.top_p < 1.0 {
        // Keep the smallest prefix whose mass reaches top_p (at least one token).
        let mut cum = 0.0;
        let mut keep = probs.len();
        for (i, p) in probs.iter().enumerate() {
            cum += p;
            if cum >= s.top_p as f64 {
                keep = i + 1;
                break;
            }
        }
        scratch.truncate(keep);
        probs.truncate(keep);
    }
    if s.min_p > 0.0 {
        let threshold = s.min_p as f64 * probs[0];
        let keep = probs.iter().take_while(|&&p| p >= threshold).count().max(1);
        scratch.truncate(keep);
        probs.truncate(keep);
    }
    let z: f64 = probs.iter().sum();
    let mut u = rng.uniform() * z;
    for (i, p) in probs.iter().enumerate() {
        if u < *p || i + 1 == probs.len() {
            return (scratch[i].0, (p / z).ln() as f32);
        }
        u -= p;
    }
    unreachable!("the loop returns at the last element")
}
