# The two commands: `make test` and `make reproduce` (PROFILE=quick by default).
# Each sets itself up on a fresh machine: creates .venv if missing and installs
# the package with its pinned dependencies.
PROFILE ?= quick
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.kwslib-installed
PYTEST_ARGS ?=

.PHONY: install test test-all reproduce lab clean-results help

help:
	@echo "make test                     run the test suite (sets up .venv first)"
	@echo "make reproduce [PROFILE=quick] run every notebook headless into results/PROFILE/"
	@echo "make lab                      open JupyterLab on notebooks/"
	@echo "profiles: $$(ls params)"

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -e '.[notebooks,test]'
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (kwslib)" >/dev/null
	@touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -n 2 $(PYTEST_ARGS)

test-all: $(STAMP)
	$(PY) -m pytest -q -n 2 -m "" $(PYTEST_ARGS)

reproduce: $(STAMP)
	$(PY) -m kwslib.reproduce --profile $(PROFILE)
	$(PY) -m kwslib.report --readme README.md

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

clean-results:
	rm -rf results/$(PROFILE)
