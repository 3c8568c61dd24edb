//! ROUGE-1, ROUGE-2 and ROUGE-L F1, computed as Google's `rouge-score` package (0.1.2) computes
//! them with `RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False)` ([`corpus_rouge`])
//! or `use_stemmer=True` ([`corpus_rouge_stemmed`]), averaged over the sentence pairs (the mean
//! that its aggregator's bootstrap centres on) and scaled to 0–100.
//!
//! Its tokenizer lowercases (Unicode lowercasing, as Python's `str.lower`), turns every run of
//! characters other than `a-z` and `0-9` into a separator and drops empty tokens: text in other
//! scripts, accented letters included, does not count. With the stemmer, each token longer than
//! three characters is replaced by its Porter stem as NLTK gives it ([`porter::stem`]). ROUGE-N
//! is the clipped n-gram overlap; ROUGE-L the longest common subsequence of tokens. The goldens
//! in `tests/fixtures/rouge/cases.json` come from the real package
//! (`tests/reference/rouge_goldens.py`).

use super::metrics::{clipped_matches, counts};
use super::porter;

/// Corpus ROUGE: per-pair F1 averaged over the pairs, 0–100.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct Rouge {
    pub rouge1: f64,
    pub rouge2: f64,
    #[serde(rename = "rougeL")]
    pub rouge_l: f64,
}

/// One pair's scores (precision, recall, F1 in 0–1), as `rouge_score` returns them.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Score {
    pub precision: f64,
    pub recall: f64,
    pub fmeasure: f64,
}

impl Score {
    fn new(matches: usize, predicted: usize, target: usize) -> Score {
        let precision = matches as f64 / predicted.max(1) as f64;
        let recall = matches as f64 / target.max(1) as f64;
        let fmeasure = if precision + recall > 0.0 {
            2.0 * precision * recall / (precision + recall)
        } else {
            0.0
        };
        Score {
            precision,
            recall,
            fmeasure,
        }
    }
}

/// `rouge_score.tokenize.tokenize(text, None)`.
pub fn tokenize(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit()))
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// `rouge_score.tokenize.tokenize(text, PorterStemmer())`, the tokens of `use_stemmer=True`:
/// [`tokenize`]'s, those longer than three characters stemmed.
pub fn tokenize_stemmed(text: &str) -> Vec<String> {
    let mut tokens = tokenize(text);
    for t in tokens.iter_mut().filter(|t| t.len() > 3) {
        // A stem is never empty and stays within a-z0-9: every token stays a token.
        *t = porter::stem(t);
    }
    tokens
}

/// ROUGE-N of one pair.
pub fn rouge_n(target: &[String], prediction: &[String], n: usize) -> Score {
    let (t, p) = (counts(target.windows(n)), counts(prediction.windows(n)));
    // Each text has one n-gram per window.
    let total = |tokens: &[String]| tokens.len().saturating_sub(n - 1);
    Score::new(clipped_matches(&p, &t), total(prediction), total(target))
}

/// ROUGE-L of one pair: the longest common subsequence of tokens.
pub fn rouge_l(target: &[String], prediction: &[String]) -> Score {
    if target.is_empty() || prediction.is_empty() {
        return Score::default();
    }
    // One row of the LCS table at a time.
    let mut prev = vec![0usize; prediction.len() + 1];
    let mut row = prev.clone();
    for t in target {
        for (j, p) in prediction.iter().enumerate() {
            row[j + 1] = if t == p {
                prev[j] + 1
            } else {
                prev[j + 1].max(row[j])
            };
        }
        std::mem::swap(&mut prev, &mut row);
    }
    Score::new(prev[prediction.len()], prediction.len(), target.len())
}

/// ROUGE-1, ROUGE-2 and ROUGE-L F1 of each hypothesis against its reference, averaged
/// (`use_stemmer=False`).
pub fn corpus_rouge<S: AsRef<str>>(hyps: &[S], refs: &[S]) -> Rouge {
    corpus(hyps, refs, tokenize)
}

/// [`corpus_rouge`] with rouge-score's stemmer (`use_stemmer=True`).
pub fn corpus_rouge_stemmed<S: AsRef<str>>(hyps: &[S], refs: &[S]) -> Rouge {
    corpus(hyps, refs, tokenize_stemmed)
}

fn corpus<S: AsRef<str>>(hyps: &[S], refs: &[S], tokenize: fn(&str) -> Vec<String>) -> Rouge {
    assert_eq!(hyps.len(), refs.len(), "one reference per hypothesis");
    let mut sum = Rouge::default();
    for (h, r) in hyps.iter().zip(refs) {
        let (p, t) = (tokenize(h.as_ref()), tokenize(r.as_ref()));
        sum.rouge1 += rouge_n(&t, &p, 1).fmeasure;
        sum.rouge2 += rouge_n(&t, &p, 2).fmeasure;
        sum.rouge_l += rouge_l(&t, &p).fmeasure;
    }
    let n = hyps.len().max(1) as f64;
    Rouge {
        rouge1: 100.0 * sum.rouge1 / n,
        rouge2: 100.0 * sum.rouge2 / n,
        rouge_l: 100.0 * sum.rouge_l / n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct Fixture {
        rouge_score_version: String,
        cases: Vec<Case>,
        corpus: Corpus,
        corpus_stemmed: Corpus,
    }

    #[derive(Deserialize)]
    struct Case {
        target: String,
        prediction: String,
        /// `use_stemmer=False`.
        #[serde(flatten)]
        plain: Expected,
        /// `use_stemmer=True`.
        stemmed: Expected,
    }

    #[derive(Deserialize)]
    struct Expected {
        target_tokens: Vec<String>,
        prediction_tokens: Vec<String>,
        /// `[precision, recall, fmeasure]` of rouge1, rouge2, rougeL.
        rouge1: [f64; 3],
        rouge2: [f64; 3],
        #[serde(rename = "rougeL")]
        rouge_l: [f64; 3],
    }

    #[derive(Deserialize)]
    struct Corpus {
        rouge1: f64,
        rouge2: f64,
        #[serde(rename = "rougeL")]
        rouge_l: f64,
    }

    fn fixture() -> Fixture {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/rouge/cases.json"
        );
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn close(s: Score, want: [f64; 3], what: &str) {
        let got = [s.precision, s.recall, s.fmeasure];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "{what}: {got:?} vs {want:?}");
        }
    }

    fn check_pairs(tokenize: fn(&str) -> Vec<String>, expected: fn(&Case) -> &Expected) {
        let f = fixture();
        assert!(f.rouge_score_version.starts_with("0.1"));
        assert!(f.cases.len() >= 20);
        for (i, c) in f.cases.iter().enumerate() {
            let want = expected(c);
            let (t, p) = (tokenize(&c.target), tokenize(&c.prediction));
            assert_eq!(t, want.target_tokens, "case {i}: target tokens");
            assert_eq!(p, want.prediction_tokens, "case {i}: prediction tokens");
            close(rouge_n(&t, &p, 1), want.rouge1, &format!("case {i} rouge1"));
            close(rouge_n(&t, &p, 2), want.rouge2, &format!("case {i} rouge2"));
            close(rouge_l(&t, &p), want.rouge_l, &format!("case {i} rougeL"));
        }
    }

    fn check_corpus(score: fn(&[&str], &[&str]) -> Rouge, want: fn(&Fixture) -> &Corpus) {
        let f = fixture();
        let hyps: Vec<&str> = f.cases.iter().map(|c| c.prediction.as_str()).collect();
        let refs: Vec<&str> = f.cases.iter().map(|c| c.target.as_str()).collect();
        let (r, w) = (score(&hyps, &refs), want(&f));
        for (g, w) in [
            (r.rouge1, w.rouge1),
            (r.rouge2, w.rouge2),
            (r.rouge_l, w.rouge_l),
        ] {
            assert!((g - w).abs() < 1e-9, "{r:?}");
        }
    }

    #[test]
    fn every_pair_equals_rouge_score() {
        check_pairs(tokenize, |c| &c.plain);
    }

    #[test]
    fn the_corpus_mean_equals_rouge_score() {
        check_corpus(|h, r| corpus_rouge(h, r), |f| &f.corpus);
    }

    #[test]
    fn every_pair_equals_rouge_score_with_its_stemmer() {
        check_pairs(tokenize_stemmed, |c| &c.stemmed);
    }

    #[test]
    fn the_corpus_mean_equals_rouge_score_with_its_stemmer() {
        check_corpus(|h, r| corpus_rouge_stemmed(h, r), |f| &f.corpus_stemmed);
    }
}
