#!/usr/bin/env bash
# Build the virtualenv that benchmarks/bench_distilabel.py runs distilabel in:
#
#   .cache/distilabel-venv    distilabel[llama-cpp]==1.5.3 (+ requests)
#
# distilabel gets its own venv so that its pins never touch gra's. Its
# llama-cpp-python is the very wheel gra uses (scripts/install_llamacpp.sh: the
# same version, built for a portable AVX2 CPU). The one pip's own install or
# cache hands back is a native build, whose AVX-512/AMX kernels die on virtual
# machines that do not grant that state (distilabel's generate worker, forked,
# died of a general protection fault in libggml-cpu at its first batch).
#
# Idempotent: a .setup-complete marker is written last and the step is skipped
# when it exists, so an interrupted run is simply redone.
#
# Environment:
#   PYTHON   interpreter the venv is made from (default: python3, needs >= 3.10)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

DISTILABEL_VERSION="1.5.3"
CACHE="$ROOT/.cache"
VENV="$CACHE/distilabel-venv"
# v2: llama-cpp-python is gra's portable wheel (a venv marked by v1 is redone).
MARKER=".setup-complete-v2"
PYTHON="${PYTHON:-python3}"

log() { printf '[setup_distilabel] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

mkdir -p "$CACHE"
# Two concurrent runs would install into the same venv.
exec 9>"$CACHE/setup_distilabel.lock"
flock 9

check_imports() {
    "$VENV/bin/python" -c '
import distilabel, llama_cpp, requests
from distilabel.models.llms import LlamaCppLLM
from distilabel.pipeline import Pipeline
from distilabel.steps import LoadDataFromDicts
from distilabel.steps.tasks import TextGeneration
print("distilabel", distilabel.__version__, "llama_cpp", llama_cpp.__version__)
'
}

start=$SECONDS
if [[ -f "$VENV/$MARKER" ]]; then
    log "already complete ($VENV)"
    exit 0
fi
if [[ -x "$VENV/bin/python" ]] && check_imports >/dev/null 2>&1; then
    log "adopting existing install"
else
    log "installing distilabel[llama-cpp]==$DISTILABEL_VERSION (seconds with a cached llama-cpp-python wheel, else ~5 minutes)"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    # requests is imported by distilabel but missing from its declared dependencies.
    "$VENV/bin/python" -m pip install "distilabel[llama-cpp]==$DISTILABEL_VERSION" requests
fi
bash "$ROOT/scripts/install_llamacpp.sh" "$VENV/bin/pip"
check_imports || die "distilabel does not import in $VENV"
touch "$VENV/$MARKER"
log "ready: $VENV (in $((SECONDS - start)) s)"
