#!/usr/bin/env python3
"""Writes tests/fixtures/golden.txt: a small attention + conv + BiLSTM
classifier in PyTorch (inputs, parameters, outputs, parameter gradients and
5 losses of AdamW steps with gradient clipping), which tests/test_golden.c
matches with attune, without Python. Run once, by hand:
    python3 tools/golden_torch.py  (needs torch; Debian's python3-torch works)

Text format, one tensor a record:  name rank d0 .. d{rank-1} \n values\n
Parameters are stored in ONNX layout (LSTM W/R/B with gates i,o,f,c)."""
import math
import os
import sys

import torch

torch.manual_seed(1234)
B, T, V, D, C, K, H, NCLS = 3, 6, 13, 8, 6, 3, 5, 4


def onnx_lstm(lstm, d):
    """torch gates i,f,g,o -> ONNX gates i,o,f,c."""
    sfx = "_reverse" if d else ""
    w = getattr(lstm, "weight_ih_l0" + sfx).detach()
    r = getattr(lstm, "weight_hh_l0" + sfx).detach()
    bi = getattr(lstm, "bias_ih_l0" + sfx).detach()
    bh = getattr(lstm, "bias_hh_l0" + sfx).detach()

    def reorder(x):
        i, f, g, o = x.chunk(4, 0)
        return torch.cat([i, o, f, g], 0)

    return reorder(w), reorder(r), torch.cat([reorder(bi), reorder(bh)])


class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Parameter(torch.randn(V, D) * 0.5)
        self.wq = torch.nn.Parameter(torch.randn(D, D) / math.sqrt(D))
        self.wk = torch.nn.Parameter(torch.randn(D, D) / math.sqrt(D))
        self.wv = torch.nn.Parameter(torch.randn(D, D) / math.sqrt(D))
        self.ln_g = torch.nn.Parameter(1 + 0.1 * torch.randn(D))
        self.ln_b = torch.nn.Parameter(0.1 * torch.randn(D))
        self.conv = torch.nn.Conv1d(D, C, K, padding=1)
        self.lstm = torch.nn.LSTM(C, H, batch_first=False, bidirectional=True)
        self.wo = torch.nn.Parameter(torch.randn(2 * H, NCLS) / math.sqrt(2 * H))
        self.bo = torch.nn.Parameter(torch.zeros(NCLS))

    def forward(self, tokens, labels):
        x = self.emb[tokens]                                   # [B,T,D]
        q, k, v = x @ self.wq, x @ self.wk, x @ self.wv
        a = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(D), -1) @ v
        h = torch.nn.functional.layer_norm(x + a, (D,), self.ln_g, self.ln_b, 1e-5)
        c = torch.relu(self.conv(h.transpose(1, 2)))           # [B,C,T]
        _, (hn, _) = self.lstm(c.permute(2, 0, 1))             # hn [2,B,H]
        feat = hn.transpose(0, 1).reshape(B, 2 * H)
        logits = feat @ self.wo + self.bo
        return logits, torch.nn.functional.cross_entropy(logits, labels)


def params_onnx(m):
    w0, r0, b0 = onnx_lstm(m.lstm, 0)
    w1, r1, b1 = onnx_lstm(m.lstm, 1)
    return {
        "emb": m.emb, "wq": m.wq, "wk": m.wk, "wv": m.wv, "ln_g": m.ln_g, "ln_b": m.ln_b,
        "conv_w": m.conv.weight, "conv_b": m.conv.bias,
        "lstm_w": torch.stack([w0, w1]), "lstm_r": torch.stack([r0, r1]),
        "lstm_b": torch.stack([b0, b1]), "wo": m.wo, "bo": m.bo,
    }


def grads_onnx(m):
    """The same layout for gradients (LSTM grads reordered like weights)."""
    saved = {}
    for name, p in m.named_parameters():
        saved[name] = p.data.clone()
        p.data.copy_(p.grad)
    g = {k: v.detach().clone() for k, v in params_onnx(m).items()}
    for name, p in m.named_parameters():
        p.data.copy_(saved[name])
    # d/dB of torch's two biases are equal; ONNX's B = [Wb, Rb] gets both.
    return g


def write(f, name, t):
    dims = list(t.shape)
    f.write(f"{name} {len(dims)} {' '.join(str(d) for d in dims)}\n")
    f.write(" ".join(f"{x:.9g}" for x in t.detach().double().reshape(-1).tolist()) + "\n")


def main():
    m = Model()
    tokens = torch.randint(0, V, (B, T))
    labels = torch.randint(0, NCLS, (B,))
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures",
                       "golden.txt")
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2, weight_decay=0.01)
    recs = []
    p0 = {k: v.detach().clone() for k, v in params_onnx(m).items()}
    losses = []
    for step in range(5):
        opt.zero_grad()
        logits, loss = m(tokens, labels)
        loss.backward()
        if step == 0:
            logits0 = logits.detach().clone()
            g0 = grads_onnx(m)
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
    with open(out, "w") as f:
        def put(name, t):
            write(f, name, t)
        put("tokens", tokens)
        put("labels", labels)
        for k, v in p0.items():
            put("param." + k, v)
        put("logits", logits0)
        for k, v in g0.items():
            put("grad." + k, v)
        put("losses", torch.tensor(losses))
    print("wrote", out, "losses", losses)


if __name__ == "__main__":
    sys.exit(main())
