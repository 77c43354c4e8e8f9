#!/usr/bin/env python3
"""Issue 3's interop check for the joint NLU model: a model file written by
`attune build` (BiLSTM and transformer variants, G on, char features), trained a few
steps,
passes onnx.checker (full check), and ONNX Runtime gives the same outputs
as `attune run` on the same inputs (max abs difference <= 1e-4).
Skips (exit 77) without onnx, onnxruntime and numpy."""
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import onnx
    import onnxruntime as ort
except ImportError as e:
    print(f"SKIP: {e}")
    sys.exit(77)

BUILD = os.environ.get("ATTUNE_BUILD", "build")
SRC = os.environ.get("ATTUNE_SRC", ".")
ATTUNE = os.path.join(BUILD, "attune")
VARIANTS = {
    "bilstm": ["--kind", "bilstm", "--layers", "1", "--emb", "32", "--dim", "64",
               "--attn-size", "32", "--char-dim", "8", "--char-channels", "16",
               "--gen-dim", "32", "--gen-heads", "2"],
    "transformer": ["--kind", "transformer", "--layers", "2", "--emb", "32", "--dim", "64",
                    "--heads", "4", "--attn-size", "32", "--gen-dim", "32", "--gen-heads", "2",
                    "--attn2", "scaled-dot"],
}


def inputs_for(model, rng, b=3, t=7):
    feeds = {}
    for i in model.graph.input:
        tt = i.type.tensor_type
        dims = [b if d.dim_param == "B" else t if d.dim_param == "T" else d.dim_value
                for d in tt.shape.dim]
        if i.name == "lengths":
            feeds[i.name] = np.array([t, t - 2, 3][:b], dtype=np.int64)
        elif i.name == "mask":
            lens = [t, t - 2, 3][:b]
            feeds[i.name] = np.array([[1.0 if k < n else 0.0 for k in range(t)] for n in lens],
                                     dtype=np.float32)
        elif tt.elem_type == onnx.TensorProto.INT64:
            feeds[i.name] = rng.integers(2, 20, size=dims, dtype=np.int64)
        elif tt.elem_type == onnx.TensorProto.BOOL:
            feeds[i.name] = np.zeros(dims, dtype=bool)
        else:
            feeds[i.name] = rng.standard_normal(dims).astype(np.float32)
    return feeds


def main():
    if not os.access(ATTUNE, os.X_OK):
        print(f"SKIP: no attune binary at {ATTUNE}")
        return 77
    rng = np.random.default_rng(7)
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for name, opts in VARIANTS.items():
            path = os.path.join(tmp, name + ".onnx")
            subprocess.run([ATTUNE, "build", "--preset", "joint-nlu", "--data",
                            os.path.join(SRC, "data", "sample"), "--seed", "3", "-o", path] + opts,
                           check=True, stdout=subprocess.DEVNULL)
            # A few steps of every phase, so the weights are not the initial ones.
            trained = os.path.join(tmp, name + ".trained.onnx")
            subprocess.run([ATTUNE, "train", path, "--data", os.path.join(SRC, "data", "sample"),
                            "--epochs0", "1", "--epochs1", "1", "--epochs2", "1", "--max-steps",
                            "15", "--threads", "1", "-o", trained], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            path = trained
            model = onnx.load(path)
            onnx.checker.check_model(model, full_check=True)
            feeds = inputs_for(model, rng)
            args = [ATTUNE, "run", path, "--quiet", "--output-dir", os.path.join(tmp, name)]
            for k, v in feeds.items():
                f = os.path.join(tmp, f"{name}_{k}.npy")
                np.save(f, v)
                args += ["--input", f"{k}={f}"]
            subprocess.run(args, check=True)
            sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
            names = [o.name for o in sess.get_outputs()]
            got = sess.run(names, feeds)
            for n, want in zip(names, got):
                mine = np.load(os.path.join(tmp, name, n + ".npy"))
                if mine.shape != want.shape:
                    print(f"FAIL {name}/{n}: shape {mine.shape} vs ORT {want.shape}")
                    return 1
                err = float(np.max(np.abs(mine.astype(np.float64) - want))) if want.size else 0.0
                worst = max(worst, err)
                print(f"{name}/{n}: max abs difference {err:.3g}")
                if not err <= 1e-4:
                    print(f"FAIL {name}/{n}: {err} > 1e-4")
                    return 1
    print(f"test_nlu_onnx: {2} passed, 0 failed (worst difference {worst:.3g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
