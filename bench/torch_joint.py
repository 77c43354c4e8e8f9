#!/usr/bin/python3
"""The joint NLU model of DESIGN.md section 6 in PyTorch eager, mirroring models/*.c op for op
(the peer of bench/train_step.c): the default config (transformer encoder, L = 2, emb 128,
d = 256, 4 heads, FFN 4d; G on: d_g 128, 1 layer, 4 heads, FFN 2 d_g; additive attention
(size 128) in both components; adv gan with hard (straight-through) D input; D 64 channels at
widths 3 and 5, FC 64; dropout 0.2; AdamW lr 1e-3, wd 0.01; clip 5; beta 0.01).

A step is what attune's trainer does per batch in phase 2, gan mode: one D update (L_D, D
only; the rest of the model runs without autograd, as a PyTorch GAN detaches the generator
side), then one combined update (L_task + L_reg + lambda L_adv; every group but D, gradients
flowing through D into the model). Each update set has its own AdamW, as in attune.

    torch_joint.py [--batch 32] [--seq 16] [--threads 2] [--steps 20] [--warmup 3]
                   [--encoder transformer|bilstm] [--device cpu|cuda]

Prints one JSON line, the same keys as bench_train_step. Runs with Debian's python3-torch.
"""
import argparse
import ctypes
import json
import math
import os
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

MASK_NEG = -1e9
IGNORE = -100


def set_blas_threads(n):
    """torch.set_num_threads leaves OpenBLAS at its own default (all cores); attune's session
    sets OpenBLAS's count to its thread count, so do the same here. Debian's libtorch links
    both libblas.so.3 and libopenblas.so.0 (OpenBLAS builds): set every one that is loaded."""
    done = []
    for name in ("libblas.so.3", "libopenblas.so.0"):
        try:
            lib = ctypes.CDLL(name, mode=os.RTLD_NOLOAD | os.RTLD_GLOBAL)
            lib.openblas_set_num_threads(n)
            done.append(name)
        except (OSError, AttributeError):
            pass
    return done


def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


class MHA(nn.Module):
    """Multi-head scaled dot with q, k, v (no bias) and output (bias) projections."""

    def __init__(self, d, heads):
        super().__init__()
        self.h, self.dh = heads, d // heads
        self.wq = nn.Linear(d, d, bias=False)
        self.wk = nn.Linear(d, d, bias=False)
        self.wv = nn.Linear(d, d, bias=False)
        self.wo = nn.Linear(d, d)

    def forward(self, x, kbias):
        B, T, d = x.shape
        q = self.wq(x).view(B, T, self.h, self.dh).transpose(1, 2)
        k = self.wk(x).view(B, T, self.h, self.dh).transpose(1, 2)
        v = self.wv(x).view(B, T, self.h, self.dh).transpose(1, 2)
        s = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(self.dh)) + kbias.unsqueeze(1)
        ctx = torch.softmax(s, -1) @ v
        return self.wo(ctx.transpose(1, 2).reshape(B, T, d))


class TransformerLayer(nn.Module):
    """Pre-LN: x + drop(MHA(LN(x))), then x + drop(FF2(GELU(FF1(LN(x)))))."""

    def __init__(self, d, heads, ffn, p):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = MHA(d, heads)
        self.ff1, self.ff2 = nn.Linear(d, ffn), nn.Linear(ffn, d)
        self.drop = nn.Dropout(p)

    def forward(self, x, kbias):
        x = x + self.drop(self.attn(self.ln1(x), kbias))
        return x + self.drop(self.ff2(F.gelu(self.ff1(self.ln2(x)))))


class Encoder(nn.Module):
    def __init__(self, kind, n_words, emb, d, layers, heads, ffn, max_pos, p):
        super().__init__()
        self.kind = kind
        self.emb = nn.Embedding(n_words, emb)
        self.drop = nn.Dropout(p)
        if kind == "transformer":
            self.inp = nn.Linear(emb, d)
            self.pos = nn.Parameter(torch.randn(max_pos, d) * 0.02)
            self.layers = nn.ModuleList(TransformerLayer(d, heads, ffn, p) for _ in range(layers))
            self.ln_f = nn.LayerNorm(d)
        else:
            self.layers = nn.ModuleList(
                nn.LSTM(emb if l == 0 else d, d // 2, batch_first=True, bidirectional=True)
                for l in range(layers))

    def forward(self, tokens, lengths, kbias):
        x = self.drop(self.emb(tokens))
        hs = []
        if self.kind == "transformer":
            x = self.inp(x) + self.pos[: tokens.shape[1]]
            for layer in self.layers:
                x = layer(x, kbias)
                hs.append(x)
            hs[-1] = self.ln_f(x)
        else:
            T = tokens.shape[1]
            for l, lstm in enumerate(self.layers):
                if l:
                    x = self.drop(x)
                packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True,
                                                           enforce_sorted=False)
                y, _ = lstm(packed)
                x, _ = nn.utils.rnn.pad_packed_sequence(y, batch_first=True, total_length=T)
                hs.append(x)
        return hs


class Generator(nn.Module):
    """s = 2 sigmoid(out(LN(layers(in(concat H) + task_emb[task])))), out starting at zero."""

    def __init__(self, L, d, dg, layers, heads, p):
        super().__init__()
        self.inp = nn.Linear(L * d, dg)
        self.task = nn.Embedding(2, dg)
        self.layers = nn.ModuleList(TransformerLayer(dg, heads, 2 * dg, p) for _ in range(layers))
        self.ln_f = nn.LayerNorm(dg)
        self.out = nn.Linear(dg, d)
        nn.init.zeros_(self.out.weight)

    def forward(self, hs, task, kbias):
        x = self.inp(torch.cat(hs, 2) if len(hs) > 1 else hs[0]) + self.task.weight[task]
        for layer in self.layers:
            x = layer(x, kbias)
        return torch.sigmoid(self.out(self.ln_f(x))) * 2.0


class Additive(nn.Module):
    """v . tanh(W1 q + W2 k) over keys, masked, softmax, context = weights @ states."""

    def __init__(self, dq, d, a):
        super().__init__()
        self.wq = nn.Linear(dq, a, bias=False)
        self.wk = nn.Linear(d, a)
        self.v = nn.Linear(a, 1, bias=False)

    def forward(self, q, kv, kbias):
        e = torch.tanh(self.wq(q).unsqueeze(2) + self.wk(kv).unsqueeze(1))  # [B,Tq,Tk,a]
        w = torch.softmax(self.v(e).squeeze(3) + kbias, -1)
        return w @ kv, w


class Decoders(nn.Module):
    def __init__(self, d, a, n_intents, n_slots, p):
        super().__init__()
        self.query = nn.Parameter(torch.randn(1, 1, d) * 0.05)
        self.attn1 = Additive(d, d, a)
        self.intent_out = nn.Linear(d, n_intents)
        self.attn2 = Additive(d, d, a)
        self.wc = nn.Linear(2 * d, a)
        self.slot_out = nn.Linear(a, n_slots)
        self.drop = nn.Dropout(p)

    def forward(self, r_i, r_e, kbias):
        ci, _ = self.attn1(self.query, r_i, kbias)
        intent = self.intent_out(self.drop(ci.reshape(ci.shape[0], -1)))
        ce, _ = self.attn2(r_e, r_e, kbias)
        at = torch.tanh(self.wc(torch.cat([ce, r_e], 2)))
        return intent, self.slot_out(self.drop(at))


class Discriminator(nn.Module):
    def __init__(self, d, n_slots, n_intents, ch, widths, hidden):
        super().__init__()
        cin = d + n_slots + n_intents
        self.convs = nn.ModuleList(nn.Conv1d(cin, ch, k, padding=k // 2) for k in widths)
        self.fc1 = nn.Linear(len(widths) * ch, hidden)
        self.fc2 = nn.Linear(hidden, 1)

    def forward(self, r, slot_vec, intent_vec, mask3, kbias):
        iv = mask3 * intent_vec.unsqueeze(1)
        x = (torch.cat([r, slot_vec, iv], 2) * mask3).transpose(1, 2)
        y = torch.cat([F.relu(c(x)) for c in self.convs], 1)
        y = (y + kbias).amax(2)
        return self.fc2(F.relu(self.fc1(y))).squeeze(1)


def one_hot(labels, n):
    """Zero rows where the label is outside [0, n) (IGNORE), as nlu_one_hot."""
    return (labels.unsqueeze(-1) == torch.arange(n, device=labels.device)).float()


def fake_labels(logits):
    p = torch.softmax(logits, -1)
    hard = (p == p.amax(-1, keepdim=True)).float()
    return hard + (p - p.detach())


class Joint(nn.Module):
    def __init__(self, a):
        super().__init__()
        d = 256
        self.d, self.n_slots, self.n_intents = d, a.slots, a.intents
        self.enc = Encoder(a.encoder, a.words, 128, d, 2, 4, 4 * d, max(128, a.seq), 0.2)
        self.gen = Generator(2, d, 128, 1, 4, 0.2)
        self.dec = Decoders(d, 128, a.intents, a.slots, 0.2)
        self.disc = Discriminator(d, a.slots, a.intents, 64, (3, 5), 64)

    def forward_main(self, tokens, lengths, mask):
        kbias = ((mask - 1.0) * -MASK_NEG).unsqueeze(1)
        hs = self.enc(tokens, lengths, kbias)
        s_i, s_e = self.gen(hs, 0, kbias), self.gen(hs, 1, kbias)
        r_i, r_e = hs[-1] * s_i, hs[-1] * s_e
        intent, slot = self.dec(r_i, r_e, kbias)
        return kbias, s_i, s_e, r_e, intent, slot

    def d_losses(self, r_e, intent, slot, slots, intents, mask, kbias, real_needed=True):
        mask3 = mask.unsqueeze(2)
        d_fake = self.disc(r_e, fake_labels(slot), fake_labels(intent), mask3, kbias)
        if not real_needed:
            return None, d_fake
        d_real = self.disc(r_e, one_hot(slots, self.n_slots), one_hot(intents, self.n_intents),
                           mask3, kbias)
        labelled = (intents != IGNORE).float()
        real = (labelled * F.softplus(-d_real)).sum() / labelled.sum().clamp(min=1.0)
        return real + F.softplus(d_fake).mean(), d_fake


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--encoder", default="transformer")
    ap.add_argument("--words", type=int, default=10000)
    ap.add_argument("--slots", type=int, default=72)
    ap.add_argument("--intents", type=int, default=7)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    a = ap.parse_args()
    dev = torch.device(a.device)
    torch.set_num_threads(a.threads)
    blas = set_blas_threads(a.threads)
    torch.manual_seed(1)
    B, T = a.batch, a.seq

    t_build = time.perf_counter()
    m = Joint(a).to(dev)
    t_build = time.perf_counter() - t_build
    d_params = list(m.disc.parameters())
    main_params = [p for n, p in m.named_parameters() if not n.startswith("disc.")]
    opt_d = torch.optim.AdamW(d_params, lr=1e-3, weight_decay=0.01)
    opt_m = torch.optim.AdamW(main_params, lr=1e-3, weight_decay=0.01)
    m.train()

    # The batch of bench_train_step: lengths between T/2 and T, row 0 full.
    g = torch.Generator().manual_seed(42)
    lengths = torch.tensor([T if b == 0 else T - (b * 7919) % (T // 2 + 1) for b in range(B)])
    mask = (torch.arange(T).unsqueeze(0) < lengths.unsqueeze(1)).float()
    tokens = torch.randint(2, a.words, (B, T), generator=g) * mask.long()
    slots = torch.where(mask > 0, torch.randint(0, a.slots, (B, T), generator=g),
                        torch.full((B, T), IGNORE))
    intents = torch.randint(0, a.intents, (B,), generator=g)
    # pack_padded_sequence wants the lengths on the CPU; everything else goes to the device.
    mask, tokens, slots, intents = (t.to(dev) for t in (mask, tokens, slots, intents))
    lam, beta = 0.05, 0.01

    def d_step():
        with torch.no_grad():
            kbias, _, _, r_e, intent, slot = m.forward_main(tokens, lengths, mask)
        loss_d, _ = m.d_losses(r_e, intent, slot, slots, intents, mask, kbias)
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        nn.utils.clip_grad_norm_(d_params, 5.0)
        opt_d.step()
        return loss_d.item()

    def main_step():
        for p in d_params:
            p.requires_grad_(False)
        kbias, s_i, s_e, r_e, intent, slot = m.forward_main(tokens, lengths, mask)
        task = F.cross_entropy(intent, intents, ignore_index=IGNORE) + F.cross_entropy(
            slot.reshape(-1, a.slots), slots.reshape(-1), ignore_index=IGNORE)
        mask3 = mask.unsqueeze(2)
        reg = (((s_i - 1) ** 2 * mask3).sum() + ((s_e - 1) ** 2 * mask3).sum()) / (
            mask.sum() * 2.0 * m.d).clamp(min=1.0) * beta
        _, d_fake = m.d_losses(r_e, intent, slot, slots, intents, mask, kbias, real_needed=False)
        adv = F.softplus(-d_fake).mean()
        loss = task + reg + lam * adv
        opt_m.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(main_params, 5.0)
        opt_m.step()
        for p in d_params:
            p.requires_grad_(True)
        return task.item(), reg.item(), adv.item()

    rss0 = rss_mib()
    times, cpu = [], []
    loss_d = loss_task = 0.0
    for k in range(a.warmup + a.steps):
        t0, c0 = time.perf_counter(), time.process_time()
        loss_d = d_step()
        loss_task = main_step()[0]
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t1, c1 = time.perf_counter(), time.process_time()
        if k >= a.warmup:
            times.append((t1 - t0) * 1e3)
            cpu.append((c1 - c0) * 1e3)
    times.sort()
    cpu.sort()
    print(json.dumps({
        "impl": "pytorch", "device": a.device, "encoder": a.encoder, "part": "step", "batch": B, "seq": T,
        "threads": a.threads, "steps": a.steps, "median_ms": round(times[len(times) // 2], 3),
        "min_ms": round(times[0], 3), "max_ms": round(times[-1], 3),
        "cpu_ms": round(cpu[len(cpu) // 2], 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_before_steps_mb": round(rss0, 1),
        "params": sum(p.numel() for p in m.parameters()), "build_s": round(t_build, 3),
        "loss_d": round(loss_d, 4), "loss_task": round(loss_task, 4),
        "torch": torch.__version__, "openblas_threads_set": blas}))


if __name__ == "__main__":
    main()
