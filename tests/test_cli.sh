#!/usr/bin/env bash
# The attune command: --help everywhere, exit codes (0 ok, 1 failure, 2 bad usage or input),
# one-line messages that name the option, file or input at fault, and `run` / `inspect` on a
# small graph made with Python's onnx package (that part is skipped without onnx and numpy).
#
# Environment: ATTUNE_BUILD (the build folder holding `attune`), ATTUNE_SRC (the repository).
set -u
B=${ATTUNE_BUILD:?set ATTUNE_BUILD to the build folder}
S=${ATTUNE_SRC:?set ATTUNE_SRC to the repository}
A="$B/attune"
if [ ! -x "$A" ]; then
    echo "test_cli: no attune binary at $A" >&2
    exit 1
fi
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
passed=0
failed=0
SAMPLE="$S/data/sample"

fail() {
    failed=$((failed + 1))
    echo "FAIL: $*" >&2
    echo "  stdout: $(head -c 600 "$T/out")" >&2
    echo "  stderr: $(head -c 600 "$T/err")" >&2
}

# expect RC TEXT cmd... : runs attune with the arguments; checks the exit code and, when TEXT
# is not empty, that stderr (for RC != 0) or stdout (for RC == 0) contains TEXT. A failure
# must be exactly one stderr line starting with "attune: ".
expect() {
    local want=$1 text=$2
    shift 2
    "$A" "$@" >"$T/out" 2>"$T/err" </dev/null
    local rc=$?
    local where="$T/out"
    [ "$want" -ne 0 ] && where="$T/err"
    if [ "$rc" -ne "$want" ]; then
        fail "attune $*: exit $rc, want $want"
    elif [ -n "$text" ] && ! grep -qF -- "$text" "$where"; then
        fail "attune $*: output lacks '$text'"
    elif [ "$want" -ne 0 ] && { [ "$(wc -l <"$T/err")" -ne 1 ] || ! grep -q '^attune: ' "$T/err"; }; then
        fail "attune $*: the error is not one line starting with 'attune: '"
    else
        passed=$((passed + 1))
    fi
}

# out_has TEXT: the last command's stdout contains TEXT.
out_has() {
    if grep -qF -- "$1" "$T/out"; then passed=$((passed + 1)); else fail "stdout lacks '$1'"; fi
}

# ---- the command itself ----
"$A" >"$T/out" 2>"$T/err"
if [ $? -eq 2 ] && grep -q 'Usage: attune' "$T/err"; then passed=$((passed + 1)); else fail "bare attune"; fi
expect 0 "Usage: attune COMMAND" --help
for sub in build train eval predict run inspect bench; do out_has "  $sub "; done
expect 0 "attune 0.1.0" --version
expect 2 "unknown command 'frobnicate'" frobnicate
expect 2 "unknown option '--frobnicate'" --frobnicate
expect 0 "Usage: attune run" help run
expect 2 "unknown command 'nope'" help nope
if [ -w /dev/full ]; then
    "$A" --help >/dev/full 2>"$T/err"
    if [ $? -eq 1 ] && grep -q '^attune: writing to stdout failed' "$T/err"; then
        passed=$((passed + 1))
    else
        fail "a failed write to stdout must exit 1"
    fi
fi

# ---- every subcommand: --help, -h, an unknown option ----
for sub in build train eval predict run inspect bench; do
    expect 0 "Usage: attune $sub" "$sub" --help
    if [ -s "$T/err" ]; then fail "$sub --help wrote to stderr"; fi
    expect 0 "Usage: attune $sub" "$sub" -h
    expect 2 "unknown option '--no-such-option'" "$sub" --no-such-option
    expect 2 "unknown option '-Z'" "$sub" -Z
done

# ---- option values ----
D="--data $SAMPLE"
expect 2 "--epochs0: 'abc' is not an integer" train $D -o "$T/t.onnx" --epochs0 abc
expect 2 "--epochs0: '3x' is not an integer" train $D -o "$T/t.onnx" --epochs0 3x
expect 2 "--batch: 0 is out of range" train $D -o "$T/t.onnx" --batch 0
expect 2 "--lr: 'fast' is not a finite number" train $D -o "$T/t.onnx" --lr fast
expect 2 "--lr: 'nan' is not a finite number" train $D -o "$T/t.onnx" --lr nan
expect 2 "--lr: '1e999' is not a finite number" train $D -o "$T/t.onnx" --lr 1e999
expect 2 "--label-fraction: 1.5 is out of range" train $D -o "$T/t.onnx" --label-fraction 1.5
expect 2 "--device: 'gpu' is not one of cpu, cuda" train $D -o "$T/t.onnx" --device gpu
expect 2 "--epochs0: 'abc' is not an integer" train $D -o "$T/t.onnx" --epochs0=abc
expect 2 "option '--data' needs a value (DIR)" train -o "$T/t.onnx" --data
expect 2 "option '--data' needs a value (DIR), got option '--batch'" train --data --batch 3
expect 2 "option '--check-finite' takes no value" train $D -o "$T/t.onnx" --check-finite=yes
expect 2 "option '--data DIR' is required" train -o "$T/t.onnx"
expect 2 "option '--output FILE' is required" build --data "$SAMPLE"
expect 2 "did you mean '--epochs0'?" train $D -o "$T/t.onnx" --epoch0 3
expect 2 "--phases: '2-1' runs backwards" train $D -o "$T/t.onnx" --phases 2-1
expect 2 "--phases: 'warmup'" train $D -o "$T/t.onnx" --phases warmup
expect 2 "--kind: 'rnn' is not one of transformer, bilstm" build $D -o "$T/m.onnx" --kind rnn
expect 2 "--dim 255 must be even" build $D -o "$T/m.onnx" --kind bilstm --dim 255
expect 2 "--dim 100 is not a multiple of --heads 3" build $D -o "$T/m.onnx" --dim 100 --heads 3
expect 2 "--disc-widths: '3,x'" build $D -o "$T/m.onnx" --disc-widths 3,x
expect 2 "--train and --infer are exclusive" bench --train --infer
expect 2 "--seq: 0 is out of range" bench --seq 0
expect 2 "missing MODEL" run
expect 2 "missing MODEL" inspect
expect 2 "unexpected argument 'extra.onnx'" inspect a.onnx extra.onnx
expect 2 "unexpected argument 'stray'" build $D -o "$T/m.onnx" stray

# ---- missing and corrupt model files ----
NOFILE=/nonexistent/model.onnx
expect 2 "$NOFILE: No such file or directory" run "$NOFILE"
expect 2 "$NOFILE: No such file or directory" inspect "$NOFILE"
expect 2 "$NOFILE: No such file or directory" eval "$NOFILE" $D
expect 2 "$NOFILE: No such file or directory" predict "$NOFILE" "play jazz"
expect 2 "$NOFILE: No such file or directory" train "$NOFILE" $D -o "$T/t.onnx"
expect 2 "$T: not a regular file" inspect "$T"

# Random bytes from a fixed seed.
LC_ALL=C awk 'BEGIN { srand(4242); for (i = 0; i < 4096; i++) printf "%c", int(rand() * 256) }' \
    >"$T/random.onnx"
: >"$T/empty.onnx"
for f in random empty; do
    expect 2 "$T/$f.onnx: " inspect "$T/$f.onnx"
    expect 2 "$T/$f.onnx: " run "$T/$f.onnx"
    expect 2 "$T/$f.onnx: " eval "$T/$f.onnx" $D
    expect 2 "$T/$f.onnx: " predict "$T/$f.onnx" "play jazz"
    expect 2 "$T/$f.onnx: " train "$T/$f.onnx" $D -o "$T/t.onnx"
done
expect 2 "empty file" inspect "$T/empty.onnx"

# ---- data folders ----
expect 2 "/nonexistent/data: no such folder" build --data /nonexistent/data -o "$T/m.onnx"
mkdir -p "$T/nodata"
expect 2 "$T/nodata/train: no such folder" build --data "$T/nodata" -o "$T/m.onnx"
mkdir -p "$T/bad/train" "$T/bad/valid"
printf 'play some jazz\nwake me up\n' >"$T/bad/train/seq.in"
printf 'O O B-genre\nO O\n' >"$T/bad/train/seq.out"
printf 'play_music\nset_alarm\n' >"$T/bad/train/label"
expect 2 "$T/bad/train/seq.out:2" build --data "$T/bad" -o "$T/m.onnx"
expect 2 "$T/bad/train/seq.out:2" train --data "$T/bad" -o "$T/t.onnx"
expect 2 "the folder /nonexistent does not exist" build $D -o /nonexistent/m.onnx
# An output path that cannot be a file: the part at fault is named, before any work.
: >"$T/plain"
mkdir -p "$T/folder"
expect 2 "-o $T/plain/m.onnx: $T/plain is a file, not a folder" build $D -o "$T/plain/m.onnx"
expect 2 "-o $T/plain/a/b/m.onnx: $T/plain is a file, not a folder" build $D \
    -o "$T/plain/a/b/m.onnx"
expect 2 "-o $T/folder: is a folder; give the name of a file" build $D -o "$T/folder"
expect 2 "-o $T/folder/: is a folder; give the name of a file" build $D -o "$T/folder/"
expect 2 "--heatmap /dev/null/h.svg: /dev/null is a special file (a device, a pipe), not a folder" \
    predict "$T/nomodel.onnx" --heatmap /dev/null/h.svg "play jazz"
expect 2 "-o $T/plain/g.txt: $T/plain is a file, not a folder" inspect "$T/nomodel.onnx" \
    -o "$T/plain/g.txt"
[ "$(ls -A "$T/folder")" = "" ] && [ ! -s "$T/plain" ] && passed=$((passed + 1)) ||
    fail "a refused output path was written to"

# ---- the model commands ----
# A tiny model (one bilstm layer, G and D on) trained for a few steps: enough to check every
# command's outputs, exit codes and files, not accuracy (tests/test_nlu_train.c does that).
TINY="--kind bilstm --layers 1 --emb 16 --dim 32 --attn-size 16 --gen-dim 16 --gen-heads 2
      --disc-channels 8 --disc-hidden 8"
# is_svg FILE: a well-formed SVG document.
is_svg() {
    if command -v xmllint >/dev/null 2>&1; then
        xmllint --noout "$1" 2>/dev/null && grep -q '<svg ' "$1"
    else
        head -c 200 "$1" | grep -q '<?xml' && grep -q '<svg ' "$1" && tail -n 1 "$1" | grep -q '</svg>'
    fi
}
# json_check FILE PYTHON-EXPRESSION: every line of FILE is a JSON object for which the
# expression (over `d`, the object) is true. Without python3, only the braces are checked.
json_check() {
    if command -v python3 >/dev/null 2>&1; then
        python3 -c '
import json, sys
lines = [l for l in open(sys.argv[1]) if l.strip()]
assert lines, "no lines"
for l in lines:
    d = json.loads(l)
    assert eval(sys.argv[2]), (sys.argv[2], l[:300])
' "$1" "$2"
    else
        grep -q '^{.*}$' "$1"
    fi
}
# json_ok NAME FILE EXPR: json_check counted as one test.
json_ok() {
    if json_check "$2" "$3" 2>"$T/json_err"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        echo "FAIL: $1: $(tail -n 1 "$T/json_err")" >&2
    fi
}
ok_if() { # ok_if NAME COMMAND...: the command succeeds.
    local name=$1
    shift
    if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL: $name" >&2; fi
}

# build
expect 0 "wrote $T/m.onnx: bilstm x1 d=32, G on" build $D $TINY -o "$T/m.onnx"
expect 0 "G off, attention additive/additive, adversarial none" build $D $TINY --preset baseline \
    -o "$T/base.onnx"
expect 0 "" inspect "$T/m.onnx" --summary
out_has "attune.nlu.config"

# train: every phase, JSON lines, a plot, checkpoints at each epoch's end and every 4 steps
TRAIN="--epochs0 2 --epochs1 1 --epochs2 1 --max-steps 8 --threads 1 --progress lines"
expect 0 "wrote $T/t.onnx" train "$T/m.onnx" $D -o "$T/t.onnx" $TRAIN --metrics "$T/m.jsonl" \
    --plot "$T/curves.svg" --checkpoint-dir "$T/ck" --checkpoint-every 4
out_has "best on valid: phase"
grep -q '^phase 2 epoch 1/1 .*valid intent' "$T/err" && passed=$((passed + 1)) ||
    fail "train printed no epoch line for phase 2"
json_ok "train --metrics" "$T/m.jsonl" \
    '"valid_slot_f1" in d and "loss_task" in d and d["phase"] in (0, 1, 2)'
[ "$(wc -l <"$T/m.jsonl")" -eq 3 ] && passed=$((passed + 1)) || fail "3 JSON lines (one an epoch)"
ok_if "train --plot writes an SVG" is_svg "$T/curves.svg"
ok_if "epoch-end checkpoints" test -f "$T/ck/phase0-epoch001.ckpt.onnx" -a \
    -f "$T/ck/phase2-epoch001.ckpt.onnx"
ok_if "step checkpoints" test -f "$T/ck/phase0-epoch001-step000004.ckpt.onnx"
# resume: the phase-0 epoch budget (2) has one epoch left after the checkpoint
# (no --max-steps: it counts the steps of the epochs done before the checkpoint too)
expect 0 "wrote $T/r.onnx" train "$T/m.onnx" $D -o "$T/r.onnx" --epochs0 2 --epochs1 1 \
    --epochs2 1 --threads 1 --progress lines --metrics "$T/m.jsonl" \
    --resume "$T/ck/phase0-epoch001.ckpt.onnx"
out_has "epochs: phase 0 2, phase 1 1, phase 2 1"
grep -q '^phase 0 epoch 2/2 ' "$T/err" && passed=$((passed + 1)) ||
    fail "resume goes on with epoch 2 of phase 0"
grep -q "resuming $T/ck/phase0-epoch001.ckpt.onnx: phase 0, 1 epoch done" "$T/err" &&
    passed=$((passed + 1)) || fail "resume names the checkpoint and its position"
[ "$(wc -l <"$T/m.jsonl")" -eq 6 ] && passed=$((passed + 1)) || fail "--metrics appends on resume"
expect 0 "epochs: phase 0 0, phase 1 1, phase 2 1" train $D -o "$T/r2.onnx" $TRAIN \
    --resume "$T/ck/phase1-epoch001-step000004.ckpt.onnx"
expect 2 "--resume $T/nope.ckpt: No such file or directory" train $D -o "$T/r3.onnx" \
    --resume "$T/nope.ckpt"
expect 2 "not a checkpoint" train $D -o "$T/r3.onnx" --resume "$T/m.onnx"
# a resumed run keeps the checkpoint's options (else it would not take the same steps)
expect 2 "the checkpoint's run has epochs=2,1,1, this one asks 3,1,1" train $D -o "$T/r3.onnx" \
    --epochs0 3 --epochs1 1 --epochs2 1 --resume "$T/ck/phase0-epoch001.ckpt.onnx"
# train builds the model itself from model options; training options override a model's
expect 0 "wrote $T/own.onnx" train $D $TINY --preset baseline --epochs0 1 --max-steps 3 \
    --threads 1 --progress none -o "$T/own.onnx"
expect 2 "--lr: 11 is out of range" train "$T/m.onnx" $D --lr 11
expect 2 "a sentence has 17 tokens, more than the model's max_positions 4" train $D -o "$T/mp.onnx" --kind transformer --layers 1 --emb 8 \
    --dim 8 --heads 2 --gen-dim 8 --gen-heads 2 --max-positions 4 --max-steps 1

# eval: the table, and one JSON line
expect 0 "intent accuracy" eval "$T/t.onnx" --data "$SAMPLE/test"
out_has "FB1"
expect 0 "" eval "$T/t.onnx" --data "$SAMPLE" --split valid --json
json_ok "eval --json" "$T/out" \
    'all(k in d for k in ("intent_acc", "slot_f1", "sentence_acc", "sentences", "types")) and d["sentences"] == 200 and 0 <= d["slot_f1"] <= 100'
mkdir -p "$T/badtest"
printf 'play some jazz\nwake me up\n' >"$T/badtest/seq.in"
printf 'O O B-genre\nO O\n' >"$T/badtest/seq.out"
printf 'play_music\nset_alarm\n' >"$T/badtest/label"
expect 2 "$T/badtest/seq.out:2" eval "$T/t.onnx" --data "$T/badtest"
# valid labels the training split lacks: one note before training, then training goes on
mkdir -p "$T/unkdata/valid"
ln -sfn "$SAMPLE/train" "$T/unkdata/train"
cp "$T/badtest/seq.in" "$T/badtest/label" "$T/unkdata/valid/"
printf 'O O B-nosuchslot\nO O O\n' >"$T/unkdata/valid/seq.out"
printf 'no_such_intent\nset_alarm\n' >"$T/unkdata/valid/label"
expect 0 "wrote $T/unk.onnx" train "$T/m.onnx" --data "$T/unkdata" -o "$T/unk.onnx" --epochs0 1 \
    --epochs1 0 --epochs2 0 --max-steps 2 --threads 1 --progress none
if grep -q "^attune: train: note: .*valid: 1 intents and 1 slot labels unknown to the training split (B-nosuchslot no_such_intent)" "$T/err"; then
    passed=$((passed + 1))
else
    fail "train: no note of the valid labels unknown to the training split"
fi
expect 2 "$SAMPLE/nope: no such folder" eval "$T/t.onnx" --data "$SAMPLE" --split nope

# adversarial examples, adversarial training, VAT, hard attention (issue 5)
expect 0 "FGSM on the word embeddings" eval "$T/t.onnx" --data "$SAMPLE/test" --attack fgsm \
    --eps 0,0.05
expect 0 "" eval "$T/t.onnx" --data "$SAMPLE/test" --json --attack fgsm --eps 0,0.05
json_ok "eval --attack --json" "$T/out" \
    '[r["eps"] for r in d["attack"]["results"]] == [0, 0.05] and d["attack"]["results"][0]["slot_f1"] == d["slot_f1"]'
expect 2 "--attack: 'pgd' is not one of fgsm" eval "$T/t.onnx" $D --attack pgd
expect 2 "--eps: 'abc' is not a number >= 0" eval "$T/t.onnx" $D --attack fgsm --eps 0.1,abc
expect 2 "give --attack fgsm too" eval "$T/t.onnx" $D --eps 0.1
ADV="--max-steps 3 --threads 1 --progress none --epochs0 1 --epochs1 0 --epochs2 0"
expect 0 "wrote $T/adv.onnx" train "$T/m.onnx" $D -o "$T/adv.onnx" $ADV --adv-train fgsm \
    --adv-eps 0.05 --adv-alpha 0.5
expect 0 "wrote $T/vat.onnx" train "$T/m.onnx" $D -o "$T/vat.onnx" $ADV --vat --vat-eps 1 \
    --vat-xi 1e-3 --vat-weight 0.5 --label-fraction 0.5
expect 2 "--adv-train: 'pgd' is not one of none, fgsm" train "$T/m.onnx" $D --adv-train pgd
expect 2 "--adv-eps: -1 is out of range" train "$T/m.onnx" $D --adv-eps -1
expect 2 "--adv-alpha: 2 is out of range" train "$T/m.onnx" $D --adv-alpha 2
expect 2 "--vat-xi: 0 is out of range" train "$T/m.onnx" $D --vat --vat-xi 0
expect 2 "option '--vat' takes no value" train "$T/m.onnx" $D --vat=yes
expect 0 "attention additive (hard)/additive (hard)" build $D $TINY --attn1-hard --hard-attn2 \
    -o "$T/hard.onnx"
expect 0 '"attention":' predict "$T/hard.onnx" --attention "book a table for two"
json_ok "hard attention is one-hot" "$T/out" \
    'sorted(d["attention"]["intent"]) == [0] * 4 + [1] and all(sorted(r) == [0] * 4 + [1] for r in d["attention"]["entity"])'
expect 2 "option '--attn1-hard' takes no value" build $D -o "$T/m2.onnx" --attn1-hard=1

# predict: JSON lines, attention, heatmap, stdin
expect 0 '"intent":' predict "$T/t.onnx" "book a table for two" "wake me up at seven"
[ "$(wc -l <"$T/out")" -eq 2 ] && passed=$((passed + 1)) || fail "predict: one line a sentence"
json_ok "predict JSON" "$T/out" \
    'isinstance(d["intent"], str) and 0 <= d["prob"] <= 1 and isinstance(d["slots"], list) and all(set(s) == {"type", "text", "start", "end"} for s in d["slots"])'
expect 0 '"attention":' predict "$T/t.onnx" --attention --heatmap "$T/heat.svg" \
    "book a table for two at seven"
json_ok "predict --attention" "$T/out" \
    'len(d["attention"]["intent"]) == 7 and len(d["attention"]["entity"]) == 7 and all(len(r) == 7 for r in d["attention"]["entity"]) and len(d["s"]["intent_mean"]) == 7 and len(d["s"]["entity_mean"]) == 7 and len(d["tokens"]) == 7 and abs(sum(d["attention"]["intent"]) - 1) < 1e-3'
ok_if "predict --heatmap writes an SVG" is_svg "$T/heat.svg"
expect 0 '"s":{"d":32' predict "$T/t.onnx" --attention-full "play jazz"
json_ok "predict --attention-full" "$T/out" 'len(d["s"]["intent"]) == 2 and len(d["s"]["intent"][0]) == 32'
expect 0 '"s":null' predict "$T/base.onnx" --attention "play jazz"
printf 'play some jazz\n\n  \nwake me up at seven\n' | "$A" predict "$T/t.onnx" >"$T/out" 2>"$T/err"
[ $? -eq 0 ] && [ "$(wc -l <"$T/out")" -eq 2 ] && passed=$((passed + 1)) ||
    fail "predict from stdin: one line a non-blank line"
printf 'play jazz\nplay \377 jazz\n' | "$A" predict "$T/t.onnx" >"$T/out" 2>"$T/err"
[ $? -eq 2 ] && grep -q '^attune: predict: stdin:2: invalid UTF-8' "$T/err" &&
    passed=$((passed + 1)) || fail "predict names the bad line of stdin"
# --device cuda: where there is no usable GPU, exit 1 and say so before any work.
for sub in predict train; do
    case $sub in
    predict) args=("$T/t.onnx" "play jazz") ;;
    train) args=($D $TINY --max-steps 1 --progress none -o "$T/cuda.onnx") ;;
    esac
    "$A" $sub "${args[@]}" --device cuda >"$T/out" 2>"$T/err"
    rc=$?
    if [ $rc -ne 0 ]; then
        [ $rc -eq 1 ] && [ "$(wc -l <"$T/err")" -eq 1 ] &&
            grep -q "^attune: $sub: --device cuda: " "$T/err" && passed=$((passed + 1)) ||
            fail "$sub --device cuda without a GPU: exit 1 and one message"
    fi
done
expect 0 "" build $D -o "$T/tr.onnx" --kind transformer --layers 1 --emb 8 --dim 8 --heads 2 \
    --gen-dim 8 --gen-heads 2 --max-positions 4
expect 2 "max_positions 4" predict "$T/tr.onnx" "book a table for two people"

# bench: one JSON line
expect 0 '"ms_per_step_median":' bench --train --batch 4 --seq 8 $TINY --warmup 1 --steps 2 \
    --threads 1
json_ok "bench --train" "$T/out" \
    'd["ms_per_step_median"] > 0 and d["ms_per_step_min"] > 0 and d["peak_rss_mb"] > 0'
expect 0 '"ms_per_sentence_median":' bench --infer --seq 8 $TINY --warmup 1 --steps 3 --threads 1
json_ok "bench --infer" "$T/out" 'd["ms_per_sentence_median"] > 0 and d["peak_rss_mb"] > 0'
expect 2 "--seq 200 is longer than --max-positions 128" bench --seq 200
# --profile: the JSON line still on stdout, the kernel table on stderr
expect 0 '"ms_per_sentence_median":' bench --infer --seq 8 $TINY --warmup 1 --steps 3 --threads 1 \
    --profile
if grep -q '^profile: [0-9]* nodes, 3 runs' "$T/err" && grep -q '^  MatMul ' "$T/err"; then
    passed=$((passed + 1))
else
    fail "bench --profile: no kernel table on stderr"
fi

# ---- run and inspect on a graph made with Python's onnx ----
if python3 -c 'import onnx, numpy' 2>/dev/null; then
    (
        cd "$T" && python3 - <<'EOF'
import numpy as np
import onnx
from onnx import TensorProto as TP
from onnx import helper as h
from onnx import numpy_helper as nh

rng = np.random.default_rng(7)
W = rng.standard_normal((3, 4)).astype(np.float32)
b = rng.standard_normal(4).astype(np.float32)
nodes = [
    h.make_node("MatMul", ["X", "W"], ["xw"]),
    h.make_node("Add", ["xw", "b"], ["pre"]),
    h.make_node("Relu", ["pre"], ["out/relu:0"]),
    h.make_node("Cast", ["M"], ["mf"], to=TP.FLOAT),
    h.make_node("Mul", ["mf", "scale"], ["scaled"]),
]
graph = h.make_graph(
    nodes, "small",
    [h.make_tensor_value_info("X", TP.FLOAT, ["N", 3]),
     h.make_tensor_value_info("M", TP.INT64, ["N"])],
    [h.make_tensor_value_info("out/relu:0", TP.FLOAT, ["N", 4]),
     h.make_tensor_value_info("scaled", TP.FLOAT, ["N"])],
    [nh.from_array(W, "W"), nh.from_array(b, "b"),
     nh.from_array(np.array(2.5, np.float32), "scale")])
model = h.make_model(graph, opset_imports=[h.make_opsetid("", 21)], ir_version=10)
h.set_model_props(model, {"purpose": "cli test"})
onnx.save(model, "g.onnx")
gather = h.make_graph(
    [h.make_node("Gather", ["D", "I"], ["Y"], axis=0)], "gather",
    [h.make_tensor_value_info("I", TP.INT64, ["K"])],
    [h.make_tensor_value_info("Y", TP.FLOAT, ["K", 2])],
    [nh.from_array(np.arange(8, dtype=np.float32).reshape(4, 2), "D")])
onnx.save(h.make_model(gather, opset_imports=[h.make_opsetid("", 21)], ir_version=10),
          "gather.onnx")

x = rng.standard_normal((5, 3)).astype(np.float32)
np.save("x.npy", x)
np.save("m.npy", np.arange(5, dtype=np.int64))
np.save("want_relu.npy", np.maximum(x @ W + b, 0))
np.save("want_scaled.npy", np.arange(5, dtype=np.float32) * 2.5)
np.save("x_f64.npy", x.astype(np.float64))
np.save("x_i64.npy", np.zeros((5, 3), np.int64))
np.save("x_25.npy", np.zeros((2, 5), np.float32))
np.save("x_23.npy", np.zeros((2, 3), np.float32))
np.save("x_rank1.npy", np.zeros(15, np.float32))
np.save("x_fortran.npy", np.asfortranarray(np.zeros((5, 3), np.float32)))
np.savez("x.npz", x=x)
np.save("idx_bad.npy", np.array([1, 7], np.int64))
EOF
    ) || fail "python could not write the sample graph"
    cd "$T" || exit 1

    expect 0 "out/relu:0  float32 [5,4]  -> $T/o/out_relu_0.npy" run g.onnx --input X=x.npy \
        --input M=m.npy --output-dir "$T/o"
    out_has "scaled  float32 [5]  -> $T/o/scaled.npy  min 0  max 10  mean 5"
    expect 0 "" run g.onnx --input X=x.npy --input M=m.npy --output-dir "$T/o" --profile
    if grep -q '^profile: [0-9]* nodes, 1 runs' "$T/err"; then passed=$((passed + 1)); else fail "run --profile"; fi
    if python3 -c '
import sys, numpy as np
a, b = np.load(sys.argv[1] + "/o/out_relu_0.npy"), np.load(sys.argv[1] + "/want_relu.npy")
c, d = np.load(sys.argv[1] + "/o/scaled.npy"), np.load(sys.argv[1] + "/want_scaled.npy")
assert a.dtype == np.float32 and a.shape == (5, 4), (a.dtype, a.shape)
assert np.allclose(a, b, rtol=1e-5, atol=1e-6), np.abs(a - b).max()
assert c.dtype == np.float32 and np.array_equal(c, d), c
' "$T"; then passed=$((passed + 1)); else fail "run outputs differ from numpy"; fi

    # Only what the fetched values need must be fed; fetching any value by name.
    expect 0 "scaled  float32 [5]" run g.onnx --input M=m.npy --fetch scaled --output-dir "$T/o2"
    expect 0 "" run g.onnx --input X=x.npy --fetch xw --fetch xw --quiet \
        --output-dir "$T/o3"
    [ -f "$T/o3/xw.npy" ] && [ ! -f "$T/o3/xw_2.npy" ] && passed=$((passed + 1)) ||
        fail "--fetch xw twice should write xw.npy once"
    expect 0 "" run g.onnx --input M=m.npy --fetch scaled --output-dir "$T/o4/deeper/still" --quiet
    [ -f "$T/o4/deeper/still/scaled.npy" ] && passed=$((passed + 1)) || fail "--output-dir not created"

    # Bad inputs, each named.
    I="--output-dir $T/bad_out"
    expect 2 "input 'X': x_f64.npy: dtype float64 ('<f8') is not supported" run g.onnx \
        --input X=x_f64.npy --input M=m.npy $I
    expect 2 "input 'X' (x_i64.npy): dtype int64, the graph wants float32 [N,3]" run g.onnx \
        --input X=x_i64.npy --input M=m.npy $I
    expect 2 "input 'X' (x_25.npy): shape [2,5], the graph wants [N,3]" run g.onnx \
        --input X=x_25.npy --input M=m.npy $I
    expect 2 "input 'X' (x_rank1.npy): shape [15] has rank 1, the graph wants [N,3]" run g.onnx \
        --input X=x_rank1.npy --input M=m.npy $I
    expect 2 "input 'M' (m.npy): shape [5] makes N = 5, but input 'X' made it 2" run g.onnx \
        --input X=x_23.npy --input M=m.npy $I
    expect 2 "missing input 'M' (int64 [N]): pass --input M=FILE.npy" run g.onnx \
        --input X=x.npy $I
    expect 2 "g.onnx has no input 'Q' (its inputs: X, M)" run g.onnx --input Q=x.npy \
        --input M=m.npy $I
    expect 2 "'W' is a constant of g.onnx, not an input" run g.onnx --input W=x.npy $I
    expect 2 "input 'X': x_fortran.npy: Fortran-order arrays are not supported" run g.onnx \
        --input X=x_fortran.npy --input M=m.npy $I
    expect 2 "input 'X': x.npz: a zip archive (.npz?)" run g.onnx --input X=x.npz \
        --input M=m.npy $I
    expect 2 "input 'X': nofile.npy: No such file or directory" run g.onnx \
        --input X=nofile.npy --input M=m.npy $I
    head -c 100 x.npy >x_trunc.npy
    expect 2 "input 'X': x_trunc.npy: truncated" run g.onnx --input X=x_trunc.npy \
        --input M=m.npy $I
    expect 2 "--input: 'X' is not NAME=FILE.npy" run g.onnx --input X $I
    expect 2 "input 'X' given twice" run g.onnx --input X=x.npy --input X=x.npy $I
    expect 2 "--fetch: g.onnx has no value 'nope'" run g.onnx --input X=x.npy --fetch nope $I
    expect 2 "index 7" run gather.onnx --input I=idx_bad.npy $I
    [ ! -e "$T/bad_out" ] && passed=$((passed + 1)) || fail "a failed run created its output folder"
    : >"$T/a_file"
    expect 2 "--output-dir $T/a_file/sub: $T/a_file is a file, not a folder" run g.onnx \
        --input M=m.npy --fetch scaled --output-dir "$T/a_file/sub"
    head -c 200 g.onnx >g_trunc.onnx
    expect 2 "g_trunc.onnx: " run g_trunc.onnx --input X=x.npy --input M=m.npy $I
    expect 2 "g_trunc.onnx: " inspect g_trunc.onnx

    # inspect: text, DOT, summary, -o.
    expect 0 "out/relu:0 = Relu(pre)" inspect g.onnx
    expect 0 "digraph" inspect g.onnx --dot
    expect 0 "inputs (2):" inspect g.onnx --summary
    out_has "X          float32 [N,3]"
    out_has "MatMul"
    out_has "constants   17 values in 3 tensors (68 B)"
    out_has "purpose"
    expect 2 "--dot and --summary are exclusive" inspect g.onnx --dot --summary
    expect 0 "" inspect g.onnx --dot -o "$T/g.dot"
    grep -q '^digraph' "$T/g.dot" && passed=$((passed + 1)) || fail "inspect -o wrote no DOT"

    # The model commands want NLU model files.
    expect 2 "g.onnx: not an NLU model" eval g.onnx $D
    expect 2 "g.onnx: not an NLU model" predict g.onnx "book a table for two"
    expect 2 "sentence 2 is empty" predict g.onnx "play jazz" "  "
    expect 2 "model options apply when train builds the model" train g.onnx $D -o "$T/t.onnx" \
        --layers 3
    cd - >/dev/null || exit 1
else
    echo "test_cli: python3 with onnx and numpy not found; skipping the run/inspect graph tests"
fi

echo "test_cli: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
