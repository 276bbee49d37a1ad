#!/usr/bin/env bash
# Re-run the benchmarks behind README's speed table and print their table, so
# that a reader can check the README in one step. Every result file records the
# commit it measured and whether the tree was clean.
#
#   benchmarks/run_all.sh               # bus and scheduler, full sizes: ~15 min, no setup
#   benchmarks/run_all.sh --quick       # the same, quick sizes: about a minute
#   benchmarks/run_all.sh --models      # + llama.cpp and grammar (the default models,
#                                       #   `make models`, assembled if missing): ~15 min more
#   benchmarks/run_all.sh --vllm        # + bench_vllm.py: builds the vLLM CPU server first
#                                       #   (`make vllm-server`: ~20 min once), then ~1 hour
#   benchmarks/run_all.sh --distilabel  # + bench_distilabel.py: builds its venv first
#                                       #   (scripts/setup_distilabel.sh: 1-6 min once), ~10 min
#   benchmarks/run_all.sh --all         # everything above
#
# The machine should be otherwise idle (the model benchmarks load every core);
# each ratio is measured within one run, so a shared machine still gives fair
# ratios, only noisier ones.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
[[ -x "$PY" ]] || PY=python3

quick=0 models=0 vllm=0 distilabel=0
for arg in "$@"; do
    case "$arg" in
        --quick) quick=1 ;;
        --models) models=1 ;;
        --vllm) vllm=1 ;;
        --distilabel) distilabel=1 ;;
        --all) models=1 vllm=1 distilabel=1 ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "unknown option $arg (see --help)" >&2; exit 2 ;;
    esac
done

RESULTS="$ROOT/benchmarks/results"
mkdir -p "$RESULTS"
marker="$(mktemp)"
trap 'rm -f "$marker"' EXIT
failed=()

run() {
    local name="$1"; shift
    echo "==> $name: $*" >&2
    local start=$SECONDS
    if ! "$@"; then
        failed+=("$name")
    fi
    echo "==> $name: $((SECONDS - start)) s" >&2
}

full=(--full)
[[ $quick == 1 ]] && full=()
run bus "$PY" benchmarks/bench_bus.py "${full[@]}"
run scheduler "$PY" benchmarks/bench_scheduler.py "${full[@]}"

if [[ $models == 1 ]]; then
    "$PY" -m gra models --assemble >&2
    run llamacpp "$PY" benchmarks/bench_llamacpp.py
    run grammar "$PY" benchmarks/bench_grammar.py
fi
if [[ $vllm == 1 ]]; then
    echo "==> vLLM: building the CPU server if needed (make vllm-server; ~20 min the first time)" >&2
    make vllm-server >&2
    run vllm "$PY" benchmarks/bench_vllm.py
fi
if [[ $distilabel == 1 ]]; then
    echo "==> distilabel: building its venv if needed (scripts/setup_distilabel.sh)" >&2
    bash scripts/setup_distilabel.sh >&2
    run distilabel "$PY" benchmarks/bench_distilabel.py --batch-size 1
fi

mapfile -t written < <(find "$RESULTS" -name '*.json' -newer "$marker" | sort)
echo
if [[ ${#written[@]} -gt 0 ]]; then
    "$PY" benchmarks/summary.py "${written[@]}"
else
    echo "no result file was written" >&2
fi
if [[ ${#failed[@]} -gt 0 ]]; then
    echo
    echo "missed a target or failed: ${failed[*]}" >&2
    exit 1
fi
