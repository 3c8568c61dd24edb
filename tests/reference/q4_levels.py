#!/usr/bin/env python3
"""Derives quill's 16 int4 levels (`Q4_LEVELS` in src/tensor/mod.rs, docs/format.md §5).

Lloyd–Max iteration on groups of 32 standard-normal weights, each group scaled so that its
largest-magnitude value becomes +127; the levels are then rounded to integers so kernels can
expand 4-bit codes to int8 with one table lookup. Needs numpy.

    python3 tests/reference/q4_levels.py
"""
import numpy as np

rng = np.random.default_rng(1)
w = rng.standard_normal((200_000, 32))
peak = w[np.arange(len(w)), np.abs(w).argmax(1)]
y = (w / peak[:, None] * 127).ravel()
levels = np.linspace(-127, 127, 16)
for _ in range(200):
    code = np.searchsorted((levels[1:] + levels[:-1]) / 2, y)
    for k in range(16):
        members = y[code == k]
        if len(members):
            levels[k] = members.mean()
print([int(v) for v in np.round(levels)])
