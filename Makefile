# Quick start:  make sweep   (set up, then run the default sweep on real MNIST)
#               make test    (set up, then run the test suite)
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
# The real datasets live beside the checkout on our machines; elsewhere point
# HPSEARCH_DATA_DIR at your copy (or pass --data-dir), or run `hpsearch data download`.
export HPSEARCH_DATA_DIR ?= $(abspath ../shared/datasets)
STAMP := $(VENV)/.hpsearch-installed

.PHONY: setup sweep test lint bench clean-venv

setup: $(STAMP)

# The stamp depends on pyproject.toml only, so a second `make` installs nothing
# (torch alone is gigabytes).
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# Each run gets its own experiment folder, so the quick start can be run again (the
# committed results/mnist_mlp is the reference sweep; see README "Results").
SWEEP_NAME ?= mnist_mlp-$(shell date +%Y%m%d-%H%M%S)
sweep: setup
	$(VENV)/bin/hpsearch sweep search_spaces/mnist_mlp.yaml --name $(SWEEP_NAME)

test: setup
	$(PY) -m pytest -q -ra

lint: setup
	$(VENV)/bin/ruff check .

bench: setup
	$(VENV)/bin/hpsearch bench --quick

clean-venv:
	rm -rf $(VENV)
