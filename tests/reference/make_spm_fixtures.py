#!/usr/bin/env python3
"""Trains two small SentencePiece models (Unigram and BPE with byte fallback) on the en-de
gettext corpus and records the ids SentencePiece itself gives for the hard strings of
tests/fixtures/tokenizers (the same 339 strings as the Hugging Face goldens).

    python3 tests/reference/mo_corpus.py de /tmp/mo          # the corpus (standard library only)
    ~/quill-ref/venv/bin/python tests/reference/make_spm_fixtures.py /tmp/mo tests/fixtures/sentencepiece

Writes OUT/{unigram,bpe}.model and OUT/{unigram,bpe}.json: {"sentencepiece_version", "cases":
[{"id", "text", "ids", "decoded"}]} (ids without bos/eos, as `sp.encode(text)` returns them).
"""
import json
import os
import sys

import sentencepiece as spm

corpus_dir, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
text_path = os.path.join(out, "train.txt")
with open(os.path.join(corpus_dir, "en-de.train.tsv"), encoding="utf-8") as f, \
        open(text_path, "w", encoding="utf-8") as t:
    for line in f:
        src, tgt = line.rstrip("\n").split("\t")
        t.write(src + "\n" + tgt + "\n")

common = dict(input=text_path, vocab_size=2000, character_coverage=0.9995, num_threads=2,
              input_sentence_size=200000, shuffle_input_sentence=False, seed_sentencepiece_size=200000,
              pad_id=0, unk_id=3, bos_id=1, eos_id=2, minloglevel=2)
spm.SentencePieceTrainer.train(model_prefix=os.path.join(out, "unigram"), model_type="unigram", **common)
spm.SentencePieceTrainer.train(model_prefix=os.path.join(out, "bpe"), model_type="bpe", byte_fallback=True,
                               normalization_rule_name="identity", remove_extra_whitespaces=False,
                               **common)
os.remove(text_path)

here = os.path.dirname(os.path.abspath(__file__))
cases = json.load(open(os.path.join(here, "..", "fixtures", "tokenizers", "t5_unigram", "encodings.json")))["cases"]
for name in ("unigram", "bpe"):
    os.remove(os.path.join(out, name + ".vocab"))
    sp = spm.SentencePieceProcessor(model_file=os.path.join(out, name + ".model"))
    rows = [{"id": c["id"], "text": c["text"], "ids": sp.encode(c["text"]),
             "decoded": sp.decode(sp.encode(c["text"]))} for c in cases]
    with open(os.path.join(out, name + ".json"), "w", encoding="utf-8") as f:
        json.dump({"sentencepiece_version": spm.__version__, "cases": rows}, f, ensure_ascii=False, indent=0)
    print(name, sp.get_piece_size(), "pieces,", sum(len(r["ids"]) for r in rows), "ids")
