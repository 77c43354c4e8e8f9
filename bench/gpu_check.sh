#!/usr/bin/env bash
# The CUDA check for a session that has a GPU (issue 9), in ONE device call of about 8 minutes
# on an H100 with 16 cores: the CUDA tests' pass log, then the default joint model's training
# step at batch 32 and 256 (T = 16 and 32) on attune --device cuda without and with CUDA graphs
# and on PyTorch eager (bench/torch_joint.py --device cuda) on the same GPU, and batch-1
# inference latency of both.
#
# 1. Here (no GPU needed), from the commit to test:
#      bench/gpu_check.sh --make-kit [BUILD_DIR]
#    builds Release for sm_90 (attune, test_cuda_ops, test_cuda_train; BUILD_DIR defaults to
#    build-gpukit) and copies the programs and the shared libraries the device image may lack
#    (OpenBLAS, protobuf-c, ...) into .gpukit/ (git-ignored, about 50 MB; it travels with
#    `carry`). The device image has CUDA, cuBLAS and PyTorch but maybe not OpenBLAS or
#    protobuf-c, and nothing can be installed there.
# 2. Through the device tool:
#      run(command="bash bench/gpu_check.sh", carry=[".gpukit"], timeout_s=560)
#    Without .gpukit it builds on the device instead (needs OpenBLAS, protobuf-c and cuDNN
#    headers there; the build log says what is missing).
#
# Results under $OUT (./gpu_check_out without the tool): results.jsonl (one JSON line per
# measurement or failed stage), summary.txt (the table printed last), tests.log, env.txt,
# build.log. Every stage has a time limit; a failing stage is recorded and the rest go on; no
# stage starts after BUDGET_S seconds (default 450). Exit status 0 when every stage passed.
set -u

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 2

# ---- --make-kit: runs here ----
if [ "${1:-}" = "--make-kit" ]; then
    B=${2:-build-gpukit}
    set -e
    cmake -S . -B "$B" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 -DATTUNE_CUDA=ON
    cmake --build "$B" -j"$(nproc)" --target attune test_cuda_ops test_cuda_train
    rm -rf .gpukit
    mkdir -p .gpukit/bin .gpukit/lib .gpukit/lib-cuda
    for p in attune test_cuda_ops test_cuda_train; do
        cp "$B/$p" .gpukit/bin/
        strip --strip-debug ".gpukit/bin/$p" 2>/dev/null || true
    done
    # Libraries outside glibc / the compiler runtime. The CUDA ones are the device's own
    # (cuBLAS is 50+ MB); libcudart and the small libcudnn loader go along as fallbacks only.
    ldd "$B/attune" | awk '/=> \// {print $3}' | sort -u | while read -r lib; do
        base=$(basename "$lib")
        case "$base" in
        libc.so* | libm.so* | libdl.so* | librt.so* | libpthread.so* | ld-linux* | libgcc_s.so*) ;;
        libstdc++.so*) ;;
        libcudart.so* | libcudnn.so*) cp -L "$lib" .gpukit/lib-cuda/ ;;
        libcublas*) ;;
        *) cp -L "$lib" .gpukit/lib/ ;;
        esac
    done
    { git rev-parse HEAD; git status --short --untracked-files=no; } > .gpukit/commit.txt
    excl=$(git rev-parse --git-path info/exclude)
    mkdir -p "$(dirname "$excl")"
    grep -qx '/.gpukit/' "$excl" 2>/dev/null || echo '/.gpukit/' >> "$excl"
    du -sh .gpukit
    echo "kit ready: run(command=\"bash bench/gpu_check.sh\", carry=[\".gpukit\"], timeout_s=560)"
    exit 0
fi

# ---- the check: runs on the GPU machine ----
OUT=${OUT:-$ROOT/gpu_check_out}
mkdir -p "$OUT"
TMP=$(mktemp -d)
BUDGET_S=${BUDGET_S:-450} # no stage starts later than this
HARD_S=${HARD_S:-510}     # and none runs past this (the summary must get out)
RES="$OUT/results.jsonl"
: > "$RES"
FAILED=()
PY=${PY:-python3}
export PYTHONUNBUFFERED=1

elapsed() { echo $((SECONDS)); }

# Appends one JSON line: the object on stdin (or {}) with the given key=value pairs added.
record() {
    "$PY" -c '
import json, sys
line = sys.stdin.read().strip().splitlines()
try:
    d = json.loads(line[-1]) if line else {}
except ValueError:
    d = {"unparsed": line[-1][:300]}
for kv in sys.argv[1:]:
    k, v = kv.split("=", 1)
    d[k] = json.loads(v) if v and (v[0] in "[{0123456789-" or v in ("true", "false")) else v
print(json.dumps(d))' "$@" >> "$RES"
}

# A dry run of the flow without a GPU: DEV=cpu CONFIGS="4 8" WARM=1 STEPS=2 INFER_STEPS=5.
DEV=${DEV:-cuda}
CONFIGS=${CONFIGS:-"32 16,256 16,32 32,256 32"}
WARM=${WARM:-5}
STEPS=${STEPS:-30}
INFER_STEPS=${INFER_STEPS:-100}

# stage NAME SECONDS CMD...: runs CMD under a time limit, stdout to $TMP/NAME.out.
stage() {
    local name=$1 limit=$2
    shift 2
    if [ "$(elapsed)" -ge "$BUDGET_S" ]; then
        echo "SKIP $name: past the ${BUDGET_S}s budget"
        FAILED+=("$name (skipped: budget)")
        echo '{}' | record stage="$name" error="skipped: budget"
        return 1
    fi
    local t0=$SECONDS rc left=$((HARD_S - $(elapsed)))
    [ "$left" -lt "$limit" ] && limit=$left
    echo "== $name (limit ${limit}s, at $(elapsed)s)"
    timeout -k 5 "$limit" "$@" > "$TMP/$name.out" 2> "$TMP/$name.err"
    rc=$?
    if [ $rc -ne 0 ]; then
        local why="exit $rc"
        [ $rc -eq 124 ] && why="timed out after ${limit}s"
        echo "FAIL $name: $why ($((SECONDS - t0))s); stderr tail:"
        tail -n 15 "$TMP/$name.err" | sed 's/^/    /'
        FAILED+=("$name ($why)")
        tail -n 3 "$TMP/$name.err" | tr '\n' ' ' | cut -c1-400 > "$TMP/$name.why"
        echo '{}' | record stage="$name" error="$why: $(cat "$TMP/$name.why")"
        return 1
    fi
    echo "ok   $name ($((SECONDS - t0))s)"
    return 0
}

# ---- environment ----
{
    date -u
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm \
        --format=csv 2>&1
    nvcc --version 2>&1 | tail -n 2
    nproc
    "$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda,
torch.cuda.is_available() and torch.cuda.get_device_name(0))' 2>&1
    [ -f .gpukit/commit.txt ] && { echo "kit built from:"; cat .gpukit/commit.txt; }
    git rev-parse HEAD 2>/dev/null
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

# ---- programs: the carried kit, else a build here ----
BIN=""
if [ -x .gpukit/bin/attune ]; then
    BIN=$ROOT/.gpukit/bin
    echo "using the carried kit (.gpukit)"
else
    echo "no .gpukit: building on the device"
    if stage build 240 bash -c "cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release \
            -DCMAKE_CUDA_ARCHITECTURES=90 -DATTUNE_CUDA=ON && \
            cmake --build build-gpu -j16 --target attune test_cuda_ops test_cuda_train"; then
        BIN=$ROOT/build-gpu
    fi
    cat "$TMP/build.out" "$TMP/build.err" > "$OUT/build.log" 2>/dev/null
fi

# Libraries: the kit's first, then the device's CUDA libraries (toolkit or PyTorch's wheels),
# then the kit's fallbacks for libcudart / libcudnn.
libdirs=""
for name in libcublas.so.13 libcublasLt.so.13 libcudart.so.13 libcudnn.so.9; do
    f=$(find /usr/local /usr/lib /opt -name "$name" 2>/dev/null | head -n 1)
    [ -n "$f" ] && libdirs="$libdirs:$(dirname "$f")"
done
# Only attune's programs get them: PyTorch keeps its own CUDA libraries.
ATT_LD="$ROOT/.gpukit/lib$libdirs:$ROOT/.gpukit/lib-cuda:${LD_LIBRARY_PATH:-}"
echo "attune's LD_LIBRARY_PATH=$ATT_LD" >> "$OUT/env.txt"
ATT=(env "LD_LIBRARY_PATH=$ATT_LD")

if [ -n "$BIN" ]; then
    missing=$("${ATT[@]}" ldd "$BIN/attune" | grep 'not found')
    if [ -n "$missing" ]; then
        echo "FAIL: libraries not found:"
        echo "$missing"
        echo "$missing" >> "$OUT/env.txt"
        FAILED+=("libraries: $(echo "$missing" | awk '{print $1}' | tr '\n' ' ')")
        BIN=""
    fi
fi

# ---- the CUDA tests ----
if [ -n "$BIN" ]; then
    cd tests || exit 2
    stage test_cuda_ops 150 "${ATT[@]}" "$BIN/test_cuda_ops"
    r1=$?
    stage test_cuda_train 150 "${ATT[@]}" ATTUNE_CUDA_GRAPH_DEBUG=1 "$BIN/test_cuda_train"
    r2=$?
    cd "$ROOT" || exit 2
    {
        echo "### test_cuda_ops (exit $r1)"
        cat "$TMP/test_cuda_ops.out" "$TMP/test_cuda_ops.err" 2>/dev/null
        echo "### test_cuda_train (exit $r2)"
        cat "$TMP/test_cuda_train.out" "$TMP/test_cuda_train.err" 2>/dev/null
    } > "$OUT/tests.log"
    grep -E "passed|FAIL|SKIP|cuda graphs|loss\[ ?1?9\]" "$OUT/tests.log"
    if [ "$DEV" = cuda ] && grep -q "^SKIP" "$OUT/tests.log"; then
        FAILED+=("CUDA tests skipped: the GPU was not usable")
    fi
    echo '{}' | record stage=tests test_cuda_ops_exit=$r1 test_cuda_train_exit=$r2
fi

# ---- training step: attune (without / with CUDA graphs) and PyTorch eager ----
IFS=, read -r -a cfgs <<< "$CONFIGS"
for cfg in "${cfgs[@]}"; do
    read -r b t <<< "$cfg"
    if [ -n "$BIN" ]; then
        for graph in 0 1; do
            gb=false
            [ $graph = 1 ] && gb=true
            name=attune_b${b}_t${t}_g${graph}
            stage "$name" 90 "${ATT[@]}" ATTUNE_CUDA_GRAPH=$graph "$BIN/attune" bench --train --batch "$b" \
                --seq "$t" --device "$DEV" --warmup "$WARM" --steps "$STEPS" &&
                record impl=attune kind=train graph=$gb \
                    batch="$b" seq="$t" < "$TMP/$name.out"
        done
    fi
    name=torch_b${b}_t${t}
    stage "$name" 120 "$PY" bench/torch_joint.py --device "$DEV" --batch "$b" --seq "$t" \
        --warmup "$WARM" --steps "$STEPS" --threads 4 &&
        record impl=pytorch kind=train batch="$b" seq="$t" < "$TMP/$name.out"
done

# ---- batch-1 inference (the evaluation path: intent and slot logits) ----
if [ -n "$BIN" ]; then
    for graph in 0 1; do
        gb=false
        [ $graph = 1 ] && gb=true
        name=attune_infer_t16_g${graph}
        stage "$name" 90 "${ATT[@]}" ATTUNE_CUDA_GRAPH=$graph "$BIN/attune" bench --infer --seq 16 \
            --device "$DEV" --warmup 10 --steps "$INFER_STEPS" &&
            record impl=attune kind=infer graph=$gb \
                batch=1 seq=16 < "$TMP/$name.out"
    done
fi
cat > "$TMP/torch_infer.py" <<'EOF'
import argparse, json, sys, time
import torch
sys.path.insert(0, "bench")
import torch_joint as tj
a = argparse.Namespace(encoder="transformer", words=10000, slots=72, intents=7, seq=16)
dev = torch.device(sys.argv[1])
n = int(sys.argv[2])
torch.manual_seed(1)
m = tj.Joint(a).to(dev).eval()
T = 16
tokens = torch.randint(2, a.words, (1, T), device=dev)
lengths = torch.tensor([T])
mask = torch.ones(1, T, device=dev)
ts = []
with torch.no_grad():
    for k in range(10 + n):
        t0 = time.perf_counter()
        out = m.forward_main(tokens, lengths, mask)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        if k >= 10:
            ts.append((time.perf_counter() - t0) * 1e3)
ts.sort()
print(json.dumps({"impl": "pytorch", "ms_per_sentence_median": round(ts[len(ts) // 2], 4),
                  "ms_per_sentence_min": round(ts[0], 4), "torch": torch.__version__}))
EOF
stage torch_infer_t16 90 "$PY" "$TMP/torch_infer.py" "$DEV" "$INFER_STEPS" &&
    record impl=pytorch kind=infer batch=1 seq=16 < "$TMP/torch_infer_t16.out"

# ---- summary ----
"$PY" - "$RES" > "$OUT/summary.txt" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def pick(kind, impl, b, t, graph=None):
    for r in rows:
        if r.get("kind") == kind and r.get("impl") == impl and r.get("batch") == b \
                and r.get("seq") == t and (graph is None or r.get("graph") == graph):
            return r
    return None
def ms(r, key):
    return r.get(key) if r else None
def f(x):
    return "%9.3f" % x if isinstance(x, (int, float)) else "%9s" % "-"
print("training step, median ms (default joint model: transformer, G on, adv gan), on %s"
      % next((r.get("device") for r in rows if r.get("device")), "?"))
print("  B    T   attune  attune+graph  pytorch  best/pytorch (target <= 0.7)")
cfgs = sorted({(r["batch"], r["seq"]) for r in rows if r.get("kind") == "train"})
for b, t in cfgs or [(32, 16)]:
    a0 = ms(pick("train", "attune", b, t, False), "ms_per_step_median")
    a1 = ms(pick("train", "attune", b, t, True), "ms_per_step_median")
    pt = ms(pick("train", "pytorch", b, t), "median_ms")
    best = min([x for x in (a0, a1) if x is not None], default=None)
    ratio = best / pt if best is not None and pt else None
    print("%4d %4d %s %s %s   %s" % (b, t, f(a0), f(a1), f(pt), f(ratio)))
print("batch-1 inference, T 16, median ms per sentence")
i0 = ms(pick("infer", "attune", 1, 16, False), "ms_per_sentence_median")
i1 = ms(pick("infer", "attune", 1, 16, True), "ms_per_sentence_median")
ip = ms(pick("infer", "pytorch", 1, 16), "ms_per_sentence_median")
print("  attune %s   attune+graph %s   pytorch %s" % (f(i0), f(i1), f(ip)))
errs = [r for r in rows if "error" in r]
for r in errs:
    print("FAILED %s: %s" % (r.get("stage"), r.get("error")))
EOF
echo
cat "$OUT/summary.txt"
echo "elapsed $(elapsed)s"
if [ ${#FAILED[@]} -gt 0 ]; then
    echo "failed stages: ${FAILED[*]}"
    exit 1
fi
echo "all stages passed"
