# recip-tourney: one command to set up and run, one to set up and test.
#   make run    create .venv, install (CPU torch first), run the default IPD-Analytic tournament
#   make test   create .venv, install, ruff + pytest + the golden payoff-matrix checks
#   make golden regenerate tests/golden/<game>.csv on purpose (see README)
#   make bench  the speed benchmark (by hand, not part of the tests)
#   make gpu-check  on a machine with CUDA and torch already (no network needed): install
#               this package without touching torch, run the GPU tests and benchmarks, one table

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is pinned to the CPU build first, so that nothing later pulls a CUDA build.
TORCH ?= torch==2.13.0
# games with a golden payoff matrix of their ci profile, checked by `make test`
GOLDEN_GAMES := ipd-analytic ipd-rollout coins
GOLDEN_ATOL ?= 1e-6
JOBS ?= 2
# extra arguments of the default run, e.g. `make run RUN_ARGS="--jobs 1"`
RUN_ARGS ?=

# gpu-check: the python that has a CUDA torch (its torch is used as it is)
GPU_PYTHON ?= python3

.PHONY: install run test lint golden bench clean gpu-check

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

install: $(VENV)/.installed

run: install
	$(BIN)/recip-tourney run --game ipd-analytic $(RUN_ARGS)

lint: install
	$(BIN)/ruff check recip_tourney tests benchmarks

test: lint
	$(BIN)/python -m pytest
	@tmp=$$(mktemp -d) && status=0 && \
	for game in $(GOLDEN_GAMES); do \
	  $(BIN)/recip-tourney run --game $$game --profile ci --jobs $(JOBS) --out $$tmp/$$game --cache-dir $$tmp/cache --quiet >/dev/null && \
	  $(BIN)/recip-tourney check $$tmp/$$game --against tests/golden/$$game.csv --atol $(GOLDEN_ATOL) || status=1; \
	done; rm -rf $$tmp; exit $$status

golden: install
	@tmp=$$(mktemp -d) && status=0 && \
	for game in $(GOLDEN_GAMES); do \
	  $(BIN)/recip-tourney run --game $$game --profile ci --jobs $(JOBS) --out $$tmp/$$game --cache-dir $$tmp/cache --quiet >/dev/null && \
	  $(BIN)/recip-tourney table $$tmp/$$game --format csv --table payoff -o tests/golden/$$game.csv || status=1; \
	done; rm -rf $$tmp; exit $$status

bench: install
	$(BIN)/python benchmarks/bench_ipd_analytic.py
	$(BIN)/python benchmarks/bench_mfos.py --mmaml 5
	$(BIN)/python benchmarks/bench_ipd_rollout.py

# Wheels in .whl/ (e.g. pydantic, for a machine without network) are installed first.
gpu-check:
	@if ls .whl/*.whl >/dev/null 2>&1; then \
	  $(GPU_PYTHON) -m pip install -q --no-index --no-deps .whl/*.whl; fi
	$(GPU_PYTHON) -m pip install -q --no-deps --no-build-isolation -e .
	$(GPU_PYTHON) benchmarks/gpu_check.py

clean:
	rm -rf $(VENV) build *.egg-info
