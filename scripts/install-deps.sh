#!/usr/bin/env bash
# Installs what attune needs to build and test, when it is missing:
# Debian packages (compiler, CMake, OpenBLAS, protobuf-c) and, for the
# ONNX interop tests, Python's onnx/onnxruntime/numpy from pip.
set -euo pipefail
pkgs=(build-essential cmake pkg-config libopenblas-dev libprotobuf-c-dev protobuf-c-compiler python3 python3-pip
      clang libclang-rt-14-dev libomp-14-dev valgrind)
missing=()
for p in "${pkgs[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
if ! python3 -c "import onnx, onnxruntime, numpy" >/dev/null 2>&1; then
    python3 -m pip install --quiet onnx onnxruntime numpy ||
        python3 -m pip install --quiet --break-system-packages onnx onnxruntime numpy ||
        echo "note: could not install onnx/onnxruntime; the ONNX interop tests will be skipped"
fi
