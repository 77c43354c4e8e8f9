#!/usr/bin/env bash
# valgrind memcheck on `attune` smoke runs: train (every phase, checkpoints, metrics, plot, two
# OpenMP threads), resume, predict, eval, and a few failure paths (where leaks hide). Any
# memcheck error (invalid access, uninitialised value, bad free) or a definitely or indirectly
# lost block fails. "Possibly lost" and "still reachable" blocks are not counted: OpenMP's and
# OpenBLAS's thread pools keep their memory until the process ends, by design.
# tests/valgrind.supp holds suppressions for reports outside attune (glibc's loader in CUDA
# builds); valgrind --gen-suppressions=all shows the entries for new ones.
#
# Skipped (exit 77) without valgrind (scripts/install-deps.sh should install it) and on a
# sanitizer build. About a minute; the binary in ATTUNE_BUILD is whatever
# the build type is (RelWithDebInfo in CI: optimized, with line numbers in the reports).
set -u
B=${ATTUNE_BUILD:?set ATTUNE_BUILD to the build folder}
S=${ATTUNE_SRC:?set ATTUNE_SRC to the repository}
A="$B/attune"
[ -x "$A" ] || { echo "test_valgrind: no attune binary at $A" >&2; exit 1; }
if ! command -v valgrind >/dev/null 2>&1; then
    echo "test_valgrind: valgrind not found; skipping"
    exit 77
fi
# memcheck cannot run a sanitizer build (both want the shadow memory).
if grep -qa '__asan_init\|__tsan_init\|__msan_init' "$A"; then
    echo "test_valgrind: $A is built with a sanitizer; skipping"
    exit 77
fi
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
VG=(valgrind --tool=memcheck --leak-check=full --errors-for-leak-kinds=definite,indirect
    --show-leak-kinds=definite,indirect --error-exitcode=99 --track-origins=no --num-callers=30)
[ -f "$S/tests/valgrind.supp" ] && VG+=(--suppressions="$S/tests/valgrind.supp")
passed=0
failed=0
n=0

# vg RC NAME ARGS...: runs attune ARGS under memcheck; exit RC wanted and no memcheck error.
vg() {
    local want=$1 name=$2
    shift 2
    n=$((n + 1))
    local log="$T/vg$n.log"
    "${VG[@]}" --log-file="$log" "$A" "$@" >"$T/out" 2>"$T/err" <"${IN:-/dev/null}"
    local rc=$?
    local errs
    errs=$(sed -n 's/.*ERROR SUMMARY: \([0-9]*\) errors.*/\1/p' "$log" | tail -n 1)
    if [ "$rc" -eq "$want" ] && [ "${errs:-x}" = 0 ]; then
        passed=$((passed + 1))
        echo "test_valgrind: $name: clean (exit $rc)"
    else
        failed=$((failed + 1))
        echo "FAIL: $name: exit $rc (want $want), memcheck errors: ${errs:-none reported}" >&2
        echo "  stderr: $(head -c 400 "$T/err")" >&2
        grep -v '^==[0-9]*== *$' "$log" | sed -n '/Invalid\|uninitialised\|definitely lost\|indirectly lost\|Mismatched\|free/,+14p' |
            head -n 80 >&2
    fi
}

SAMPLE="$S/data/sample"
TINY="--kind bilstm --layers 1 --emb 8 --dim 8 --attn-size 8 --gen-dim 8 --gen-heads 2
      --disc-channels 4 --disc-hidden 4"

# train: builds the model, runs the three phases (20 steps each), with checkpoints, metrics and
# a plot, on two OpenMP threads.
vg 0 "train" train --data "$SAMPLE" $TINY -o "$T/t.onnx" --epochs0 1 --epochs1 1 --epochs2 1 \
    --max-steps 20 --batch 8 --threads 2 --progress lines --checkpoint-dir "$T/ck" \
    --checkpoint-every 7 --metrics "$T/m.jsonl" --plot "$T/c.svg"
ck=$(ls "$T/ck" 2>/dev/null | grep step | head -n 1)
if [ -n "$ck" ]; then
    vg 0 "train --resume" train --data "$SAMPLE" -o "$T/r.onnx" --resume "$T/ck/$ck" \
        --epochs0 1 --epochs1 1 --epochs2 1 --max-steps 5 --batch 8 --threads 1 --progress none
else
    failed=$((failed + 1))
    echo "FAIL: train wrote no step checkpoint" >&2
fi
vg 0 "predict --attention --heatmap" predict "$T/t.onnx" --attention --heatmap "$T/h.svg" \
    --threads 2 "book a table for two at seven" "play some jazz"
printf 'wake me up at seven\n\nwhat is the weather in paris\n' >"$T/stdin"
IN="$T/stdin" vg 0 "predict (stdin)" predict "$T/t.onnx" --threads 1
vg 0 "eval --json" eval "$T/t.onnx" --data "$SAMPLE/test" --json --threads 2

# Failure paths.
head -c 5000 "$T/t.onnx" >"$T/trunc.onnx"
vg 2 "predict on a truncated model" predict "$T/trunc.onnx" "play jazz"
mkdir -p "$T/bad"
printf 'play some jazz\nwake me up\n' >"$T/bad/seq.in"
printf 'O O B-genre\nO O\n' >"$T/bad/seq.out"
printf 'play_music\nset_alarm\n' >"$T/bad/label"
vg 2 "eval on mismatched data" eval "$T/t.onnx" --data "$T/bad"
vg 2 "predict with invalid UTF-8" predict "$T/t.onnx" "$(printf 'play \377')"
if [ -c /dev/full ]; then
    vg 1 "inspect to a full disk" inspect "$T/t.onnx" --dot -o /dev/full
fi

echo "test_valgrind: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
