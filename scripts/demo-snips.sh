#!/usr/bin/env bash
# The first run of scripts/demo.sh on the SNIPS benchmark (13,084 / 700 / 700 utterances, 7
# intents, 72 slot labels) instead of the bundled sample: builds, trains the joint model (G and
# D on, all three phases, early stopping on valid), evaluates on the test split and predicts
# two sentences. Longer than the sample's demo: about a minute an epoch with one thread (measured
# on a busy 2-core machine: 4 epochs, 248 s, test slot F1 86.0 after EPOCHS="2 1 1"), so the
# default schedule takes 15 to 20 minutes; not run by ctest or CI. Writes to
# build-release/demo-snips/.
#
# Environment: SNIPS (default ../shared/data/snips: a folder with train/, valid/, test/ in the
# format of DESIGN.md section 8), SKIP_DEPS=1, BUILD, THREADS as in scripts/demo.sh; EPOCHS
# (default "12 1 4": phases 0, 1, 2).
set -euo pipefail
cd "$(dirname "$0")/.."
SNIPS=${SNIPS:-../shared/data/snips}
BUILD=${BUILD:-build-release}
THREADS=${THREADS:-1}
read -r E0 E1 E2 <<<"${EPOCHS:-12 1 4}"
OUT="$BUILD/demo-snips"
if [ ! -f "$SNIPS/train/seq.in" ]; then
    echo "demo-snips: no SNIPS data at $SNIPS (set SNIPS=DIR)" >&2
    exit 2
fi
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
    echo "demo-snips: the build failed; the whole log is $OUT/build.log" >&2
    exit 1
fi
A="$BUILD/attune"

# Two BiLSTM layers (128 a direction) with character CNN features: SNIPS is full of names the
# training split never saw (artists, albums, places), which word embeddings alone cannot place.
stamp "attune build"
"$A" build --data "$SNIPS" --preset joint-nlu --kind bilstm --layers 2 --emb 128 --dim 256 \
    --attn-size 128 --char-dim 32 --char-channels 64 --gen-dim 64 --gen-heads 4 \
    -o "$OUT/model.onnx"
stamp "attune train"
t_train=$(date +%s)
"$A" train "$OUT/model.onnx" --data "$SNIPS" -o "$OUT/trained.onnx" --epochs0 "$E0" \
    --epochs1 "$E1" --epochs2 "$E2" --patience 3 --lr 0.003 --word-dropout 0.1 \
    --threads "$THREADS" --metrics "$OUT/metrics.jsonl" --plot "$OUT/curves.svg"
echo "training: $(($(date +%s) - t_train)) s"

stamp "attune eval on $SNIPS/test"
"$A" eval "$OUT/trained.onnx" --data "$SNIPS/test"
stamp "attune predict"
"$A" predict "$OUT/trained.onnx" "play the latest album by daft punk on spotify" \
    "will it rain in san francisco tomorrow afternoon"
"$A" predict "$OUT/trained.onnx" --heatmap "$OUT/attention.svg" \
    "add this song to my workout playlist" >/dev/null
stamp "done"
echo "files: $OUT/trained.onnx, $OUT/metrics.jsonl, $OUT/curves.svg, $OUT/attention.svg"
