#!/usr/bin/env python3
"""Create tiny random-initialised reference models (no downloads) and golden outputs.

For each model: config + safetensors weights + a WordLevel tokenizer.json (token strings are
meaningless, they only exist so CTranslate2 / llama.cpp converters have a vocabulary) +
golden.json with the fixed input ids, greedy output ids, first-step logits and per-step top-5.

Usage: python ref_tiny_models.py [OUT_DIR] [NAME ...]   (default ~/quill-ref/models, all)

quill's copy of ../shared/tools/ref_tiny_models.py (which made tests/fixtures/hf/{marian,bart,t5,
t5-gated,gpt2,llama}), extended with Qwen2 (q/k/v biases, tied embeddings), mBART (pre-norm,
final encoder/decoder norms, learned positions with offset 2), Mistral (GQA, sliding window
larger than the test sequences), Phi-3 (fused qkv and gate_up projections, GQA), Pegasus
(pre-norm, Marian's sinusoids, final_logits_bias), mT5 (model_type mt5) and two asymmetric
encoder-decoders:
bart-asym (the decoder has more layers, fewer heads and a narrower feed-forward than the
encoder) and t5-asym (d_kv * num_heads != d_model, more decoder layers, gated-gelu). Made with
the venv of ../shared/tools/ref-setup.sh (transformers 5.24.0, torch 2.15.0):
    ~/quill-ref/venv/bin/python tests/reference/ref_tiny_models.py tests/fixtures/hf qwen2 mbart mistral phi3 llama3 qwen3 phi3-longrope
    ~/quill-ref/venv/bin/python tests/reference/ref_tiny_models.py tests/fixtures/hf bart-asym t5-asym pegasus mt5
    ~/quill-ref/venv/bin/python tests/reference/ref_tiny_models.py tests/fixtures/hf gemma gemma2
"""
import json
import os
import sys

import torch
import transformers
from transformers import (
    BartConfig,
    BartForConditionalGeneration,
    GenerationConfig,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    M2M100Config,
    M2M100ForConditionalGeneration,
    MBartConfig,
    MBartForConditionalGeneration,
    MT5Config,
    MT5ForConditionalGeneration,
    PegasusConfig,
    PegasusForConditionalGeneration,
    MistralConfig,
    MistralForCausalLM,
    Phi3Config,
    Phi3ForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
    GemmaConfig,
    GemmaForCausalLM,
    Gemma2Config,
    Gemma2ForCausalLM,
    MarianConfig,
    MarianMTModel,
    PreTrainedTokenizerFast,
    T5Config,
    T5ForConditionalGeneration,
)

OUT = os.path.expanduser(sys.argv[1] if len(sys.argv) > 1 else "~/quill-ref/models")
V = 1000
MAX_NEW = 24
SEED = 1234

torch.set_num_threads(2)


def make_vocab(specials, size, byte_tokens=False):
    """specials: dict id -> token. Fills the rest with 'w<id>' (or <0xNN> byte tokens first)."""
    toks = [None] * size
    for i, t in specials.items():
        toks[i] = t
    nxt = 0
    if byte_tokens:
        free = [i for i in range(size) if toks[i] is None]
        for b in range(256):
            toks[free[b]] = "<0x%02X>" % b
    for i in range(size):
        if toks[i] is None:
            toks[i] = "w%d" % i
    return toks


def save_tokenizer(path, toks, **special):
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders

    vocab = {t: i for i, t in enumerate(toks)}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token=special.get("unk_token", toks[0])))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tk.decoder = decoders.WordPiece(prefix="##")  # joins with spaces
    fast = PreTrainedTokenizerFast(tokenizer_object=tk, **special)
    fast.save_pretrained(path)
    with open(os.path.join(path, "vocab.txt"), "w") as f:
        f.write("\n".join(toks) + "\n")


def top5(v):
    vals, ids = torch.topk(v, 5)
    return {"ids": ids.tolist(), "logits": [float(x) for x in vals]}


def golden(model, name, input_ids, gen_kwargs, decoder_only):
    model.eval()
    inp = torch.tensor([input_ids])
    with torch.no_grad():
        out = model.generate(
            inp,
            attention_mask=torch.ones_like(inp),
            do_sample=False,
            num_beams=1,
            max_new_tokens=MAX_NEW,
            return_dict_in_generate=True,
            output_logits=True,
            **gen_kwargs,
        )
    seq = out.sequences[0].tolist()
    gen = seq[len(input_ids):] if decoder_only else seq
    steps = [top5(l[0].float()) for l in out.logits]
    margins = [s["logits"][0] - s["logits"][1] for s in steps]
    return {
        "model": name,
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "dtype": "float32",
        "decoding": "greedy, num_beams=1, max_new_tokens=%d" % MAX_NEW,
        "gen_kwargs": {k: v for k, v in gen_kwargs.items()},
        "input_ids": input_ids,
        # seq2seq: full decoder sequence incl. decoder_start token; decoder-only: new tokens only
        "output_ids": gen,
        "output_ids_note": (
            "generated tokens only (prompt excluded)" if decoder_only
            else "decoder sequence incl. decoder_start_token_id at index 0"
        ),
        "first_step_logits": [float(x) for x in out.logits[0][0]],
        "step_top5": steps,
        "min_top1_margin": min(margins),
    }


def finish(model, name, toks, special, input_ids, gen_kwargs=None, decoder_only=False,
           config_patch=None):
    path = os.path.join(OUT, name)
    os.makedirs(path, exist_ok=True)
    gen_kwargs = gen_kwargs or {}
    model.save_pretrained(path, safe_serialization=True)
    if config_patch:
        cp = os.path.join(path, "config.json")
        c = json.load(open(cp))
        for k, v in config_patch.items():
            if v is None:
                c.pop(k, None)
            else:
                c[k] = v
        json.dump(c, open(cp, "w"), indent=2)
    save_tokenizer(path, toks, **special)
    # goldens come from the model as re-loaded from disk, i.e. what another engine will see
    model = type(model).from_pretrained(path)
    g = golden(model, name, input_ids, gen_kwargs, decoder_only)
    nparams = sum(p.numel() for p in model.parameters())
    g["num_parameters"] = nparams
    with open(os.path.join(path, "golden.json"), "w") as f:
        json.dump(g, f, indent=1)
    print("%-8s params=%d out=%s min_margin=%.4f" % (name, nparams, g["output_ids"], g["min_top1_margin"]))


def src_ids(eos, n=12, lo=10, hi=V - 10):
    g = torch.Generator().manual_seed(7)
    ids = torch.randint(lo, hi, (n,), generator=g).tolist()
    return ids + [eos] if eos is not None else ids


ONLY = set(sys.argv[2:])


def wanted(name):
    return not ONLY or name in ONLY


def main():
    os.makedirs(OUT, exist_ok=True)
    if wanted("marian") or wanted("t5") or wanted("t5-gated") or wanted("bart") or wanted("gpt2") or wanted("llama"):
        original()
    extra()
    phi3()
    gemma()
    asymmetric()


def extra():
    if wanted("qwen2"):
        # ---- Qwen2: q/k/v biases, GQA, tied embeddings, rope_theta 1e6. eos = bos = V-1.
        torch.manual_seed(SEED)
        cfg = Qwen2Config(
            vocab_size=V, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
            rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=True,
            bos_token_id=V - 1, eos_token_id=V - 1, initializer_range=0.1, use_sliding_window=False,
        )
        m = Qwen2ForCausalLM(cfg)
        with torch.no_grad():
            m.model.embed_tokens.weight.normal_(0, 0.02)
            m.model.norm.weight.mul_(4)
            for layer in m.model.layers:  # random biases, so their import is really tested
                for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                    proj.bias.normal_(0, 0.1)
        m.generation_config = GenerationConfig(bos_token_id=V - 1, eos_token_id=V - 1, pad_token_id=V - 1)
        toks = make_vocab({V - 1: "<|endoftext|>"}, V)
        finish(m, "qwen2", toks, dict(bos_token="<|endoftext|>", eos_token="<|endoftext|>",
               unk_token="<|endoftext|>"), src_ids(None), decoder_only=True)

    if wanted("mbart"):
        # ---- mBART: pre-norm, encoder/decoder final layer norms, layernorm_embedding,
        # learned positions (offset 2), scale_embedding. bos=0, pad=1, eos=2 (= decoder start).
        torch.manual_seed(SEED)
        cfg = MBartConfig(
            vocab_size=V, d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
            decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128,
            max_position_embeddings=256, bos_token_id=0, pad_token_id=1, eos_token_id=2,
            decoder_start_token_id=2, forced_bos_token_id=None, forced_eos_token_id=None,
            init_std=0.1, scale_embedding=True, activation_function="gelu",
        )
        m = MBartForConditionalGeneration(cfg)
        with torch.no_grad():
            m.model.shared.weight.normal_(0, 0.02)
            m.model.shared.weight[1].zero_()
            # A zero eos row keeps the eos logit near 0, so greedy decoding runs all 24 steps.
            m.model.shared.weight[2].zero_()
            m.model.decoder.layer_norm.weight.mul_(4)
            m.model.decoder.layer_norm.bias.mul_(4)
        m.generation_config = GenerationConfig(
            decoder_start_token_id=2, bos_token_id=0, eos_token_id=2, pad_token_id=1,
        )
        toks = make_vocab({0: "<s>", 1: "<pad>", 2: "</s>", 3: "<unk>"}, V)
        finish(m, "mbart", toks,
               dict(bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>"),
               src_ids(2, n=11))

    if wanted("m2m100"):
        # ---- M2M100 / NLLB: pre-norm, fairseq sinusoidal positions (offset 2, not stored in the
        # checkpoint), scale_embedding, ReLU, final encoder/decoder norms. bos=0, pad=1, eos=2.
        torch.manual_seed(SEED)
        cfg = M2M100Config(
            vocab_size=V, d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
            decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128,
            max_position_embeddings=256, bos_token_id=0, pad_token_id=1, eos_token_id=2,
            decoder_start_token_id=2, forced_bos_token_id=None, init_std=0.1, scale_embedding=True,
            activation_function="relu",
        )
        m = M2M100ForConditionalGeneration(cfg)
        with torch.no_grad():
            m.model.shared.weight.normal_(0, 0.02)
            m.model.shared.weight[1].zero_()
            m.model.shared.weight[2].zero_()
            m.model.decoder.layer_norm.weight.mul_(4)
            m.model.decoder.layer_norm.bias.mul_(4)
        m.generation_config = GenerationConfig(
            decoder_start_token_id=2, bos_token_id=0, eos_token_id=2, pad_token_id=1,
        )
        toks = make_vocab({0: "<s>", 1: "<pad>", 2: "</s>", 3: "<unk>"}, V)
        finish(m, "m2m100", toks,
               dict(bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>"),
               src_ids(2, n=11))

    if wanted("mistral"):
        # ---- Mistral: Llama-like with GQA (4 query heads, 1 kv head: multi-query) and a sliding
        # window (128) longer than the test sequence.
        torch.manual_seed(SEED)
        cfg = MistralConfig(
            vocab_size=V, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=1, head_dim=16, max_position_embeddings=256,
            rms_norm_eps=1e-5, rope_theta=10000.0, sliding_window=128, tie_word_embeddings=False,
            bos_token_id=1, eos_token_id=2, initializer_range=0.1,
        )
        m = MistralForCausalLM(cfg)
        with torch.no_grad():
            m.model.embed_tokens.weight.normal_(0, 0.02)
            m.model.norm.weight.mul_(4)
        m.generation_config = GenerationConfig(bos_token_id=1, eos_token_id=2, pad_token_id=0)
        toks = make_vocab({0: "<unk>", 1: "<s>", 2: "</s>"}, V, byte_tokens=True)
        finish(m, "mistral", toks, dict(bos_token="<s>", eos_token="</s>", unk_token="<unk>"),
               [1] + src_ids(None, n=11), decoder_only=True)

    if wanted("llama3"):
        # ---- Llama 3.1/3.2: rope_scaling "llama3" (factor 8; original context 64, so that the
        # head's wavelengths fall on all three sides: kept, blended, divided), rope_theta 5e5,
        # tied embeddings, GQA.
        torch.manual_seed(SEED)
        cfg = LlamaConfig(
            vocab_size=V, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
            rms_norm_eps=1e-5, tie_word_embeddings=True, bos_token_id=1, eos_token_id=2,
            initializer_range=0.1,
            rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                             "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                             "original_max_position_embeddings": 64},
        )
        m = LlamaForCausalLM(cfg)
        with torch.no_grad():
            m.model.embed_tokens.weight.normal_(0, 0.02)
            m.model.norm.weight.mul_(4)
        m.generation_config = GenerationConfig(bos_token_id=1, eos_token_id=2, pad_token_id=0)
        toks = make_vocab({0: "<unk>", 1: "<s>", 2: "</s>"}, V, byte_tokens=True)
        finish(m, "llama3", toks, dict(bos_token="<s>", eos_token="</s>", unk_token="<unk>"),
               [1] + src_ids(None, n=11), decoder_only=True)

    if wanted("qwen3"):
        # ---- Qwen3: per-head RMSNorm of q and k before rotary positions (random weights, so
        # their import is really tested), head_dim 32 with 4 heads on d_model 64 (q is wider than
        # the model), GQA, no biases, tied embeddings, rope_theta 1e6.
        torch.manual_seed(SEED)
        cfg = Qwen3Config(
            vocab_size=V, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, head_dim=32, max_position_embeddings=512,
            rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=True,
            bos_token_id=V - 1, eos_token_id=V - 1, initializer_range=0.1, use_sliding_window=False,
        )
        m = Qwen3ForCausalLM(cfg)
        with torch.no_grad():
            m.model.embed_tokens.weight.normal_(0, 0.02)
            m.model.norm.weight.mul_(4)
            for layer in m.model.layers:
                layer.self_attn.q_norm.weight.uniform_(0.5, 1.5)
                layer.self_attn.k_norm.weight.uniform_(0.5, 1.5)
        m.generation_config = GenerationConfig(bos_token_id=V - 1, eos_token_id=V - 1, pad_token_id=V - 1)
        toks = make_vocab({V - 1: "<|endoftext|>"}, V)
        finish(m, "qwen3", toks, dict(bos_token="<|endoftext|>", eos_token="<|endoftext|>",
               unk_token="<|endoftext|>"), src_ids(None), decoder_only=True)


def gemma():
    # Gemma's RMSNorms scale by (1 + weight) and start at 0: random weights here, so that the
    # converter's +1 is really tested. Embeddings are scaled by sqrt(hidden_size).
    def norms(m, v2):
        names = ["input_layernorm", "post_attention_layernorm"]
        if v2:
            names += ["pre_feedforward_layernorm", "post_feedforward_layernorm"]
        with torch.no_grad():
            m.model.embed_tokens.weight.normal_(0, 0.02)
            m.model.norm.weight.uniform_(1.0, 3.0)
            for layer in m.model.layers:
                for n in names:
                    getattr(layer, n).weight.uniform_(-0.5, 0.5)

    if wanted("gemma"):
        # ---- Gemma: GELU-tanh gated feed-forward ("gelu" in the config, the legacy value
        # transformers reads as the tanh approximation), head_dim 32 with 4 heads on d_model 64,
        # multi-query attention, tied embeddings.
        torch.manual_seed(SEED)
        cfg = GemmaConfig(
            vocab_size=V, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=1, head_dim=32, max_position_embeddings=256,
            rms_norm_eps=1e-6, hidden_act="gelu", bos_token_id=2, eos_token_id=1, pad_token_id=0,
            initializer_range=0.1,
        )
        m = GemmaForCausalLM(cfg)
        norms(m, False)
        m.generation_config = GenerationConfig(bos_token_id=2, eos_token_id=1, pad_token_id=0)
        toks = make_vocab({0: "<pad>", 1: "<eos>", 2: "<bos>", 3: "<unk>"}, V, byte_tokens=True)
        finish(m, "gemma", toks, dict(bos_token="<bos>", eos_token="<eos>", unk_token="<unk>",
               pad_token="<pad>"), [2] + src_ids(None, n=11), decoder_only=True,
               config_patch={"hidden_act": "gelu"})

    if wanted("gemma2"):
        # ---- Gemma 2: sandwich norms (a norm on each sub-layer's output), attention and final
        # soft-capping with caps small enough to bite on this tiny model (1.5 and 3.0; the real
        # models use 50 and 30), query_pre_attn_scalar 24 (not head_dim), a 128-token sliding
        # window on layers 0 and 2 of 4 (transformers' default alternation), reached by the
        # 180-token prompts of long_batch.json; GQA, head_dim 32 on d_model 64, tied embeddings.
        torch.manual_seed(SEED)
        cfg = Gemma2Config(
            vocab_size=V, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
            num_attention_heads=4, num_key_value_heads=2, head_dim=32, max_position_embeddings=256,
            rms_norm_eps=1e-6, hidden_activation="gelu_pytorch_tanh", query_pre_attn_scalar=24,
            sliding_window=128, attn_logit_softcapping=1.5, final_logit_softcapping=3.0,
            bos_token_id=2, eos_token_id=1, pad_token_id=0, initializer_range=0.1,
        )
        m = Gemma2ForCausalLM(cfg)
        norms(m, True)
        m.generation_config = GenerationConfig(bos_token_id=2, eos_token_id=1, pad_token_id=0)
        toks = make_vocab({0: "<pad>", 1: "<eos>", 2: "<bos>", 3: "<unk>"}, V, byte_tokens=True)
        finish(m, "gemma2", toks, dict(bos_token="<bos>", eos_token="<eos>", unk_token="<unk>",
               pad_token="<pad>"), [2] + src_ids(None, n=11), decoder_only=True)


def phi3():
    if wanted("phi3"):
        # ---- Phi-3: the Llama shape with fused projections (qkv_proj, gate_up_proj), GQA (4 query
        # heads, 2 kv heads), no rope scaling, untied output.
        torch.manual_seed(SEED)
        cfg = Phi3Config(
            vocab_size=V, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
            original_max_position_embeddings=256, rms_norm_eps=1e-5, rope_theta=10000.0,
            rope_scaling=None, sliding_window=None, tie_word_embeddings=False,
            bos_token_id=1, eos_token_id=2, pad_token_id=0, initializer_range=0.1,
        )
        m = Phi3ForCausalLM(cfg)
        with torch.no_grad():
            m.model.embed_tokens.weight.normal_(0, 0.02)
            m.model.norm.weight.mul_(4)
        m.generation_config = GenerationConfig(bos_token_id=1, eos_token_id=2, pad_token_id=0)
        toks = make_vocab({0: "<unk>", 1: "<s>", 2: "</s>"}, V)
        finish(m, "phi3", toks, dict(bos_token="<s>", eos_token="</s>", unk_token="<unk>"),
               [1] + src_ids(None, n=11), decoder_only=True)

    if wanted("phi3-longrope"):
        # ---- Phi-3 128k-style LongRoPE: short/long factors per frequency, original context 64 of
        # 256 (attention factor sqrt(1 + ln 4 / ln 64)); the goldens stay within 64 positions,
        # where transformers uses the short factors.
        torch.manual_seed(SEED)
        g = torch.Generator().manual_seed(3)
        short = [round(1.0 + 3.0 * float(x), 4) for x in torch.rand(8, generator=g)]
        long = [round(1.0 + 20.0 * float(x), 4) for x in torch.rand(8, generator=g)]
        cfg = Phi3Config(
            vocab_size=V, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
            original_max_position_embeddings=64, rms_norm_eps=1e-5,
            rope_parameters={"rope_type": "longrope", "rope_theta": 10000.0,
                             "short_factor": short, "long_factor": long,
                             "original_max_position_embeddings": 64},
            sliding_window=None, tie_word_embeddings=False,
            bos_token_id=1, eos_token_id=2, pad_token_id=0, initializer_range=0.1,
        )
        m = Phi3ForCausalLM(cfg)
        with torch.no_grad():
            m.model.embed_tokens.weight.normal_(0, 0.02)
            m.model.norm.weight.mul_(4)
        m.generation_config = GenerationConfig(bos_token_id=1, eos_token_id=2, pad_token_id=0)
        toks = make_vocab({0: "<unk>", 1: "<s>", 2: "</s>"}, V)
        finish(m, "phi3-longrope", toks, dict(bos_token="<s>", eos_token="</s>", unk_token="<unk>"),
               [1] + src_ids(None, n=11), decoder_only=True)


def t5_v11(name, cfg_cls, model_cls, seed, gen_kwargs=None, **shape):
    """A T5 v1.1 / Flan-T5-shaped model (gated-gelu, untied lm_head; config.json patched as real
    checkpoints are: tie_word_embeddings false, no scale_decoder_outputs): t5-gated, mt5, t5-asym.
    `shape` overrides the tiny defaults."""
    torch.manual_seed(seed)
    dims = dict(d_model=64, d_kv=16, d_ff=128, num_layers=2, num_decoder_layers=2, num_heads=4)
    dims.update(shape)
    cfg = cfg_cls(
        vocab_size=V, relative_attention_num_buckets=32, relative_attention_max_distance=128,
        feed_forward_proj="gated-gelu", tie_word_embeddings=False, pad_token_id=0,
        eos_token_id=1, decoder_start_token_id=0, **dims,
    )
    m = model_cls(cfg)
    with torch.no_grad():
        m.shared.weight.normal_(0, 0.1)
        m.decoder.final_layer_norm.weight.mul_(4)
    m.lm_head.weight = torch.nn.Parameter(torch.randn(V, dims["d_model"]) * 0.1)
    m.all_tied_weights_keys.pop("lm_head.weight", None)
    m.generation_config = GenerationConfig(decoder_start_token_id=0, eos_token_id=1, pad_token_id=0)
    toks = make_vocab({0: "<pad>", 1: "</s>", 2: "<unk>"}, V)
    finish(m, name, toks, dict(eos_token="</s>", unk_token="<unk>", pad_token="<pad>"), src_ids(1),
           gen_kwargs, config_patch={"tie_word_embeddings": False, "scale_decoder_outputs": None})


def asymmetric():
    if wanted("mt5"):
        # ---- mT5: the T5 v1.1 layout under model_type mt5.
        t5_v11("mt5", MT5Config, MT5ForConditionalGeneration, SEED + 2)
    if wanted("pegasus"):
        # ---- Pegasus (the summarization family): pre-norm with final encoder/decoder norms,
        # Marian's sinusoids (not stored in the checkpoint), scale_embedding, ReLU,
        # final_logits_bias. pad=0 (= decoder_start), eos=1, unk=2 as in google/pegasus-*.
        torch.manual_seed(SEED)
        cfg = PegasusConfig(
            vocab_size=V, d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
            decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128,
            max_position_embeddings=256, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
            forced_eos_token_id=None, init_std=0.1, scale_embedding=True, activation_function="relu",
        )
        m = PegasusForConditionalGeneration(cfg)
        with torch.no_grad():
            m.model.shared.weight.normal_(0, 0.02)
            m.model.shared.weight[0].zero_()
            m.model.decoder.layer_norm.weight.mul_(4)
            m.model.decoder.layer_norm.bias.mul_(4)
            m.final_logits_bias.normal_(0, 0.5)
        m.generation_config = GenerationConfig(decoder_start_token_id=0, eos_token_id=1, pad_token_id=0)
        toks = make_vocab({0: "<pad>", 1: "</s>", 2: "<unk>"}, V)
        finish(m, "pegasus", toks, dict(eos_token="</s>", unk_token="<unk>", pad_token="<pad>"),
               src_ids(1))
    if wanted("bart-asym"):
        # ---- BART whose stacks differ: encoder 2 layers x 4 heads x ffn 128, decoder 3 layers x
        # 2 heads (head width 32) x ffn 80 (a distilled student's shape).
        torch.manual_seed(SEED)
        cfg = BartConfig(
            vocab_size=V, d_model=64, encoder_layers=2, decoder_layers=3,
            encoder_attention_heads=4, decoder_attention_heads=2, encoder_ffn_dim=128,
            decoder_ffn_dim=80, max_position_embeddings=256, bos_token_id=0, pad_token_id=1,
            eos_token_id=2, decoder_start_token_id=2, forced_bos_token_id=None,
            forced_eos_token_id=None, init_std=0.1,
        )
        m = BartForConditionalGeneration(cfg)
        with torch.no_grad():
            m.model.shared.weight.normal_(0, 0.02)
            m.model.shared.weight[1].zero_()
            ln = m.model.decoder.layers[-1].final_layer_norm
            ln.weight.mul_(4)
            ln.bias.mul_(4)
        m.generation_config = GenerationConfig(
            decoder_start_token_id=2, bos_token_id=0, eos_token_id=2, pad_token_id=1,
        )
        toks = make_vocab({0: "<s>", 1: "<pad>", 2: "</s>", 3: "<unk>"}, V)
        finish(m, "bart-asym", toks,
               dict(bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>"),
               [0] + src_ids(2, n=11))
    if wanted("t5-asym"):
        # ---- T5 v1.1 shape with d_kv * num_heads = 32 != d_model = 64, 2 encoder and 3 decoder
        # layers. Generated without the KV cache: transformers 5.24 sizes T5's cache by
        # num_layers, so a decoder with more layers than the encoder fails in generate() with it
        # (IndexError in cache_utils).
        t5_v11("t5-asym", T5Config, T5ForConditionalGeneration, SEED + 1, {"use_cache": False},
               d_kv=8, d_ff=96, num_decoder_layers=3)


def original():

    # ---- Marian: eos=0, unk=1, pad=V-1 (= decoder_start, must be last token for CTranslate2)
    # Random models with tied embeddings tend to predict their own input token forever; small
    # token embeddings + a sharper final norm (logits x4..x8, argmax unchanged) give more varied
    # outputs and larger top-1 margins, which makes the goldens robust to fp32 rounding.
    torch.manual_seed(0)
    cfg = MarianConfig(
        vocab_size=V, decoder_vocab_size=V, d_model=64, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=128,
        decoder_ffn_dim=128, max_position_embeddings=256, pad_token_id=V - 1, eos_token_id=0,
        decoder_start_token_id=V - 1, bos_token_id=None, forced_eos_token_id=None, init_std=0.1,
        scale_embedding=True, activation_function="swish", share_encoder_decoder_embeddings=True,
        tie_word_embeddings=True,
    )
    m = MarianMTModel(cfg)
    with torch.no_grad():
        m.model.shared.weight.normal_(0, 0.02)
        m.model.shared.weight[V - 1].zero_()
        ln = m.model.decoder.layers[-1].final_layer_norm
        ln.weight.mul_(8)
        ln.bias.mul_(8)
    m.generation_config = GenerationConfig(
        decoder_start_token_id=V - 1, eos_token_id=0, pad_token_id=V - 1,
        bad_words_ids=[[V - 1]], max_new_tokens=MAX_NEW,
    )
    toks = make_vocab({0: "</s>", 1: "<unk>", V - 1: "<pad>"}, V)
    finish(m, "marian", toks, dict(eos_token="</s>", unk_token="<unk>", pad_token="<pad>"),
           src_ids(0), {"bad_words_ids": [[V - 1]]})

    # ---- T5 (v1.0 style: relu, tied embeddings): pad=0 (= decoder_start), eos=1, unk=2
    torch.manual_seed(7)
    cfg = T5Config(
        vocab_size=V, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_decoder_layers=2,
        num_heads=4, relative_attention_num_buckets=32, relative_attention_max_distance=128,
        feed_forward_proj="relu", tie_word_embeddings=True, pad_token_id=0, eos_token_id=1,
        decoder_start_token_id=0,
    )
    m = T5ForConditionalGeneration(cfg)
    with torch.no_grad():
        m.shared.weight.normal_(0, 0.1)
        m.decoder.final_layer_norm.weight.mul_(8)
    m.generation_config = GenerationConfig(decoder_start_token_id=0, eos_token_id=1, pad_token_id=0)
    toks = make_vocab({0: "<pad>", 1: "</s>", 2: "<unk>"}, V)
    finish(m, "t5", toks, dict(eos_token="</s>", unk_token="<unk>", pad_token="<pad>"), src_ids(1))

    # ---- T5 v1.1 / flan style: gated-gelu, separate (untied) lm_head, no d_model**-0.5 output
    # scaling. Transformers 5.x always sets config.tie_word_embeddings=True for T5 and keeps the
    # old meaning in config.scale_decoder_outputs; a checkpoint that stores both shared.weight and
    # a different lm_head.weight is loaded untied. config.json is patched to look like a real
    # flan-t5 config (tie_word_embeddings: false, no scale_decoder_outputs).
    t5_v11("t5-gated", T5Config, T5ForConditionalGeneration, SEED)

    # ---- BART: bos=0, pad=1, eos=2 (= decoder_start), unk=3
    torch.manual_seed(SEED)
    cfg = BartConfig(
        vocab_size=V, d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128,
        max_position_embeddings=256, bos_token_id=0, pad_token_id=1, eos_token_id=2,
        decoder_start_token_id=2, forced_bos_token_id=None, forced_eos_token_id=None, init_std=0.1,
    )
    m = BartForConditionalGeneration(cfg)
    with torch.no_grad():
        m.model.shared.weight.normal_(0, 0.02)
        m.model.shared.weight[1].zero_()
        ln = m.model.decoder.layers[-1].final_layer_norm
        ln.weight.mul_(4)
        ln.bias.mul_(4)
    m.generation_config = GenerationConfig(
        decoder_start_token_id=2, bos_token_id=0, eos_token_id=2, pad_token_id=1,
    )
    toks = make_vocab({0: "<s>", 1: "<pad>", 2: "</s>", 3: "<unk>"}, V)
    finish(m, "bart", toks,
           dict(bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>"),
           [0] + src_ids(2, n=11))

    # ---- GPT-2: <|endoftext|> = V-1 (bos = eos)
    torch.manual_seed(SEED)
    cfg = GPT2Config(vocab_size=V, n_positions=256, n_embd=64, n_layer=2, n_head=4,
                     bos_token_id=V - 1, eos_token_id=V - 1, initializer_range=0.1)
    m = GPT2LMHeadModel(cfg)
    with torch.no_grad():
        m.transformer.wte.weight.normal_(0, 0.02)
        m.transformer.ln_f.weight.mul_(4)
        m.transformer.ln_f.bias.mul_(4)
    m.generation_config = GenerationConfig(bos_token_id=V - 1, eos_token_id=V - 1, pad_token_id=V - 1)
    toks = make_vocab({V - 1: "<|endoftext|>"}, V)
    finish(m, "gpt2", toks,
           dict(bos_token="<|endoftext|>", eos_token="<|endoftext|>", unk_token="<|endoftext|>"),
           src_ids(None), decoder_only=True)

    # ---- Llama with GQA: 4 query heads, 2 kv heads, head_dim 16. unk=0, bos=1, eos=2,
    # 256 SentencePiece-style byte tokens <0x00>.. so llama.cpp's SPM vocab loader is happy.
    torch.manual_seed(SEED)
    cfg = LlamaConfig(
        vocab_size=V, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False,
        bos_token_id=1, eos_token_id=2, initializer_range=0.1,
    )
    m = LlamaForCausalLM(cfg)
    with torch.no_grad():
        m.model.embed_tokens.weight.normal_(0, 0.02)
        m.model.norm.weight.mul_(4)
    m.generation_config = GenerationConfig(bos_token_id=1, eos_token_id=2, pad_token_id=0)
    toks = make_vocab({0: "<unk>", 1: "<s>", 2: "</s>"}, V, byte_tokens=True)
    finish(m, "llama", toks, dict(bos_token="<s>", eos_token="</s>", unk_token="<unk>"),
           [1] + src_ids(None, n=11), decoder_only=True)


if __name__ == "__main__":
    main()
