#!/usr/bin/env python3
"""Batch-1 inference latency of an attune model file in ONNX Runtime (the peer of
bench/infer.c): the same file, the same sentence, every graph output fetched, intra-op threads
= --threads, inter-op 1, sequential execution, all graph optimizations on (ORT's default).

    ort_infer.py --model PATH [--seq 16] [--threads 2] [--reps 300] [--warmup 30]

Prints one JSON line with the keys of bench_infer. Needs pip's onnxruntime and numpy.
"""
import argparse
import json
import resource
import time

import numpy as np
import onnxruntime as ort


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--seq", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--encoder", default="transformer")
    a = ap.parse_args()
    T = a.seq

    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    t_load = time.perf_counter()
    sess = ort.InferenceSession(a.model, so, providers=["CPUExecutionProvider"])
    t_load = time.perf_counter() - t_load

    tokens = np.array([[2 + (t * 7919) % 9000 for t in range(T)]], dtype=np.int64)
    feeds = {}
    for i in sess.get_inputs():
        if i.name == "tokens":
            feeds[i.name] = tokens
        elif i.name == "mask":
            feeds[i.name] = np.ones((1, T), np.float32)
        elif i.name == "lengths":
            feeds[i.name] = np.array([T], np.int64)
        elif i.name == "training":
            feeds[i.name] = np.array(False)
        else:
            raise SystemExit(f"ort_infer.py: unexpected input {i.name}")
    outs = [o.name for o in sess.get_outputs()]
    lat = []
    res = None
    for k in range(a.warmup + a.reps):
        t0 = time.perf_counter()
        res = sess.run(outs, feeds)
        t1 = time.perf_counter()
        if k >= a.warmup:
            lat.append((t1 - t0) * 1e3)
    lat.sort()
    p99 = lat[int(0.99 * (a.reps - 1) + 0.5)]
    print(json.dumps({
        "impl": "onnxruntime", "encoder": a.encoder, "batch": 1, "seq": T,
        "threads": a.threads, "reps": a.reps, "median_ms": round(lat[a.reps // 2], 4),
        "p99_ms": round(p99, 4), "min_ms": round(lat[0], 4), "outputs": len(outs),
        "load_s": round(t_load, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "out0": round(float(res[0].flat[0]), 6), "ort": ort.__version__}))


if __name__ == "__main__":
    main()
