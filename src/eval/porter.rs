//! The Porter stemmer as NLTK runs it by default (`nltk.stem.porter.PorterStemmer()`, its
//! `NLTK_EXTENSIONS` mode): the stemmer behind `rouge-score`'s `use_stemmer=True`.
//!
//! The algorithm is M. F. Porter's, "An algorithm for suffix stripping", *Program* 14(3), 1980,
//! 130–137: five steps, each removing or rewriting at most one suffix when the part of the word
//! before it (the stem) is long enough. Length is the *measure* m, the number of vowel–consonant
//! alternations (`[C](VC)^m[V]`), where `y` is a vowel after a consonant and a consonant
//! otherwise. NLTK's default departs from the 1980 paper in these places, all reproduced here:
//!
//! - sixteen irregular words are answered from a table (`skies` → `sky`, `dying` → `die`,
//!   `innings` → `inning`, `news`, `proceed`, ...), and words of one or two letters are kept;
//! - step 1a: a four-letter word in `-ies` keeps `-ie` (`ties` → `tie`);
//! - step 1b: `-ied` becomes `-ie` in a four-letter word and `-i` otherwise, and ends the step;
//!   the "ends consonant–vowel–consonant" test (`*o`) also holds for a two-letter stem
//!   vowel–consonant (`owing` → `owe`);
//! - step 1c: a final `y` becomes `i` after any consonant but the word's first letter (`cry` →
//!   `cri`, `enjoy` and `by` kept), whether or not the stem has a vowel;
//! - step 2: `-alli` → `-al` is tried first and, when it applies, step 2 runs again on the
//!   result; `-bli` → `-ble` replaces `-abli` → `-able`; `-fulli` → `-ful` and `-logi` → `-log`
//!   are added, the latter measuring the stem with its `l` (`geologi` → `geolog`).
//!
//! Within a step the longest matching suffix decides: when its condition fails, the word stays
//! as it is (no shorter suffix is tried). The goldens in `tests/fixtures/rouge/porter.tsv` are
//! NLTK's stems of 70,966 words (`tests/reference/porter_goldens.py`).
//!
//! Try it: `quill eval models/summarize-en.quill test.tsv --rouge-stemmer`.

/// The stem NLTK's `PorterStemmer().stem(word)` gives for a word of lowercase ASCII letters and
/// digits (the only words ROUGE's tokenizer gives it). Any other word is returned unchanged.
pub fn stem(word: &str) -> String {
    if let Some(s) = irregular(word) {
        return s.to_string();
    }
    let b = word.as_bytes();
    if b.len() <= 2
        || !b
            .iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    {
        return word.to_string();
    }
    // No rule lengthens a word: the result fits in the word's bytes.
    let mut w = b.to_vec();
    step1a(&mut w);
    step1b(&mut w);
    step1c(&mut w);
    step2(&mut w);
    step3(&mut w);
    step4(&mut w);
    step5(&mut w);
    String::from_utf8(w).expect("ASCII in, ASCII out")
}

/// NLTK's table of words Porter's rules get wrong.
fn irregular(word: &str) -> Option<&'static str> {
    Some(match word {
        "sky" | "skies" => "sky",
        "dying" => "die",
        "lying" => "lie",
        "tying" => "tie",
        "news" => "news",
        "inning" | "innings" => "inning",
        "outing" | "outings" => "outing",
        "canning" | "cannings" => "canning",
        "howe" => "howe",
        "proceed" => "proceed",
        "exceed" => "exceed",
        "succeed" => "succeed",
        _ => return None,
    })
}

/// For each letter of `s`, whether it is a consonant: anything but a, e, i, o, u, and a `y` only
/// at the start or after a vowel.
fn consonants(s: &[u8]) -> impl Iterator<Item = bool> + '_ {
    let mut before = false;
    s.iter().enumerate().map(move |(i, &c)| {
        let consonant = match c {
            b'a' | b'e' | b'i' | b'o' | b'u' => false,
            b'y' => i == 0 || !before,
            _ => true,
        };
        before = consonant;
        consonant
    })
}

fn consonant_at(s: &[u8], i: usize) -> bool {
    consonants(&s[..=i]).last().unwrap_or(false)
}

/// Porter's m: how many times a vowel is followed by a consonant.
fn measure(s: &[u8]) -> usize {
    let mut vowel_before = false;
    let mut m = 0;
    for c in consonants(s) {
        m += usize::from(c && vowel_before);
        vowel_before = !c;
    }
    m
}

fn has_vowel(s: &[u8]) -> bool {
    consonants(s).any(|c| !c)
}

/// `*d`: the word ends in two equal consonants.
fn double_consonant(s: &[u8]) -> bool {
    let n = s.len();
    n >= 2 && s[n - 1] == s[n - 2] && consonant_at(s, n - 1)
}

/// `*o`: the word ends consonant–vowel–consonant, the last not w, x or y; or (NLTK) it is a vowel
/// and a consonant.
fn cvc(s: &[u8]) -> bool {
    match s.len() {
        2 => !consonant_at(s, 0) && consonant_at(s, 1),
        n if n >= 3 => {
            consonant_at(s, n - 3)
                && !consonant_at(s, n - 2)
                && consonant_at(s, n - 1)
                && !matches!(s[n - 1], b'w' | b'x' | b'y')
        }
        _ => false,
    }
}

/// The length of `w` without `suffix`, if it ends with it.
fn stem_len(w: &[u8], suffix: &[u8]) -> Option<usize> {
    w.ends_with(suffix).then(|| w.len() - suffix.len())
}

fn replace(w: &mut Vec<u8>, keep: usize, with: &[u8]) {
    w.truncate(keep);
    w.extend_from_slice(with);
}

/// The first rule of `rules` (suffix, replacement) whose suffix ends `w` is applied if `ok`
/// holds for the stem before it; no other rule is tried either way.
fn first_rule(w: &mut Vec<u8>, rules: &[(&str, &str)], ok: impl Fn(&[u8]) -> bool) {
    for (suffix, with) in rules {
        if let Some(k) = stem_len(w, suffix.as_bytes()) {
            if ok(&w[..k]) {
                replace(w, k, with.as_bytes());
            }
            return;
        }
    }
}

/// Plurals: `-sses` → `-ss`, `-ies` → `-i` (`-ie` in a four-letter word), `-ss` kept, `-s`
/// removed.
fn step1a(w: &mut Vec<u8>) {
    if w.ends_with(b"sses") || w.ends_with(b"ies") {
        // Drop the final `es`; a four-letter `-ies` keeps its `e`.
        let drop = if w.len() == 4 && w.ends_with(b"ies") {
            1
        } else {
            2
        };
        w.truncate(w.len() - drop);
    } else if w.ends_with(b"s") && !w.ends_with(b"ss") {
        w.pop();
    }
}

/// Past tenses and participles: `-ied`, `-eed`, then `-ed` and `-ing` after a stem with a vowel,
/// with the stem's ending tidied.
fn step1b(w: &mut Vec<u8>) {
    if let Some(k) = stem_len(w, b"ied") {
        let with: &[u8] = if w.len() == 4 { b"ie" } else { b"i" };
        return replace(w, k, with);
    }
    if let Some(k) = stem_len(w, b"eed") {
        if measure(&w[..k]) > 0 {
            w.pop();
        }
        return;
    }
    let Some(k) = stem_len(w, b"ed").or_else(|| stem_len(w, b"ing")) else {
        return;
    };
    if !has_vowel(&w[..k]) {
        return;
    }
    w.truncate(k);
    if w.ends_with(b"at") || w.ends_with(b"bl") || w.ends_with(b"iz") {
        w.push(b'e');
    } else if double_consonant(w) {
        if !matches!(w[w.len() - 1], b'l' | b's' | b'z') {
            w.pop();
        }
    } else if measure(w) == 1 && cvc(w) {
        w.push(b'e');
    }
}

/// A final `y` after a consonant (not the first letter) becomes `i`.
fn step1c(w: &mut [u8]) {
    let n = w.len();
    if n > 2 && w[n - 1] == b'y' && consonant_at(w, n - 2) {
        w[n - 1] = b'i';
    }
}

/// Double suffixes to single ones, when the stem's m > 0.
fn step2(w: &mut Vec<u8>) {
    if let Some(k) = stem_len(w, b"alli") {
        if measure(&w[..k]) == 0 {
            return;
        }
        replace(w, k, b"al");
    }
    if let Some(k) = stem_len(w, b"logi") {
        // The `l` counts as part of the stem.
        if measure(&w[..k + 1]) > 0 {
            w.pop();
        }
        return;
    }
    // Longest first where one suffix ends another (-ational/-tional, -ization/-ation).
    const RULES: &[(&str, &str)] = &[
        ("ational", "ate"),
        ("tional", "tion"),
        ("enci", "ence"),
        ("anci", "ance"),
        ("izer", "ize"),
        ("bli", "ble"),
        ("entli", "ent"),
        ("eli", "e"),
        ("ousli", "ous"),
        ("ization", "ize"),
        ("ation", "ate"),
        ("ator", "ate"),
        ("alism", "al"),
        ("iveness", "ive"),
        ("fulness", "ful"),
        ("ousness", "ous"),
        ("aliti", "al"),
        ("iviti", "ive"),
        ("biliti", "ble"),
        ("fulli", "ful"),
    ];
    first_rule(w, RULES, |s| measure(s) > 0);
}

/// `-ic-`, `-full`, `-ness` and the like, when the stem's m > 0.
fn step3(w: &mut Vec<u8>) {
    const RULES: &[(&str, &str)] = &[
        ("icate", "ic"),
        ("ative", ""),
        ("alize", "al"),
        ("iciti", "ic"),
        ("ical", "ic"),
        ("ful", ""),
        ("ness", ""),
    ];
    first_rule(w, RULES, |s| measure(s) > 0);
}

/// Single suffixes removed when the stem's m > 1 (`-ion` only after `s` or `t`).
fn step4(w: &mut Vec<u8>) {
    if let Some(k) = stem_len(w, b"ion") {
        if measure(&w[..k]) > 1 && matches!(w[k - 1], b's' | b't') {
            w.truncate(k);
        }
        return;
    }
    // -ement before -ment before -ent: a longer one that fails keeps the word.
    const RULES: &[(&str, &str)] = &[
        ("al", ""),
        ("ance", ""),
        ("ence", ""),
        ("er", ""),
        ("ic", ""),
        ("able", ""),
        ("ible", ""),
        ("ant", ""),
        ("ement", ""),
        ("ment", ""),
        ("ent", ""),
        ("ou", ""),
        ("ism", ""),
        ("ate", ""),
        ("iti", ""),
        ("ous", ""),
        ("ive", ""),
        ("ize", ""),
    ];
    first_rule(w, RULES, |s| measure(s) > 1);
}

/// A final `e` removed when m > 1, or m = 1 and the stem does not end `*o`; a final `ll` made `l`
/// when m > 1.
fn step5(w: &mut Vec<u8>) {
    if let Some(k) = stem_len(w, b"e") {
        let m = measure(&w[..k]);
        if m > 1 || (m == 1 && !cvc(&w[..k])) {
            w.truncate(k);
        }
    }
    if w.ends_with(b"ll") && measure(&w[..w.len() - 1]) > 1 {
        w.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::stem;

    /// Words of the examples in Porter's paper, then words where NLTK departs from the paper;
    /// the stems are NLTK's (through all the steps).
    #[test]
    fn paper_examples_and_nltk_departures() {
        for (word, want) in [
            ("caresses", "caress"),
            ("ponies", "poni"),
            ("cats", "cat"),
            ("feed", "feed"),
            ("agreed", "agre"),
            ("plastered", "plaster"),
            ("motoring", "motor"),
            ("sing", "sing"),
            ("conflated", "conflat"),
            ("hopping", "hop"),
            ("falling", "fall"),
            ("filing", "file"),
            ("happy", "happi"),
            ("relational", "relat"),
            ("triplicate", "triplic"),
            ("revival", "reviv"),
            ("adoption", "adopt"),
            ("controll", "control"),
            // NLTK's departures.
            ("ties", "tie"),
            ("died", "die"),
            ("spied", "spi"),
            ("skies", "sky"),
            ("dying", "die"),
            ("news", "news"),
            ("enjoy", "enjoy"),
            ("owing", "owe"),
            ("sensationally", "sensat"),
            ("hopefully", "hope"),
            ("possibly", "possibl"),
            ("cry", "cri"),
            ("geology", "geolog"),
            ("by", "by"),
        ] {
            assert_eq!(stem(word), want, "{word}");
        }
    }

    /// NLTK's stem of every word of the golden (`tests/reference/porter_goldens.py`): a line is
    /// `word<TAB>stem`, or `word` alone when the stem is the word.
    #[test]
    fn every_golden_word_stems_as_nltk() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/rouge/porter.tsv"
        );
        let text = std::fs::read_to_string(path).unwrap();
        let (mut words, mut changed, mut wrong) = (0, 0, Vec::new());
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (word, want) = line.split_once('\t').unwrap_or((line, line));
            words += 1;
            changed += usize::from(word != want);
            let got = stem(word);
            if got != want {
                wrong.push(format!("{word}: {got} (nltk {want})"));
            }
        }
        assert!(words >= 20_000 && changed >= 10_000, "{words} words");
        assert!(
            wrong.is_empty(),
            "{} of {words} words differ: {:?}",
            wrong.len(),
            &wrong[..wrong.len().min(20)]
        );
    }

    #[test]
    fn other_words_are_returned_unchanged() {
        for w in ["", "a", "Running", "naïve", "x-ray"] {
            assert_eq!(stem(w), w);
        }
    }
}
