# nhl: two commands to set up and go (see README.md).
#   make run   - create .venv if missing, install, run the main job
#   make test  - create/reuse .venv, run the test suite (unit tests + quick notebooks)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test test-browser lab bench lint venv clean

venv: $(STAMP)

# Reinstall when the project's requirements change. pip keeps whatever torch is already in the
# venv if it satisfies torch>=2.2 (never forcing a newer one).
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m nhl compare --dataset fashion-mnist --method csq

test: $(STAMP)
	$(BIN)/python -m pytest

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run_all

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf build .pytest_cache .ruff_cache
