//! Corpus-level BLEU and chrF, computed exactly as the Python `sacrebleu` package (2.x) computes
//! them with its defaults, so that scores printed during training compare 1:1 with scores that
//! sacrebleu gives for the same text.
//!
//! - [`corpus_bleu`] is `sacrebleu.corpus_bleu(hyps, [refs])`: the `13a` tokenizer (the one of
//!   mteval-v13a.pl, see [`tokenize_13a`]), case-sensitive, n-grams up to 4, the `exp` smoothing
//!   and no effective order: statistics are summed over all sentences, then one score is taken.
//! - [`corpus_chrf`] is `sacrebleu.corpus_chrf(hyps, [refs])`: chrF2, i.e. character n-grams up
//!   to 6, no word n-grams, beta 2, whitespace removed, and sacrebleu's effective-order averaging
//!   (its default `eps_smoothing=False`).
//!
//! Both take one reference per hypothesis. "Whitespace" means what Python's `str.split()` splits
//! on, which is Rust's [`char::is_whitespace`] plus the four ASCII separators U+001C..U+001F.
//! Strings are handled as sequences of code points, as Python does (a decomposed `u` + U+0308 is
//! two characters). The goldens in `tests/fixtures/sacrebleu/cases.json` come from the real
//! sacrebleu (`tests/reference/sacrebleu_goldens.py`); the tests below hold every field to them.

use std::collections::HashMap;
use std::hash::Hash;

/// The highest word n-gram order of BLEU (sacrebleu's `MAX_NGRAM_ORDER`).
const BLEU_MAX_ORDER: usize = 4;

/// The highest character n-gram order of chrF (sacrebleu's `CHRF.CHAR_ORDER`).
const CHRF_CHAR_ORDER: usize = 6;

/// chrF's beta: recall weighs `beta` times as much as precision (sacrebleu's `CHRF.BETA`).
const CHRF_BETA: f64 = 2.0;

/// What sacrebleu's `my_log` returns for `log(0)`: a floor that makes `exp` of the mean exactly 0.
const LOG_ZERO: f64 = -9_999_999_999.0;

/// A corpus BLEU score with the details sacrebleu reports beside it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bleu {
    /// The BLEU score, 0 to 100.
    pub score: f64,
    /// The (smoothed) 1- to 4-gram precisions, 0 to 100. An order with no n-gram at all in the
    /// hypotheses, and every order above it, is 0, and so are all four when no n-gram matches.
    pub precisions: [f64; 4],
    /// The brevity penalty: 1 when the hypotheses are at least as long as the references,
    /// `exp(1 - ref_len / sys_len)` when shorter, 0 when the hypotheses have no token at all.
    pub bp: f64,
    /// `sys_len / ref_len`, or 0 when the references have no token.
    pub ratio: f64,
    /// The number of `13a` tokens in all hypotheses.
    pub sys_len: usize,
    /// The number of `13a` tokens in all references.
    pub ref_len: usize,
}

/// Corpus BLEU of `hyps` against `refs` (one reference per hypothesis), as
/// `sacrebleu.corpus_bleu(hyps, [refs]).score` and its fields.
///
/// Each segment has its trailing whitespace stripped and is then tokenized with
/// [`tokenize_13a`]; n-gram counts (clipped by the reference's counts) and lengths are summed over
/// the corpus before the precisions, the brevity penalty and the geometric mean are taken. An
/// order whose matches are all zero is smoothed as `100 / (2^k * total)` for the k-th such
/// order (`exp` smoothing); a corpus without a single 4-gram (every sentence under 4 tokens)
/// scores 0, as in sacrebleu, since corpus BLEU does not use the effective order.
///
/// An empty corpus (which sacrebleu rejects) scores 0, with `bp` 1 and `ratio` 0.
///
/// # Panics
///
/// If `hyps` and `refs` differ in length.
pub fn corpus_bleu<S: AsRef<str>>(hyps: &[S], refs: &[S]) -> Bleu {
    assert_eq!(
        hyps.len(),
        refs.len(),
        "corpus_bleu: {} hypotheses but {} references",
        hyps.len(),
        refs.len()
    );
    let mut stats = BleuStats::default();
    for (hyp, reference) in hyps.iter().zip(refs) {
        stats.add_segment(hyp.as_ref(), reference.as_ref());
    }
    stats.score()
}

/// Corpus chrF2 of `hyps` against `refs` (one reference per hypothesis), 0 to 100, as
/// `sacrebleu.corpus_chrf(hyps, [refs]).score`.
///
/// Whitespace is removed from each segment; for each order n = 1..=6 the character n-gram counts
/// of hypothesis, reference and their clipped intersection are summed over the corpus (a
/// hypothesis's n-grams count only when its reference has n-grams of that order). Precision and
/// recall are averaged over the orders that have n-grams on both sides, and the score is the
/// F-beta (beta 2) of the two averages: 0 when no order has any n-gram on both sides, or when
/// nothing matches.
///
/// An empty corpus (which sacrebleu rejects) scores 0.
///
/// # Panics
///
/// If `hyps` and `refs` differ in length.
pub fn corpus_chrf<S: AsRef<str>>(hyps: &[S], refs: &[S]) -> f64 {
    assert_eq!(
        hyps.len(),
        refs.len(),
        "corpus_chrf: {} hypotheses but {} references",
        hyps.len(),
        refs.len()
    );
    let mut stats = [ChrfOrderStats::default(); CHRF_CHAR_ORDER];
    for (hyp, reference) in hyps.iter().zip(refs) {
        let hyp = without_whitespace(hyp.as_ref());
        let reference = without_whitespace(reference.as_ref());
        for (n, order) in (1..=CHRF_CHAR_ORDER).zip(&mut stats) {
            order.add(&hyp, &reference, n);
        }
    }
    chrf_score(&stats)
}

/// Tokenizes a segment as sacrebleu's `13a` tokenizer (`Tokenizer13a`, after mteval-v13a.pl)
/// does, returning the tokens joined by single spaces.
///
/// In order: `<skipped>` is removed, `-` followed by a newline is removed (joining the two
/// lines), other newlines become spaces, and the entities `&quot;`, `&amp;`, `&lt;`, `&gt;` are
/// replaced one after the other (so `&amp;lt;` ends as `<`). Then the ASCII symbols
/// ``!"#$%&()*+/:;<=>?@[\]^_`{|}~`` are split off, `.` and `,` are split off unless they sit
/// between two digits (one pass splits them after a non-digit, a second before a non-digit),
/// and a `-` after a digit is split off. Apostrophes, other dashes and all non-ASCII characters stay
/// inside their words.
///
/// This is the tokenizer alone: [`corpus_bleu`] strips trailing whitespace from each segment
/// before tokenizing it, as sacrebleu's BLEU does (so a segment ending in `-\n` keeps its `-`).
pub fn tokenize_13a(line: &str) -> String {
    let mut line = line
        .replace("<skipped>", "")
        .replace("-\n", "")
        .replace('\n', " ");
    if line.contains('&') {
        line = line
            .replace("&quot;", "\"")
            .replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">");
    }

    // The four substitutions of sacrebleu's regexp tokenizer, on the line padded with a space on
    // each side (which matters: a leading `.` is "preceded by a non-digit").
    let mut chars = Vec::with_capacity(line.len() + 2);
    chars.push(' ');
    for c in line.chars() {
        if is_13a_symbol(c) {
            chars.extend([' ', c, ' ']);
        } else {
            chars.push(c);
        }
    }
    chars.push(' ');
    let chars = substitute_pairs(
        &chars,
        |a, b| !a.is_ascii_digit() && is_period_or_comma(b),
        |a, b| [a, ' ', b, ' '],
    );
    let chars = substitute_pairs(
        &chars,
        |a, b| is_period_or_comma(a) && !b.is_ascii_digit(),
        |a, b| [' ', a, ' ', b],
    );
    let chars = substitute_pairs(
        &chars,
        |a, b| a.is_ascii_digit() && b == '-',
        |a, b| [a, ' ', b, ' '],
    );

    let line: String = chars.into_iter().collect();
    split_whitespace(&line).collect::<Vec<_>>().join(" ")
}

/// The summed BLEU statistics of a corpus.
#[derive(Debug, Default)]
struct BleuStats {
    sys_len: usize,
    ref_len: usize,
    /// Clipped n-gram matches, by order - 1.
    correct: [usize; BLEU_MAX_ORDER],
    /// Hypothesis n-grams, by order - 1.
    total: [usize; BLEU_MAX_ORDER],
}

impl BleuStats {
    /// Adds the statistics of one hypothesis / reference pair.
    fn add_segment(&mut self, hyp: &str, reference: &str) {
        let hyp = tokenize_13a(rstrip(hyp));
        let reference = tokenize_13a(rstrip(reference));
        let hyp: Vec<&str> = split_whitespace(&hyp).collect();
        let reference: Vec<&str> = split_whitespace(&reference).collect();
        self.sys_len += hyp.len();
        self.ref_len += reference.len();
        for n in 1..=BLEU_MAX_ORDER {
            let hyp_ngrams = counts(hyp.windows(n));
            let ref_ngrams = counts(reference.windows(n));
            self.total[n - 1] += hyp_ngrams.values().sum::<usize>();
            self.correct[n - 1] += clipped_matches(&hyp_ngrams, &ref_ngrams);
        }
    }

    /// The corpus score, as sacrebleu's `BLEU.compute_bleu` with `exp` smoothing and no
    /// effective order (the arithmetic follows its order of operations).
    fn score(&self) -> Bleu {
        let (sys_len, ref_len) = (self.sys_len as f64, self.ref_len as f64);
        let bp = if self.sys_len >= self.ref_len {
            1.0
        } else if self.sys_len == 0 {
            0.0
        } else {
            (1.0 - ref_len / sys_len).exp()
        };
        let ratio = if self.ref_len > 0 {
            sys_len / ref_len
        } else {
            0.0
        };
        let mut bleu = Bleu {
            score: 0.0,
            precisions: [0.0; BLEU_MAX_ORDER],
            bp,
            ratio,
            sys_len: self.sys_len,
            ref_len: self.ref_len,
        };
        if self.correct.iter().all(|&c| c == 0) {
            return bleu;
        }

        let mut smoothing = 1.0;
        for (n, precision) in bleu.precisions.iter_mut().enumerate() {
            let (correct, total) = (self.correct[n], self.total[n]);
            if total == 0 {
                break;
            }
            *precision = if correct == 0 {
                smoothing *= 2.0;
                100.0 / (smoothing * total as f64)
            } else {
                100.0 * correct as f64 / total as f64
            };
        }
        let log_sum: f64 = bleu
            .precisions
            .iter()
            .map(|&p| if p == 0.0 { LOG_ZERO } else { p.ln() })
            .sum();
        bleu.score = bp * (log_sum / BLEU_MAX_ORDER as f64).exp();
        bleu
    }
}

/// The summed chrF statistics of one character n-gram order.
#[derive(Debug, Default, Clone, Copy)]
struct ChrfOrderStats {
    /// Hypothesis n-grams (of segments whose reference has n-grams of this order).
    hyp: usize,
    /// Reference n-grams.
    reference: usize,
    /// Clipped matches.
    matched: usize,
}

impl ChrfOrderStats {
    /// Adds the order-`n` statistics of one pair of whitespace-free segments.
    fn add(&mut self, hyp: &[char], reference: &[char], n: usize) {
        let hyp_ngrams = counts(hyp.windows(n));
        let ref_ngrams = counts(reference.windows(n));
        if !ref_ngrams.is_empty() {
            self.hyp += hyp_ngrams.values().sum::<usize>();
        }
        self.reference += ref_ngrams.values().sum::<usize>();
        self.matched += clipped_matches(&hyp_ngrams, &ref_ngrams);
    }
}

/// The chrF score of summed statistics, as sacrebleu's `CHRF._compute_f_score` without epsilon
/// smoothing (the arithmetic follows its order of operations).
fn chrf_score(stats: &[ChrfOrderStats]) -> f64 {
    let (mut avg_prec, mut avg_rec, mut effective_order) = (0.0, 0.0, 0usize);
    for order in stats.iter().filter(|o| o.hyp > 0 && o.reference > 0) {
        avg_prec += order.matched as f64 / order.hyp as f64;
        avg_rec += order.matched as f64 / order.reference as f64;
        effective_order += 1;
    }
    if effective_order == 0 {
        return 0.0;
    }
    avg_prec /= effective_order as f64;
    avg_rec /= effective_order as f64;
    if avg_prec + avg_rec == 0.0 {
        return 0.0;
    }
    let factor = CHRF_BETA * CHRF_BETA;
    let score = (1.0 + factor) * avg_prec * avg_rec / (factor * avg_prec + avg_rec);
    100.0 * score
}

/// Whether Python's `str.isspace()` holds for `c` (what `str.split()` and `str.rstrip()` use).
fn is_python_whitespace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `s.split()`: the runs of non-whitespace.
fn split_whitespace(s: &str) -> impl Iterator<Item = &str> {
    s.split(is_python_whitespace).filter(|t| !t.is_empty())
}

/// Python's `s.rstrip()`.
fn rstrip(s: &str) -> &str {
    s.trim_end_matches(is_python_whitespace)
}

/// The characters of `s` without its whitespace (Python's `''.join(s.split())`).
fn without_whitespace(s: &str) -> Vec<char> {
    s.chars().filter(|&c| !is_python_whitespace(c)).collect()
}

/// The ASCII symbols that `13a` always splits off: the class
/// ``[\{-\~\[-\` -\&\(-\+\:-\@\/]`` of its first regexp (space too, which changes nothing).
fn is_13a_symbol(c: char) -> bool {
    matches!(c, '{'..='~' | '['..='`' | ' '..='&' | '('..='+' | ':'..='@' | '/')
}

fn is_period_or_comma(c: char) -> bool {
    c == '.' || c == ','
}

/// Python's `re.sub` of a two-character pattern `(a)(b)` over `chars`: scanning left to right,
/// every non-overlapping pair for which `is_match` holds is replaced by `replace(a, b)`, and the
/// scan resumes after the pair.
fn substitute_pairs(
    chars: &[char],
    is_match: impl Fn(char, char) -> bool,
    replace: impl Fn(char, char) -> [char; 4],
) -> Vec<char> {
    let mut out = Vec::with_capacity(chars.len() + chars.len() / 2);
    let mut i = 0;
    while i < chars.len() {
        match chars.get(i + 1) {
            Some(&next) if is_match(chars[i], next) => {
                out.extend(replace(chars[i], next));
                i += 2;
            }
            _ => {
                out.push(chars[i]);
                i += 1;
            }
        }
    }
    out
}

/// How often each item occurs.
pub(crate) fn counts<T: Hash + Eq>(items: impl Iterator<Item = T>) -> HashMap<T, usize> {
    let mut counts = HashMap::new();
    for item in items {
        *counts.entry(item).or_insert(0) += 1;
    }
    counts
}

/// The hypothesis n-grams that the reference has, each counted at most as often as the
/// reference has it.
pub(crate) fn clipped_matches<T: Hash + Eq>(
    hyp: &HashMap<T, usize>,
    reference: &HashMap<T, usize>,
) -> usize {
    hyp.iter()
        .filter_map(|(ngram, &count)| reference.get(ngram).map(|&r| count.min(r)))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    /// `tests/fixtures/sacrebleu/cases.json`, written by `tests/reference/sacrebleu_goldens.py`.
    #[derive(Deserialize)]
    struct Fixture {
        sacrebleu_version: String,
        python_isspace: Vec<u32>,
        tokenize_13a: Vec<TokenizePair>,
        cases: Vec<Case>,
    }

    #[derive(Deserialize)]
    struct TokenizePair {
        input: String,
        output: String,
    }

    #[derive(Deserialize)]
    struct Case {
        name: String,
        hyps: Vec<String>,
        refs: Vec<String>,
        bleu: GoldenBleu,
        chrf: f64,
    }

    #[derive(Deserialize)]
    struct GoldenBleu {
        score: f64,
        precisions: [f64; 4],
        bp: f64,
        ratio: f64,
        sys_len: usize,
        ref_len: usize,
    }

    fn fixture() -> Fixture {
        let text = include_str!("../../tests/fixtures/sacrebleu/cases.json");
        serde_json::from_str(text).expect("cases.json parses")
    }

    /// `actual` within 1e-9 relative of `expected` (so exactly 0 where sacrebleu gives 0).
    fn assert_close(actual: f64, expected: f64, what: &str) {
        assert!(
            (actual - expected).abs() <= 1e-9 * expected.abs(),
            "{what}: {actual} != sacrebleu's {expected}"
        );
    }

    #[test]
    fn bleu_and_chrf_match_sacrebleu_goldens() {
        let fixture = fixture();
        assert!(fixture.sacrebleu_version.starts_with("2."));
        assert!(fixture.cases.len() >= 20);
        for case in &fixture.cases {
            let name = &case.name;
            let bleu = corpus_bleu(&case.hyps, &case.refs);
            let golden = &case.bleu;
            assert_eq!(bleu.sys_len, golden.sys_len, "{name}: sys_len");
            assert_eq!(bleu.ref_len, golden.ref_len, "{name}: ref_len");
            assert_close(bleu.score, golden.score, &format!("{name}: BLEU"));
            assert_close(bleu.bp, golden.bp, &format!("{name}: bp"));
            assert_close(bleu.ratio, golden.ratio, &format!("{name}: ratio"));
            for (n, (&p, &g)) in bleu.precisions.iter().zip(&golden.precisions).enumerate() {
                assert_close(p, g, &format!("{name}: {}-gram precision", n + 1));
            }
            let chrf = corpus_chrf(&case.hyps, &case.refs);
            assert_close(chrf, case.chrf, &format!("{name}: chrF"));
        }
    }

    #[test]
    fn tokenize_13a_matches_sacrebleu() {
        for pair in fixture().tokenize_13a {
            assert_eq!(tokenize_13a(&pair.input), pair.output, "{:?}", pair.input);
        }
    }

    #[test]
    fn whitespace_is_pythons() {
        let python: Vec<u32> = fixture().python_isspace;
        let ours: Vec<u32> = (0..=char::MAX as u32)
            .filter(|&c| char::from_u32(c).is_some_and(is_python_whitespace))
            .collect();
        assert_eq!(ours, python);
    }

    #[test]
    fn tokenize_13a_by_hand() {
        // What sacrebleu's Tokenizer13a printed for these (also in the fixture).
        assert_eq!(tokenize_13a("Hello, world!"), "Hello , world !");
        assert_eq!(
            tokenize_13a("3.14 and 1,000 but a.b and x,y"),
            "3.14 and 1,000 but a . b and x , y"
        );
        assert_eq!(
            tokenize_13a("2020-2021 and well-known and 5 -3 and -4"),
            "2020 - 2021 and well-known and 5 -3 and -4"
        );
        assert_eq!(
            tokenize_13a("&quot;quoted&quot; &amp; &lt;tag&gt; &amp;lt; &apos;"),
            "\" quoted \" & < tag > < & apos ;"
        );
        assert_eq!(
            tokenize_13a("e-mail -\nsplit and soft-\nhyphen"),
            "e-mail split and softhyphen"
        );
        assert_eq!(tokenize_13a("a..b ,,c 1..2"), "a . . b , , c 1 . . 2");
    }

    #[test]
    fn bleu_by_hand() {
        let same = corpus_bleu(&["a b c d e"], &["a b c d e"]);
        assert!((same.score - 100.0).abs() < 1e-12);
        assert_eq!(
            (same.sys_len, same.ref_len, same.bp, same.ratio),
            (5, 5, 1.0, 1.0)
        );

        // 4 of 6 tokens, all n-grams matching: only the brevity penalty exp(1 - 6/4) remains.
        let short = corpus_bleu(&["a b c d"], &["a b c d e f"]);
        assert_eq!(short.precisions, [100.0; 4]);
        assert!((short.bp - (-0.5f64).exp()).abs() < 1e-15);
        assert!((short.score - 100.0 * (-0.5f64).exp()).abs() < 1e-12);

        // No 4-gram in the corpus: 0 even though everything matches.
        let tiny = corpus_bleu(&["a b c"], &["a b c"]);
        assert_eq!(
            (tiny.score, tiny.precisions),
            (0.0, [100.0, 100.0, 100.0, 0.0])
        );

        // Unigrams 4/4 match, no higher order does: exp smoothing gives 100/(2*3),
        // 100/(4*2), 100/(8*1).
        let smoothed = corpus_bleu(&["d c b a"], &["a b c d"]);
        assert_eq!(smoothed.precisions, [100.0, 100.0 / 6.0, 12.5, 12.5]);
    }

    #[test]
    fn chrf_by_hand() {
        assert_eq!(corpus_chrf(&["ab"], &["ab"]), 100.0);
        // Order 1: 1 of 2 match both ways; order 2: 0 of 1; orders 3-6 have no n-gram. The
        // averages are P = R = 0.25, so F2 = 25.
        assert!((corpus_chrf(&["a b"], &["ac"]) - 25.0).abs() < 1e-12);
        assert_eq!(corpus_chrf(&["xyz"], &["abc"]), 0.0);
        assert_eq!(corpus_chrf(&[""], &["abc"]), 0.0);
    }

    #[test]
    fn empty_corpus_scores_zero() {
        let none: [&str; 0] = [];
        let bleu = corpus_bleu(&none, &none);
        assert_eq!(
            (bleu.score, bleu.bp, bleu.ratio, bleu.sys_len),
            (0.0, 1.0, 0.0, 0)
        );
        assert_eq!(corpus_chrf(&none, &none), 0.0);
    }

    #[test]
    #[should_panic(expected = "2 hypotheses but 1 references")]
    fn length_mismatch_panics() {
        corpus_bleu(&["a", "b"], &["a"]);
    }
}
