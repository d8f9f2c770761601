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

.PHONY: install run test test-slow test-all docs lint typecheck check
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

lint: install  ## ruff lint and format check (the configuration in pyproject.toml)
	$(PY) -m pip install -q "ruff==0.17.6"
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# mypy on the installed package layout: jkoflow = core/, .plugins = plugins/, .contrib = contrib/
typecheck: install  ## mypy over jkoflow (configuration in pyproject.toml)
	$(PY) -m pip install -q "mypy==2.4.1"
	rm -rf build/typecheck && mkdir -p build/typecheck/jkoflow
	for f in core/*; do ln -s ../../../$$f build/typecheck/jkoflow/; done
	ln -s ../../../plugins build/typecheck/jkoflow/plugins
	ln -s ../../../contrib build/typecheck/jkoflow/contrib
	cd build/typecheck && MYPYPATH=. ../../$(VENV)/bin/mypy --config-file ../../pyproject.toml -p jkoflow

check: lint typecheck docs test  ## everything CI runs
