#!/usr/bin/env python3
"""The golden of tests/tasks.rs: the shipped summarizer's outputs on the first 100 pairs of the
summarization test split, scored by Google's rouge-score (the scorer `quill eval` must equal).

    quill eval models/summarize-en.quill test100.tsv --threads 1 --output hyps.txt
    python3 summ_goldens.py test100.tsv hyps.txt > tests/fixtures/summarize/golden.json

test100.tsv: `head -100 summ.test.tsv` of summ_corpus.py's output. Scores are rouge-score's
RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False) F1, averaged over the pairs,
x 100, unrounded. Needs: pip install rouge-score==0.1.2.
"""
import json
import sys
from importlib.metadata import version

from rouge_score import rouge_scorer

TYPES = ["rouge1", "rouge2", "rougeL"]


def main():
    pairs = [line.rstrip("\n").split("\t") for line in open(sys.argv[1], encoding="utf-8")]
    hyps = [h.rstrip("\n") for h in open(sys.argv[2], encoding="utf-8")]
    if len(hyps) != len(pairs):
        sys.exit(f"{len(hyps)} outputs for {len(pairs)} pairs")
    scorer = rouge_scorer.RougeScorer(TYPES, use_stemmer=False)
    sums = dict.fromkeys(TYPES, 0.0)
    for (_, ref), hyp in zip(pairs, hyps):
        s = scorer.score(ref, hyp)
        for t in TYPES:
            sums[t] += s[t].fmeasure
    out = {
        "made_by": "tests/reference/summ_goldens.py",
        "rouge_score_version": version("rouge-score"),
        "rouge_score": {t: 100 * sums[t] / len(pairs) for t in TYPES},
        "pairs": [
            {"source": src, "reference": ref, "hypothesis": hyp}
            for (src, ref), hyp in zip(pairs, hyps)
        ],
    }
    print(json.dumps(out, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
