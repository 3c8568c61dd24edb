#!/usr/bin/env python3
"""Prints T5's relative-position buckets from transformers itself, for the values pinned in
src/model/session.rs (`t5_buckets_match_the_reference_values`).

    ~/quill-ref/venv/bin/python tests/reference/t5_buckets.py
"""
import torch
from transformers.models.t5.modeling_t5 import T5Attention

for bidirectional, rels in [(True, [-200, -100, -20, -8, -7, -1, 0, 1, 7, 8, 20, 100, 200]),
                            (False, [-200, -100, -40, -16, -15, -1, 0, 5])]:
    b = T5Attention._relative_position_bucket(torch.tensor(rels), bidirectional=bidirectional,
                                              num_buckets=32, max_distance=128)
    print("bidirectional" if bidirectional else "causal", list(zip(rels, b.tolist())))
