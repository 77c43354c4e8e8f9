#!/usr/bin/env bash
# Installs the build to a temporary prefix and builds the examples against the
# installed tree only: through CMake (examples/CMakeLists.txt, find_package;
# shared and static) and through pkg-config (shared and static), and runs them
# (predict with a small model trained here through the installed C API). Then
# moves the prefix elsewhere and builds again (both package files are
# relocatable), and builds and runs README.md's embedding snippet on a model
# saved by the library. Exit 77 (skipped) when a tool it needs is missing or
# the build is a sanitizer build. KEEP_TMP=1 keeps the temporary directory.
set -euo pipefail

: "${ATTUNE_BUILD:?set ATTUNE_BUILD to the build directory}"
: "${ATTUNE_SRC:?set ATTUNE_SRC to the source directory}"
CC=${CC:-cc}
for tool in cmake pkg-config "$CC"; do
    if ! command -v "$tool" >/dev/null; then
        echo "SKIP: $tool not found"
        exit 77
    fi
done

if grep -q '^ATTUNE_SANITIZE:BOOL=ON' "$ATTUNE_BUILD/CMakeCache.txt" 2>/dev/null; then
    echo "SKIP: a sanitizer build (ATTUNE_SANITIZE=ON) cannot be linked by plain consumers"
    exit 77
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/attune-install.XXXXXX")
trap '[ -n "${KEEP_TMP:-}" ] || rm -rf "$TMP"' EXIT
LOG=$TMP/log
fail() {
    echo "FAIL: $*"
    if [ -s "$LOG" ]; then
        echo "--- last output:"
        tail -n 40 "$LOG"
    fi
    exit 1
}
run() { # run CMD...: quiet unless it fails
    "$@" >"$LOG" 2>&1 || fail "$*"
}

PREFIX=$TMP/prefix
run cmake --install "$ATTUNE_BUILD" --prefix "$PREFIX"
echo "installed to $PREFIX"

# ---- what the install must contain ----
pcfile=$(find "$PREFIX" -name attune.pc -path '*/pkgconfig/*' | head -n 1)
config=$(find "$PREFIX" -name attuneConfig.cmake | head -n 1)
[ -n "$pcfile" ] || fail "no attune.pc installed"
[ -n "$config" ] || fail "no attuneConfig.cmake installed"
LIBDIR=$(dirname "$(dirname "$pcfile")")
for f in include/attune/attune.h include/attune/status.h include/attune/tensor.h \
    include/attune/graph.h include/attune/ops.h include/attune/autodiff.h \
    include/attune/session.h include/attune/io.h; do
    [ -f "$PREFIX/$f" ] || fail "$f not installed"
done
[ -f "$LIBDIR/libattune.a" ] || fail "libattune.a not installed in $LIBDIR"
[ -e "$LIBDIR/libattune.so" ] || fail "libattune.so not installed in $LIBDIR"
[ -f "$(dirname "$config")/attuneConfigVersion.cmake" ] || fail "no attuneConfigVersion.cmake"
# Nothing in the package may point back at the source or build tree.
if grep -rlF -e "$ATTUNE_SRC" -e "$ATTUNE_BUILD" "$(dirname "$config")" "$pcfile"; then
    fail "package files refer to the source or build tree"
fi

# The version the headers, the library and CMake's package agree on.
ver_major=$(sed -n 's/^#define AT_VERSION_MAJOR *\([0-9]*\).*/\1/p' "$PREFIX/include/attune/attune.h")
ver_minor=$(sed -n 's/^#define AT_VERSION_MINOR *\([0-9]*\).*/\1/p' "$PREFIX/include/attune/attune.h")
ver_patch=$(sed -n 's/^#define AT_VERSION_PATCH *\([0-9]*\).*/\1/p' "$PREFIX/include/attune/attune.h")
VERSION=$ver_major.$ver_minor.$ver_patch
export PKG_CONFIG_PATH=$LIBDIR/pkgconfig
pc_version=$(pkg-config --modversion attune) || fail "pkg-config cannot read attune.pc"
[ "$pc_version" = "$VERSION" ] || fail "attune.pc says $pc_version, attune.h says $VERSION"

EXAMPLES=(train_graph)
[ -f "$ATTUNE_SRC/examples/predict.c" ] && EXAMPLES+=(predict)

# A small model for predict, trained for a few steps through the installed
# library's C API (at_nlu_model_from_split, at_nlu_train, at_nlu_save) by a
# helper built against the installed tree.
MODEL=
make_model() {
    [ -f "$ATTUNE_SRC/examples/predict.c" ] || return 0
    local data=$ATTUNE_SRC/data/sample
    [ -d "$data/train" ] || fail "no sample corpus at $data for the predict example"
    [ -f "$PREFIX/include/attune/nlu.h" ] || fail "examples/predict.c exists but nlu.h is not installed"
    cat >"$TMP/train_nlu.c" <<'EOF_C'
#include <stdio.h>
#include <attune/dataset.h>
#include <attune/nlu.h>
int main(int argc, char **argv) { /* DATA_DIR OUT.onnx */
    char path[4096];
    at_err e;
    at_split *train = NULL, *valid = NULL;
    at_nlu_model *m = NULL;
    if (argc != 3) return 2;
    snprintf(path, sizeof path, "%s/train", argv[1]);
    if (at_dataset_split(&train, path, &e) != AT_OK) goto fail;
    snprintf(path, sizeof path, "%s/valid", argv[1]);
    if (at_dataset_split(&valid, path, &e) != AT_OK) goto fail;
    at_nlu_config c = at_nlu_config_default();
    c.layers = 1, c.emb_dim = 16, c.d_model = 32, c.heads = 2, c.ffn_dim = 64;
    c.g_dim = 16, c.g_heads = 2, c.attn_dim = 16, c.d_channels = 8, c.d_hidden = 16;
    c.epochs[0] = c.epochs[1] = c.epochs[2] = 1;
    at_nlu_train_opts o = at_nlu_train_defaults();
    o.max_steps = 5;
    at_nlu_train_result r;
    if (at_nlu_model_from_split(&m, &c, train, &e) != AT_OK ||
        at_nlu_train(m, train, valid, NULL, &o, &r, &e) != AT_OK ||
        at_nlu_save(m, argv[2], &e) != AT_OK)
        goto fail;
    at_nlu_model_free(m);
    at_split_free(train);
    at_split_free(valid);
    return 0;
fail:
    fprintf(stderr, "%s\n", e.msg);
    return 1;
}
EOF_C
    # shellcheck disable=SC2046
    run "$CC" -std=c11 -Wall -Werror -o "$TMP/train_nlu" "$TMP/train_nlu.c" \
        $(PKG_CONFIG_PATH=$LIBDIR/pkgconfig pkg-config --cflags attune) \
        $(PKG_CONFIG_PATH=$LIBDIR/pkgconfig pkg-config --static --libs attune |
            sed 's/-lattune\b/-l:libattune.a/')
    MODEL=$TMP/model.onnx
    OMP_NUM_THREADS=1 run "$TMP/train_nlu" "$data" "$MODEL"
    [ -s "$MODEL" ] || fail "train_nlu wrote no model"
    echo "ok: trained a small NLU model through the installed API"
}

# check_example EXE LABEL: runs one built example and checks what it prints.
check_example() {
    local exe=$1 label=$2 name
    name=$(basename "$exe")
    case $name in
    train_graph*)
        "$exe" >"$LOG" 2>&1 || fail "$label: train_graph exited $?"
        grep -q "train accuracy" "$LOG" || fail "$label: train_graph printed no accuracy"
        ;;
    predict*)
        head -n 3 "$ATTUNE_SRC/data/sample/test/seq.in" | "$exe" "$MODEL" >"$LOG" 2>&1 ||
            fail "$label: predict exited $?"
        [ "$(grep -c '^  intent [^ ]* ([01]\.[0-9][0-9])$' "$LOG")" -eq 3 ] ||
            fail "$label: predict did not print 3 intents"
        [ "$(grep -c '^  slots ' "$LOG")" -eq 3 ] || fail "$label: predict did not print 3 slot lines"
        local rc=0
        "$exe" >"$LOG" 2>&1 </dev/null || rc=$?
        [ "$rc" -eq 77 ] || fail "$label: predict without a model exited $rc, not 77"
        ;;
    esac
    echo "ok: $label $name"
}

# check_links EXE shared|static: the example uses the installed library.
check_links() {
    command -v ldd >/dev/null || return 0
    local deps
    deps=$(ldd "$1") || fail "ldd $1"
    if [ "$2" = shared ]; then
        echo "$deps" | grep -q "libattune.so.* => $LIBDIR/" ||
            fail "$1 does not load libattune.so from $LIBDIR: $deps"
    elif echo "$deps" | grep -q "libattune.so"; then
        fail "$1 should link libattune.a, but loads libattune.so"
    fi
}

build_cmake() { # build_cmake PREFIX DIR [cmake args]
    local prefix=$1 dir=$2
    shift 2
    run cmake -S "$ATTUNE_SRC/examples" -B "$dir" -DCMAKE_PREFIX_PATH="$prefix" \
        -DCMAKE_BUILD_TYPE=Release "$@"
    grep -q "^attune_DIR:PATH=$prefix/" "$dir/CMakeCache.txt" ||
        fail "find_package(attune) did not find the package under $prefix"
    run cmake --build "$dir" -j 2
}

build_pkgconfig() { # build_pkgconfig DIR shared|static
    local dir=$1 kind=$2 ex cflags libs
    mkdir -p "$dir"
    cflags=$(pkg-config --cflags attune) || fail "pkg-config --cflags attune"
    for ex in "${EXAMPLES[@]}"; do
        if [ "$kind" = shared ]; then
            libs=$(pkg-config --libs attune) || fail "pkg-config --libs attune"
            # shellcheck disable=SC2086
            run "$CC" -std=c11 -Wall -Werror -o "$dir/$ex" "$ATTUNE_SRC/examples/$ex.c" \
                $cflags $libs -Wl,-rpath,"$(pkg-config --variable=libdir attune)"
        else
            # Libs.private must be enough for the archive: take libattune.a by name.
            libs=$(pkg-config --static --libs attune | sed 's/-lattune\b/-l:libattune.a/')
            # shellcheck disable=SC2086
            run "$CC" -std=c11 -Wall -Werror -o "$dir/$ex" "$ATTUNE_SRC/examples/$ex.c" \
                $cflags $libs
        fi
    done
}

make_model

# ---- CMake: find_package(attune), shared and static ----
build_cmake "$PREFIX" "$TMP/cmake-shared"
build_cmake "$PREFIX" "$TMP/cmake-static" -DATTUNE_EXAMPLES_STATIC=ON
for ex in "${EXAMPLES[@]}"; do
    check_links "$TMP/cmake-shared/$ex" shared
    check_example "$TMP/cmake-shared/$ex" "cmake (shared)"
    check_links "$TMP/cmake-static/$ex" static
    check_example "$TMP/cmake-static/$ex" "cmake (static)"
done

# ---- pkg-config: cc $(pkg-config --cflags --libs attune), shared and static ----
build_pkgconfig "$TMP/pc-shared" shared
build_pkgconfig "$TMP/pc-static" static
for ex in "${EXAMPLES[@]}"; do
    check_links "$TMP/pc-shared/$ex" shared
    check_example "$TMP/pc-shared/$ex" "pkg-config (shared)"
    check_links "$TMP/pc-static/$ex" static
    check_example "$TMP/pc-static/$ex" "pkg-config (static)"
done

# ---- the installed tree moved elsewhere still works through both ----
MOVED=$TMP/moved/prefix
mkdir -p "$(dirname "$MOVED")"
mv "$PREFIX" "$MOVED"
LIBDIR=${LIBDIR/#$PREFIX/$MOVED}
export PKG_CONFIG_PATH=$LIBDIR/pkgconfig
[ "$(pkg-config --variable=includedir attune)" -ef "$MOVED/include" ] ||
    fail "attune.pc is not relocatable: includedir $(pkg-config --variable=includedir attune)"
build_pkgconfig "$TMP/pc-moved" static
check_example "$TMP/pc-moved/train_graph" "pkg-config (moved prefix)"
build_cmake "$MOVED" "$TMP/cmake-moved" -DATTUNE_EXAMPLES_STATIC=ON
check_example "$TMP/cmake-moved/train_graph" "cmake (moved prefix)"

# ---- the README's embedding snippet, on a small model saved by the library ----
readme_snippet() {
    awk '/^## Embedding attune in a C program/,/^## What works/' "$ATTUNE_SRC/README.md" |
        awk '/^```c/{f=1;next} /^```/{f=0} f'
}
readme_snippet >"$TMP/run.c"
[ -s "$TMP/run.c" ] || fail "no C snippet in README.md's section 'Embedding attune in a C program'"
cat >"$TMP/make_model.c" <<'EOF_C'
/* y = relu(x W + b) with small integer weights, so every result is exact;
 * saves it as a model file and prints what the README snippet must print
 * for its input x = {{1,2,3,4},{5,6,7,8}}. */
#include <stdio.h>
#include <attune/attune.h>
int main(int argc, char **argv) {
    if (argc != 2) return 2;
    float w[4][3], b[3] = {1, -40, 0}, x[2][4] = {{1, 2, 3, 4}, {5, 6, 7, 8}};
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 3; j++) w[i][j] = (float)((i * 3 + j) % 5 - 1);
    at_graph *g = at_graph_new();
    at_val xv = at_input(g, "x", AT_F32, AT_SHAPE(at_sym(g, "B"), 4));
    at_val wv = at_const(g, "w", AT_F32, AT_SHAPE(4, 3), w);
    at_val bv = at_const(g, "b", AT_F32, AT_SHAPE(3), b);
    at_output(g, at_relu(g, at_add(g, at_matmul(g, xv, wv), bv)));
    at_err err;
    if (at_graph_status(g) != AT_OK || at_model_save(g, argv[1], &err) != AT_OK) {
        fprintf(stderr, "%s\n", at_graph_status(g) != AT_OK ? at_graph_error(g) : err.msg);
        return 1;
    }
    for (int r = 0; r < 2; r++)
        for (int j = 0; j < 3; j++) {
            float y = b[j];
            for (int i = 0; i < 4; i++) y += x[r][i] * w[i][j];
            printf("%g\n", y > 0 ? y : 0);
        }
    at_graph_free(g);
    return 0;
}
EOF_C
mkdir -p "$TMP/readme"
# shellcheck disable=SC2046
run "$CC" -std=c11 -Wall -Werror -o "$TMP/readme/make_model" "$TMP/make_model.c" \
    $(pkg-config --cflags attune) $(pkg-config --static --libs attune | sed 's/-lattune\b/-l:libattune.a/')
# shellcheck disable=SC2046
run "$CC" -std=c11 -Wall -Wextra -Werror -o "$TMP/readme/run" "$TMP/run.c" \
    $(pkg-config --cflags --libs attune) -Wl,-rpath,"$LIBDIR"
"$TMP/readme/make_model" "$TMP/readme/model.onnx" >"$TMP/readme/expected" 2>"$LOG" ||
    fail "make_model exited $?"
"$TMP/readme/run" "$TMP/readme/model.onnx" >"$TMP/readme/got" 2>"$LOG" ||
    fail "the README snippet exited $?"
diff "$TMP/readme/expected" "$TMP/readme/got" >"$LOG" || fail "the README snippet printed other values"
"$TMP/readme/run" "$TMP/readme/missing.onnx" >"$LOG" 2>&1 && fail "the README snippet accepted a missing file"
grep -q "AT_E_IO" "$LOG" || fail "the README snippet did not report AT_E_IO for a missing file"
echo "ok: README snippet (pkg-config, shared)"

echo "test_install: all passed"
