# The two commands: `make test` and `make reproduce` (PROFILE=quick by default).
# Each sets itself up on a fresh machine: creates .venv if missing, installs the package with its
# pinned dependencies, and (as root with apt-get) the aarch64 cross compiler and qemu for the NEON checks.
PROFILE ?= quick
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.kwslib-installed
PYTEST_ARGS ?=
LAB_ARGS ?=
# jupyter refuses to run as root unless told to
LAB_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: install tools test test-all reproduce readme lab clean-results help

help:
	@echo "make test                      run the test suite (sets up .venv and the aarch64 tools first)"
	@echo "make reproduce [PROFILE=quick] run every notebook headless into results/PROFILE/"
	@echo "make readme                    rebuild the README results block from results/*/summary.json"
	@echo "make lab [LAB_ARGS=...]        open JupyterLab on notebooks/ (e.g. LAB_ARGS='--no-browser --port 8899')"
	@echo "profiles: $$(ls params)"

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -e '.[notebooks,test,peers]'
	@# the distribution was called `kwslib` before (a name PyPI gives to another project): drop that record
	@$(PY) -m pip uninstall -y -q kwslib >/dev/null 2>&1 || true
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (kwslib)" >/dev/null
	@touch $(STAMP)

install: $(STAMP)

# The NEON kernels are checked by cross-compiling them and running them under qemu-aarch64.
# Installed when this is root with apt-get (as CI is); otherwise one line says what to install.
tools:
	@if command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 && command -v qemu-aarch64 >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing gcc-aarch64-linux-gnu and qemu-user (apt-get) for the NEON checks ..."; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc-aarch64-linux-gnu qemu-user >/dev/null) \
	    || echo "warning: apt-get could not install gcc-aarch64-linux-gnu qemu-user: NEON checks will not run"; \
	else \
	  echo "note: NEON checks need aarch64-linux-gnu-gcc and qemu-aarch64: sudo apt-get install gcc-aarch64-linux-gnu qemu-user"; \
	fi

test: $(STAMP) tools
	$(PY) -m pytest -q -n 2 $(PYTEST_ARGS)

test-all: $(STAMP) tools
	$(PY) -m pytest -q -n 2 -m "" $(PYTEST_ARGS)

reproduce: $(STAMP) tools
	$(PY) -m kwslib.reproduce --profile $(PROFILE)

# The README's results block is rebuilt only when asked (it is a tracked file).
readme: $(STAMP)
	$(PY) -m kwslib.report --readme README.md

lab: $(STAMP)
	$(VENV)/bin/jupyter lab $(LAB_ROOT) $(LAB_ARGS) notebooks/

clean-results:
	rm -rf results/$(PROFILE)
