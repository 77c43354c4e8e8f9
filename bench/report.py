#!/usr/bin/env python3
"""Turns bench/run.sh's JSON lines into bench/RESULTS.md and bench/scaling.svg (hand-written
SVG: two log-log panels, step time vs batch and vs sequence length). Standard library only.

    report.py --results R.jsonl --out RESULTS.md --svg scaling.svg [--command C]
"""
import argparse
import json
import math
import statistics
from collections import defaultdict

TARGETS = {"train": 0.7, "infer": 1.0, "memory": 1.0, "gemm": 0.95}


def load(path):
    meta, rows = {}, []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            d = json.loads(line)
            if "kind" in d:
                meta[d["kind"]] = d
            else:
                rows.append(d)
    return meta, rows


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def fmt(x, nd=1):
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def verdict(ratio, target, lower_is_better=True):
    if ratio is None or math.isnan(ratio):
        return "n/a"
    ok = ratio <= target if lower_is_better else ratio >= target
    return "met" if ok else "**not met**"


def group(rows, section, key):
    g = defaultdict(list)
    for r in rows:
        if r["section"] == section:
            g[(r["impl"],) + tuple(r[k] for k in key)].append(r)
    return g


def train_table(rows, out, section="train", target=True):
    g = group(rows, section, ("seq",))
    seqs = sorted({k[1] for k in g})
    out.append("| B x T | attune median ms | PyTorch median ms | ratio attune/PyTorch | "
               "attune min | PyTorch min | per-round ratios | attune CPU ms | PyTorch CPU ms | "
               "CPU ratio |" + (" target <= 0.7 |" if target else ""))
    out.append("|---|---|---|---|---|---|---|---|---|---|" + ("---|" if target else ""))
    ratios = {}
    for T in seqs:
        a, p = g.get(("attune", T), []), g.get(("pytorch", T), [])
        am, pm = med([r["median_ms"] for r in a]), med([r["median_ms"] for r in p])
        ac = med([r["cpu_ms"] for r in a if "cpu_ms" in r])
        pc = med([r["cpu_ms"] for r in p if "cpu_ms" in r])
        per = [x["median_ms"] / y["median_ms"] for x, y in zip(a, p)]
        ratio = am / pm if pm else float("nan")
        ratios[T] = ratio
        out.append(f"| 32 x {T} | {fmt(am)} | {fmt(pm)} | **{fmt(ratio, 2)}** | "
                   f"{fmt(min(r['min_ms'] for r in a) if a else None)} | "
                   f"{fmt(min(r['min_ms'] for r in p) if p else None)} | "
                   f"{', '.join(fmt(x, 2) for x in per)} | {fmt(ac)} | {fmt(pc)} | "
                   f"{fmt(ac / pc if pc else float('nan'), 2)} |"
                   + (f" {verdict(ratio, TARGETS['train'])} |" if target else ""))
    act = [r for r in rows if r["section"] == "train_active"] if section == "train" else []
    if act:
        a = [r for r in act if r["impl"] == "attune"]
        p = [r for r in act if r["impl"] == "pytorch"]
        if a and p:
            out.append("")
            out.append(f"At OpenMP's default wait policy (threads spin between parallel regions; "
                       f"PyTorch's team spins, attune's kernels use no OpenMP team), "
                       f"B x T = 32 x {a[0]['seq']}, one run each: attune "
                       f"{fmt(a[0]['median_ms'])} ms, PyTorch {fmt(p[0]['median_ms'])} ms "
                       f"(ratio {fmt(a[0]['median_ms'] / p[0]['median_ms'], 2)}).")
    return ratios


def infer_table(rows, out, section="infer", target=True):
    g = group(rows, section, ("seq",))
    seqs = sorted({k[1] for k in g})
    out.append("| T | attune median ms | ORT median ms | ratio | attune p99 ms | ORT p99 ms | "
               "p99 ratio | per-round median ratios |" + (" target <= 1.0 |" if target else ""))
    out.append("|---|---|---|---|---|---|---|---|" + ("---|" if target else ""))
    ratios = {}
    for T in seqs:
        a, o = g.get(("attune", T), []), g.get(("onnxruntime", T), [])
        am, om = med([r["median_ms"] for r in a]), med([r["median_ms"] for r in o])
        ap, op = med([r["p99_ms"] for r in a]), med([r["p99_ms"] for r in o])
        per = [x["median_ms"] / y["median_ms"] for x, y in zip(a, o)]
        ratio = am / om if om else float("nan")
        ratios[T] = ratio
        out.append(f"| {T} | {fmt(am, 3)} | {fmt(om, 3)} | **{fmt(ratio, 2)}** | {fmt(ap, 3)} | "
                   f"{fmt(op, 3)} | {fmt(ap / op if op else float('nan'), 2)} | "
                   f"{', '.join(fmt(x, 2) for x in per)} |"
                   + (f" {verdict(ratio, TARGETS['infer'])} |" if target else ""))
    if g and target:
        agree = []
        for T in seqs:
            vals = {round(r["out0"], 4) for k, rs in g.items() if k[1] == T for r in rs}
            agree.append(f"T = {T}: " + ("yes" if len(vals) == 1 else f"no ({sorted(vals)})"))
        out.append("")
        out.append("Both runtimes give the same first intent logit on the same file and input "
                   "(to 4 decimals): " + "; ".join(agree) + ".")
    return ratios


def memory_table(rows, out):
    g = group(rows, "train", ("seq",))
    seqs = sorted({k[1] for k in g})
    out.append("| B x T | attune peak RSS MB | PyTorch peak RSS MB | ratio | attune growth MB | "
               "PyTorch growth MB | growth ratio | attune arena MB | target <= 1.0 |")
    out.append("|---|---|---|---|---|---|---|---|---|")
    ratios = {}
    for T in seqs:
        a, p = g.get(("attune", T), []), g.get(("pytorch", T), [])
        if not a or not p:
            continue
        ap, pp = max(r["peak_rss_mb"] for r in a), max(r["peak_rss_mb"] for r in p)
        ag = max(r["peak_rss_mb"] - r["rss_before_steps_mb"] for r in a)
        pg = max(r["peak_rss_mb"] - r["rss_before_steps_mb"] for r in p)
        ratios[T] = ap / pp
        out.append(f"| 32 x {T} | {fmt(ap)} | {fmt(pp)} | **{fmt(ap / pp, 2)}** | {fmt(ag)} | "
                   f"{fmt(pg)} | {fmt(ag / pg if pg else float('nan'), 2)} | "
                   f"{fmt(max(r['arena_mb'] for r in a))} | {verdict(ap / pp, TARGETS['memory'])} |")
    return ratios


def gemm_section(rows, out):
    """The table from bench_gemm's one-side lines: per shape, the median over rounds of each
    side's median, and the per-round ratios (OpenBLAS ms / attune ms = throughput ratio)."""
    shapes, ms = [], defaultdict(lambda: defaultdict(dict))
    for r in rows:
        if r["section"] != "gemm":
            continue
        key = (r["shape"], r["batch"], r["m"], r["k"], r["n"])
        if key not in shapes:
            shapes.append(key)
        ms[key][r["impl"]][r["round"]] = r["median_ms"]
    if not shapes:
        out.append("(no GEMM results)")
        return None
    out.append("| shape | batch x (m,k,n) | attune ms | OpenBLAS ms | attune/OpenBLAS throughput | "
               "per-round ratios |")
    out.append("|---|---|---|---|---|---|")
    ratios = []
    for key in shapes:
        a, b = ms[key]["attune"], ms[key]["openblas"]
        ma, mb = med(list(a.values())), med(list(b.values()))
        per = [b[r] / a[r] for r in sorted(a) if r in b]
        ratio = mb / ma
        ratios.append(ratio)
        out.append(f"| {key[0]} | {key[1]} x ({key[2]},{key[3]},{key[4]}) | {ma:.3f} | {mb:.3f} | "
                   f"{ratio:.2f} | {', '.join(f'{x:.2f}' for x in per)} |")
    out.append("")
    out.append("Each side runs in a process of its own, the two alternating round by round "
               "(bench/gemm.c says why); ms = median of the rounds' medians of 42 calls.")
    out.append("")
    out.append(f"Lowest ratio: **{min(ratios):.2f}**, median {med(ratios):.2f} "
               f"(target >= 0.95: {verdict(min(ratios), TARGETS['gemm'], False)}).")
    return min(ratios)


def scaling_data(rows):
    """Step time by batch (T = 16) and by T (B = 32) from the scaling runs; a T that only the
    training section measured (48) gets the median of its rounds."""
    by_b, by_t = defaultdict(dict), defaultdict(dict)
    for r in rows:
        if r["section"] != "scaling":
            continue
        if r["seq"] == 16:
            by_b[r["impl"]][r["batch"]] = r["median_ms"]
        if r["batch"] == 32:
            by_t[r["impl"]][r["seq"]] = r["median_ms"]
    for (impl, T), rs in group(rows, "train", ("seq",)).items():
        if by_t and T not in by_t[impl]:
            by_t[impl][T] = med([r["median_ms"] for r in rs])
    return by_b, by_t


def scaling_tables(by_b, by_t, out, rows=()):
    rss = {}
    for r in rows:
        if r["section"] in ("scaling", "train"):
            k = (r["impl"], r["batch"], r["seq"])
            rss[k] = max(rss.get(k, 0.0), r["peak_rss_mb"])
    for title, data, key in (("batch (T = 16)", by_b, "B"), ("T (B = 32)", by_t, "T")):
        xs = sorted({x for d in data.values() for x in d})
        if not xs:
            continue
        out.append(f"Step time (ms) vs {title}:")
        out.append("")
        out.append(f"| {key} | " + " | ".join(str(x) for x in xs) + " |")
        out.append("|---|" + "---|" * len(xs))
        for impl in ("attune", "pytorch"):
            if impl in data:
                out.append(f"| {impl} | " + " | ".join(fmt(data[impl].get(x)) for x in xs) + " |")
        if "attune" in data and "pytorch" in data:
            out.append("| ratio | " + " | ".join(
                fmt(data["attune"][x] / data["pytorch"][x], 2)
                if x in data["attune"] and x in data["pytorch"] else "n/a" for x in xs) + " |")
        for impl in ("attune", "pytorch"):
            at = [(x, 16) if key == "B" else (32, x) for x in xs]
            if any((impl,) + bt in rss for bt in at):
                out.append(f"| {impl} peak RSS MB | " + " | ".join(
                    fmt(rss.get((impl,) + bt)) for bt in at) + " |")
        out.append("")


def svg(by_b, by_t, path):
    W, H, pad_l, pad_r, pad_t, pad_b, gap = 960, 420, 70, 20, 50, 60, 70
    pw = (W - pad_l - pad_r - gap) / 2
    ph = H - pad_t - pad_b
    colors = {"attune": "#1f77b4", "pytorch": "#e8710a"}
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
             f'font-family="sans-serif" font-size="12">',
             f'<rect width="{W}" height="{H}" fill="white"/>',
             f'<text x="{W / 2}" y="20" text-anchor="middle" font-size="15">Training step time '
             f'of the joint NLU model (D step + combined step), log-log</text>']
    all_y = [v for d in (by_b, by_t) for s in d.values() for v in s.values() if v > 0]
    if not all_y:
        return
    ylo = 10 ** math.floor(math.log10(min(all_y)))
    yhi = 10 ** math.ceil(math.log10(max(all_y)))
    for i, (title, data, xlabel) in enumerate((("vs batch size, T = 16", by_b, "batch B"),
                                              ("vs sequence length, B = 32", by_t, "T"))):
        x0 = pad_l + i * (pw + gap)
        xs = sorted({x for d in data.values() for x in d})
        if not xs:
            continue
        xlo, xhi = min(xs), max(xs)
        lx = lambda x: x0 + (math.log(x) - math.log(xlo)) / (math.log(xhi) - math.log(xlo) or 1) * pw
        ly = lambda y: pad_t + ph - (math.log(y) - math.log(ylo)) / (math.log(yhi) - math.log(ylo)) * ph
        parts.append(f'<text x="{x0 + pw / 2}" y="{pad_t - 12}" text-anchor="middle">{title}</text>')
        parts.append(f'<rect x="{x0}" y="{pad_t}" width="{pw}" height="{ph}" fill="none" '
                     f'stroke="#444"/>')
        e = math.log10(ylo)
        while 10 ** e <= yhi * 1.0001:
            for m in (1, 2, 5):
                y = m * 10 ** e
                if ylo <= y <= yhi:
                    py = ly(y)
                    parts.append(f'<line x1="{x0}" x2="{x0 + pw}" y1="{py:.1f}" y2="{py:.1f}" '
                                 f'stroke="#ddd"/>')
                    if i == 0 or m == 1:
                        parts.append(f'<text x="{x0 - 6}" y="{py + 4:.1f}" text-anchor="end">'
                                     f'{y:g}</text>')
            e += 1
        for x in xs:
            px = lx(x)
            parts.append(f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{pad_t}" y2="{pad_t + ph}" '
                         f'stroke="#eee"/>')
            parts.append(f'<text x="{px:.1f}" y="{pad_t + ph + 16}" text-anchor="middle">{x}</text>')
        parts.append(f'<text x="{x0 + pw / 2}" y="{pad_t + ph + 36}" text-anchor="middle">'
                     f'{xlabel}</text>')
        if i == 0:
            parts.append(f'<text x="18" y="{pad_t + ph / 2}" text-anchor="middle" '
                         f'transform="rotate(-90 18 {pad_t + ph / 2})">ms per step</text>')
        for impl, d in sorted(data.items()):
            pts = [(lx(x), ly(d[x])) for x in sorted(d) if d[x] > 0]
            c = colors.get(impl, "#333")
            parts.append('<polyline fill="none" stroke-width="2" stroke="%s" points="%s"/>' % (
                c, " ".join(f"{px:.1f},{py:.1f}" for px, py in pts)))
            for px, py in pts:
                parts.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{c}"/>')
    lx0 = pad_l + 10
    for k, impl in enumerate(("attune", "pytorch")):
        y = pad_t + 14 + 16 * k
        parts.append(f'<line x1="{lx0}" x2="{lx0 + 20}" y1="{y}" y2="{y}" stroke="{colors[impl]}" '
                     f'stroke-width="2"/><text x="{lx0 + 26}" y="{y + 4}">{impl}</text>')
    parts.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(parts) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--svg", required=True)
    ap.add_argument("--command", default="bench/run.sh")
    a = ap.parse_args()
    meta, rows = load(a.results)
    m, end = meta.get("machine", {}), meta.get("end", {})
    out = ["# Benchmark results", "",
           "Written by `bench/report.py` from `bench/run.sh`; see bench/NOTES.md for the "
           "profile and what was tried.", "",
           "## Machine and run", "",
           f"- CPU: {m.get('cpu', '?')}, {m.get('cores', '?')} cores (shared with other "
           f"processes: load averages below)",
           f"- date: {m.get('date', '?')} to {end.get('date', '?')} (UTC); kernel "
           f"{m.get('kernel', '?')}; attune commit {m.get('commit', '?')} + working tree",
           f"- threads: {m.get('threads', '?')} for every peer (attune: the session's own pool, "
           f"which splits kernels and GEMMs, OpenBLAS single-threaded; "
           f"torch.set_num_threads with OpenBLAS at the same count; ORT intra_op_num_threads); "
           f"OMP_WAIT_POLICY="
           f"{m.get('omp_wait_policy', '?')} for all; {m.get('rounds', '?')} interleaved rounds",
           f"- peers: PyTorch {m.get('torch', '?')} (Debian python3-torch, eager, same OpenBLAS), "
           f"ONNX Runtime {m.get('onnxruntime', '?')} (pip, CPU provider)",
           f"- load average (1, 5, 15 min): {m.get('load_start', '?')} at the start, "
           f"{end.get('load_end', '?')} at the end; per-run 1-min load: "
           + ", ".join(sorted({str(r['load1']) for r in rows if r['section'] == 'train'}))
           + " (training runs)",
           f"- command: `{a.command}` (builds Release into build-bench; raw lines in "
           f"build-bench/results.jsonl)", "",
           "Model: the default joint NLU config (transformer encoder L = 2, emb 128, d 256, "
           "4 heads, FFN 1024; G on: d_g 128, 1 layer; additive attention 128 in both "
           "components; D: conv widths 3 and 5, 64 channels, FC 64; adv gan, hard D input; "
           "dropout 0.2; AdamW, clip 5), vocabulary 10000 words, 72 slot labels, 7 intents, "
           "3,544,144 parameters. A training step = one D update + one combined update "
           "(phase 2, gan). Sentence lengths in a batch run from T/2 to T.", "",
           "## 1. Training step (batch 32)", ""]
    tr = train_table(rows, out)
    out += ["", "CPU ms = process CPU time per step (user + system, all threads): less "
            "sensitive than wall time to the other processes on the machine, but it also counts "
            "threads spinning while they wait."]
    if any(r["section"] == "train_t1" for r in rows):
        out += ["", "The same at 1 thread (both peers), for reference (no target):", ""]
        train_table(rows, out, "train_t1", target=False)
    out += ["", "## 2. Batch-1 inference of the saved model file", ""]
    ir = infer_table(rows, out)
    if any(r["section"] == "infer_t1" for r in rows):
        out += ["", "The same at 1 thread (both peers), for reference (no target):", ""]
        infer_table(rows, out, "infer_t1", target=False)
    out += ["", "## 3. GEMM at the model's shapes: attune MatMul vs direct cblas_sgemm", ""]
    gr = gemm_section(rows, out)
    out += ["", "## 4. Peak memory of a training run (ru_maxrss)", "",
            "Growth = peak RSS minus the RSS after the model was built, before the first step "
            "(PyTorch's includes the interpreter and libtorch, about 250 MB before any step).",
            ""]
    mr = memory_table(rows, out)
    out += ["", "## 5. Scaling", "", "![step time vs batch and T](scaling.svg)", ""]
    by_b, by_t = scaling_data(rows)
    scaling_tables(by_b, by_t, out, rows)
    svg(by_b, by_t, a.svg)
    out += ["## Against the targets", "",
            "| target | measured | status |", "|---|---|---|"]
    for T, r in sorted(tr.items()):
        out.append(f"| training step B=32 T={T}: attune <= 0.7 x PyTorch | {fmt(r, 2)} x | "
                   f"{verdict(r, TARGETS['train'])} |")
    for T, r in sorted(ir.items()):
        out.append(f"| inference B=1 T={T}: attune <= 1.0 x ORT | {fmt(r, 2)} x | "
                   f"{verdict(r, TARGETS['infer'])} |")
    for T, r in sorted(mr.items()):
        out.append(f"| peak training memory T={T}: attune <= PyTorch | {fmt(r, 2)} x | "
                   f"{verdict(r, TARGETS['memory'])} |")
    if gr is not None:
        out.append(f"| GEMM: attune MatMul >= 0.95 x OpenBLAS | lowest {gr:.2f} x | "
                   f"{verdict(gr, TARGETS['gemm'], False)} |")
    write_keeping_hand_written(a.out, out)


BEGIN = "<!-- bench/report.py: generated from here -->"
END = "<!-- bench/report.py: generated up to here; sections below are hand-written and kept -->"


def write_keeping_hand_written(path, out):
    """Replaces only the generated part of path: the text between BEGIN and END, or, in a file
    from before the markers, every '## ' section whose heading report.py writes. Everything
    else (hand-written sections such as the adversarial robustness results) is kept, after
    END."""
    generated = "\n".join([BEGIN] + out + [END]) + "\n"
    try:
        old = open(path).read()
    except FileNotFoundError:
        old = ""
    if BEGIN in old and END in old:
        head, rest = old.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        new = head + generated + tail
    else:
        ours = {l for l in out if l.startswith("## ")}
        kept, keep = [], False
        for line in old.splitlines():
            if line.startswith("## "):
                keep = line not in ours
            if keep:
                kept.append(line)
        new = generated + ("\n" + "\n".join(kept).strip("\n") + "\n" if kept else "")
    with open(path, "w") as f:
        f.write(new)


if __name__ == "__main__":
    main()
