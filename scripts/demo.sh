#!/usr/bin/env bash
# The first run: installs what is missing, builds the `attune` command (Release), builds and
# trains the joint NLU model (G and D on, all three phases) on the bundled sample corpus,
# evaluates it on the test split and predicts two sentences. Everything it writes goes to
# build-release/demo/ (the training curves: curves.svg; an attention heatmap: attention.svg).
#
# Environment: SKIP_DEPS=1 skips scripts/install-deps.sh; BUILD (default build-release) is the
# build folder (configured without CUDA: the demo runs on the CPU, and nvcc would triple the
# build time; scripts/test.sh builds everything); THREADS (default 1) the CPU threads of
# training. One thread, because these small
# models gain nothing from a second one, and on a machine whose other core is busy every
# OpenMP barrier then waits for it (measured: 15 times slower with 2 threads on a loaded 2-core
# machine).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build-release}
THREADS=${THREADS:-1}
OUT="$BUILD/demo"
t0=$(date +%s)
stamp() { echo "== $1 ($(($(date +%s) - t0)) s so far)"; }

if [ "${SKIP_DEPS:-0}" != 1 ]; then
    stamp "installing what is missing"
    bash scripts/install-deps.sh
fi
stamp "building attune (Release, CPU)"
mkdir -p "$OUT"
if ! { cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DATTUNE_CUDA=OFF &&
    cmake --build "$BUILD" --target attune -j"$(nproc)"; } >"$OUT/build.log" 2>&1; then
    tail -n 40 "$OUT/build.log"
    echo "demo: the build failed; the whole log is $OUT/build.log" >&2
    exit 1
fi
A="$BUILD/attune"
t_train=$(date +%s)

# A small joint model: one BiLSTM layer (64 a direction), character CNN word features for the
# names the training split never saw, word dropout so <unk> is learned; G (d_g 32) and D on.
stamp "attune build"
"$A" build --data data/sample --preset joint-nlu --kind bilstm --layers 1 --emb 64 --dim 128 \
    --attn-size 64 --char-dim 16 --char-channels 32 --gen-dim 32 --gen-heads 2 \
    --disc-channels 16 --disc-hidden 16 -o "$OUT/model.onnx"
stamp "attune train"
"$A" train "$OUT/model.onnx" --data data/sample -o "$OUT/trained.onnx" --epochs0 10 \
    --epochs1 1 --epochs2 3 --lr 0.01 --word-dropout 0.1 --threads "$THREADS" \
    --metrics "$OUT/metrics.jsonl" --plot "$OUT/curves.svg"
echo "training: $(($(date +%s) - t_train)) s"

stamp "attune eval on data/sample/test"
"$A" eval "$OUT/trained.onnx" --data data/sample/test
stamp "attune predict"
"$A" predict "$OUT/trained.onnx" "book a table for four at an italian place in paris tomorrow" \
    "wake me up at half past six on monday"
"$A" predict "$OUT/trained.onnx" --heatmap "$OUT/attention.svg" \
    "find a flight from rome to tokyo on friday" >/dev/null
stamp "done"
echo "files: $OUT/trained.onnx, $OUT/metrics.jsonl, $OUT/curves.svg, $OUT/attention.svg"
