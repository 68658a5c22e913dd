# reportgen: the front door. `make` lists the targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
MODELS ?= models.txt
OUT ?= reports
ARGS ?=
SITE ?= site
SITE_URL ?=
WHEEL_CHECK := build/wheel-check

.PHONY: help report test test-fast bench zoo update-gold typecheck clean docs wheel-check validate-memory

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-12s %s\n", $$1, $$2}'

report: $(VENV)/.installed ## Write the report site for MODELS (default models.txt) into OUT (default reports/)
	$(BIN)/reportgen report --models $(MODELS) --out $(OUT) $(ARGS)

docs: $(VENV)/.docs ## Write the reports (as make report) and build the docs site from them into SITE (default site/)
	rc=0; $(BIN)/reportgen report --models $(MODELS) --out $(OUT) $(ARGS) || rc=$$?; \
	  if [ $$rc -gt 1 ]; then exit $$rc; fi; $(BIN)/reportgen docs $(OUT) --site $(SITE) \
	  $(if $(SITE_URL),--site-url $(SITE_URL)) && exit $$rc

test: $(VENV)/.installed $(VENV)/.docs ## Run the whole test suite (offline)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q $(ARGS)

test-fast: $(VENV)/.installed $(VENV)/.docs ## Run the tests without the slow sweeps and the browser test
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m "not slow and not browser" $(ARGS)

bench: $(VENV)/.installed ## Run the benchmark and write benchmarks/RESULTS.md
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/bench.py

zoo: $(VENV)/.installed ## Every causal-LM model type of the pinned transformers through reportgen, merge checks at --merge-budget 4 GiB: benchmarks/ZOO.md
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/zoo.py

validate-memory: $(VENV)/.installed ## The memory estimate against CPU measurements and published GPU runs: benchmarks/MEMORY.md
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/validate_memory.py

update-gold: $(VENV)/.installed ## Refresh the golden files in tests/gold/ (read the diff before committing)
	HF_HUB_OFFLINE=1 $(BIN)/python -m tests.update_gold

typecheck: $(VENV)/.installed ## mypy --strict over the package
	$(BIN)/python -m mypy reportgen

wheel-check: ## Build the wheel, install it into a fresh virtual environment, write a report outside the checkout
	rm -rf $(WHEEL_CHECK) && $(PYTHON) -m venv $(WHEEL_CHECK)/venv
	$(WHEEL_CHECK)/venv/bin/python -m pip install --quiet --upgrade pip
	$(WHEEL_CHECK)/venv/bin/python -m pip wheel --quiet --no-deps --wheel-dir $(WHEEL_CHECK)/dist .
	$(WHEEL_CHECK)/venv/bin/python -m pip install --quiet $(WHEEL_CHECK)/dist/reportgen-*.whl
	elsewhere=$$(mktemp -d) && cd $$elsewhere && printf 'HuggingFaceTB/SmolLM2-135M-Instruct\n' > models.txt && \
	  $(CURDIR)/$(WHEEL_CHECK)/venv/bin/reportgen report --models models.txt --out reports && \
	  test -s reports/HuggingFaceTB--SmolLM2-135M-Instruct/report.html && test -s reports/index.html && \
	  cd / && rm -rf $$elsewhere
	@echo "wheel-check: the wheel installs into a fresh environment and writes a report outside the checkout"

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

$(VENV)/.docs: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[test,docs]'
	touch $@

clean: ## Remove the virtual environment, the default report folder and the docs site
	rm -rf $(VENV) $(OUT) $(SITE) $(WHEEL_CHECK)
