#!/usr/bin/env python3
"""PyTorch reference for quill's `lstm-seq2seq` architecture (LSTM encoder-decoder with Luong-style
attention, docs/lstm.md) and the goldens the Rust runtime, converter and trainer are tested against.

    ~/quill-ref/venv/bin/python tests/reference/lstm_reference.py [OUT_DIR]

OUT_DIR defaults to tests/fixtures/lstm. The script

1. self-checks its Hugging Face-compatible greedy and beam search on the tiny Marian model of
   tests/fixtures/hf/marian: greedy must reproduce golden.json `output_ids`, and beam search (4
   beams, 24 new tokens, bad_words_ids [[999]]) must reproduce beam.json (made by transformers'
   own `generate`, tests/reference/beam_goldens.py) token for token, scores within 1e-5, and so
   must transformers' `generate` run live with other eos ids and length penalties
   (LIVE_BEAM_CASES: hypotheses ending on eos at various lengths, early stops);
2. builds the tiny seeded models of MODELS and writes, per model, OUT_DIR/<name>/
   - config.json        the hyper-parameters (model_type "quill-lstm", gate_order "ifgo"),
   - model.safetensors  the module's state_dict under PyTorch's own names, float32 (with
                        tie_output, `generator.weight` is not stored: it is `decoder.embed.weight`),
   - golden.json        inputs, teacher-forced logits (alone and in a padded batch), greedy and
                        beam-search outputs;
3. checks each model's teacher-forced logits against an independent float64 NumPy forward pass
   that reads only model.safetensors and config.json (the spec of docs/lstm.md), batched against
   unbatched logits (1e-6), and incremental decoding against the teacher-forced pass.

Any failed check raises. Made with torch 2.15.0+cu132 (CPU), transformers 5.24.0, safetensors
0.8.0 and numpy from ~/quill-ref/venv; runs in about 5 s on one thread and rewrites the fixtures
byte for byte (seeded).

Decoding conventions (the Rust side must follow them):
- greedy: argmax of the logits, at most max_new_tokens generated, stops after eos (kept);
- beam search: transformers v5 `_beam_search` with early_stopping=False, see `beam_search`;
- no logits processors for the LSTM models (pad/unk/bos may be generated like any other id).
"""
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.numpy import load_file as load_numpy
from safetensors.torch import save_file

PAD, UNK, EOS, BOS = 0, 1, 2, 3
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

torch.set_num_threads(1)


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------


class Attention(nn.Module):
    """Global attention over the encoder outputs `memory` [B, S, H] for the top decoder state
    h [B, H]; padded source positions (mask False) get score -inf before the softmax.

    dot:      score_s = h · m_s
    general:  score_s = m_s · linear_in(h)                    (W_a acts on the query, OpenNMT)
    additive: score_s = v · tanh(query(h) + context(m_s))     (Bahdanau / OpenNMT "mlp")

    Returns h̃ = tanh(linear_out([c; h])) with c = Σ_s α_s m_s (context first, then h)."""

    def __init__(self, hidden, kind):
        super().__init__()
        self.kind = kind
        if kind == "general":
            self.linear_in = nn.Linear(hidden, hidden, bias=False)
        elif kind == "additive":
            self.query = nn.Linear(hidden, hidden, bias=True)
            self.context = nn.Linear(hidden, hidden, bias=False)
            self.v = nn.Linear(hidden, 1, bias=False)
        elif kind != "dot":
            raise ValueError(kind)
        self.linear_out = nn.Linear(2 * hidden, hidden, bias=False)

    def forward(self, h, memory, mask):
        if self.kind == "dot":
            scores = torch.bmm(memory, h.unsqueeze(2)).squeeze(2)
        elif self.kind == "general":
            scores = torch.bmm(memory, self.linear_in(h).unsqueeze(2)).squeeze(2)
        else:
            scores = self.v(torch.tanh(self.query(h).unsqueeze(1) + self.context(memory))).squeeze(2)
        alpha = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
        ctx = torch.bmm(alpha.unsqueeze(1), memory).squeeze(1)
        return torch.tanh(self.linear_out(torch.cat([ctx, h], dim=-1))), alpha


class Encoder(nn.Module):
    def __init__(self, cfg, dropout):
        super().__init__()
        h, bi = cfg["hidden_size"], cfg["bidirectional"]
        self.bidirectional = bi
        self.layers = cfg["encoder_layers"]
        self.embed = nn.Embedding(cfg["vocab_size"], cfg["embed_dim"], padding_idx=cfg["pad_token_id"])
        self.lstm = nn.LSTM(cfg["embed_dim"], h // 2 if bi else h, self.layers, batch_first=True,
                            bidirectional=bi, dropout=dropout if self.layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)

    def forward(self, src, lengths):
        """src [B, S] (right-padded), lengths [B] -> memory [B, S, H] (zeros at padding),
        final (h, c) each [L, B, H] (bidirectional: concat(final forward, final backward))."""
        x = self.dropout(self.embed(src))
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, (h, c) = self.lstm(packed)
        memory, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=src.shape[1])
        if self.bidirectional:  # [L·2, B, H/2], layer-major (l0 fwd, l0 bwd, l1 fwd, ...)
            b = h.shape[1]
            h = h.view(self.layers, 2, b, -1).permute(0, 2, 1, 3).reshape(self.layers, b, -1)
            c = c.view(self.layers, 2, b, -1).permute(0, 2, 1, 3).reshape(self.layers, b, -1)
        return memory, (h, c)


class Decoder(nn.Module):
    def __init__(self, cfg, dropout):
        super().__init__()
        e, h = cfg["embed_dim"], cfg["hidden_size"]
        self.input_feeding = cfg["input_feeding"]
        self.embed = nn.Embedding(cfg["vocab_size"], e)
        self.cells = nn.ModuleList(
            [nn.LSTMCell((e + h if self.input_feeding else e) if k == 0 else h, h)
             for k in range(cfg["decoder_layers"])])
        self.attn = Attention(h, cfg["attention"])
        self.dropout = nn.Dropout(dropout)


class LstmSeq2Seq(nn.Module):
    """Decoder state: (h [L, B, H], c [L, B, H], feed [B, H]); the encoder's final (h, c) of layer k
    initialise decoder layer k, feed_0 = 0."""

    def __init__(self, cfg, dropout=0.0):
        super().__init__()
        assert cfg["encoder_layers"] == cfg["decoder_layers"]
        assert cfg["hidden_size"] % 2 == 0 or not cfg["bidirectional"]
        self.cfg = cfg
        self.encoder = Encoder(cfg, dropout)
        self.decoder = Decoder(cfg, dropout)
        self.generator = nn.Linear(cfg["hidden_size"], cfg["vocab_size"], bias=True)
        if cfg["tie_output"]:
            assert cfg["embed_dim"] == cfg["hidden_size"]
            self.generator.weight = self.decoder.embed.weight

    def encode(self, src, lengths):
        memory, (h, c) = self.encoder(src, lengths)
        mask = torch.arange(src.shape[1])[None, :] < lengths[:, None]
        feed = torch.zeros(src.shape[0], self.cfg["hidden_size"])
        return memory, mask, (h, c, feed)

    def step(self, y_prev, state, memory, mask):
        """One decoder step: y_prev [B] -> logits [B, V], new state."""
        h, c, feed = state
        dec = self.decoder
        x = dec.dropout(dec.embed(y_prev))
        if dec.input_feeding:
            x = torch.cat([x, feed], dim=-1)
        hs, cs = [], []
        for k, cell in enumerate(dec.cells):
            hk, ck = cell(x, (h[k], c[k]))
            hs.append(hk)
            cs.append(ck)
            x = dec.dropout(hk) if k + 1 < len(dec.cells) else hk
        attn_h, _ = dec.attn(x, memory, mask)
        attn_h = dec.dropout(attn_h)
        return self.generator(attn_h), (torch.stack(hs), torch.stack(cs), attn_h)

    def forward(self, src, lengths, tgt_in):
        """Teacher forcing: tgt_in [B, T] (starting with bos) -> logits [B, T, V]."""
        memory, mask, state = self.encode(src, lengths)
        out = []
        for t in range(tgt_in.shape[1]):
            logits, state = self.step(tgt_in[:, t], state, memory, mask)
            out.append(logits)
        return torch.stack(out, dim=1)

    def state_dict_to_save(self):
        sd = {k: v.detach().clone().contiguous() for k, v in self.state_dict().items()}
        if self.cfg["tie_output"]:
            del sd["generator.weight"]
        return sd


def init_weights(model, seed, embed_std=1.0, eos_bias=0.0):
    """Embeddings ~ N(0, embed_std²) (encoder pad row zero, as padding_idx), everything else
    ~ N(0, 0.3²), then generator.bias[eos] += eos_bias so that some hypotheses end before
    max_new_tokens."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():  # shared (tied) parameters are listed once
            std = embed_std if name.endswith("embed.weight") else 0.3
            p.copy_(torch.randn(p.shape, generator=g) * std)
        model.encoder.embed.weight[model.cfg["pad_token_id"]].zero_()
        model.generator.bias[model.cfg["eos_token_id"]] += eos_bias


# --------------------------------------------------------------------------------------------
# Decoding: greedy and transformers-compatible beam search, written for one sentence and any
# model through `step(prefixes [n, t], state) -> (logits [n, V], state)` and
# `reorder(state, index [n]) -> state`.
# --------------------------------------------------------------------------------------------


def greedy_search(step, state, *, start_id, eos_id, max_new_tokens, logits_processor=None):
    """Argmax decoding as transformers' `_sample` with do_sample=False. Returns (generated ids,
    eos included when produced; smallest top-1/top-2 gap of the processed logits)."""
    seq, margin = [start_id], math.inf
    for _ in range(max_new_tokens):
        prefix = torch.tensor([seq])
        logits, state = step(prefix, state)
        scores = logits.float()
        if logits_processor is not None:
            scores = logits_processor(prefix, scores)
        top2 = torch.topk(scores[0], 2).values
        margin = min(margin, float(top2[0] - top2[1]))
        tok = int(torch.argmax(scores[0]))
        seq.append(tok)
        if tok == eos_id:
            break
    return seq[1:], margin


def beam_search(step, state, reorder, *, start_id, eos_id, num_beams, max_new_tokens,
                length_penalty=1.0, early_stopping=False, logits_processor=None):
    """Beam search with the semantics of transformers v5 `GenerationMixin._beam_search` (one
    eos id, batch of one, no sampling), in float32 like it:

    - running beams start as num_beams copies of [start_id], scores [0, -1e9, -1e9, ...];
    - each step: logp = log_softmax(logits) then the logits processors (on log-probs, so masked
      ids are -inf and the rest are NOT renormalised); candidates = top 2·num_beams of
      (running score + logp) over all beams × vocab (torch.topk order);
    - a candidate "finishes" if its token is eos or it reaches max_new_tokens generated tokens;
      only finished candidates among the first num_beams (of the 2·num_beams) become hypotheses,
      scored sum_logprobs / n ** length_penalty with n = generated tokens including eos; the
      hypothesis list keeps the num_beams best (old ones before new ones on equal scores);
    - the next running beams are the num_beams best unfinished candidates;
    - stop after max_new_tokens steps, or (early_stopping=False heuristic) once num_beams
      hypotheses exist and best running score / n ** length_penalty <= the worst hypothesis
      score, n = tokens generated so far by the running beams.

    Returns (hypotheses [ids without start_id, best first], scores, steps run, smallest gap
    between consecutive candidate scores among the top 2·num_beams + 1 at any step)."""
    if early_stopping is not False:
        raise NotImplementedError("only early_stopping=False")
    k, keep = num_beams, 2 * num_beams
    seqs = [[start_id] for _ in range(k)]
    run_scores = torch.full((k,), -1e9, dtype=torch.float32)
    run_scores[0] = 0.0
    hyps = []  # (score as float32 tensor, ids) best first
    min_gap = math.inf
    for t in range(max_new_tokens):
        prefixes = torch.tensor(seqs)
        logits, state = step(prefixes, state)
        logp = F.log_softmax(logits.float(), dim=-1)
        if logits_processor is not None:
            logp = logits_processor(prefixes, logp)
        vocab = logp.shape[-1]
        acc = (logp + run_scores[:, None]).reshape(-1)
        top = torch.topk(acc, keep + 1).values
        gaps = (top[:-1] - top[1:])[top[1:] > -1e8]
        if len(gaps):
            min_gap = min(min_gap, float(gaps.min()))
        cand_scores, cand_idx = torch.topk(acc, keep)
        cand_beam = (cand_idx // vocab).tolist()
        cand_tok = (cand_idx % vocab).tolist()
        n_generated = t + 1
        at_max = n_generated >= max_new_tokens
        finished = torch.tensor([at_max or tok == eos_id for tok in cand_tok])

        new = [(cand_scores[j] / (n_generated ** length_penalty), seqs[cand_beam[j]][1:] + [cand_tok[j]])
               for j in range(k) if finished[j]]
        hyps = sorted(hyps + new, key=lambda h: -float(h[0]))[:k]  # stable

        masked = cand_scores + finished.to(torch.float32) * -1.0e9
        order = torch.topk(masked, k).indices.tolist()
        seqs = [seqs[cand_beam[j]] + [cand_tok[j]] for j in order]
        run_scores = masked[order]
        state = reorder(state, torch.tensor([cand_beam[j] for j in order]))

        if at_max:
            break
        if len(hyps) == k:
            best_possible = run_scores[0] / (n_generated ** length_penalty)
            if not bool(best_possible > min(h[0] for h in hyps)):
                break
    return [h[1] for h in hyps], [float(h[0]) for h in hyps], t + 1, min_gap


# --------------------------------------------------------------------------------------------
# Self-check on Hugging Face Marian
# --------------------------------------------------------------------------------------------


# Beyond the committed beam.json (whose 4 hypotheses all run to max_new_tokens), transformers'
# generate is run live with other end-of-sequence ids and length penalties, so that hypotheses
# finish on eos at different lengths and the early-stopping heuristic ends the search.
LIVE_BEAM_CASES = [(120, 0.5), (360, 0.5), (78, 0.5), (101, 0.8), (993, 0.8), (656, 0.8), (360, 2.0)]
# (eos id, length_penalty)


def check_against_transformers():
    """Greedy and beam search of this file on tests/fixtures/hf/marian against transformers."""
    import transformers
    from transformers import MarianMTModel
    from transformers.modeling_outputs import BaseModelOutput

    path = os.path.join(ROOT, "tests/fixtures/hf/marian")
    model = MarianMTModel.from_pretrained(path).eval()
    golden = json.load(open(os.path.join(path, "golden.json")))
    beam_golden = json.load(open(os.path.join(path, "beam.json")))
    gen_kwargs = beam_golden["gen_kwargs"]
    start_id = model.generation_config.decoder_start_token_id
    bad = [w[0] for w in gen_kwargs["bad_words_ids"]]
    assert all(len(w) == 1 for w in gen_kwargs["bad_words_ids"])

    def bad_words(prefixes, scores):  # NoBadWordsLogitsProcessor for single-token words
        scores = scores.clone()
        scores[:, bad] = float("-inf")
        return scores

    src = torch.tensor([golden["input_ids"]])
    with torch.no_grad():
        enc = model.get_encoder()(input_ids=src).last_hidden_state

    def step(prefixes, memory):  # full recomputation of the decoder, no cache
        out = model(encoder_outputs=BaseModelOutput(last_hidden_state=memory),
                    attention_mask=torch.ones(memory.shape[:2], dtype=torch.long),
                    decoder_input_ids=prefixes, use_cache=False)
        return out.logits[:, -1], memory

    def reorder(memory, idx):
        return memory[idx]

    def ours(eos_id, length_penalty, max_new_tokens, num_beams=4):
        with torch.no_grad():
            return beam_search(step, enc.expand(num_beams, -1, -1), reorder, start_id=start_id,
                               eos_id=eos_id, num_beams=num_beams, max_new_tokens=max_new_tokens,
                               length_penalty=length_penalty, logits_processor=bad_words)

    def compare(what, hyps, scores, ref_hyps, ref_scores):
        assert hyps == ref_hyps, (what, hyps, ref_hyps)
        err = max(abs(a - b) for a, b in zip(scores, ref_scores))
        assert err < 1e-5, (what, scores, ref_scores)
        return err

    with torch.no_grad():
        ids, _ = greedy_search(step, enc, start_id=start_id, eos_id=model.generation_config.eos_token_id,
                               max_new_tokens=24, logits_processor=bad_words)
    assert ids == golden["output_ids"][1:], (ids, golden["output_ids"])
    print("marian greedy == golden.json output_ids (%d ids)" % len(ids))

    assert beam_golden["num_beams"] == 4
    hyps, scores, steps, _ = ours(model.generation_config.eos_token_id, beam_golden["length_penalty"],
                                  beam_golden["max_new_tokens"])
    err = compare("beam.json", hyps, scores, beam_golden["hypotheses"], beam_golden["scores"])
    print("marian beam == beam.json: 4 hypotheses identical, max |score diff| %.1e, lengths %s, %d steps"
          % (err, [len(h) for h in hyps], steps))

    for eos_id, lp in LIVE_BEAM_CASES:
        with torch.no_grad():
            out = model.generate(src, attention_mask=torch.ones_like(src), do_sample=False, num_beams=4,
                                 num_return_sequences=4, length_penalty=lp, early_stopping=False,
                                 max_new_tokens=24, eos_token_id=eos_id, return_dict_in_generate=True,
                                 output_scores=True, **gen_kwargs)
        ref = []
        for seq in out.sequences.tolist():  # drop the start id and the padding after eos
            seq = seq[1:]
            ref.append(seq[: seq.index(eos_id) + 1] if eos_id in seq else seq)
        hyps, scores, steps, _ = ours(eos_id, lp, 24)
        err = compare((eos_id, lp), hyps, scores, ref, out.sequences_scores.tolist())
        print("marian beam == transformers %s generate (eos %d, length_penalty %.1f): max |score diff| "
              "%.1e, lengths %s, %d steps" % (transformers.__version__, eos_id, lp, err,
                                             [len(h) for h in hyps], steps))


# --------------------------------------------------------------------------------------------
# Independent NumPy forward (float64) from the saved files only: the spec of docs/lstm.md
# --------------------------------------------------------------------------------------------


def numpy_teacher_forcing(cfg, w, src, tgt_in):
    """Logits [T, V] for one unpadded source and target prefix, from safetensors tensors `w`."""
    w = {k: v.astype(np.float64) for k, v in w.items()}
    sig = lambda x: 1.0 / (1.0 + np.exp(-x))

    def cell(x, h, c, w_ih, w_hh, b_ih, b_hh):  # gate rows [i; f; g; o]
        i, f, g, o = np.split(w_ih @ x + b_ih + w_hh @ h + b_hh, 4)
        c = sig(f) * c + sig(i) * np.tanh(g)
        return sig(o) * np.tanh(c), c

    H, L = cfg["hidden_size"], cfg["encoder_layers"]
    dirs = 2 if cfg["bidirectional"] else 1
    x = [w["encoder.embed.weight"][t] for t in src]
    finals = []
    for l in range(L):
        outs, fin = [], []
        for d in range(dirs):
            sfx = "_l%d%s" % (l, "_reverse" if d else "")
            p = [w["encoder.lstm." + n + sfx] for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            h = c = np.zeros(H // dirs)
            ys = [None] * len(x)
            for s in (range(len(x)) if d == 0 else reversed(range(len(x)))):
                h, c = cell(x[s], h, c, *p)
                ys[s] = h
            outs.append(ys)
            fin.append((h, c))
        x = [np.concatenate([o[s] for o in outs]) for s in range(len(x))]
        finals.append((np.concatenate([f[0] for f in fin]), np.concatenate([f[1] for f in fin])))
    memory = np.stack(x)  # [S, H]

    gen_w = w["decoder.embed.weight"] if cfg["tie_output"] else w["generator.weight"]
    hs = [f[0] for f in finals]
    cs = [f[1] for f in finals]
    feed = np.zeros(H)
    logits = []
    for y in tgt_in:
        inp = w["decoder.embed.weight"][y]
        if cfg["input_feeding"]:
            inp = np.concatenate([inp, feed])
        for k in range(cfg["decoder_layers"]):
            p = [w["decoder.cells.%d.%s" % (k, n)] for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            hs[k], cs[k] = cell(inp, hs[k], cs[k], *p)
            inp = hs[k]
        q = inp
        if cfg["attention"] == "dot":
            scores = memory @ q
        elif cfg["attention"] == "general":
            scores = memory @ (w["decoder.attn.linear_in.weight"] @ q)
        else:
            pre = (w["decoder.attn.query.weight"] @ q + w["decoder.attn.query.bias"])[None, :] \
                + memory @ w["decoder.attn.context.weight"].T
            scores = np.tanh(pre) @ w["decoder.attn.v.weight"][0]
        alpha = np.exp(scores - scores.max())
        alpha /= alpha.sum()
        ctx = alpha @ memory
        feed = np.tanh(w["decoder.attn.linear_out.weight"] @ np.concatenate([ctx, q]))
        logits.append(gen_w @ feed + w["generator.bias"])
    return np.stack(logits)


# --------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------

V = 48
MAX_NEW = 16
NUM_BEAMS = 4
SRC_LENGTHS = [9, 13, 6]  # the first input is padded in the batch
TGT_LEN = 8
MODELS = {
    "bi-general-feed": dict(embed_dim=24, hidden_size=32, layers=2, bidirectional=True,
                            attention="general", input_feeding=True, tie_output=False,
                            seed=131, embed_std=1.0, eos_bias=1.25),
    "uni-dot": dict(embed_dim=32, hidden_size=32, layers=1, bidirectional=False,
                    attention="dot", input_feeding=False, tie_output=True,
                    seed=212, embed_std=0.5, eos_bias=1.75),
    "bi-additive-feed": dict(embed_dim=16, hidden_size=32, layers=1, bidirectional=True,
                             attention="additive", input_feeding=True, tie_output=False,
                             seed=303, embed_std=1.0, eos_bias=1.75),
}


def make_config(spec):
    return {
        "model_type": "quill-lstm", "vocab_size": V, "embed_dim": spec["embed_dim"],
        "hidden_size": spec["hidden_size"], "encoder_layers": spec["layers"],
        "decoder_layers": spec["layers"], "bidirectional": spec["bidirectional"],
        "attention": spec["attention"], "input_feeding": spec["input_feeding"],
        "tie_output": spec["tie_output"], "pad_token_id": PAD, "unk_token_id": UNK,
        "eos_token_id": EOS, "bos_token_id": BOS, "decoder_start_token_id": BOS, "gate_order": "ifgo",
    }


def lstm_step_fns(model, memory, mask):
    """Adapters of an LstmSeq2Seq to the generic search functions (state = (h, c, feed, memory,
    mask), reordered along the beam dimension)."""

    def step(prefixes, state):
        h, c, feed, mem, msk = state
        logits, (h, c, feed) = model.step(prefixes[:, -1], (h, c, feed), mem, msk)
        return logits, (h, c, feed, mem, msk)

    def reorder(state, idx):
        h, c, feed, mem, msk = state
        return h[:, idx], c[:, idx], feed[idx], mem[idx], msk[idx]

    return step, reorder


def write_fixture(out_dir, name, spec):
    cfg = make_config(spec)
    torch.manual_seed(spec["seed"])
    model = LstmSeq2Seq(cfg, dropout=0.1)
    init_weights(model, spec["seed"], spec["embed_std"], spec["eos_bias"])
    model.eval()

    g = torch.Generator().manual_seed(spec["seed"] + 1)
    inputs = [torch.randint(4, V, (n - 1,), generator=g).tolist() + [EOS] for n in SRC_LENGTHS]
    target_in = [BOS] + torch.randint(4, V, (TGT_LEN - 1,), generator=g).tolist()

    path = os.path.join(out_dir, name)
    os.makedirs(path, exist_ok=True)
    save_file(model.state_dict_to_save(), os.path.join(path, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")

    # Reload from the files, so that the goldens come from exactly what was written.
    reloaded = LstmSeq2Seq(cfg).eval()
    tensors = load_numpy(os.path.join(path, "model.safetensors"))
    missing, unexpected = reloaded.load_state_dict({k: torch.from_numpy(v) for k, v in tensors.items()}, strict=False)
    assert unexpected == [] and missing == (["generator.weight"] if cfg["tie_output"] else []), (missing, unexpected)
    model = reloaded
    saved_cfg = json.load(open(os.path.join(path, "config.json")))

    with torch.no_grad():
        tgt = torch.tensor([target_in])
        single = [model(torch.tensor([s]), torch.tensor([len(s)]), tgt)[0] for s in inputs]
        smax = max(SRC_LENGTHS)
        batch_src = torch.tensor([s + [PAD] * (smax - len(s)) for s in inputs])
        batched = model(batch_src, torch.tensor(SRC_LENGTHS), tgt.expand(len(inputs), -1))
        batch_err = np_err = 0.0
        for i, s in enumerate(inputs):
            batch_err = max(batch_err, float((batched[i] - single[i]).abs().max()))
            ref = numpy_teacher_forcing(saved_cfg, tensors, s, target_in)
            np_err = max(np_err, float(np.abs(ref - single[i].numpy().astype(np.float64)).max()))
        assert batch_err < 1e-6 and np_err < 1e-4, (name, batch_err, np_err)

        greedy, beams, margins, gaps = [], {"hypotheses": [], "scores": [], "steps": []}, [], []
        for s in inputs:
            memory, mask, (h, c, feed) = model.encode(torch.tensor([s]), torch.tensor([len(s)]))
            step, reorder = lstm_step_fns(model, memory, mask)
            ids, margin = greedy_search(step, (h, c, feed, memory, mask), start_id=BOS, eos_id=EOS,
                                        max_new_tokens=MAX_NEW)
            greedy.append(ids)
            margins.append(margin)
            # incremental decoding of the greedy output == teacher forcing on it
            tf = model(torch.tensor([s]), torch.tensor([len(s)]), torch.tensor([[BOS] + ids[:-1]]))[0]
            assert torch.equal(tf.argmax(-1), torch.tensor(ids)), name

            idx = torch.zeros(NUM_BEAMS, dtype=torch.long)
            hyps, scores, steps, gap = beam_search(
                step, reorder((h, c, feed, memory, mask), idx), reorder,
                start_id=BOS, eos_id=EOS, num_beams=NUM_BEAMS, max_new_tokens=MAX_NEW, length_penalty=1.0)
            # each hypothesis score re-derived by teacher forcing: sum of log-probs / length
            for hyp, score in zip(hyps, scores):
                lp = F.log_softmax(model(torch.tensor([s]), torch.tensor([len(s)]),
                                         torch.tensor([[BOS] + hyp[:-1]]))[0], -1)
                total = float(lp.gather(1, torch.tensor(hyp)[:, None]).sum()) / len(hyp)
                assert abs(total - score) < 1e-4, (name, hyp, total, score)
            beams["hypotheses"].append(hyps)
            beams["scores"].append(scores)
            beams["steps"].append(steps)
            gaps.append(gap)

    golden = {
        "torch_version": torch.__version__,
        "inputs": inputs,
        "teacher_forcing": {"source": inputs[0], "target_in": target_in,
                            "logits": single[0].tolist()},
        "batch_logits": batched.tolist(),
        "batch_logits_note": "[i] = teacher-forced logits of inputs[i] with target_in, all inputs "
                             "right-padded with pad 0 in one batch; [0] equals teacher_forcing.logits",
        "greedy": greedy,
        "beam": {"num_beams": NUM_BEAMS, "length_penalty": 1.0, "early_stopping": False,
                 "max_new_tokens": MAX_NEW, **beams},
        "decoding_note": "ids exclude the decoder start (bos 3) and include eos 2 when produced; "
                         "beam.steps = decoding steps run before the search stopped",
        "min_greedy_margin": min(margins),
        "min_beam_candidate_gap": min(gaps),
    }
    with open(os.path.join(path, "golden.json"), "w") as f:
        json.dump(golden, f)
        f.write("\n")
    print("%-17s params %5d  |batched-single| %.1e  |numpy f64-torch| %.1e  greedy lens %s  "
          "beam lens %s  steps %s  greedy margin %.3f  beam gap %.1e" % (
        name, sum(v.size for v in tensors.values()), batch_err, np_err, [len(x) for x in greedy],
        [[len(x) for x in hs] for hs in beams["hypotheses"]], beams["steps"], min(margins), min(gaps)))
    assert min(margins) > 1e-3 and min(gaps) > 1e-5, "near-tie: pick another seed for " + name


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "tests/fixtures/lstm")
    check_against_transformers()
    for name, spec in MODELS.items():
        write_fixture(out_dir, name, spec)


if __name__ == "__main__":
    main()
