#!/usr/bin/env python3
"""Python `tokenizers` encode throughput on the same corpus and tokenizers as
benches/tokenizer.rs (1 thread, one `encode` call per segment, best of 3).

    ~/quill-ref/venv/bin/python tests/reference/tokenizer_speed.py /tmp/mo/en-de.train.tsv
"""
import os
import sys
import time

os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
from tokenizers import Tokenizer  # noqa: E402

lines = [s for l in open(sys.argv[1], encoding="utf-8").read().splitlines() for s in l.split("\t")]
nbytes = sum(len(s.encode()) for s in lines)
root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "tokenizers")
for name in ["gpt2_bytelevel_bpe", "t5_unigram", "llama_bpe_bytefallback"]:
    tok = Tokenizer.from_file(os.path.join(root, name, "tokenizer.json"))
    best = 1e9
    for _ in range(3):
        t = time.perf_counter()
        for s in lines:
            tok.encode(s)
        best = min(best, time.perf_counter() - t)
    t = time.perf_counter()
    tok.encode_batch(lines)
    batch = time.perf_counter() - t
    print("%-24s %7.2f MB/s per call, %7.2f MB/s encode_batch (1 thread)" % (name, nbytes / best / 1e6, nbytes / batch / 1e6))
