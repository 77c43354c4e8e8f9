#!/usr/bin/env bash
# Issue 10's comparison on SNIPS: G off (the ablation baseline) against the GAN-driven attention
# weighting in `gan` and `grl` mode, at several label fractions (the rest of the training
# split is unlabelled: D's fake side and nothing else), several seeds each. One JSON line a run
# (test metrics from `attune eval --json`, epochs, wall time, D's last loss) goes to
# $OUT/runs.jsonl; bench/snips_table.py turns it into the tables of bench/RESULTS.md.
#
#   bench/snips_gan.sh                 # FRACTIONS="0.02 0.1" SEEDS="1 2 3" MODES="off gan grl"
#
# MODES may also name offlong: G off trained for the sum of G's three phase budgets without early
# stopping (the best epoch on valid kept), so that G's runs do not get more training than the
# baseline.
#
# Environment: ATTUNE (the binary, default build-release/attune, built if missing), SNIPS
# (../shared/data/snips), OUT (build-release/snips-gan), FRACTIONS, SEEDS, MODES, THREADS (1),
# MODEL (the model options), LR (0.003), SCHED_G_002 / SCHED_G_01 / SCHED_G_1 (schedules). A run already in runs.jsonl
# is skipped, so the script can be stopped and started again.
set -euo pipefail
cd "$(dirname "$0")/.."
SNIPS=${SNIPS:-../shared/data/snips}
OUT=${OUT:-build-release/snips-gan}
A=${ATTUNE:-build-release/attune}
FRACTIONS=${FRACTIONS:-0.02 0.1}
SEEDS=${SEEDS:-1 2 3}
MODES=${MODES:-off gan grl}
THREADS=${THREADS:-1}
# A small joint model (one BiLSTM layer, d = 128, no character features) so that the grid runs
# on two cores; the comparison is G on against G off at equal size otherwise.
MODEL=${MODEL:---kind bilstm --layers 1 --emb 128 --dim 128 --attn-size 64 --gen-dim 64 \
--gen-heads 4 --disc-channels 32 --disc-hidden 32}
# Schedules by label fraction: fewer labels, fewer steps an epoch, so more epochs (SCHED_G_<f>
# overrides; epochs0 epochs1 epochs2 patience). The baseline gets the epochs G's runs spend in
# phases 0 and 2 as one phase-0 budget. Early stopping on valid sentence accuracy ends every
# phase that stops improving; the best model on valid over all phases is kept.
sched_of() {
    case $1 in
    0.02) echo "${SCHED_G_002:-100 5 40 10}" ;;
    0.1) echo "${SCHED_G_01:-40 3 15 5}" ;;
    *) echo "${SCHED_G_1:-20 3 10 3}" ;;
    esac
}
LR=${LR:-0.003}

[ -f "$SNIPS/train/seq.in" ] || { echo "snips_gan: no SNIPS data at $SNIPS" >&2; exit 2; }
if [ ! -x "$A" ]; then
    cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DATTUNE_CUDA=OFF >/dev/null
    cmake --build build-release --target attune -j"$(nproc)" >/dev/null
    A=build-release/attune
fi
mkdir -p "$OUT"
RUNS="$OUT/runs.jsonl"
touch "$RUNS"

for frac in $FRACTIONS; do
    for mode in $MODES; do
        for seed in $SEEDS; do
            tag="$mode-f$frac-s$seed"
            if grep -q "\"tag\": \"$tag\"" "$RUNS"; then
                echo "== $tag: done already"
                continue
            fi
            read -r e0 e1 e2 pat <<<"$(sched_of "$frac")"
            case $mode in
            off) preset="--preset baseline" sched="--epochs0 $((e0 + e2)) --patience $pat" ;;
            # the epoch-matched control: G off, every epoch G's runs may take (all three phases'
            # budgets) with no early stopping, the best model on valid kept
            offlong)
                preset="--preset baseline"
                sched="--epochs0 $((e0 + e1 + e2)) --patience $((e0 + e1 + e2))"
                ;;
            gan | grl)
                preset="--preset joint-nlu"
                sched="--epochs0 $e0 --epochs1 $e1 --epochs2 $e2 --patience $pat --mode $mode"
                ;;
            *) echo "snips_gan: unknown mode $mode" >&2; exit 2 ;;
            esac
            echo "== $tag ($(date +%H:%M:%S))"
            # shellcheck disable=SC2086
            "$A" build --data "$SNIPS" $preset $MODEL --seed "$seed" -o "$OUT/$tag.model.onnx" \
                >/dev/null
            t0=$(date +%s.%N)
            # shellcheck disable=SC2086
            "$A" train "$OUT/$tag.model.onnx" --data "$SNIPS" $sched --label-fraction "$frac" \
                --lr "$LR" --threads "$THREADS" --progress none --metrics "$OUT/$tag.metrics.jsonl" \
                -o "$OUT/$tag.onnx" >"$OUT/$tag.train.txt" 2>"$OUT/$tag.train.err"
            t1=$(date +%s.%N)
            "$A" eval "$OUT/$tag.onnx" --data "$SNIPS/test" --threads "$THREADS" --json \
                >"$OUT/$tag.eval.json"
            python3 - "$tag" "$mode" "$frac" "$seed" "$t0" "$t1" "$OUT" >>"$RUNS" <<'EOF'
import json, re, sys
tag, mode, frac, seed, t0, t1, out = sys.argv[1:]
ev = json.loads(open(f"{out}/{tag}.eval.json").read().strip().splitlines()[-1])
lines = [json.loads(l) for l in open(f"{out}/{tag}.metrics.jsonl")]
txt = open(f"{out}/{tag}.train.txt").read()
d = re.search(r"D loss in the last epoch: ([0-9.]+)", txt)
best = re.search(r"best on valid: phase (\d) epoch (\d+)", txt)
epochs = [sum(1 for l in lines if l["phase"] == p) for p in range(3)]
print(json.dumps({"tag": tag, "mode": mode, "fraction": float(frac), "seed": int(seed),
                  "intent_acc": ev["intent_acc"], "slot_f1": ev["slot_f1"],
                  "sentence_acc": ev["sentence_acc"], "epochs": epochs,
                  "steps": sum(l["steps"] for l in lines),
                  "best_phase": int(best.group(1)) if best else None,
                  "best_epoch": int(best.group(2)) if best else None,
                  "loss_d_last": float(d.group(1)) if d else None,
                  "wall_s": round(float(t1) - float(t0), 1)}))
EOF
            tail -n 1 "$RUNS"
        done
    done
done
