# recip-tourney: one command to set up and run, one to set up and test.
#   make run    create .venv, install (CPU torch first), run the default IPD-Analytic tournament
#   make test   create .venv, install, ruff + pytest + the golden payoff-matrix check
#   make golden regenerate tests/golden/ipd-analytic.csv on purpose (see README)
#   make bench  the speed benchmark (by hand, not part of the tests)

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is pinned to the CPU build first, so that nothing later pulls a CUDA build.
TORCH ?= torch==2.13.0
GOLDEN := tests/golden/ipd-analytic.csv
GOLDEN_ATOL ?= 1e-6
JOBS ?= 2
# Until the paper-budget M-FOS artifacts ship (issue 3), the default run leaves M-FOS out;
# `make run RUN_ARGS=` plays the full 5x5 roster, training M-FOS first (hours).
RUN_ARGS ?= --agents nl,lola,mmaml,reciprocator

.PHONY: install run test lint golden bench clean

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
	@tmp=$$(mktemp -d) && \
	$(BIN)/recip-tourney run --game ipd-analytic --profile ci --jobs $(JOBS) --out $$tmp/ci --cache-dir $$tmp/cache --quiet >/dev/null && \
	$(BIN)/recip-tourney check $$tmp/ci --against $(GOLDEN) --atol $(GOLDEN_ATOL); \
	status=$$?; rm -rf $$tmp; exit $$status

golden: install
	@tmp=$$(mktemp -d) && \
	$(BIN)/recip-tourney run --game ipd-analytic --profile ci --jobs $(JOBS) --out $$tmp/ci --cache-dir $$tmp/cache --quiet >/dev/null && \
	$(BIN)/recip-tourney table $$tmp/ci --format csv --table payoff -o $(GOLDEN); \
	status=$$?; rm -rf $$tmp; exit $$status

bench: install
	$(BIN)/python benchmarks/bench_ipd_analytic.py
	$(BIN)/python benchmarks/bench_mfos.py --mmaml 5

clean:
	rm -rf $(VENV) build *.egg-info
