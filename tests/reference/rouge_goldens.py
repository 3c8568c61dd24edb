#!/usr/bin/env python3
"""ROUGE goldens from Google's rouge-score package: per pair, the tokens and the precision, recall
and F1 of rouge1, rouge2 and rougeL (RougeScorer(["rouge1", "rouge2", "rougeL"],
use_stemmer=False)), and the same under "stemmed" with use_stemmer=True (NLTK's Porter stemmer);
for the corpus, the mean F1 x 100 over the pairs ("corpus", "corpus_stemmed"). Writes
tests/fixtures/rouge/cases.json, read by src/eval/rouge.rs's tests.

    pip install rouge-score==0.1.2 nltk==3.10.4
    python tests/reference/rouge_goldens.py tests/fixtures/rouge/cases.json
"""
import json
import sys
from importlib.metadata import version

from rouge_score import rouge_scorer, tokenize

PAIRS = [
    # Package synopses (summaries of Debian package descriptions) against outputs a model might give.
    ("command-line tool for transferring data with URL syntax",
     "tool for transferring data with url syntax from the command line"),
    ("GNU C compiler", "the GNU C compiler"),
    ("utilities for managing the system log", "system log daemon and utilities"),
    ("Python 3 library for parsing HTML and XML documents",
     "library to parse HTML/XML documents in Python 3"),
    ("fast, scalable, distributed revision control system",
     "distributed revision control system (fast and scalable)"),
    # Case, punctuation, digits.
    ("The Cat sat on the MAT.", "the cat sat on the mat"),
    ("version 2.0-rc1 of libfoo", "libfoo 2.0 rc1"),
    ("e-mail, web & ftp clients", "email web and ftp client"),
    # Repeated n-grams: overlap is clipped.
    ("the the the the", "the the"),
    ("a b a b a b", "a b a b"),
    ("to be or not to be", "to be to be to be"),
    # Order matters for ROUGE-2 and ROUGE-L only.
    ("one two three four five", "five four three two one"),
    ("alpha beta gamma delta", "alpha gamma beta delta"),
    # No overlap; one-token texts; empty sides.
    ("completely different words", "nothing shared here"),
    ("single", "single"),
    ("single", "other"),
    ("", "a prediction without a target"),
    ("a target without a prediction", ""),
    ("", ""),
    ("!!! ...", "???"),
    # Non-ASCII: accented letters and other scripts are separators to rouge-score.
    ("Übersetzung für Maschinen", "uebersetzung fuer maschinen"),
    ("café crème brûlée", "cafe creme brulee"),
    ("日本語のテキスト summary", "summary 日本語"),
    ("İstanbul KELVIN \u212a ẞ straße", "istanbul kelvin k ss strasse"),
    ("naïve résumé 42", "naive resume 42"),
    # Longer texts.
    ("This package provides a library and a command-line tool to compress and decompress files "
     "using the LZ4 algorithm, which is focused on compression and decompression speed.",
     "LZ4 is a fast compression algorithm; this package contains the library and a command line "
     "tool to compress and decompress files."),
    ("The quick brown fox jumps over the lazy dog while the dog sleeps in the sun.",
     "A quick brown dog sleeps in the sun while the fox jumps."),
    ("tab\tseparated\nand newline text", "tab separated and newline text"),
    # Inflections the stemmer conflates (tokens of up to three characters are not stemmed).
    ("The cats were running quickly across the fields.", "a cat runs quick across a field"),
    ("generalization of relational databases", "generalize the relation database"),
    ("utilities for managing connected devices", "utility that manages connection to a device"),
    ("the skies were dying and lying", "sky dies, lies"),
    ("news of the innings", "new inning"),
    ("flies spied tied cries", "fly spy tie cry"),
    ("happy happiness enjoyed the enjoyment", "happily enjoying happiest"),
    ("MP3s, x86s and the 1990s", "mp3 x86 1990"),
    ("proceeding exceedingly succeeded", "proceed exceed succeed"),
]

TYPES = ["rouge1", "rouge2", "rougeL"]


def scores(scorer, target, prediction, sums):
    """The tokens and scores of a pair under `scorer`; adds its F1s to `sums`."""
    s = scorer.score(target, prediction)
    stemmer = scorer._tokenizer._stemmer
    case = {"target_tokens": tokenize.tokenize(target, stemmer),
            "prediction_tokens": tokenize.tokenize(prediction, stemmer)}
    for k in TYPES:
        case[k] = [s[k].precision, s[k].recall, s[k].fmeasure]
        sums[k] += s[k].fmeasure
    return case


plain = rouge_scorer.RougeScorer(TYPES, use_stemmer=False)
stemmed = rouge_scorer.RougeScorer(TYPES, use_stemmer=True)
cases = []
sums, sums_stemmed = dict.fromkeys(TYPES, 0.0), dict.fromkeys(TYPES, 0.0)
for target, prediction in PAIRS:
    case = {"target": target, "prediction": prediction}
    case.update(scores(plain, target, prediction, sums))
    case["stemmed"] = scores(stemmed, target, prediction, sums_stemmed)
    cases.append(case)
corpus = {k: 100 * v / len(PAIRS) for k, v in sums.items()}
corpus_stemmed = {k: 100 * v / len(PAIRS) for k, v in sums_stemmed.items()}
with open(sys.argv[1], "w") as f:
    json.dump({"rouge_score_version": version("rouge-score"), "nltk_version": version("nltk"),
               "cases": cases, "corpus": corpus, "corpus_stemmed": corpus_stemmed},
              f, indent=1, ensure_ascii=False)
print(len(cases), "cases", corpus, corpus_stemmed)
