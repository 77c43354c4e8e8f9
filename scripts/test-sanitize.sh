#!/usr/bin/env bash
# Builds attune with AddressSanitizer + UndefinedBehaviorSanitizer (CUDA
# off) and runs the CPU test suite under them; any report fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build-asan -DATTUNE_CUDA=OFF -DATTUNE_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
cmake --build build-asan -j"$(nproc)"
# The Python interop test loads onnxruntime into python3, which is not
# built with the sanitizer runtime; it runs in the normal build.
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan --output-on-failure -j"$(nproc)" -E '\.py$|\.sh$'
