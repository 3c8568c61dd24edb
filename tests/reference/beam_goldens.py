#!/usr/bin/env python3
"""Beam-search goldens for the tiny models of tests/fixtures/hf: transformers' own `generate`
with num_beams=4, num_return_sequences=4, length_penalty=1.0, early_stopping=False,
max_new_tokens=24 (plus the golden's gen_kwargs, e.g. Marian's bad_words_ids). Writes beam.json
beside golden.json: {"hypotheses": [ids without the decoder start / prompt], "scores": [...]}.

    ~/quill-ref/venv/bin/python tests/reference/beam_goldens.py tests/fixtures/hf
"""
import json
import os
import sys

import torch
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

root = sys.argv[1]
torch.set_num_threads(2)
for name in sorted(os.listdir(root)):
    path = os.path.join(root, name)
    g = json.load(open(os.path.join(path, "golden.json")))
    cfg = json.load(open(os.path.join(path, "config.json")))
    seq2seq = cfg.get("is_encoder_decoder", False)
    cls = AutoModelForSeq2SeqLM if seq2seq else AutoModelForCausalLM
    model = cls.from_pretrained(path).eval()
    inp = torch.tensor([g["input_ids"]])
    with torch.no_grad():
        out = model.generate(inp, attention_mask=torch.ones_like(inp), do_sample=False, num_beams=4,
                             num_return_sequences=4, length_penalty=1.0, early_stopping=False,
                             max_new_tokens=24, return_dict_in_generate=True, output_scores=True,
                             **g["gen_kwargs"])
    skip = 1 if seq2seq else len(g["input_ids"])
    pad = model.generation_config.pad_token_id
    hyps = []
    for seq in out.sequences.tolist():
        ids = seq[skip:]
        # Finished hypotheses shorter than the longest are padded after their end-of-sequence id.
        eos = model.generation_config.eos_token_id
        eos = eos if isinstance(eos, list) else [eos]
        for j, t in enumerate(ids):
            if t in eos:
                ids = ids[: j + 1]
                break
        hyps.append(ids)
    scores = [float(s) for s in out.sequences_scores]
    with open(os.path.join(path, "beam.json"), "w") as f:
        json.dump({"transformers_version": __import__("transformers").__version__, "num_beams": 4,
                   "length_penalty": 1.0, "max_new_tokens": 24, "gen_kwargs": g["gen_kwargs"],
                   "hypotheses": hyps, "scores": scores}, f, indent=1)
    print(name, [len(h) for h in hyps], ["%.4f" % s for s in scores])
