#!/usr/bin/env python3
"""Tables of bench/snips_gan.sh's runs (runs.jsonl): per label fraction and mode, the SNIPS test
metrics as mean ± sd over seeds, the epochs run per phase, the wall time, where the selected
model came from, and D's last-epoch loss against chance (2 ln 2).

    python3 bench/snips_table.py build-release/snips-gan/runs.jsonl
"""
import json
import math
import statistics
import sys
from collections import defaultdict

CHANCE = 2 * math.log(2)


def mean_sd(xs):
    if not xs:
        return "–"
    if len(xs) == 1:
        return f"{xs[0]:.1f}"
    return f"{statistics.mean(xs):.1f} ± {statistics.stdev(xs):.1f}"


def main(path):
    runs = [json.loads(l) for l in open(path) if l.strip()]
    groups = defaultdict(list)
    for r in runs:
        groups[(r["fraction"], r["mode"])].append(r)
    order = {"off": 0, "offlong": 1, "gan": 2, "grl": 3}
    print("| labels | mode | seeds | intent | slot F1 | sentence | epochs (phases 0/1/2) "
          "| best from phase | L_D last (chance 1.386) | wall s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for (frac, mode) in sorted(groups, key=lambda k: (-k[0], order.get(k[1], 9))):
        rs = sorted(groups[(frac, mode)], key=lambda r: r["seed"])
        ep = "/".join(f"{statistics.mean(r['epochs'][p] for r in rs):.0f}" for p in range(3))
        best = ",".join(str(r["best_phase"]) for r in rs)
        ds = [r["loss_d_last"] for r in rs if r.get("loss_d_last") is not None]
        d = f"{statistics.mean(ds):.3f}" if ds else "–"
        print(f"| {100 * frac:g} % | {mode} | {','.join(str(r['seed']) for r in rs)} "
              f"| {mean_sd([r['intent_acc'] for r in rs])} "
              f"| {mean_sd([r['slot_f1'] for r in rs])} "
              f"| {mean_sd([r['sentence_acc'] for r in rs])} | {ep} | {best} | {d} "
              f"| {statistics.mean(r['wall_s'] for r in rs):.0f} |")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    main(sys.argv[1])
