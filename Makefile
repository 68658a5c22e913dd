# reportgen: the front door. `make` lists the targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
MODELS ?= models.txt
OUT ?= reports
ARGS ?=

.PHONY: help report test test-fast bench zoo update-gold typecheck clean

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-12s %s\n", $$1, $$2}'

report: $(VENV)/.installed ## Write the report site for MODELS (default models.txt) into OUT (default reports/)
	$(BIN)/reportgen report --models $(MODELS) --out $(OUT) $(ARGS)

test: $(VENV)/.installed ## Run the whole test suite (offline)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q $(ARGS)

test-fast: $(VENV)/.installed ## Run the tests without the slow sweeps and the browser test
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m "not slow and not browser" $(ARGS)

bench: $(VENV)/.installed ## Run the benchmark and write benchmarks/RESULTS.md
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/bench.py

zoo: $(VENV)/.installed ## Every causal-LM model type of the pinned transformers through reportgen, merge checks at --merge-budget 4 GiB: benchmarks/ZOO.md
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/zoo.py

update-gold: $(VENV)/.installed ## Refresh the golden files in tests/gold/ (read the diff before committing)
	HF_HUB_OFFLINE=1 $(BIN)/python -m tests.update_gold

typecheck: $(VENV)/.installed ## mypy --strict over the package
	$(BIN)/python -m mypy reportgen

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

clean: ## Remove the virtual environment and the default report folder
	rm -rf $(VENV) $(OUT)
