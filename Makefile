# Set-up and the two jobs of the README. Everything installs into .venv; torch is pinned to the CPU 2.13.0 wheel
# first, because a bare `torch` requirement would pull a multi-GB CUDA build.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test test-all

# The editable install finds `ulmfit` through setuptools' import hook, which Python consults only after sys.path:
# run from the folder above a clone named `ulmfit`, the clone itself (no __init__.py) would be imported as an empty
# namespace package. A path entry holding a link named `ulmfit` to the package folder is a regular package, which
# wins over any namespace folder; the subpackages (ulmfit.langs from langs/, ...) still come through the hook, so
# new modules are picked up without a reinstall.
IMPORT_LINK := $(VENV)/import-path

$(VENV)/.installed: pyproject.toml Makefile
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[dev]" torch==2.13.0
	mkdir -p $(IMPORT_LINK) && ln -sfn $(CURDIR)/ulmfit $(IMPORT_LINK)/ulmfit
	echo $(abspath $(IMPORT_LINK)) > "$$($(PY) -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/ulmfit-import-path.pth"
	touch $@

demo: $(VENV)/.installed  ## prepare a corpus from the sample dump shipped with the package
	$(VENV)/bin/ulmfit prepare --sample --out sample-corpus

test: $(VENV)/.installed  ## the fast test suite (what CI runs)
	$(PY) -m pytest

test-all: $(VENV)/.installed  ## also the slow tests (real dumps end to end)
	$(PY) -m pytest -m "slow or not slow"
