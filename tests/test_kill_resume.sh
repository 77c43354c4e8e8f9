#!/usr/bin/env bash
# Crash-safe training: `attune train` killed with SIGKILL at random moments (seeded), many of
# them while a checkpoint is being written, then resumed from its last checkpoint.
#
#   A. Checkpoints after every step (--checkpoint-every 1), at least 10 kills, half of them
#      aimed at a checkpoint write (the process is seen holding an open file in the
#      checkpoint folder, then killed). After each kill every *.ckpt.onnx on disk must load
#      (`attune inspect --summary`), and nothing else may be in the folder but, rarely, a
#      complete stray file from the instant between naming a finished file and renaming it
#      (graph/io.c writes through an anonymous O_TMPFILE where the file system has it; a
#      named temporary file, as before, was left by about half of the kills). Then a resume
#      from the last checkpoint runs to the end, and its last checkpoint and its -o model must
#      be byte-identical to an uninterrupted run's: the kills land mid-epoch and across the
#      phase boundaries (where the best model so far is restored), so this needs the whole
#      training state in every checkpoint.
#   B. Checkpoints at epoch ends only, one phase, a few kills: the resumed chain must write
#      byte-identical checkpoints (parameters and optimizer state) to an uninterrupted run.
#   C. All three phases with early stopping and half the labels (so the unlabelled stream
#      feeds D): resumed from mid-epoch checkpoints in each phase, the final checkpoint and
#      the -o model are byte-identical to the uninterrupted run's.
#
# Environment: ATTUNE_BUILD, ATTUNE_SRC; ATTUNE_KILL_SEED (default 20261122).
set -u
B=${ATTUNE_BUILD:?set ATTUNE_BUILD to the build folder}
S=${ATTUNE_SRC:?set ATTUNE_SRC to the repository}
A="$B/attune"
[ -x "$A" ] || { echo "test_kill_resume: no attune binary at $A" >&2; exit 1; }
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
RANDOM=${ATTUNE_KILL_SEED:-20261122}
passed=0
failed=0
fail() {
    failed=$((failed + 1))
    echo "FAIL: $*" >&2
}
ok() { passed=$((passed + 1)); }

# A small corpus (96 training sentences: 6 steps an epoch at batch 16) and a tiny model, so
# one run takes about a second and most of it goes into writing checkpoints.
for split in train valid; do
    mkdir -p "$T/data/$split"
    n=96
    [ $split = valid ] && n=32
    for f in seq.in seq.out label; do head -n $n "$S/data/sample/$split/$f" >"$T/data/$split/$f"; done
done
TINY="--kind bilstm --layers 1 --emb 8 --dim 8 --attn-size 8 --gen-dim 8 --gen-heads 2
      --disc-channels 4 --disc-hidden 4"
"$A" build --data "$T/data" $TINY -o "$T/m.onnx" >/dev/null || { echo "FAIL: build" >&2; exit 1; }
RUN="--data $T/data --batch 16 --patience 0 --threads 1 --seed 7 --progress none"

# Whether this file system gives anonymous temporary files (then no kill leaves a partial
# file behind, and a stray file can only be a complete one).
tmpfile=unknown
if command -v python3 >/dev/null 2>&1; then
    if python3 -c 'import os, sys; os.close(os.open(sys.argv[1], os.O_TMPFILE | os.O_WRONLY))' \
        "$T" 2>/dev/null; then tmpfile=yes; else tmpfile=no; fi
fi

# latest DIR: the last checkpoint by name (phaseP-epochEEE[-stepSSSSSS].ckpt.onnx sorts in
# training order: '-' before '.').
latest() {
    (cd "$1" 2>/dev/null && ls -1 | grep '\.ckpt\.onnx$' | LC_ALL=C sort | tail -n 1)
}

# check_dir DIR WHEN: every checkpoint loads; anything else is a stray temporary file.
declare -A loaded
strays=0
check_dir() {
    local d=$1 when=$2 f key bad=0
    [ -d "$d" ] || return 0
    for f in "$d"/*; do
        [ -e "$f" ] || continue
        case $f in
        *.ckpt.onnx)
            key=$(stat -c '%i %s %Y' "$f")
            [ "${loaded[$f]:-}" = "$key" ] && continue
            if [ ! -s "$f" ] || ! "$A" inspect --summary "$f" >/dev/null 2>"$T/insp_err"; then
                fail "$when: checkpoint $(basename "$f") does not load: $(head -c 300 "$T/insp_err")"
                bad=1
            else
                loaded[$f]=$key
            fi
            ;;
        *.ckpt.onnx.tmp*)
            strays=$((strays + 1))
            if [ "$tmpfile" = yes ] && ! "$A" inspect --summary "$f" >/dev/null 2>&1; then
                fail "$when: a partial temporary file was left: $(basename "$f")"
                bad=1
            else
                echo "test_kill_resume: $when: stray temporary file $(basename "$f")" \
                    "(tmpfile: $tmpfile)"
            fi
            rm -f "$f"
            ;;
        *)
            fail "$when: unexpected file in the checkpoint folder: $(basename "$f")"
            bad=1
            ;;
        esac
    done
    [ $bad -eq 0 ] && ok
}

# start DIR OUT EXTRA...: starts training in the background (from the last checkpoint in DIR
# when there is one); sets pid.
start() {
    local d=$1 out=$2
    shift 2
    local last
    last=$(latest "$d")
    if [ -n "$last" ]; then
        "$A" train $RUN "$@" -o "$out" --checkpoint-dir "$d" --resume "$d/$last" \
            >"$T/run_out" 2>"$T/run_err" &
    else
        "$A" train "$T/m.onnx" $RUN "$@" -o "$out" --checkpoint-dir "$d" \
            >"$T/run_out" 2>"$T/run_err" &
    fi
    pid=$!
}

# in_write PID DIR: the process holds an open file in DIR (a checkpoint being written).
in_write() {
    [ -n "$(find /proc/$1/fd -lname "$2/*" -print -quit 2>/dev/null)" ]
}

# finish DIR OUT EXTRA...: resumes (or starts) and runs to the end; exit 0 wanted.
finish() {
    local d=$1 out=$2
    shift 2
    start "$d" "$out" "$@"
    if wait $pid 2>/dev/null; then ok; else fail "the final resume in $d failed: $(head -c 400 "$T/run_err")"; fi
}

# ---- A: checkpoints after every step, kills aimed at checkpoint writes ----
SCHED_A="--epochs0 12 --epochs1 1 --epochs2 1 --checkpoint-every 1"
t0=$(date +%s%N)
"$A" train "$T/m.onnx" $RUN $SCHED_A -o "$T/plain.onnx" >/dev/null 2>&1
t1=$(date +%s%N)
"$A" train "$T/m.onnx" $RUN $SCHED_A -o "$T/full.onnx" --checkpoint-dir "$T/full_ck" \
    >/dev/null 2>&1
t2=$(date +%s%N)
plain_ms=$(((t1 - t0) / 1000000))
full_ms=$(((t2 - t1) / 1000000))
[ "$full_ms" -lt 100 ] && full_ms=100
if [ "$plain_ms" -lt "$full_ms" ]; then
    echo "test_kill_resume: a run takes ${full_ms} ms with a checkpoint every step, ${plain_ms}" \
        "ms without: about $((100 * (full_ms - plain_ms) / full_ms)) % of its time goes into" \
        "writing checkpoints"
else
    echo "test_kill_resume: a run takes ${full_ms} ms (${plain_ms} ms without checkpoints: the" \
        "machine is busy, timings are noise)"
fi

D="$T/ck_a"
kills=0
aimed=0
seen_in_write=0
tries=0
while [ $kills -lt 12 ] && [ $tries -lt 40 ]; do
    tries=$((tries + 1))
    start "$D" "$T/a.onnx" $SCHED_A
    delay_ms=$((10 + RANDOM % (full_ms * 3 / 4)))
    sleep "$(printf '0.%03d' $((delay_ms > 999 ? 999 : delay_ms)))"
    hit=0
    if [ $((tries % 2)) -eq 0 ] && [ -d /proc/$pid/fd ]; then
        # Aimed: wait (up to about half a second) until a checkpoint write is under way.
        aimed=$((aimed + 1))
        for _ in $(seq 1 500); do
            if in_write $pid "$D"; then
                hit=1
                break
            fi
            kill -0 $pid 2>/dev/null || break
        done
    fi
    kill -KILL $pid 2>/dev/null
    wait $pid 2>/dev/null
    rc=$?
    if [ $rc -eq 137 ]; then
        kills=$((kills + 1))
        seen_in_write=$((seen_in_write + hit))
    elif [ $rc -ne 0 ]; then
        fail "kill try $tries: train exited $rc: $(head -c 400 "$T/run_err")"
    else
        # It finished first: start over, so the kills keep landing inside training.
        rm -rf "$D"
    fi
    check_dir "$D" "after kill $kills (try $tries, exit $rc, $(latest "$D"))"
done
[ $kills -ge 10 ] && ok || fail "only $kills kills landed (want at least 10)"
# With O_TMPFILE a file gets a temporary name only when it replaces one (a resumed epoch
# rewriting its checkpoints), for the two system calls between link and rename: one stray in
# a dozen kills is already unlikely, two mean files are named while they are written.
if [ "$tmpfile" = yes ] && [ $strays -gt 1 ]; then
    fail "$strays stray temporary files after $kills kills"
else
    ok
fi
echo "test_kill_resume: A: $kills kills ($aimed aimed at a checkpoint write, $seen_in_write" \
    "seen with a file of the checkpoint folder open when killed); $(ls "$D" 2>/dev/null | wc -l) checkpoints," \
    "$strays stray temporary files (tmpfile: $tmpfile)"
finish "$D" "$T/a.onnx" $SCHED_A
check_dir "$D" "after the final resume"
last_a=$(latest "$T/full_ck")
if [ -n "$last_a" ] && cmp -s "$T/full_ck/$last_a" "$D/$last_a" && cmp -s "$T/full.onnx" "$T/a.onnx"; then
    ok
    echo "test_kill_resume: A: after $kills kills and resumes, the last checkpoint ($last_a) and" \
        "the -o model are byte-identical to the uninterrupted run's"
else
    fail "A: after the kills the resumed run's $last_a or -o model differs from the uninterrupted run's"
fi
if "$A" inspect --summary "$T/a.onnx" >/dev/null 2>&1 &&
    "$A" predict "$T/a.onnx" "play some jazz" >/dev/null 2>&1; then
    ok
else
    fail "the resumed run's model does not load"
fi

# ---- B: epoch-end checkpoints only, one phase: resumed == uninterrupted ----
SCHED_B="--phases 0 --epochs0 10"
"$A" train "$T/m.onnx" $RUN $SCHED_B -o "$T/ref_b.onnx" --checkpoint-dir "$T/ref_b" \
    >/dev/null 2>&1 || fail "the uninterrupted run B failed"
D="$T/ck_b"
kills_b=0
for try in $(seq 1 12); do
    [ $kills_b -ge 4 ] && break
    start "$D" "$T/b.onnx" $SCHED_B
    delay_ms=$((10 + RANDOM % 120))
    sleep "$(printf '0.%03d' $delay_ms)"
    kill -KILL $pid 2>/dev/null
    wait $pid 2>/dev/null
    rc=$?
    [ $rc -eq 137 ] && kills_b=$((kills_b + 1))
    [ $rc -ne 137 ] && [ $rc -ne 0 ] && fail "B try $try: train exited $rc"
    check_dir "$D" "B after try $try (exit $rc, $(latest "$D"))"
done
finish "$D" "$T/b.onnx" $SCHED_B
same=0
differ=""
for f in "$T/ref_b"/*.ckpt.onnx; do
    n=$(basename "$f")
    if cmp -s "$f" "$D/$n"; then same=$((same + 1)); else differ="$differ $n"; fi
done
if [ -z "$differ" ] && [ $same -eq 10 ]; then
    ok
    echo "test_kill_resume: B: $kills_b kills, then resumed: all $same epoch checkpoints" \
        "(parameters and optimizer state) are byte-identical to the uninterrupted run's"
else
    fail "B: resumed checkpoints differ from the uninterrupted run's:$differ ($same same)"
fi
if cmp -s "$T/ref_b.onnx" "$T/b.onnx"; then
    echo "test_kill_resume: B: the -o models (best on valid) are identical too"
else
    echo "test_kill_resume: B: the -o models (best on valid) differ: a resumed run selects" \
        "the best model among the epochs after its checkpoint only"
fi

# ---- C: three phases, early stopping, unlabelled stream: resumed mid-epoch == uninterrupted ----
SCHED_C="--epochs0 4 --epochs1 2 --epochs2 3 --patience 2 --label-fraction 0.5 --checkpoint-every 1"
RUN_C="--data $T/data --batch 16 --threads 1 --seed 7 --progress none"
"$A" train "$T/m.onnx" $RUN_C $SCHED_C -o "$T/ref_c.onnx" --checkpoint-dir "$T/ref_c" \
    >/dev/null 2>&1 || fail "the uninterrupted run C failed"
last_c=$(latest "$T/ref_c")
for c in phase0-epoch002-step000001 phase1-epoch002-step000002 phase2-epoch001; do
    rm -rf "$T/ck_c"
    mkdir -p "$T/ck_c"
    if ! cp "$T/ref_c/$c.ckpt.onnx" "$T/ck_c/"; then
        fail "C: the uninterrupted run wrote no $c.ckpt.onnx"
        continue
    fi
    "$A" train $RUN_C $SCHED_C -o "$T/c.onnx" --checkpoint-dir "$T/ck_c" \
        --resume "$T/ck_c/$c.ckpt.onnx" >/dev/null 2>"$T/run_err" ||
        fail "C: resuming $c failed: $(head -c 300 "$T/run_err")"
    if cmp -s "$T/ref_c/$last_c" "$T/ck_c/$last_c" && cmp -s "$T/ref_c.onnx" "$T/c.onnx"; then
        ok
        echo "test_kill_resume: C: resumed from $c: the final checkpoint ($last_c) and the -o" \
            "model are byte-identical to the uninterrupted run's"
    else
        fail "C: resumed from $c, the final checkpoint ($last_c) or the -o model differs"
    fi
done

echo "test_kill_resume: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
