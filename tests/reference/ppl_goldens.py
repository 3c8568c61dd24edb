#!/usr/bin/env python3
"""Perplexity goldens: transformers' language-model loss of the tiny decoder-only models of
tests/fixtures/hf on fixed token sequences, the figure `quill eval --perplexity` computes.

For each model, three sequences of random ids (seed 5; lengths 40, 23 and 61), scored whole and in
windows of 16 tokens (each window on its own, as quill cuts a text longer than its window): the
sum of -log p(token | the tokens before it in its window) over every token but a window's first,
and the count of scored tokens. transformers computes it as model(ids, labels=ids).loss (the
mean over the shifted tokens) times that count, in float64 from float32 logits.

Writes ppl.json beside golden.json: {"sequences": [ids], "whole": {"nll", "tokens"},
"window16": {"nll", "tokens"}}.

For the tiny encoder-decoders (marian, bart, t5): three (source, labels) pairs of random ids
(seed 5; sources of 12, 30 and 7 ids, labels of 20, 9 and 33), each scored as
model(input_ids=source, labels=labels) scores it: the decoder reads the decoder start id then
the labels but the last (transformers' shift_tokens_right), and every label is scored. Writes
ppl.json: {"pairs": [[source, labels]], "whole": {"nll", "tokens"}}.

    ~/quill-ref/venv/bin/python tests/reference/ppl_goldens.py tests/fixtures/hf
"""
import json
import os
import sys

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

root = sys.argv[1]
NAMES = sys.argv[2:] or ["gpt2", "llama", "qwen2", "llama3", "qwen3", "gemma2", "marian", "bart", "t5"]
SEQ2SEQ = {"marian", "bart", "t5"}
torch.set_num_threads(2)


def nll(model, ids):
    if len(ids) < 2:
        return 0.0, 0
    x = torch.tensor([ids])
    with torch.no_grad():
        logits = model(x).logits[0].double()
    lp = torch.log_softmax(logits[:-1], dim=-1)
    picked = lp[torch.arange(len(ids) - 1), x[0, 1:]]
    return float(-picked.sum()), len(ids) - 1


def seq2seq_nll(model, src, labels):
    start = model.config.decoder_start_token_id
    dec = torch.tensor([[start] + labels[:-1]])
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([src]), decoder_input_ids=dec).logits[0].double()
        # the same loss as labels= computes (a check on the shift)
        loss = model(input_ids=torch.tensor([src]), labels=torch.tensor([labels])).loss
    lp = torch.log_softmax(logits, dim=-1)
    total = float(-lp[torch.arange(len(labels)), torch.tensor(labels)].sum())
    assert abs(total / len(labels) - float(loss)) < 1e-4, (total / len(labels), float(loss))
    return total, len(labels)


for name in NAMES:
    path = os.path.join(root, name)
    cfg = json.load(open(os.path.join(path, "config.json")))
    if name in SEQ2SEQ:
        model = AutoModelForSeq2SeqLM.from_pretrained(path, dtype=torch.float32).eval()
        g = torch.Generator().manual_seed(5)
        rand = lambda n: torch.randint(4, cfg["vocab_size"], (n,), generator=g).tolist()
        pairs = [[rand(s), rand(t)] for s, t in ((12, 20), (30, 9), (7, 33))]
        total, count = 0.0, 0
        for src, labels in pairs:
            a, b = seq2seq_nll(model, src, labels)
            total, count = total + a, count + b
        out = {"transformers_version": transformers.__version__,
               "torch_version": torch.__version__, "pairs": pairs,
               "whole": {"nll": total, "tokens": count}}
        with open(os.path.join(path, "ppl.json"), "w") as f:
            json.dump(out, f, indent=1)
        print(name, out["whole"])
        continue
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    g = torch.Generator().manual_seed(5)
    seqs = [torch.randint(4, cfg["vocab_size"], (n,), generator=g).tolist() for n in (40, 23, 61)]
    out = {"transformers_version": transformers.__version__, "torch_version": torch.__version__,
           "sequences": seqs}
    for key, w in (("whole", None), ("window16", 16)):
        total, count = 0.0, 0
        for s in seqs:
            chunks = [s] if w is None else [s[i:i + w] for i in range(0, len(s), w)]
            for c in chunks:
                a, b = nll(model, c)
                total, count = total + a, count + b
        out[key] = {"nll": total, "tokens": count}
    with open(os.path.join(path, "ppl.json"), "w") as f:
        json.dump(out, f, indent=1)
    print(name, out["whole"], out["window16"])
