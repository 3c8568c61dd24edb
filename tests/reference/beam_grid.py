#!/usr/bin/env python3
"""Beam-search semantics goldens: transformers' own `generate` on a tiny BART and a tiny Llama
(decoder-only: the prompt is not part of a hypothesis) whose hypotheses end early, over
length_penalty x early_stopping (False, True, "never"), with several returned sequences, plus
no_repeat_ngram_size and min_new_tokens.

The Llama is tests/fixtures/hf/llama with lm_head.weight[eos] = 0.98 x lm_head.weight[874] (874:
a token the model often picks), so that the end-of-sequence id competes; tests/decode.rs makes
the same change; goldens in tests/fixtures/hf/llama/beam_grid.json.

The model is tests/fixtures/hf/bart with final_logits_bias[eos] = 1.4, so that the end-of-sequence
id competes with the other tokens and hypotheses close at different lengths (with the original
bias no hypothesis ends before max_new_tokens). The changed model is only saved to a temporary
folder (tests/decode.rs makes the same change itself); the goldens go to
tests/fixtures/hf/bart/beam_grid.json: {"input_ids", "cases": [{"kwargs", "hypotheses" (ids
after the decoder start, up to and including the end-of-sequence id), "scores"}]}.

    ~/quill-ref/venv/bin/python tests/reference/beam_grid.py tests/fixtures/hf
"""
import json
import os
import shutil
import sys
import tempfile

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

root = sys.argv[1]
torch.set_num_threads(2)
src, dst = os.path.join(root, "bart"), os.path.join(tempfile.mkdtemp(), "bart-eos")
model = AutoModelForSeq2SeqLM.from_pretrained(src).eval()
with torch.no_grad():
    model.final_logits_bias[0, 2] = 1.4
os.makedirs(dst, exist_ok=True)
model.save_pretrained(dst, safe_serialization=True)
for f in ("tokenizer.json", "tokenizer_config.json"):
    shutil.copy(os.path.join(src, f), os.path.join(dst, f))
model = AutoModelForSeq2SeqLM.from_pretrained(dst).eval()  # what the converter will see



def run_grid(model, input_ids, decoder_only):
    inp = torch.tensor([input_ids])
    eos = model.generation_config.eos_token_id
    cases = []
    grid = [dict(length_penalty=lp, early_stopping=es) for lp in (0.6, 1.0, 2.0)
            for es in (False, True, "never")]
    grid += [dict(length_penalty=1.0, early_stopping=False, no_repeat_ngram_size=2),
             dict(length_penalty=1.0, early_stopping=False, min_new_tokens=3),
             dict(length_penalty=1.0, early_stopping="never", min_new_tokens=3, no_repeat_ngram_size=3)]
    for kw in grid:
        kw = dict(num_beams=4, num_return_sequences=3, max_new_tokens=16, **kw)
        with torch.no_grad():
            out = model.generate(inp, attention_mask=torch.ones_like(inp), do_sample=False,
                                 return_dict_in_generate=True, output_scores=True, **kw)
        hyps = []
        for seq in out.sequences.tolist():
            # Seq2seq: after the decoder start id; decoder-only: after the prompt.
            ids = seq[len(input_ids):] if decoder_only else seq[1:]
            if eos in ids:
                ids = ids[: ids.index(eos) + 1]
            hyps.append(ids)
        scores = [float(s) for s in out.sequences_scores]
        cases.append({"kwargs": kw, "hypotheses": hyps, "scores": scores})
        print(kw, [len(h) for h in hyps], ["%.4f" % s for s in scores])
    return {"transformers_version": transformers.__version__, "torch_version": torch.__version__,
            "input_ids": input_ids, "cases": cases}


input_ids = json.load(open(os.path.join(src, "golden.json")))["input_ids"]
with open(os.path.join(src, "beam_grid.json"), "w") as f:
    json.dump(run_grid(model, input_ids, False), f, indent=1)

llama = os.path.join(root, "llama")
model = AutoModelForCausalLM.from_pretrained(llama).eval()
with torch.no_grad():
    model.lm_head.weight[2] = model.lm_head.weight[874] * 0.98
input_ids = json.load(open(os.path.join(llama, "golden.json")))["input_ids"]
with open(os.path.join(llama, "beam_grid.json"), "w") as f:
    json.dump(run_grid(model, input_ids, True), f, indent=1)
