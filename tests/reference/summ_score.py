#!/usr/bin/env python3
"""ROUGE of summaries with Google's `rouge-score` package, the scorer quill's `quill eval` is
checked against, and the lead baselines of models/summarize-en.md.

    python3 summ_score.py TEST.tsv                # lead baselines only
    python3 summ_score.py TEST.tsv HYPS.txt       # ... and HYPS (one summary per test line)

TEST.tsv holds `long text<TAB>reference summary` lines (summ_corpus.py's output). Scores are
F1 x 100, averaged over the lines (rouge-score's per-pair scores, as `quill eval` averages them),
without stemming (what `quill eval` computes) and with rouge-score's Porter stemmer (the figure
most papers quote).

The lead baselines take the first sentence of the long text (up to the first `. `, `! ` or `? `)
and truncate it to N words, for N in 8, 10 and 12 (the references have 6 words at the median,
10 at the 95th percentile).

Needs: pip install rouge-score==0.1.2 (it pulls nltk for the stemmer).
"""
import json
import re
import sys

from rouge_score import rouge_scorer

TYPES = ["rouge1", "rouge2", "rougeL"]


def first_sentence(text):
    m = re.search(r"[.!?](\s|$)", text)
    return text[: m.start() + 1] if m else text


def lead(text, words):
    return " ".join(first_sentence(text).split()[:words])


def score(refs, hyps, stem):
    scorer = rouge_scorer.RougeScorer(TYPES, use_stemmer=stem)
    sums = dict.fromkeys(TYPES, 0.0)
    for r, h in zip(refs, hyps):
        s = scorer.score(r, h)
        for t in TYPES:
            sums[t] += s[t].fmeasure
    return {t: round(100 * sums[t] / len(refs), 2) for t in TYPES}


def main():
    pairs = [line.rstrip("\n").split("\t") for line in open(sys.argv[1], encoding="utf-8")]
    srcs = [p[0] for p in pairs]
    refs = [p[1] for p in pairs]
    out = {"test": sys.argv[1], "pairs": len(pairs)}
    for n in (8, 10, 12):
        hyps = [lead(s, n) for s in srcs]
        out[f"lead-{n}"] = {"no_stem": score(refs, hyps, False), "stem": score(refs, hyps, True)}
    if len(sys.argv) > 2:
        hyps = [h.rstrip("\n") for h in open(sys.argv[2], encoding="utf-8")]
        if len(hyps) != len(refs):
            sys.exit(f"{sys.argv[2]}: {len(hyps)} lines for {len(refs)} test pairs")
        out["hyps"] = {"no_stem": score(refs, hyps, False), "stem": score(refs, hyps, True)}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
