#!/usr/bin/env python3
"""Reads a file quill wrote with the reference Python `safetensors` package and prints every
tensor as JSON {name: {"dtype", "shape", "values"}} plus the metadata, for tests/format.rs to
compare with what it wrote. BF16 has no numpy type: its raw bits are returned as uint16.

    python3 tests/reference/check_python_reads.py FILE
"""
import json
import sys

from safetensors import safe_open

path = sys.argv[1]
out = {"tensors": {}, "metadata": None}
with safe_open(path, framework="numpy") as f:
    out["metadata"] = f.metadata()
    for name in f.keys():
        try:
            t = f.get_tensor(name)
            dtype = str(t.dtype)
            values = t.astype("float64").ravel().tolist()
        except (TypeError, ValueError) as e:  # bf16: numpy cannot represent it
            sl = f.get_slice(name)
            dtype, values = sl.get_dtype(), None
            t = sl
        out["tensors"][name] = {"dtype": dtype, "shape": list(f.get_slice(name).get_shape()), "values": values}
print(json.dumps(out))
