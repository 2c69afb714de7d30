# nhl: two commands to set up and go (see README.md).
#   make run   - create .venv if missing, install, execute every notebook (full setting) into build/
#   make test  - create/reuse .venv, run the test suite (unit tests + quick notebooks)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: run notebooks test test-browser lab bench lint venv clean

venv: $(STAMP)

# Reinstall when the project's requirements change. pip keeps whatever torch is already in the
# venv if it satisfies torch>=2.2 (never forcing a newer one).
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m nhl.tutorial

# Re-execute the notebooks in place (full setting): how their committed outputs are made.
notebooks: $(STAMP)
	$(BIN)/python -m nhl.tutorial --in-place

test: $(STAMP)
	$(BIN)/python -m pytest -m "not browser"

test-browser: $(STAMP)
	$(BIN)/python -m pytest -m browser tests/test_browser.py

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

bench: $(STAMP)
	$(BIN)/python -m benchmarks.bench_eval
	$(BIN)/python -m benchmarks.bench_search
	$(BIN)/python -m benchmarks.bench_funnel
	$(BIN)/python -m benchmarks.bench_train

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf build .pytest_cache .ruff_cache
