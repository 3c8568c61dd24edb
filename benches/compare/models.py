#!/usr/bin/env python3
"""The benchmark models, made once for every engine from the same random weights.

    $REF_DIR/venv/bin/python benches/compare/models.py

Hugging Face checkpoints (random weights, fixed seeds) in $REF_DIR/models:
  marian-base    6+6 layers, d 512, 8 heads, ffn 2048, vocab 32,000 (61 M parameters)
  llama-135m     SmolLM-135M's shape: 30 layers, d 576, 9 heads / 3 KV heads, ffn 1536, vocab 49,152
  bergamot-tiny  Bergamot's tiny student shape: 6-layer encoder, 2-layer decoder, d 256, ffn 1536,
                 vocab 32,000 (the decoder is a standard Transformer one: no peer here runs SSRU)
The first two are made by ../shared/tools/ref_perf.py (the team's reference figures use them).
Each is converted with each engine's own tool:
  quill          `quill convert` (f32) and `quill convert --quantize int8` -> $REF_DIR/quill/NAME-{f32,int8}.quill
  CTranslate2    its TransformersConverter -> $REF_DIR/ct2/NAME-{float32,int8}
  llama.cpp      GGUF F32 written with the gguf package, Q8_0 by llama.cpp's own quantizer
                 (../shared/tools/ref_llamacpp.py) -> $REF_DIR/gguf/llama-135m-{f32,q8_0}.gguf
"""
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TOOLS = os.environ.get("QUILL_SHARED_TOOLS", os.path.join(os.path.dirname(ROOT), "shared", "tools"))
REF = os.environ.get("REF_DIR", os.path.expanduser("~/quill-ref"))
sys.path.insert(0, TOOLS)

TINY_V = 32000


def make_bergamot_tiny():
    import torch
    from transformers import GenerationConfig, MarianConfig, MarianMTModel
    from ref_tiny_models import make_vocab, save_tokenizer

    path = os.path.join(REF, "models", "bergamot-tiny")
    if os.path.exists(os.path.join(path, "model.safetensors")):
        return
    torch.manual_seed(1)
    v = TINY_V
    cfg = MarianConfig(
        vocab_size=v, decoder_vocab_size=v, d_model=256, encoder_layers=6, decoder_layers=2,
        encoder_attention_heads=8, decoder_attention_heads=8, encoder_ffn_dim=1536, decoder_ffn_dim=1536,
        max_position_embeddings=512, pad_token_id=v - 1, eos_token_id=0, decoder_start_token_id=v - 1,
        forced_eos_token_id=None, scale_embedding=True, activation_function="relu",
    )
    m = MarianMTModel(cfg)
    m.generation_config = GenerationConfig(decoder_start_token_id=v - 1, eos_token_id=0, pad_token_id=v - 1,
                                           bad_words_ids=[[v - 1]])
    m.save_pretrained(path, safe_serialization=True)
    save_tokenizer(path, make_vocab({0: "</s>", 1: "<unk>", v - 1: "<pad>"}, v), eos_token="</s>",
                   unk_token="<unk>", pad_token="<pad>")
    print("bergamot-tiny params:", sum(p.numel() for p in m.parameters()))


def ct2(name):
    from ctranslate2.converters import TransformersConverter

    for q in ["int8", "float32"]:
        dst = os.path.join(REF, "ct2", "%s-%s" % (name, q))
        if not os.path.exists(os.path.join(dst, "model.bin")):
            TransformersConverter(os.path.join(REF, "models", name)).convert(dst, quantization=q, force=True)
            print("converted", dst)


def quill(name):
    exe = os.path.join(ROOT, "target", "release", "quill")
    os.makedirs(os.path.join(REF, "quill"), exist_ok=True)
    for q in ["int8", "f32"]:
        dst = os.path.join(REF, "quill", "%s-%s.quill" % (name, q))
        if not os.path.exists(dst):
            cmd = [exe, "convert", os.path.join(REF, "models", name), dst] + (["--quantize", q] if q != "f32" else [])
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            print("converted", dst)


def gguf():
    import llama_cpp
    from ref_llamacpp import hf_to_gguf, quantize

    d = os.path.join(REF, "gguf")
    os.makedirs(d, exist_ok=True)
    f32, q8 = os.path.join(d, "llama-135m-f32.gguf"), os.path.join(d, "llama-135m-q8_0.gguf")
    if not os.path.exists(f32):
        hf_to_gguf(os.path.join(REF, "models", "llama-135m"), f32)
    if not os.path.exists(q8):
        quantize(f32, q8, llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0)
    print("gguf ready")


def main():
    import ref_perf

    t0 = time.time()
    ref_perf.make()  # marian-base, llama-135m (+ their CT2 conversions)
    make_bergamot_tiny()
    ct2("bergamot-tiny")
    for name in ["marian-base", "llama-135m", "bergamot-tiny"]:
        quill(name)
    try:
        gguf()
    except ImportError:
        print("llama-cpp-python is not installed (ref-setup.sh without SKIP_LLAMA_CPP=1): no GGUF")
    print("models ready in %.0f s" % (time.time() - t0))


if __name__ == "__main__":
    main()
