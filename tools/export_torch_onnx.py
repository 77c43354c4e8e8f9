#!/usr/bin/python3
"""Writes the torch.onnx.export fixtures that tests/test_torch_import.c loads:

  tests/fixtures/torch_small.onnx    a small embedding + multi-head attention + LayerNorm +
                                     Conv1d + BiLSTM + mean/max pooling + MLP (GELU) model,
                                     exported with dynamic batch and time axes;
  tests/fixtures/torch_small.txt     its inputs and PyTorch's outputs at two input shapes
                                     (batch 2 x time 5 and batch 3 x time 4), in the text
                                     format of tests/fixture.h ("name rank dims\\nvalues\\n");
  tests/fixtures/torch_small_opset9.onnx  the same model at opset 9, whose Split, Unsqueeze,
                                     Reduce* and Softmax nodes take the old attribute forms
                                     (same outputs);
  tests/fixtures/torch_missing.onnx  a tiny exported model made of ops attune lacks, for the
                                     "unknown ops" error.

Run once, by hand, with Debian's interpreter (python3-torch 1.13; the onnx package is not
needed, torch serializes the model itself):
    /usr/bin/python3 tools/export_torch_onnx.py
The opset is the highest this torch exports (17 for torch 1.13), so the files carry the
opset-17 forms that attune converts on import (ReduceMean/ReduceMax axes as attributes)."""
import os
import sys

import torch
from torch.onnx import _constants

SEED = 20240611
V, D, HEADS, C, H, HID, NCLS = 11, 8, 2, 6, 5, 16, 3
SHAPES = [(2, 5), (3, 4)]  # (batch, time) of the recorded runs
OPSET = _constants.ONNX_MAX_OPSET

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
FIX = os.path.join(ROOT, "tests", "fixtures")


class Small(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(V, D)
        self.attn = torch.nn.MultiheadAttention(D, HEADS, batch_first=True)
        self.norm = torch.nn.LayerNorm(D)
        self.conv = torch.nn.Conv1d(D, C, 3, padding=1)
        self.lstm = torch.nn.LSTM(C, H, batch_first=True, bidirectional=True)
        self.mlp = torch.nn.Sequential(
            torch.nn.Linear(4 * H, HID), torch.nn.GELU(), torch.nn.Linear(HID, NCLS))

    def forward(self, tokens):
        x = self.emb(tokens)                                   # [B,T,D]
        a, w = self.attn(x, x, x, need_weights=True)           # w: [B,T,T], head average
        h = self.norm(x + a)
        c = torch.relu(self.conv(h.transpose(1, 2))).transpose(1, 2)  # [B,T,C]
        y, _ = self.lstm(c)                                    # [B,T,2H]
        pooled = torch.cat([y.mean(dim=1), y.amax(dim=1)], dim=-1)  # [B,4H]
        return self.mlp(pooled), y, w


class Missing(torch.nn.Module):
    """Ops attune does not implement (CumSum, TopK, Sin, Floor), one of them twice."""

    def forward(self, x):
        s = torch.cumsum(x, dim=1)
        top, _ = torch.topk(s, 2, dim=1)
        return torch.floor(torch.sin(top)) + torch.sin(x[:, :2])


def fmt(v):
    if isinstance(v, int):
        return str(v)
    return "%.9g" % v


def record(f, name, t):
    t = t.detach().contiguous()
    f.write("%s %d%s\n" % (name, t.dim(), "".join(" %d" % d for d in t.shape)))
    vals = t.reshape(-1).tolist()
    f.write(" ".join(fmt(v) for v in vals) + "\n")


def main():
    torch.manual_seed(SEED)
    model = Small().eval()
    os.makedirs(FIX, exist_ok=True)

    example = torch.randint(0, V, SHAPES[0])
    for opset, name in ((OPSET, "torch_small.onnx"), (9, "torch_small_opset9.onnx")):
        torch.onnx.export(
            model, (example,), os.path.join(FIX, name), opset_version=opset,
            input_names=["tokens"], output_names=["logits", "seq", "attn"],
            dynamic_axes={"tokens": {0: "batch", 1: "time"}, "logits": {0: "batch"},
                          "seq": {0: "batch", 1: "time"},
                          "attn": {0: "batch", 1: "time", 2: "time"}})

    with open(os.path.join(FIX, "torch_small.txt"), "w") as f:
        for b, t in SHAPES:
            tokens = torch.randint(0, V, (b, t))
            with torch.no_grad():
                logits, seq, attn = model(tokens)
            tag = "b%dt%d" % (b, t)
            record(f, "tokens_" + tag, tokens)
            record(f, "logits_" + tag, logits)
            record(f, "seq_" + tag, seq)
            record(f, "attn_" + tag, attn)

    torch.onnx.export(Missing().eval(), (torch.randn(2, 4),),
                      os.path.join(FIX, "torch_missing.onnx"), opset_version=OPSET,
                      input_names=["x"], output_names=["y"])
    print("opset %d; wrote %s" % (OPSET, ", ".join(
        sorted(n for n in os.listdir(FIX) if n.startswith("torch_")))), file=sys.stderr)


if __name__ == "__main__":
    main()
