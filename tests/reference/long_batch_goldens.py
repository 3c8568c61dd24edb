#!/usr/bin/env python3
"""Long and batched parity goldens: transformers' greedy decoding of the tiny models of
tests/fixtures/hf on a padded batch of three inputs of different lengths (the longest 200 source
tokens for seq2seq models, 180 prompt tokens for decoder-only ones, whose 256 positions must also
hold the 64 new tokens), 64 new tokens each. Seq2seq inputs are right-padded, decoder-only
prompts left-padded, both with an attention mask, as transformers users batch them.

Writes long_batch.json beside golden.json: {"inputs": [ids, unpadded], "rows": [{"ids": the
generated ids up to and including the end-of-sequence id, "top5": per step, the 5 best ids and
their logits}], "min_top1_margin"}. quill runs the same inputs as one ragged batch (no padding).
For phi3-longrope also crossing.json, the same for one prompt of 40 tokens and 48 new ones
(LongRoPE's switch to its long factors at the original context of 64, during generation).

    ~/quill-ref/venv/bin/python tests/reference/long_batch_goldens.py tests/fixtures/hf
"""
import json
import os
import sys

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

root = sys.argv[1]
NAMES = sys.argv[2:] or ["bart", "mbart", "pegasus", "t5", "t5-gated", "bart-asym", "gpt2", "llama", "qwen2", "llama3", "qwen3", "mistral", "gemma", "gemma2", "phi3-longrope"]
NEW = 64
torch.set_num_threads(2)

def run(name, lens_s2s, lens_dec, new, out_name):
    path = os.path.join(root, name)
    cfg = json.load(open(os.path.join(path, "config.json")))
    seq2seq = cfg.get("is_encoder_decoder", False)
    model = (AutoModelForSeq2SeqLM if seq2seq else AutoModelForCausalLM).from_pretrained(path).eval()
    gc = model.generation_config
    eos = gc.eos_token_id if isinstance(gc.eos_token_id, list) else [gc.eos_token_id]
    pad = gc.pad_token_id if gc.pad_token_id is not None else eos[0]
    v = cfg["vocab_size"]
    g = torch.Generator().manual_seed(11)
    lens = lens_s2s if seq2seq else lens_dec
    bad = set(eos) | {pad, gc.bos_token_id, gc.decoder_start_token_id}
    inputs = []
    for n in lens:
        ids = [t for t in torch.randint(4, v - 4, (n + 8,), generator=g).tolist() if t not in bad][:n]
        if seq2seq:
            ids = ids[: n - 1] + [eos[0]]
        elif gc.bos_token_id is not None and name == "llama":
            ids = [gc.bos_token_id] + ids[: n - 1]
        inputs.append(ids)
    width = max(lens)
    if seq2seq:
        batch = [ids + [pad] * (width - len(ids)) for ids in inputs]
        mask = [[1] * len(ids) + [0] * (width - len(ids)) for ids in inputs]
    else:
        batch = [[pad] * (width - len(ids)) + ids for ids in inputs]
        mask = [[0] * (width - len(ids)) + [1] * len(ids) for ids in inputs]
    kwargs = {}
    if name == "marian":
        kwargs["bad_words_ids"] = [[v - 1]]
    with torch.no_grad():
        out = model.generate(torch.tensor(batch), attention_mask=torch.tensor(mask), do_sample=False,
                             num_beams=1, max_new_tokens=new, min_new_tokens=0,
                             return_dict_in_generate=True, output_logits=True, **kwargs)
    skip = 1 if seq2seq else width
    rows, margins = [], []
    for r in range(len(inputs)):
        ids = out.sequences[r].tolist()[skip:]
        for j, t in enumerate(ids):
            if t in eos:
                ids = ids[: j + 1]
                break
        top5 = []
        for step in range(len(ids)):
            vals, idx = torch.topk(out.logits[step][r].float(), 5)
            top5.append({"ids": idx.tolist(), "logits": [float(x) for x in vals]})
            margins.append(float(vals[0] - vals[1]))
        rows.append({"ids": ids, "top5": top5})
    with open(os.path.join(path, out_name), "w") as f:
        json.dump({"transformers_version": transformers.__version__, "torch_version": torch.__version__,
                   "padding": "right" if seq2seq else "left", "max_new_tokens": new,
                   "gen_kwargs": kwargs, "inputs": inputs, "rows": rows,
                   "min_top1_margin": min(margins)}, f)
    print("%-9s lens=%s out=%s min_margin=%.5f" % (name, [len(i) for i in inputs],
                                                   [len(r["ids"]) for r in rows], min(margins)))


for name in NAMES:
    run(name, (200, 150, 37), (180, 120, 29), NEW, "long_batch.json")
    if name == "phi3-longrope":
        # One prompt of 40 tokens and 48 new ones: generation crosses the original context (64),
        # where transformers switches new positions to the long factors while the cached ones
        # keep the short.
        run(name, None, (40,), 48, "crossing.json")
