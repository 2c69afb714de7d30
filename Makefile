# nhl: two commands to set up and go (see README.md).
#   make run   - create .venv if missing, install, get Fashion-MNIST, execute every notebook
#                (full setting) into build/
#   make test  - create/reuse .venv, get Fashion-MNIST, run the test suite (unit tests + quick
#                notebooks)
#   make site  - a static HTML site of the executed notebooks in build/site (open index.html)
#   make student - student copies of the notebooks (solutions removed) in build/student
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: run notebooks test test-fast test-browser lab bench lint venv data clean site student

venv: $(STAMP)

# Reinstall when the project's requirements change. pip keeps whatever torch is already in the
# venv if it satisfies torch>=2.2 (never forcing a newer one).
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "Installing nhl and its requirements into $(VENV). The first time this downloads about"
	@echo "3.3 GB (torch with its CUDA libraries, Jupyter) and fills 6.5 GB; on a 2-core machine it"
	@echo "took about 20 minutes. Later only what pyproject.toml adds is installed..."
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install -e ".[dev]"
	touch $(STAMP)

# Fashion-MNIST before anything runs: data/, Debian's files, torchvision's download, and as a last
# step apt-get install dataset-fashion-mnist when that needs no password (root or sudo -n); else
# it stops with what to do. See nhl/data/fashion_mnist.py (ensure_available).
data: $(STAMP)
	$(BIN)/python -m nhl.data ensure

run: data
	$(BIN)/python -m tools.notebooks

# Re-execute the notebooks in place (full setting): how their committed outputs are made.
notebooks: $(STAMP)
	$(BIN)/python -m tools.notebooks --in-place

test: data
	$(BIN)/python -m pytest -m "not browser"

# The unit tests only (seconds): no notebook runs, no process launches, no long training.
test-fast: data
	$(BIN)/python -m pytest -m "not browser and not notebook and not slow"

test-browser: site
	$(BIN)/python -m pytest -m browser tests/test_browser.py tests/test_browser_ablation.py \
		tests/test_browser_site.py

# The executed notebooks as they are committed (no re-execution) as a static site: Sphinx +
# myst-nb + sphinx-book-theme; MathJax from the npm package (installed once into build/site-deps),
# so the pages load nothing from the network. See tools/site.py and docs/site/.
site: $(STAMP)
	$(BIN)/python -m tools.site

# Student copies: nbgrader's solution regions replaced by stubs, their outputs cleared.
student: $(STAMP)
	$(BIN)/python -m tools.student

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

bench: $(STAMP)
	$(BIN)/python -m benchmarks.bench_eval
	$(BIN)/python -m benchmarks.bench_search
	$(BIN)/python -m benchmarks.bench_funnel
	$(BIN)/python -m benchmarks.bench_train
	$(BIN)/python -m benchmarks.report

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf build .pytest_cache .ruff_cache
