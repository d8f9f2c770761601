# One entry point for set-up, runs and tests. `make run` and `make test` work on a fresh clone:
# they create .venv, install torch==2.13.0 first (the CPU build), then jkoflow and its extras.
VENV ?= .venv
PY := $(VENV)/bin/python
EXAMPLE_PLUGIN := $(wildcard contrib/example-plugin/pyproject.toml)

$(VENV)/.installed: pyproject.toml $(EXAMPLE_PLUGIN)
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev,molecules]" $(if $(EXAMPLE_PLUGIN),-e ./contrib/example-plugin)
	touch $@

.PHONY: install run test test-slow test-all docs
install: $(VENV)/.installed

run: install  ## the default problem (heat, 10 JKO steps); writes runs/heat-TIMESTAMP/
	$(VENV)/bin/jkoflow --threads 1 run

test: install  ## the default (fast) test suite
	$(PY) -m pytest

test-slow: install  ## only the tests marked slow
	$(PY) -m pytest -m slow

test-all: install  ## everything
	$(PY) -m pytest -m "slow or not slow"

# mkdocs-material and mkdocstrings (the `docs` extra of pyproject.toml); warnings are errors
docs: install  ## the documentation site (docs/, mkdocs.yml) in build/site/; any warning fails
	$(PY) -m pip install -q "mkdocs-material>=9.5" "mkdocstrings[python]>=0.25"
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict -d build/site
