#!/usr/bin/env bash
# Builds the libFuzzer harnesses in fuzz/ with clang, AddressSanitizer and UBSan, and runs each
# for a bounded time on its seed corpus. Any crash, leak, sanitizer report, timeout or
# out-of-memory fails the run. One line per target.
#
#   scripts/fuzz.sh [target...]   targets: model_load dataset npy (default: all)
#   scripts/fuzz.sh --seeds       regenerate fuzz/corpus/model_load/gen_*.onnx (fuzz/make_seeds.c)
#
# Environment: FUZZ_SECONDS (per target, default 60), FUZZ_BUILD (default build-fuzz),
# FUZZ_JOBS (parallel compiles, default nproc), FUZZ_CC (default clang), FUZZ_BUILD_ONLY=1.
# Seeds are fuzz/corpus/<target>; inputs that once found a bug are kept in fuzz/regress/<target>
# and run first. New inputs the fuzzer finds go to $FUZZ_BUILD/corpus/<target>, not into the
# repo; a failing input is kept as $FUZZ_BUILD/artifacts/<target>-crash-... and the log as
# $FUZZ_BUILD/fuzz_<target>.log. Reproduce with: $FUZZ_BUILD/fuzz_<target> FILE
set -euo pipefail
cd "$(dirname "$0")/.."

CC=${FUZZ_CC:-clang}
B=${FUZZ_BUILD:-build-fuzz}
SECS=${FUZZ_SECONDS:-60}
JOBS=${FUZZ_JOBS:-$(nproc)}
ALL_TARGETS=(model_load dataset npy)

seeds=0
targets=()
for a in "$@"; do
    case "$a" in
    --seeds) seeds=1 ;;
    model_load | dataset | npy) targets+=("$a") ;;
    *)
        echo "fuzz.sh: unknown argument '$a' (targets: ${ALL_TARGETS[*]}, or --seeds)" >&2
        exit 2
        ;;
    esac
done
# --seeds alone only regenerates the seeds.
if [ ${#targets[@]} -eq 0 ] && [ $seeds -eq 0 ]; then targets=("${ALL_TARGETS[@]}"); fi

if ! command -v "$CC" >/dev/null; then
    echo "fuzz.sh: $CC not found (scripts/install-deps.sh installs clang)" >&2
    exit 1
fi
cblas_h=$(find /usr/include -name cblas.h 2>/dev/null | sort | head -n1)
if [ -z "$cblas_h" ]; then
    echo "fuzz.sh: cblas.h not found: install libopenblas-dev" >&2
    exit 1
fi

mkdir -p "$B/proto" "$B/obj" "$B/artifacts" "$B/corpus"
B=$(cd "$B" && pwd)
if [ ! -e "$B/proto/onnx.pb-c.c" ] || [ graph/onnx.proto -nt "$B/proto/onnx.pb-c.c" ]; then
    protoc-c --c_out="$B/proto" --proto_path=graph onnx.proto
fi

# The library is built as the fuzz targets see it: coverage-instrumented, with both
# sanitizers, aborting on the first UBSan report so that libFuzzer counts it as a crash.
CFLAGS="-std=c11 -D_POSIX_C_SOURCE=200809L -g -O1 -fno-omit-frame-pointer -fopenmp
 -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all
 -Wall -Wextra -Wno-missing-field-initializers
 -I$PWD/include -I$PWD -I$PWD/tools -I$B/proto -I$(dirname "$cblas_h")"
LIBS="-lopenblas -lprotobuf-c -lm"

shopt -s nullglob
lib_srcs=(graph/*.c ops/*.c autodiff/*.c runtime/*.c runtime/cpu/*.c models/*.c)
[ -e tools/npy.c ] && lib_srcs+=(tools/npy.c)
lib_srcs+=("$B/proto/onnx.pb-c.c")
shopt -u nullglob

# A generated Makefile, so that reruns recompile only what changed (headers included); a
# change of compiler or flags rebuilds everything.
mk="$B/Makefile"
flags_now="$CC $(echo $CFLAGS)"
if [ "$(cat "$B/flags" 2>/dev/null)" != "$flags_now" ]; then
    rm -f "$B"/obj/*.o "$B"/obj/*.d
    echo "$flags_now" >"$B/flags"
fi
{
    echo "CC := $CC"
    echo "CFLAGS := $(echo $CFLAGS)"
    echo "LIBS := $LIBS"
    objs=()
    for s in "${lib_srcs[@]}"; do
        case "$s" in
        /*) src=$s o="$B/obj/proto_$(basename "$s" .c).o" ;;
        *) src=$PWD/$s o="$B/obj/$(echo "${s%.c}" | tr / _).o" ;;
        esac
        objs+=("$o")
        printf '%s: %s\n\t$(CC) $(CFLAGS) -MMD -MP -c $< -o $@\n' "$o" "$src"
    done
    echo "LIB_OBJS := ${objs[*]}"
    for t in "${ALL_TARGETS[@]}"; do
        [ -e "fuzz/fuzz_$t.c" ] || continue
        printf '%s/obj/fuzz_%s.o: %s/fuzz/fuzz_%s.c\n\t$(CC) $(CFLAGS) -MMD -MP -c $< -o $@\n' \
            "$B" "$t" "$PWD" "$t"
        printf '%s/fuzz_%s: %s/obj/fuzz_%s.o $(LIB_OBJS)\n' "$B" "$t" "$B" "$t"
        printf '\t$(CC) -fsanitize=fuzzer,address,undefined -fopenmp $^ $(LIBS) -o $@\n'
    done
    printf '%s/obj/make_seeds.o: %s/fuzz/make_seeds.c\n\t$(CC) $(CFLAGS) -MMD -MP -c $< -o $@\n' \
        "$B" "$PWD"
    printf '%s/make_seeds: %s/obj/make_seeds.o $(LIB_OBJS)\n' "$B" "$B"
    printf '\t$(CC) -fsanitize=address,undefined -fopenmp $^ $(LIBS) -o $@\n'
    echo "-include $B/obj/*.d"
} >"$mk"
want=()
for t in ${targets[@]+"${targets[@]}"}; do
    if [ ! -e "fuzz/fuzz_$t.c" ]; then
        echo "fuzz $t: SKIPPED (fuzz/fuzz_$t.c does not exist)"
        continue
    fi
    want+=("$B/fuzz_$t")
done
if [ $seeds -eq 1 ]; then want+=("$B/make_seeds"); fi
[ ${#want[@]} -eq 0 ] && exit 0
if ! make -s -f "$mk" -j"$JOBS" "${want[@]}" >"$B/build.log" 2>&1; then
    cat "$B/build.log" >&2
    echo "fuzz: BUILD FAILED (log: $B/build.log)" >&2
    exit 1
fi

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# Kernels run on one thread: OpenMP pools only slow the fuzzer down.
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1

if [ $seeds -eq 1 ]; then
    mkdir -p fuzz/corpus/model_load
    "$B/make_seeds" fuzz/corpus/model_load
fi
if [ "${FUZZ_BUILD_ONLY:-0}" = 1 ] || [ ${#targets[@]} -eq 0 ]; then exit 0; fi

failed=0
for t in "${targets[@]}"; do
    [ -e "fuzz/fuzz_$t.c" ] || continue
    work="$B/corpus/$t"
    log="$B/fuzz_$t.log"
    mkdir -p "$work" "fuzz/corpus/$t"
    dict=()
    [ -e "fuzz/$t.dict" ] && dict=(-dict="fuzz/$t.dict")
    # Inputs that once failed (fuzz/regress/<target>) run first, with the seeds.
    seeds_in=("fuzz/corpus/$t")
    [ -d "fuzz/regress/$t" ] && seeds_in+=("fuzz/regress/$t")
    set +e
    # New inputs go into the first corpus folder (the build's), seeds are only read.
    "$B/fuzz_$t" -max_total_time="$SECS" -rss_limit_mb=2048 -malloc_limit_mb=2048 -timeout=30 \
        -max_len=65536 -print_final_stats=1 -artifact_prefix="$B/artifacts/$t-" "${dict[@]}" \
        "$work" "${seeds_in[@]}" >"$log" 2>&1
    rc=$?
    set -e
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n1 | cut -d' ' -f2 || true)
    if [ $rc -eq 0 ] && ! grep -q -E '^(==[0-9]+==ERROR|SUMMARY: (Address|Undefined|Leak)|.*runtime error:)' "$log"; then
        echo "fuzz $t: ok, ${runs:-?} runs in ${SECS} s, coverage ${cov:-?} edges, corpus $(ls "$work" | wc -l) (seeds $(ls "fuzz/corpus/$t" | wc -l))"
    else
        failed=1
        art=$(grep -o "$B/artifacts/$t-[a-z-]*[0-9a-f]*" "$log" | tail -n1 || true)
        echo "fuzz $t: FAILED (exit $rc) after ${runs:-?} runs; input: ${art:-none saved}; log: $log"
        grep -E 'ERROR|runtime error|SUMMARY|^ *#[0-9]' "$log" |
            grep -v -E 'in fuzzer::|libc_start|in _start|in main ' | head -n 20 | sed 's/^/    /' || true
    fi
done
exit $failed
