#!/usr/bin/env bash
# The bad-input matrix of README.md ("Bad input"): each row there is a group of checks here.
# For every bad input: the documented exit code, exactly one message on stderr (one line
# starting with "attune: "), no crash, and no output file left behind, whole or partial.
#
# Environment: ATTUNE_BUILD (the build folder holding `attune`), ATTUNE_SRC (the repository).
# The `run` rows need python3 with numpy (skipped, saying so, without); the tiny-disk rows
# need `mount -t tmpfs` (root with CAP_SYS_ADMIN; skipped, saying so, without: /dev/full
# covers the full disk then).
set -u
B=${ATTUNE_BUILD:?set ATTUNE_BUILD to the build folder}
S=${ATTUNE_SRC:?set ATTUNE_SRC to the repository}
A="$B/attune"
[ -x "$A" ] || { echo "test_bad_input: no attune binary at $A" >&2; exit 1; }
T=$(mktemp -d)
MOUNTED=()
cleanup() {
    for m in "${MOUNTED[@]}"; do umount "$m" 2>/dev/null; done
    rm -rf "$T"
}
trap cleanup EXIT
passed=0
failed=0
row=""

fail() {
    failed=$((failed + 1))
    echo "FAIL [$row]: $*" >&2
    [ -f "$T/err" ] && echo "  stderr: $(head -c 600 "$T/err")" >&2
}
ok() { passed=$((passed + 1)); }

# expect RC TEXT ARGS...: runs attune (stdin from /dev/null unless IN is set); the exit code
# must be RC; for RC != 0 stderr must be one line starting with "attune: " that contains
# TEXT; for RC 0, stdout must contain TEXT.
IN=/dev/null
expect() {
    local want=$1 text=$2
    shift 2
    "$A" "$@" >"$T/out" 2>"$T/err" <"$IN"
    local rc=$?
    local where="$T/out"
    [ "$want" -ne 0 ] && where="$T/err"
    if [ $rc -ge 128 ]; then
        fail "attune $*: killed by signal $((rc - 128))"
    elif [ $rc -ne "$want" ]; then
        fail "attune $*: exit $rc, want $want"
    elif [ -n "$text" ] && ! grep -qF -- "$text" "$where"; then
        fail "attune $*: the output lacks '$text'"
    elif [ "$want" -ne 0 ] && { [ "$(wc -l <"$T/err")" -ne 1 ] || ! grep -q '^attune: ' "$T/err"; }; then
        fail "attune $*: the error is not one line starting with 'attune: '"
    else
        ok
    fi
}
# absent PATH...: nothing exists there (no output, no temporary file).
absent() {
    local p
    for p in "$@"; do
        if [ -e "$p" ]; then fail "$p was left behind"; else ok; fi
    done
}
# no_temp DIR: no temporary files in DIR.
no_temp() {
    if ls -a "$1" 2>/dev/null | grep -q '\.tmp'; then
        fail "temporary files left in $1: $(ls -a "$1" | grep '\.tmp' | tr '\n' ' ')"
    else
        ok
    fi
}
# still_device PATH: a device node was written to, not replaced by a file.
still_device() {
    if [ -c "$1" ]; then ok; else fail "$1 is no longer a character device"; fi
}

# ---- fixtures: a small corpus, a tiny model, a trained one ----
mkdir -p "$T/data/train" "$T/data/valid" "$T/data/test"
for split in train valid test; do
    n=96
    [ $split != train ] && n=32
    for f in seq.in seq.out label; do head -n $n "$S/data/sample/$split/$f" >"$T/data/$split/$f"; done
done
D="$T/data"
TINY="--kind bilstm --layers 1 --emb 8 --dim 8 --attn-size 8 --gen-dim 8 --gen-heads 2
      --disc-channels 4 --disc-hidden 4"
FAST="--epochs0 1 --epochs1 1 --epochs2 1 --max-steps 2 --batch 16 --threads 1 --progress none"
BENCH="--steps 1 --warmup 0 --batch 2 --seq 4 --threads 1 $TINY"
"$A" build --data "$D" $TINY -o "$T/m.onnx" >/dev/null || { echo "FAIL: build" >&2; exit 1; }
"$A" train "$T/m.onnx" --data "$D" $FAST -o "$T/t.onnx" --checkpoint-dir "$T/ck" >/dev/null ||
    { echo "FAIL: train" >&2; exit 1; }
M="$T/m.onnx"
TM="$T/t.onnx"
CK="$T/ck/phase0-epoch001.ckpt.onnx"
SIZE=$(stat -c %s "$M")
: >"$T/a_file"
mkdir -p "$T/a_dir"

# A model's commands, each given FILE as its model. Training writes nowhere on failure.
model_cmds() { # model_cmds RC TEXT FILE [noresume]
    local rc=$1 text=$2 f=$3
    expect "$rc" "$text" inspect "$f"
    expect "$rc" "$text" run "$f" --output-dir "$T/never"
    expect "$rc" "$text" eval "$f" --data "$D/test"
    expect "$rc" "$text" predict "$f" "play some jazz"
    expect "$rc" "$text" train "$f" --data "$D" $FAST -o "$T/never.onnx"
    [ "${4:-}" = noresume ] ||
        expect "$rc" "$text" train --resume "$f" --data "$D" $FAST -o "$T/never.onnx"
    absent "$T/never" "$T/never.onnx"
}

# ==== model files ====
row="empty model file"
: >"$T/empty.onnx"
model_cmds 2 "$T/empty.onnx: empty file (not an ONNX model)" "$T/empty.onnx"

row="truncated model file"
head -c $((SIZE / 2)) "$M" >"$T/half.onnx"
model_cmds 2 "$T/half.onnx: not an ONNX model: the protobuf parse failed" "$T/half.onnx"
head -c $((SIZE / 2)) "$CK" >"$T/half.ckpt.onnx"
expect 2 "--resume $T/half.ckpt.onnx: not an ONNX model" train --resume "$T/half.ckpt.onnx" \
    --data "$D" $FAST -o "$T/never.onnx"
# Cut at 40 places: every cut is refused with one message.
bad=0
for k in $(seq 1 40); do
    head -c $((SIZE * k / 41)) "$M" >"$T/cut.onnx"
    "$A" predict "$T/cut.onnx" "play jazz" >/dev/null 2>"$T/err"
    rc=$?
    if [ $rc -ne 2 ] || [ "$(wc -l <"$T/err")" -ne 1 ]; then
        bad=$((bad + 1))
        echo "  cut at $((SIZE * k / 41)) of $SIZE bytes: exit $rc: $(head -c 300 "$T/err")" >&2
    fi
done
[ $bad -eq 0 ] && ok || fail "$bad of 40 truncated models were not refused with one message"

row="corrupt model file (random bytes)"
LC_ALL=C awk 'BEGIN { srand(4242); for (i = 0; i < 4096; i++) printf "%c", int(rand() * 256) }' \
    >"$T/random.onnx"
model_cmds 2 "$T/random.onnx: not an ONNX model: the protobuf parse failed" "$T/random.onnx"

row="corrupt model file (bytes changed inside)"
# 40 copies of the model, each with 1-5 bytes overwritten (seeded): a change in the weights'
# bytes loads (exit 0); anything else is refused naming what is wrong; never a crash.
bad=0
refused=0
for k in $(seq 1 40); do
    LC_ALL=C awk -v seed=$k -v size="$SIZE" 'BEGIN {
        srand(seed); n = 1 + int(rand() * 5)
        for (i = 0; i < n; i++) printf "%d %d\n", int(rand() * size), int(rand() * 256) }' \
        >"$T/edits"
    cp "$M" "$T/mut.onnx"
    while read -r off byte; do
        printf "$(printf '\\%03o' "$byte")" |
            dd of="$T/mut.onnx" bs=1 seek="$off" conv=notrunc status=none
    done <"$T/edits"
    "$A" predict "$T/mut.onnx" "play some jazz" >/dev/null 2>"$T/err"
    rc=$?
    if [ $rc -eq 2 ] && [ "$(wc -l <"$T/err")" -eq 1 ] && grep -q "^attune: predict: $T/mut.onnx: " "$T/err"; then
        refused=$((refused + 1))
    elif [ $rc -ne 0 ]; then
        bad=$((bad + 1))
        echo "  mutant $k: exit $rc: $(head -c 300 "$T/err")" >&2
    fi
done
[ $bad -eq 0 ] && ok || fail "$bad of 40 corrupted models crashed or gave no clear message"
echo "test_bad_input: corrupted models: $refused of 40 refused, $((40 - refused - bad)) loaded"

row="model with control bytes or invalid UTF-8 in its strings"
# The message quotes what the file holds, escaped (\xNN) so that no byte of it reaches the
# terminal as it is; the length of a quoted name is capped (tests/test_io_bad.c).
if command -v python3 >/dev/null 2>&1; then
    python3 - "$M" "$CK" "$T" <<'EOF'
import sys
def put(src, old, new, name):
    d = open(src, "rb").read()
    assert len(old) == len(new) and old in d, old
    open(sys.argv[3] + "/" + name, "wb").write(d.replace(old, new, 1))
op = (b"\x22\x06Gather", b"\x22\x06G\x1b[\xff\x01\x07")
put(sys.argv[1], *op, "ctl_op.onnx")
put(sys.argv[2], *op, "ctl_op.ckpt.onnx")
put(sys.argv[1], b"encoder=bilstm", b"encoder=\xffi\x1b\x01tm", "ctl_config.onnx")
EOF
    model_cmds 2 "$T/ctl_op.onnx: unknown op: G\x1b[\xff\x01\x07" "$T/ctl_op.onnx" noresume
    expect 2 "$T/ctl_op.ckpt.onnx: unknown op: G\x1b[\xff\x01\x07" train --resume \
        "$T/ctl_op.ckpt.onnx" --data "$D" $FAST -o "$T/never.onnx"
    expect 2 "$T/ctl_config.onnx: config encoder: '\xffi\x1b\x01tm' is not one of" \
        predict "$T/ctl_config.onnx" "play jazz"
    expect 2 "$T/ctl_config.onnx: config encoder: '\xffi\x1b\x01tm' is not one of" \
        eval "$T/ctl_config.onnx" --data "$D/test"
else
    echo "test_bad_input: no python3; skipping the control-byte model rows"
fi

row="model path is a folder / missing"
expect 2 "$T/a_dir: not a regular file" inspect "$T/a_dir"
expect 2 "$T/a_dir: not a regular file" predict "$T/a_dir" "play jazz"
expect 2 "$T/nope.onnx: No such file or directory" eval "$T/nope.onnx" --data "$D/test"
expect 2 "--resume $T/nope.onnx: No such file or directory" train --resume "$T/nope.onnx" \
    --data "$D" $FAST -o "$T/never.onnx"

# ==== run: dtypes and shapes ====
if python3 -c 'import numpy' 2>/dev/null; then
    (
        cd "$T" && python3 - <<'EOF'
import numpy as np
np.save("tok.npy", np.array([[5, 6, 7, 0], [8, 9, 0, 0]], np.int64))
np.save("mask.npy", np.array([[1, 1, 1, 0], [1, 1, 0, 0]], np.float32))
np.save("len.npy", np.array([3, 2], np.int64))
np.save("tr.npy", np.array(False))
np.save("tok_f32.npy", np.zeros((2, 4), np.float32))
np.save("tok_f64.npy", np.zeros((2, 4), np.float64))
np.save("tok_r1.npy", np.zeros(8, np.int64))
np.save("tok_be.npy", np.zeros((2, 4), ">i8"))
np.save("mask_25.npy", np.ones((2, 5), np.float32))
np.save("tr_1.npy", np.array([False]))
np.save("tok_oob.npy", np.array([[5, 6, 99999, 0], [8, 9, 0, 0]], np.int64))
np.save("len_big.npy", np.array([30, 2], np.int64))
np.save("mask_nan.npy", np.array([[1, np.nan, 1, 0], [1, 1, 0, 0]], np.float32))
EOF
    ) || fail "python could not write the .npy inputs"
    head -c 100 "$T/tok.npy" >"$T/tok_trunc.npy"
    : >"$T/tok_empty.npy"
    head -c 256 "$T/random.onnx" >"$T/tok_random.npy"
    # feed TOK MASK LEN TR: the four inputs of the NLU graph.
    feed() { echo "--input tokens=$T/$1 --input mask=$T/$2 --input lengths=$T/$3 --input training=$T/$4"; }
    O="--output-dir $T/run_out"
    expect 0 "intent_logits  float32 [2,5]" run "$M" $(feed tok.npy mask.npy len.npy tr.npy) \
        --output-dir "$T/run_ok"

    row="run: wrong dtype"
    expect 2 "input 'tokens' ($T/tok_f32.npy): dtype float32, the graph wants int64 [B,T]" \
        run "$M" $(feed tok_f32.npy mask.npy len.npy tr.npy) $O
    expect 2 "dtype float64 ('<f8') is not supported; save float32" \
        run "$M" $(feed tok_f64.npy mask.npy len.npy tr.npy) $O
    expect 2 "big-endian dtype '>i8' is not supported" \
        run "$M" $(feed tok_be.npy mask.npy len.npy tr.npy) $O

    row="run: wrong shape"
    expect 2 "input 'tokens' ($T/tok_r1.npy): shape [8] has rank 1, the graph wants [B,T] (rank 2)" \
        run "$M" $(feed tok_r1.npy mask.npy len.npy tr.npy) $O
    expect 2 "input 'mask' ($T/mask_25.npy): shape [2,5] makes T = 5, but input 'tokens' made it 4" \
        run "$M" $(feed tok.npy mask_25.npy len.npy tr.npy) $O
    expect 2 "input 'training' ($T/tr_1.npy): shape [1] has rank 1, the graph wants [] (rank 0)" \
        run "$M" $(feed tok.npy mask.npy len.npy tr_1.npy) $O

    row="run: values out of range"
    expect 2 "(Gather): index 99999 (indices element 2) out of range" \
        run "$M" $(feed tok_oob.npy mask.npy len.npy tr.npy) $O
    expect 2 "(LSTM): sequence_lens[0] = 30 outside [0, 4]" \
        run "$M" $(feed tok.npy mask.npy len_big.npy tr.npy) $O
    expect 1 "produced a non-finite value (nan)" \
        run "$M" $(feed tok.npy mask_nan.npy len.npy tr.npy) $O --check-finite

    row="run: bad .npy files"
    expect 2 "$T/tok_trunc.npy: truncated: the header needs 128 bytes, the file has 100" \
        run "$M" $(feed tok_trunc.npy mask.npy len.npy tr.npy) $O
    expect 2 "$T/tok_empty.npy: empty file (not a .npy file)" \
        run "$M" $(feed tok_empty.npy mask.npy len.npy tr.npy) $O
    expect 2 "$T/tok_random.npy: not a .npy file (bad magic)" \
        run "$M" $(feed tok_random.npy mask.npy len.npy tr.npy) $O
    expect 2 "$T/nope.npy: No such file or directory" \
        run "$M" $(feed nope.npy mask.npy len.npy tr.npy) $O
    absent "$T/run_out"
    HAVE_NPY=1
else
    echo "test_bad_input: python3 with numpy not found; skipping the 'run' dtype and shape rows"
    HAVE_NPY=0
fi

# ==== data files ====
# mkdata NAME SEQ_IN SEQ_OUT LABEL: a split folder from printf formats.
mkdata() {
    mkdir -p "$T/$1"
    printf "$2" >"$T/$1/seq.in"
    printf "$3" >"$T/$1/seq.out"
    printf "$4" >"$T/$1/label"
}
# as_train NAME: a dataset folder whose train/ is split NAME.
as_train() {
    mkdir -p "$T/ds_$1"
    rm -rf "$T/ds_$1/train"
    cp -r "$T/$1" "$T/ds_$1/train"
}
# data_cmds RC TEXT NAME: build, train and bench on split NAME as train/, eval on it; the message
# must hold the folder followed by TEXT.
data_cmds() {
    local rc=$1 text=$2 name=$3
    as_train "$name"
    expect "$rc" "$T/ds_$name/train/$text" build --data "$T/ds_$name" $TINY -o "$T/never.onnx"
    expect "$rc" "$T/ds_$name/train/$text" train "$M" --data "$T/ds_$name" $FAST \
        -o "$T/never.onnx"
    expect "$rc" "$T/ds_$name/train/$text" bench --data "$T/ds_$name" $BENCH
    expect "$rc" "$T/$name/$text" eval "$TM" --data "$T/$name"
    absent "$T/never.onnx"
}

row="token and label counts differ"
mkdata mism 'play some jazz\n' 'O O\n' 'play_music\n'
data_cmds 2 "seq.out:1: 2 labels for 3 tokens in " mism
mkdata lines 'play some jazz\nwake me\n' 'O O B-genre\n' 'play_music\nset_alarm\n'
data_cmds 2 "seq.in has 2 lines but " lines

row="unknown labels at eval"
mkdir -p "$T/unk"
for f in seq.in seq.out label; do head -n 5 "$D/test/$f" >"$T/unk/$f"; done
sed -i '1s/.*/frobnicate_intent/' "$T/unk/label"
sed -i '2s/^[^ ]*/B-frob_slot/' "$T/unk/seq.out"
expect 0 "intent accuracy" eval "$TM" --data "$T/unk"
if [ "$(wc -l <"$T/err")" -eq 1 ] &&
    grep -q "^attune: eval: note: $T/unk: 1 intents and 1 slot labels unknown to the training split (B-frob_slot frobnicate_intent)" "$T/err"; then
    ok
else
    fail "unknown labels: want one note naming them on stderr"
fi
# A label with an escape byte in it is named escaped.
sed -i "1s/.*/$(printf 'frob\033[2Jx')/" "$T/unk/label"
expect 0 "intent accuracy" eval "$TM" --data "$T/unk"
if grep -qF 'unknown to the training split (B-frob_slot frob\x1b[2Jx)' "$T/err" &&
    ! grep -q "$(printf '\033')" "$T/err"; then
    ok
else
    fail "unknown labels: the note must escape control bytes: $(cat -v "$T/err")"
fi

row="empty data files"
mkdata empty '' '' ''
data_cmds 2 "seq.in: empty file (no tokens)" empty
IN="$T/empty/seq.in" expect 0 "" predict "$TM"
[ -s "$T/out" ] && fail "predict on an empty stdin printed something" || ok
mkdata emptyout 'play jazz\n' '' 'play_music\n'
expect 2 "emptyout/seq.out: empty file (no tokens)" eval "$TM" --data "$T/emptyout"
expect 2 "empty/seq.in: empty file (no tokens)" train "$M" --data "$D" $FAST \
    --unlabelled "$T/empty/seq.in" -o "$T/never.onnx"
rm "$T/emptyout/seq.out"
expect 2 "emptyout/seq.out: cannot open: No such file or directory" eval "$TM" --data "$T/emptyout"

row="huge line (> 1 MiB)"
mkdir -p "$T/huge"
head -c 2097152 /dev/zero | tr '\0' 'a' >"$T/huge/seq.in"
echo >>"$T/huge/seq.in"
echo O >"$T/huge/seq.out"
echo play_music >"$T/huge/label"
data_cmds 2 "seq.in:1: line of 2097152 bytes (limit 1048576)" huge
IN="$T/huge/seq.in" expect 2 "stdin:1: line of 2097152 bytes (limit 1048576)" predict "$TM"
expect 2 "huge/seq.in:1: line of 2097152 bytes" train "$M" --data "$D" $FAST \
    --unlabelled "$T/huge/seq.in" -o "$T/never.onnx"
mkdir -p "$T/long"
LC_ALL=C awk 'BEGIN { for (i = 0; i < 200000; i++) printf "play "; print "" }' >"$T/long/seq.in"
LC_ALL=C awk 'BEGIN { for (i = 0; i < 200000; i++) printf "O "; print "" }' >"$T/long/seq.out"
echo play_music >"$T/long/label"
expect 2 "long/seq.in:1: 200000 tokens (limit 512)" eval "$TM" --data "$T/long"
IN="$T/long/seq.in" expect 2 "stdin:1: 200000 tokens (limit 512)" predict "$TM"
expect 2 "sentence 1:1: 600 tokens (limit 512)" predict "$TM" \
    "$(LC_ALL=C awk 'BEGIN { for (i = 0; i < 600; i++) printf "play "; print "" }')"

row="invalid UTF-8"
mkdata utf_in 'play \377 jazz\n' 'O O O\n' 'play_music\n'
data_cmds 2 "seq.in:1: invalid UTF-8 at byte 6 of the line" utf_in
mkdata utf_out 'play jazz\n' 'O B-g\303\n' 'play_music\n'
expect 2 "utf_out/seq.out:1: invalid UTF-8 at byte 6 of the line" eval "$TM" --data "$T/utf_out"
mkdata utf_label 'play jazz\n' 'O B-genre\n' 'play_mu\355\240\200sic\n'
expect 2 "utf_label/label:1: invalid UTF-8 at byte 8 of the line" eval "$TM" --data "$T/utf_label"
expect 2 "sentence 1:1: invalid UTF-8 at byte 6 of the line" predict "$TM" "$(printf 'play \377')"
printf 'play jazz\nplay \300\200 jazz\n' >"$T/utf_stdin"
IN="$T/utf_stdin" expect 2 "stdin:2: invalid UTF-8" predict "$TM"
mkdata nul 'play \000jazz\n' 'O B-genre\n' 'play_music\n'
expect 2 "nul/seq.in:1: NUL byte in a text file" eval "$TM" --data "$T/nul"

# ==== folders ====
row="missing folders"
expect 2 "/nonexistent/data: no such folder" build --data /nonexistent/data -o "$T/never.onnx"
expect 2 "/nonexistent/data: no such folder" train "$M" --data /nonexistent/data $FAST \
    -o "$T/never.onnx"
expect 2 "/nonexistent/data: no such folder" eval "$TM" --data /nonexistent/data
expect 2 "/nonexistent/data: no such folder" bench --data /nonexistent/data $BENCH
expect 2 "$D/nope: no such folder" eval "$TM" --data "$D" --split nope
mkdir -p "$T/notrain"
expect 2 "$T/notrain/train: no such folder" build --data "$T/notrain" -o "$T/never.onnx"
expect 2 "-o /nonexistent/m.onnx: the folder /nonexistent does not exist" build --data "$D" \
    -o /nonexistent/m.onnx
expect 2 "-o /nonexistent/t.onnx: the folder /nonexistent does not exist" train "$M" \
    --data "$D" $FAST -o /nonexistent/t.onnx
expect 2 "--heatmap /nonexistent/h.svg: the folder /nonexistent does not exist" predict "$TM" \
    --heatmap /nonexistent/h.svg "play jazz"
expect 2 "--metrics /nonexistent/m.jsonl: the folder /nonexistent does not exist" train "$M" \
    --data "$D" $FAST -o "$T/never.onnx" --metrics /nonexistent/m.jsonl
expect 2 "--plot /nonexistent/p.svg: the folder /nonexistent does not exist" train "$M" \
    --data "$D" $FAST -o "$T/never.onnx" --plot /nonexistent/p.svg
expect 2 "-o /nonexistent/g.dot: the folder /nonexistent does not exist" inspect "$M" \
    -o /nonexistent/g.dot
absent "$T/never.onnx"

# ==== unwritable outputs (root writes through chmod, so: a file as the parent, /proc) ====
row="unwritable output path"
F="$T/a_file"
expect 2 "-o $F/m.onnx: $F is a file, not a folder" build --data "$D" -o "$F/m.onnx"
expect 2 "-o $F/t.onnx: $F is a file, not a folder" train "$M" --data "$D" $FAST -o "$F/t.onnx"
expect 2 "--checkpoint-dir $F/ck: $F is a file, not a folder" train "$M" --data "$D" $FAST \
    -o "$T/never.onnx" --checkpoint-dir "$F/ck"
expect 2 "-o $F/g.dot: $F is a file, not a folder" inspect "$M" --dot -o "$F/g.dot"
expect 2 "--heatmap $F/h.svg: $F is a file, not a folder" predict "$TM" --heatmap "$F/h.svg" \
    "play jazz"
expect 2 "--metrics $F/m.jsonl: $F is a file, not a folder" train "$M" --data "$D" $FAST \
    -o "$T/never.onnx" --metrics "$F/m.jsonl"
expect 2 "--plot $F/sub/p.svg: $F is a file, not a folder" train "$M" --data "$D" $FAST \
    -o "$T/never.onnx" --plot "$F/sub/p.svg"
if [ "$HAVE_NPY" = 1 ]; then
    expect 2 "--output-dir $F/out: $F is a file, not a folder" run "$M" \
        $(feed tok.npy mask.npy len.npy tr.npy) --output-dir "$F/out"
fi
[ -f "$F" ] && [ ! -s "$F" ] && ok || fail "$F was changed"
expect 1 "/proc/m.onnx: cannot create a temporary file: No such file or directory" build \
    --data "$D" $TINY -o /proc/m.onnx
expect 1 "/proc/t.onnx: cannot create a temporary file" train "$M" --data "$D" $FAST \
    -o /proc/t.onnx
expect 1 "/proc/g.dot: No such file or directory" inspect "$M" -o /proc/g.dot
expect 1 "--heatmap /proc/h.svg: No such file or directory" predict "$TM" --heatmap /proc/h.svg \
    "play jazz"
expect 2 "-o $T/a_dir: is a folder; give the name of a file" build --data "$D" $TINY -o "$T/a_dir"
expect 2 "-o $T/a_dir: is a folder; give the name of a file" train "$M" --data "$D" $FAST \
    -o "$T/a_dir"
expect 2 "-o $T/a_dir: is a folder; give the name of a file" inspect "$M" -o "$T/a_dir"
expect 2 "--heatmap $T/a_dir: is a folder; give the name of a file" predict "$TM" \
    --heatmap "$T/a_dir" "play jazz"
[ -z "$(ls -A "$T/a_dir")" ] && ok || fail "something was written into $T/a_dir"
absent "$T/never.onnx"
no_temp "$T"

# ==== a full disk ====
row="full disk (/dev/full)"
# The output rows write to a node of our own like /dev/full where we may make one (root): a
# regression that renamed over the node would replace that one, not the system's.
FULL=/dev/full
mknod "$T/full" c 1 7 2>/dev/null && FULL="$T/full"
if [ -c /dev/full ]; then
    expect 1 "writing $FULL failed: No space left on device" inspect "$M" --dot -o "$FULL"
    expect 1 "writing $FULL failed: No space left on device" inspect "$M" -o "$FULL"
    expect 1 "$FULL: write failed: No space left on device" build --data "$D" $TINY \
        -o "$FULL"
    expect 1 "$FULL: write failed: No space left on device" train "$M" --data "$D" $FAST \
        -o "$FULL"
    expect 1 "--heatmap $FULL: writing failed: No space left on device" predict "$TM" \
        --heatmap "$FULL" "play jazz"
    expect 1 "--metrics $FULL: writing failed: No space left on device" train "$M" --data "$D" \
        $FAST -o "$T/never.onnx" --metrics "$FULL"
    absent "$T/never.onnx"
    # The plot is drawn after the model is saved: the model is whole, the plot is lost.
    expect 1 "--plot $FULL: writing failed: No space left on device" train "$M" --data "$D" \
        $FAST -o "$T/plotted.onnx" --plot "$FULL"
    "$A" inspect "$T/plotted.onnx" --summary >/dev/null 2>&1 && ok || fail "--plot lost the model"
    rm -f "$T/plotted.onnx"
    still_device "$FULL"
    still_device /dev/full
    # stdout on a full disk
    for args in "inspect $M --dot" "inspect $M --summary" "predict $TM play" \
        "predict $TM --attention play" "eval $TM --data $D/train --json" \
        "eval $TM --data $D/train" "build --data $D $TINY -o $T/full_stdout.onnx" \
        "train $M --data $D $FAST -o $T/full_stdout_t.onnx" "bench $BENCH" "bench --infer $BENCH"; do
        "$A" $args >/dev/full 2>"$T/err"
        rc=$?
        if [ $rc -eq 1 ] && [ "$(wc -l <"$T/err")" -eq 1 ] &&
            grep -q 'writing to stdout failed: No space left on device' "$T/err"; then
            ok
        else
            fail "attune $args >/dev/full: exit $rc"
        fi
    done
    if [ "$HAVE_NPY" = 1 ]; then
        "$A" run "$M" $(feed tok.npy mask.npy len.npy tr.npy) --output-dir "$T/run_full" >/dev/full 2>"$T/err"
        [ $? -eq 1 ] && grep -q 'writing to stdout failed' "$T/err" && ok ||
            fail "attune run >/dev/full: want exit 1"
    fi
else
    echo "test_bad_input: no /dev/full; skipping the /dev/full rows"
fi

row="full disk (tiny tmpfs)"
# tiny SIZE: mounts a tmpfs of SIZE at $T/tiny_SIZE and echoes its path (the caller adds it
# to MOUNTED: this runs in a subshell), or echoes nothing.
tiny() {
    local d="$T/tiny_$1"
    mkdir -p "$d"
    mount -t tmpfs -o "size=$1" tmpfs "$d" 2>/dev/null && echo "$d"
}
d16=$(tiny 16k)
if [ -n "$d16" ]; then
    MOUNTED+=("$d16")
    expect 1 "$d16/m.onnx: write failed: No space left on device" build --data "$D" $TINY \
        -o "$d16/m.onnx"
    expect 1 "$d16/t.onnx: write failed: No space left on device" train "$M" --data "$D" $FAST \
        -o "$d16/t.onnx"
    expect 1 "write failed: No space left on device" train "$M" --data "$D" $FAST \
        -o "$T/never.onnx" --checkpoint-dir "$d16/ck"
    [ -z "$(ls -A "$d16/ck")" ] && ok || fail "a partial checkpoint was left: $(ls -A "$d16/ck")"
    absent "$d16/m.onnx" "$d16/t.onnx" "$T/never.onnx"
    no_temp "$d16"
    d4=$(tiny 4k)
    MOUNTED+=("$d4")
    echo old >"$d4/g.dot"
    expect 1 "writing $d4/g.dot failed: No space left on device" inspect "$M" --dot -o "$d4/g.dot"
    [ "$(cat "$d4/g.dot")" = old ] && ok || fail "a failed inspect -o changed the file there"
    rm "$d4/g.dot"
    expect 1 "--heatmap $d4/h.svg: writing failed: No space left on device" predict "$TM" \
        --attention --heatmap "$d4/h.svg" "play some jazz for me"
    absent "$d4/h.svg"
    if [ "$HAVE_NPY" = 1 ]; then
        # Room for one output: the next one fails; whatever is there is whole.
        expect 1 "write failed: No space left on device" run "$M" \
            $(feed tok.npy mask.npy len.npy tr.npy) --output-dir "$d4/o"
        if python3 -c '
import glob, sys, numpy as np
for f in glob.glob(sys.argv[1] + "/*"):
    assert f.endswith(".npy"), f
    np.load(f)
' "$d4/o"; then ok; else fail "run left a partial .npy file"; fi
    fi
    no_temp "$d4"
else
    echo "test_bad_input: cannot mount a tmpfs here (not root, or no CAP_SYS_ADMIN); the full" \
        "disk is covered by the /dev/full rows only"
fi

echo "test_bad_input: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
