# Set-up and the two jobs of the README. Everything installs into .venv; torch is pinned to the CPU 2.13.0 wheel
# first, because a bare `torch` requirement would pull a multi-GB CUDA build.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test test-all

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[dev]" torch==2.13.0
	touch $@

demo: $(VENV)/.installed  ## prepare a corpus from the sample dump shipped with the package
	$(VENV)/bin/ulmfit prepare --sample --out sample-corpus

test: $(VENV)/.installed  ## the fast test suite (what CI runs)
	$(PY) -m pytest

test-all: $(VENV)/.installed  ## also the slow tests (real dumps end to end)
	$(PY) -m pytest -m "slow or not slow"
