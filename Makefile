# Quick start:  make sweep   (set up, then run the default sweep on real MNIST)
#               make test    (set up, then run the test suite)
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
# The real datasets live beside the checkout on our machines; elsewhere point
# HPSEARCH_DATA_DIR at your copy (or pass --data-dir), or run `hpsearch data download`.
export HPSEARCH_DATA_DIR ?= $(abspath ../shared/datasets)
STAMP := $(VENV)/.hpsearch-installed

.PHONY: setup sweep test test-fast lint bench clean-venv

setup: $(STAMP)

# The stamp depends on pyproject.toml only, so a second `make` installs nothing
# (torch alone is gigabytes).
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# The quick start: a sweep of under 3 minutes (search_spaces/quickstart.yaml). Each run gets
# its own experiment folder, so it can be run again; the full MNIST MLP experiment is
# `scripts/reproduce_results.sh mnist_mlp` (see README "Results").
SWEEP_NAME ?= quickstart-$(shell date +%Y%m%d-%H%M%S)
sweep: setup
	$(VENV)/bin/hpsearch sweep search_spaces/quickstart.yaml --name $(SWEEP_NAME)

# Three test processes: most of a slow test's time is spent waiting (Ray starting, a node
# declared dead, a sweep process), so they overlap well even on 2 cores. Tests that share a
# local two-node Ray cluster stay in one process (xdist_group "cluster").
test: setup
	$(PY) -m pytest -q -ra -n 3 --dist loadgroup

# The edit-test loop: no real data, no Ray (every test that needs either is marked slow).
test-fast: setup
	$(PY) -m pytest -q -ra -m "not slow"

lint: setup
	$(VENV)/bin/ruff check .

bench: setup
	$(VENV)/bin/hpsearch bench --quick

clean-venv:
	rm -rf $(VENV)
