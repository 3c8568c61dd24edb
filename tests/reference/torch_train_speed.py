#!/usr/bin/env python3
"""PyTorch eager CPU training-speed baseline for quill's trainer.

Trains a pre-norm Transformer encoder-decoder on synthetic random token ids and
times `--steps` full training steps (zero_grad, forward, label-smoothed
cross-entropy, backward, grad-norm clip 1.0, AdamW step) after `--warmup`
untimed steps. Modules are written by hand (no nn.Transformer, no fused SDPA,
no torch.compile) so the work matches quill op for op: tied embedding/output
table scaled by sqrt(C) plus sinusoidal positions (sin in the first C/2
columns, cos in the last C/2), separate Q/K/V/O Linear with bias, explicit
masked softmax attention, ReLU FFN, LayerNorm eps 1e-5, final LayerNorm per
stack, dropout on embeddings and on each sub-layer output. Batches are
generated before timing. Prints one JSON line; tokens_per_s counts non-pad
source + target tokens, tgt_tokens_per_s non-pad target (label) tokens.

    ~/quill-ref/venv/bin/python tests/reference/torch_train_speed.py
    ~/quill-ref/venv/bin/python tests/reference/torch_train_speed.py --threads 2 --ragged
"""
import argparse
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

PAD, BOS = 0, 2


class Attention(nn.Module):
    def __init__(self, c, h):
        super().__init__()
        self.h, self.d = h, c // h
        self.q, self.k, self.v, self.o = (nn.Linear(c, c) for _ in range(4))

    def forward(self, x, mem, mask):  # mask: True = blocked, broadcast to [B, H, Tq, Tk]
        b, tq, c = x.shape
        tk = mem.shape[1]
        q = self.q(x).view(b, tq, self.h, self.d).transpose(1, 2)
        k = self.k(mem).view(b, tk, self.h, self.d).transpose(1, 2)
        v = self.v(mem).view(b, tk, self.h, self.d).transpose(1, 2)
        s = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.d))
        p = torch.softmax(s.masked_fill(mask, torch.finfo(s.dtype).min), dim=-1)
        return self.o((p @ v).transpose(1, 2).reshape(b, tq, c))


class Layer(nn.Module):
    def __init__(self, c, h, f, p, cross):
        super().__init__()
        self.ln1, self.att = nn.LayerNorm(c, eps=1e-5), Attention(c, h)
        self.ln2, self.cross = (nn.LayerNorm(c, eps=1e-5), Attention(c, h)) if cross else (None, None)
        self.ln3, self.ff1, self.ff2 = nn.LayerNorm(c, eps=1e-5), nn.Linear(c, f), nn.Linear(f, c)
        self.drop = nn.Dropout(p) if p > 0 else nn.Identity()

    def forward(self, x, self_mask, mem=None, mem_mask=None):
        y = self.ln1(x)
        x = x + self.drop(self.att(y, y, self_mask))
        if self.cross is not None:
            x = x + self.drop(self.cross(self.ln2(x), mem, mem_mask))
        return x + self.drop(self.ff2(F.relu(self.ff1(self.ln3(x)))))


class Seq2Seq(nn.Module):
    def __init__(self, a):
        super().__init__()
        c = a.d_model
        self.scale = math.sqrt(c)
        self.emb = nn.Embedding(a.vocab, c)
        nn.init.normal_(self.emb.weight, std=c ** -0.5)
        n = max(a.src_len, a.tgt_len)
        pos = torch.arange(n, dtype=torch.float32)[:, None]
        inv = 10000.0 ** (-2.0 * torch.arange(c // 2, dtype=torch.float32) / c)
        self.register_buffer("pe", torch.cat([torch.sin(pos * inv), torch.cos(pos * inv)], dim=1))
        self.drop = nn.Dropout(a.dropout) if a.dropout > 0 else nn.Identity()
        self.enc = nn.ModuleList(Layer(c, a.heads, a.ffn, a.dropout, False) for _ in range(a.enc_layers))
        self.dec = nn.ModuleList(Layer(c, a.heads, a.ffn, a.dropout, True) for _ in range(a.dec_layers))
        self.enc_ln, self.dec_ln = nn.LayerNorm(c, eps=1e-5), nn.LayerNorm(c, eps=1e-5)

    def embed(self, ids):
        return self.drop(self.emb(ids) * self.scale + self.pe[: ids.shape[1]])

    def forward(self, src, tgt_in):
        src_mask = (src == PAD)[:, None, None, :]  # [B, 1, 1, S]
        t = tgt_in.shape[1]
        causal = torch.ones(t, t, dtype=torch.bool).triu(1)
        tgt_mask = causal | (tgt_in == PAD)[:, None, None, :]  # [B, 1, T, T]
        x = self.embed(src)
        for layer in self.enc:
            x = layer(x, src_mask)
        mem = self.enc_ln(x)
        y = self.embed(tgt_in)
        for layer in self.dec:
            y = layer(y, tgt_mask, mem, src_mask)
        return F.linear(self.dec_ln(y), self.emb.weight)  # tied output projection, no bias


def make_batch(a, g):
    b, s, t, v = a.batch, a.src_len, a.tgt_len, a.vocab
    src = torch.randint(4, v, (b, s), generator=g)
    tgt = torch.randint(4, v, (b, t + 1), generator=g)
    tgt[:, 0] = BOS
    if a.ragged:
        sl = torch.randint(s // 2, s + 1, (b, 1), generator=g)
        tl = torch.randint(t // 2, t + 1, (b, 1), generator=g)
        src[torch.arange(s)[None, :] >= sl] = PAD
        tgt[:, 1:][torch.arange(t)[None, :] >= tl] = PAD
    tgt_in, labels = tgt[:, :-1].clone(), tgt[:, 1:].clone()
    tgt_in[labels == PAD] = PAD  # decoder input padded at the same positions as labels
    return src, tgt_in, labels


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, default in [("vocab", 8000), ("d-model", 256), ("heads", 4), ("ffn", 1024), ("enc-layers", 3),
                          ("dec-layers", 3), ("batch", 64), ("src-len", 24), ("tgt-len", 24), ("steps", 20),
                          ("warmup", 3), ("threads", 1), ("seed", 0)]:
        p.add_argument("--" + name, type=int, default=default)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--ragged", action="store_true")
    a = p.parse_args()

    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    torch.manual_seed(a.seed)
    g = torch.Generator().manual_seed(a.seed)

    model = Seq2Seq(a).train()
    opt = torch.optim.AdamW(model.parameters(), lr=5e-4, betas=(0.9, 0.98), eps=1e-9, weight_decay=0.0)
    batches = [make_batch(a, g) for _ in range(a.warmup + a.steps)]

    def step(src, tgt_in, labels):
        opt.zero_grad(set_to_none=True)
        logits = model(src, tgt_in)
        loss = F.cross_entropy(logits.reshape(-1, a.vocab), labels.reshape(-1), ignore_index=PAD, label_smoothing=0.1)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.detach()

    for bt in batches[: a.warmup]:
        step(*bt)
    timed = batches[a.warmup:]
    t0 = time.perf_counter()
    for bt in timed:
        loss = step(*bt)
    secs = time.perf_counter() - t0

    src_tok = sum(int((s != PAD).sum()) for s, _, _ in timed)
    tgt_tok = sum(int((l != PAD).sum()) for _, _, l in timed)
    config = {k: v for k, v in vars(a).items() if k not in ("steps", "warmup", "threads")}
    print(json.dumps({
        "framework": "pytorch-eager", "torch": torch.__version__, "threads": a.threads, "config": config,
        "steps": a.steps, "seconds": round(secs, 4),
        "tokens_per_s": round((src_tok + tgt_tok) / secs, 1), "tgt_tokens_per_s": round(tgt_tok / secs, 1),
        "ms_per_step": round(1000 * secs / a.steps, 2), "params": sum(q.numel() for q in model.parameters()),
        "final_loss": round(float(loss), 4),
    }))


if __name__ == "__main__":
    main()
