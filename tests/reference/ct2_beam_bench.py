#!/usr/bin/env python3
"""CTranslate2 per-step cost of beam 4 against greedy on the Marian-base int8 model of
../shared/tools/ref_perf.py (batch 1, 32-token input, exactly 128 new tokens, 1 thread),
to compare with `quill bench MODEL --beams 4`.

    ~/quill-ref/venv/bin/python tests/reference/ct2_beam_bench.py [~/quill-ref/ct2/marian-base-int8]
"""
import os
import statistics
import sys
import time

import ctranslate2

path = sys.argv[1] if len(sys.argv) > 1 else os.path.expanduser("~/quill-ref/ct2/marian-base-int8")
tr = ctranslate2.Translator(path, device="cpu", compute_type="int8", inter_threads=1, intra_threads=1)
# 31 word tokens of the random model's vocabulary and the end-of-sentence token: 32 ids.
src = [[f"w{10 + (i * 7919) % 31000}" for i in range(31)] + ["</s>"]]
for beam in (1, 4):
    times = []
    for _ in range(6):
        t = time.perf_counter()
        tr.translate_batch(src, beam_size=beam, min_decoding_length=128, max_decoding_length=128)
        times.append(time.perf_counter() - t)
    print("ctranslate2 beam %d: %.3f ms/step (median of 5 after warm-up)" % (beam, statistics.median(times[1:]) * 1e3 / 128))
