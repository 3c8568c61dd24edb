#!/usr/bin/env python3
"""The golden of tests/tasks.rs: the shipped summarizer's outputs on the first 100 pairs of the
summarization test split, scored by Google's rouge-score (the scorer `quill eval` must equal).

    quill eval models/summarize-en.quill test100.tsv --threads 1 --output hyps.txt
    python3 summ_goldens.py test100.tsv hyps.txt > tests/fixtures/summarize/golden.json

test100.tsv: `head -100 summ.test.tsv` of summ_corpus.py's output. Scores are rouge-score's
RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False) F1, averaged over the pairs,
x 100, unrounded ("rouge_score"), and the same with use_stemmer=True ("rouge_score_stemmed",
NLTK's Porter stemmer). Needs: pip install rouge-score==0.1.2 nltk==3.10.4.

    python3 summ_goldens.py --rescore tests/fixtures/summarize/golden.json

recomputes the scores of an existing golden's pairs in place (the hypotheses, the model's
outputs, are kept as they are).
"""
import json
import sys
from importlib.metadata import version

from rouge_score import rouge_scorer

TYPES = ["rouge1", "rouge2", "rougeL"]


def mean_f1(refs, hyps, stem):
    scorer = rouge_scorer.RougeScorer(TYPES, use_stemmer=stem)
    sums = dict.fromkeys(TYPES, 0.0)
    for ref, hyp in zip(refs, hyps):
        s = scorer.score(ref, hyp)
        for t in TYPES:
            sums[t] += s[t].fmeasure
    return {t: 100 * sums[t] / len(refs) for t in TYPES}


def golden(pairs):
    """`pairs`: (source, reference, hypothesis) triples."""
    refs = [p[1] for p in pairs]
    hyps = [p[2] for p in pairs]
    return {
        "made_by": "tests/reference/summ_goldens.py",
        "rouge_score_version": version("rouge-score"),
        "nltk_version": version("nltk"),
        "rouge_score": mean_f1(refs, hyps, False),
        "rouge_score_stemmed": mean_f1(refs, hyps, True),
        "pairs": [{"source": s, "reference": r, "hypothesis": h} for s, r, h in pairs],
    }


def main():
    if sys.argv[1] == "--rescore":
        with open(sys.argv[2], encoding="utf-8") as f:
            old = json.load(f)
        pairs = [(p["source"], p["reference"], p["hypothesis"]) for p in old["pairs"]]
        with open(sys.argv[2], "w", encoding="utf-8") as f:
            print(json.dumps(golden(pairs), ensure_ascii=False, indent=1), file=f)
        return
    pairs = [line.rstrip("\n").split("\t") for line in open(sys.argv[1], encoding="utf-8")]
    hyps = [h.rstrip("\n") for h in open(sys.argv[2], encoding="utf-8")]
    if len(hyps) != len(pairs):
        sys.exit(f"{len(hyps)} outputs for {len(pairs)} pairs")
    print(json.dumps(golden([(s, r, h) for (s, r), h in zip(pairs, hyps)]),
                     ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
