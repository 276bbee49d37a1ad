#!/usr/bin/env bash
# Install llama-cpp-python into a virtualenv, built for a portable x86-64 CPU.
#
# A default (native) build compiles llama.cpp for the build machine's CPU, AMX
# included where the CPU has it; on a virtual machine that does not grant AMX
# state to processes, every model call then dies with SIGSEGV in
# ggml_backend_amx_mul_mat. This build targets AVX2 (any x86-64 CPU of the last
# decade) without AVX-512 or AMX, so one wheel runs on every such machine.
#
#   scripts/install_llamacpp.sh .venv/bin/pip
#
# The wheel is built once per machine into ~/.cache/gra/wheels/<hash of version
# and flags>/ and reused by later virtualenvs (pip's own wheel cache would hand
# back a native build made earlier from the same source).
set -euo pipefail

PIP="${1:?usage: install_llamacpp.sh PIP}"
VERSION="0.3.36"
if [[ "$(uname -m)" == "x86_64" ]]; then
    FLAGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
    FLAGS+=" -DGGML_BMI2=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF"
    FLAGS+=" -DGGML_AMX_BF16=OFF"
else
    FLAGS=""  # other architectures: llama.cpp's defaults
fi
KEY="$(printf '%s %s' "$VERSION" "$FLAGS" | sha256sum | cut -c1-16)"
WHEELS="${XDG_CACHE_HOME:-$HOME/.cache}/gra/wheels/llama-cpp-python-$KEY"

if ! compgen -G "$WHEELS/llama_cpp_python-*.whl" >/dev/null; then
    echo "building llama-cpp-python $VERSION (a few minutes, once per machine): $FLAGS"
    mkdir -p "$WHEELS.partial"
    CMAKE_ARGS="$FLAGS" "$PIP" wheel --quiet --no-cache-dir --no-deps \
        --no-binary llama-cpp-python "llama-cpp-python==$VERSION" -w "$WHEELS.partial"
    rm -rf "$WHEELS"
    mv "$WHEELS.partial" "$WHEELS"
fi
"$PIP" install --quiet --no-deps --force-reinstall "$WHEELS"/llama_cpp_python-*.whl
