#!/usr/bin/env bash
# attune against its peers, side by side in one run on one machine and one thread count:
#   1. training step of the default joint model (G on, gan), B = 32, T = 16 and 48:
#      bench_train_step vs bench/torch_joint.py (PyTorch eager, the same model and step);
#   2. batch-1 inference of the saved inference graph: bench_infer vs bench/ort_infer.py
#      (ONNX Runtime on the same file);
#   3. bench_gemm: attune's MatMul op vs cblas_sgemm at the model's shapes;
#   4. peak memory (ru_maxrss) of the training runs of 1;
#   5. step time vs batch (1 .. 256, T = 16) and vs T (8 .. 256, B = 32): bench/scaling.svg.
# Timing rounds are interleaved (attune, peer, attune, peer, ...), so both see the same load.
# Raw JSON lines go to $BUILD/results.jsonl; bench/report.py writes bench/RESULTS.md and
# bench/scaling.svg from them.
#
#   bench/run.sh [--quick] [--no-scaling] [--no-torch-scaling]
#
# Environment: THREADS (2), ROUNDS (5 interleaved rounds of each comparison; the tables give
# the median of the rounds' medians), BUILD (build-bench), TORCH_PYTHON (/usr/bin/python3,
# Debian's python3-torch), ORT_PYTHON (python3 with pip's onnxruntime), OMP_WAIT_POLICY
# (passive: see bench/NOTES.md; PyTorch's threads are libgomp's, attune's its session pool's,
# which the policy does not touch; both get the same value).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build-bench}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-5}
TORCH_PYTHON=${TORCH_PYTHON:-/usr/bin/python3}
ORT_PYTHON=${ORT_PYTHON:-python3}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
QUICK=0 SCALING=1 TORCH_SCALING=1
for a in "$@"; do
    case $a in
    --quick) QUICK=1 ROUNDS=1 ;;
    --no-scaling) SCALING=0 ;;
    --no-torch-scaling) TORCH_SCALING=0 ;;
    -h | --help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown option $a" >&2; exit 2 ;;
    esac
done
TRAIN_STEPS=10 INFER_REPS=300
[ $QUICK = 1 ] && TRAIN_STEPS=3 INFER_REPS=50

log() { echo "[run.sh $(date +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)] $*" >&2; }

log "building attune (Release) in $BUILD"
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DATTUNE_CUDA=OFF >"$BUILD.cmake.log" 2>&1 ||
    { cat "$BUILD.cmake.log"; exit 1; }
cmake --build "$BUILD" -j2 --target bench_train_step bench_infer bench_gemm >"$BUILD.build.log" 2>&1 ||
    { tail -40 "$BUILD.build.log"; exit 1; }

RES=$BUILD/results.jsonl
: >"$RES"
meta() { # one JSON line of context
    "$ORT_PYTHON" - "$@" >>"$RES" <<'EOF'
import json, sys
print(json.dumps(dict(zip(sys.argv[1::2], sys.argv[2::2]))))
EOF
}
tagged() { # section, then a command printing one JSON line
    local section=$1
    shift
    local line
    line=$("$@") || { echo "run.sh: failed: $*" >&2; return 1; }
    printf '{"section":"%s","load1":%s,%s\n' "$section" "$(cut -d' ' -f1 /proc/loadavg)" "${line#\{}" >>"$RES"
    echo "$line" >&2
}

meta kind machine cpu "$(lscpu | sed -n 's/^Model name: *//p' | head -1)" cores "$(nproc)" \
    date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" threads "$THREADS" rounds "$ROUNDS" \
    omp_wait_policy "$OMP_WAIT_POLICY" kernel "$(uname -r)" \
    torch "$("$TORCH_PYTHON" -c 'import torch; print(torch.__version__)')" \
    onnxruntime "$("$ORT_PYTHON" -c 'import onnxruntime; print(onnxruntime.__version__)')" \
    commit "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    load_start "$(cut -d' ' -f1-3 /proc/loadavg)"

TS=$BUILD/bench_train_step
TJ="$TORCH_PYTHON $ROOT/bench/torch_joint.py"

# 1 + 4: training step and its peak memory.
for r in $(seq "$ROUNDS"); do
    for T in 16 48; do
        log "train round $r T=$T"
        tagged train "$TS" --batch 32 --seq $T --threads "$THREADS" --steps $TRAIN_STEPS --warmup 3
        tagged train $TJ --batch 32 --seq $T --threads "$THREADS" --steps $TRAIN_STEPS --warmup 3
    done
done
# The same at OpenMP's default wait policy (spinning), once, for the notes.
if [ $QUICK = 0 ]; then
    log "train at OMP_WAIT_POLICY=active"
    OMP_WAIT_POLICY=active tagged train_active "$TS" --batch 32 --seq 16 --threads "$THREADS" --steps $TRAIN_STEPS --warmup 3
    OMP_WAIT_POLICY=active tagged train_active $TJ --batch 32 --seq 16 --threads "$THREADS" --steps $TRAIN_STEPS --warmup 3
fi

# The same at 1 thread, for reference (no thread pools to wait on).
if [ $QUICK = 0 ]; then
    for r in 1 2; do
        for T in 16 48; do
            log "train at 1 thread, round $r T=$T"
            tagged train_t1 "$TS" --batch 32 --seq $T --threads 1 --steps $TRAIN_STEPS --warmup 2
            tagged train_t1 $TJ --batch 32 --seq $T --threads 1 --steps $TRAIN_STEPS --warmup 2
        done
    done
fi

# 2: batch-1 inference on the same file.
MODEL=$BUILD/bench_nlu.onnx
"$BUILD/bench_infer" --model "$MODEL" --export --reps 1 --warmup 0 >/dev/null
for r in $(seq "$ROUNDS"); do
    for T in 16 48; do
        log "inference round $r T=$T"
        tagged infer "$BUILD/bench_infer" --model "$MODEL" --seq $T --threads "$THREADS" --reps $INFER_REPS
        tagged infer "$ORT_PYTHON" "$ROOT/bench/ort_infer.py" --model "$MODEL" --seq $T --threads "$THREADS" --reps $INFER_REPS
    done
done

# The same at 1 thread, for reference.
if [ $QUICK = 0 ]; then
    for r in 1 2; do
        for T in 16 48; do
            log "inference at 1 thread, round $r T=$T"
            tagged infer_t1 "$BUILD/bench_infer" --model "$MODEL" --seq $T --threads 1 --reps $INFER_REPS
            tagged infer_t1 "$ORT_PYTHON" "$ROOT/bench/ort_infer.py" --model "$MODEL" --seq $T --threads 1 --reps $INFER_REPS
        done
    done
fi

# 3: GEMM at the model's shapes: each side in a process of its own, alternately (bench/gemm.c
# says why), one JSON line a shape.
for r in $(seq "$ROUNDS"); do
    for side in attune openblas; do
        log "gemm round $r $side"
        "$BUILD/bench_gemm" "$THREADS" $side | while read -r line; do
            printf '{"section":"gemm","round":%s,%s\n' "$r" "${line#\{}" >>"$RES"
        done
    done
done

# 5: scaling.
if [ $SCALING = 1 ]; then
    steps_for() { # fewer timed steps where one step takes seconds
        local b=$1 t=$2
        if [ $((b * t)) -ge 4096 ]; then echo "1 1"; elif [ $((b * t)) -ge 1024 ]; then echo "2 1"; else echo "4 2"; fi
    }
    scale() {
        local b=$1 t=$2
        read -r s w <<<"$(steps_for "$b" "$t")"
        [ $QUICK = 1 ] && s=1 w=1
        log "scaling B=$b T=$t"
        tagged scaling "$TS" --batch "$b" --seq "$t" --threads "$THREADS" --steps "$s" --warmup "$w"
        if [ $TORCH_SCALING = 1 ]; then
            tagged scaling $TJ --batch "$b" --seq "$t" --threads "$THREADS" --steps "$s" --warmup "$w"
        fi
    }
    for b in 1 8 32 128 256; do scale "$b" 16; done
    for t in 8 32 64 128 256; do scale 32 "$t"; done # T = 16 at B = 32 is above
fi

meta kind end date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" load_end "$(cut -d' ' -f1-3 /proc/loadavg)"
log "writing bench/RESULTS.md and bench/scaling.svg"
"$ORT_PYTHON" "$ROOT/bench/report.py" --results "$RES" \
    --out "$ROOT/bench/RESULTS.md" --svg "$ROOT/bench/scaling.svg" \
    --command "bench/run.sh $*"
log "done"
