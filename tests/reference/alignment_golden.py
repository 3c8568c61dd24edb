#!/usr/bin/env python3
"""Cross-attention alignment golden for the tiny Marian, BART and T5 models: transformers'
greedy `generate` with output_attentions=True; per generated token, the last decoder layer's
cross-attention averaged over heads. Writes alignment.json beside golden.json.

    ~/quill-ref/venv/bin/python tests/reference/alignment_golden.py tests/fixtures/hf
"""
import json
import os
import sys

import torch
from transformers import AutoModelForSeq2SeqLM

root = sys.argv[1]
for name in ["marian", "bart", "t5"]:
    path = os.path.join(root, name)
    g = json.load(open(os.path.join(path, "golden.json")))
    model = AutoModelForSeq2SeqLM.from_pretrained(path, attn_implementation="eager").eval()
    inp = torch.tensor([g["input_ids"]])
    with torch.no_grad():
        out = model.generate(inp, attention_mask=torch.ones_like(inp), do_sample=False, num_beams=1,
                             max_new_tokens=8, return_dict_in_generate=True, output_attentions=True,
                             **g["gen_kwargs"])
    rows = [step[-1][0].mean(dim=0)[-1].tolist() for step in out.cross_attentions]
    with open(os.path.join(path, "alignment.json"), "w") as f:
        json.dump({"max_new_tokens": 8, "ids": out.sequences[0].tolist()[1:], "alignment": rows}, f)
    print(name, len(rows), "steps x", len(rows[0]))
