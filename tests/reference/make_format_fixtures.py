#!/usr/bin/env python3
"""Writes the safetensors fixtures of tests/format.rs with the reference Python `safetensors`
package (pip install safetensors numpy), so quill's reader is tested on files it did not write.

    python3 tests/reference/make_format_fixtures.py tests/fixtures/format

Outputs:
  py_plain.safetensors  plain safetensors (F32, F16, I8, U8, I64), tensors not 64-byte aligned
  py_quill_q8.quill     a quill-convention file (metadata, int8 weight + F32 row scales, F32
                        bias, tokenizer tensor) written by Python, also not aligned
  py_expected.json      the values written, for the Rust test to compare with
"""
import json
import os
import sys

import numpy as np
from safetensors.numpy import save_file

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(7)

plain = {
    "a.f32": rng.standard_normal((3, 5)).astype(np.float32),
    "b.f16": rng.standard_normal(4).astype(np.float16),
    "c.i8": rng.integers(-128, 128, (2, 3), dtype=np.int8),
    "d.u8": np.arange(7, dtype=np.uint8),
    "e.i64": np.array([1, -2], dtype=np.int64),
}
save_file(plain, os.path.join(out, "py_plain.safetensors"), metadata={"framework": "numpy"})

config = {
    "vocab_size": 16, "d_model": 8, "decoder_layers": 1, "heads": 2, "ffn_dim": 16,
    "positions": "rotary", "norm": "rms_norm", "eos_ids": [2], "bos_id": 1,
}
w = rng.standard_normal((4, 8)).astype(np.float32)
scale = (np.abs(w).max(axis=1) / 127).astype(np.float32)
q = np.clip(np.round(w / scale[:, None]), -127, 127).astype(np.int8)
tokenizer = json.dumps({"version": "1.0", "model": {"type": "WordLevel", "vocab": {"<unk>": 0}, "unk_token": "<unk>"}})
quill = {
    "layer.weight": q,
    "layer.weight.scale": scale,
    "layer.bias": rng.standard_normal(4).astype(np.float32),
    "quill.tokenizer": np.frombuffer(tokenizer.encode(), dtype=np.uint8),
}
save_file(quill, os.path.join(out, "py_quill_q8.quill"), metadata={
    "quill.format": "1", "quill.arch": "decoder-only", "quill.config": json.dumps(config),
    "quill.producer": "tests/reference/make_format_fixtures.py",
})

expected = {k: {"shape": list(v.shape), "values": v.astype(np.float64).ravel().tolist()}
            for k, v in {**plain, **quill}.items() if k != "quill.tokenizer"}
expected["tokenizer"] = tokenizer
with open(os.path.join(out, "py_expected.json"), "w") as f:
    json.dump(expected, f)
