# The two commands: `make test` and `make reproduce` (PROFILE=quick by default).
# Each sets itself up on a fresh machine: creates .venv if missing, installs the package with its
# pinned dependencies, and (as root with apt-get) the aarch64 cross compiler and qemu for the NEON checks.
PROFILE ?= quick
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
# Which PyTorch build (one switch): TORCH=cpu (default) installs the CPU-only wheel 2.13.0+cpu (~190 MB,
# .venv ~1.9 GB in all) from a wheel folder or mirror pip already sees, else from the PyTorch CPU index;
# TORCH=cuda installs PyPI's default torch 2.13.0, the CUDA build (~2.7 GB more of nvidia-* wheels).
TORCH ?= cpu
TORCH_VERSION := 2.13.0
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
STAMP := $(VENV)/.kwslib-installed-$(TORCH)
PIP := $(PY) -m pip install --disable-pip-version-check -q
PYTEST_ARGS ?=
LAB_ARGS ?=
# jupyter refuses to run as root unless told to
LAB_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: install tools test test-all reproduce readme lab clean-results clean-cache help

help:
	@echo "make test                      run the test suite (sets up .venv and the aarch64 tools first)"
	@echo "make reproduce [PROFILE=quick] run every notebook headless into results/PROFILE/"
	@echo "make readme                    rebuild the README results block from results/*/summary.json"
	@echo "make lab [LAB_ARGS=...]        open JupyterLab on notebooks/ (e.g. LAB_ARGS='--no-browser --port 8899')"
	@echo "make install [TORCH=cpu|cuda]  the venv alone; TORCH=cpu (default) is PyTorch's CPU-only build, cuda PyPI's CUDA build"
	@echo "make clean-cache               delete the caches (results/*/cache, checkpoints, .stamps, results/scratch*, C builds)"
	@echo "profiles: $$(ls params)"

$(STAMP): pyproject.toml
	@case "$(TORCH)" in cpu|cuda) ;; *) echo "TORCH must be cpu or cuda, got '$(TORCH)'"; exit 2;; esac
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@rm -f $(VENV)/.kwslib-installed $(VENV)/.kwslib-installed-*
ifeq ($(TORCH),cpu)
	@# pip orders 2.13.0+cpu above 2.13.0, and the +cpu wheel satisfies pyproject's torch==2.13.0 pin
	@$(PIP) "torch==$(TORCH_VERSION)+cpu" 2>/dev/null \
	  || { echo "torch $(TORCH_VERSION)+cpu: from $(TORCH_CPU_INDEX) ..."; \
	       $(PIP) "torch==$(TORCH_VERSION)+cpu" --index-url $(TORCH_CPU_INDEX) --extra-index-url https://pypi.org/simple; } \
	  || { echo "error: torch $(TORCH_VERSION)+cpu is not reachable here ($(TORCH_CPU_INDEX) nor a local mirror)." \
	            "Either point TORCH_CPU_INDEX at a mirror of it, or take PyPI's CUDA build: make install TORCH=cuda (~2.7 GB more)"; \
	       exit 1; }
else
	$(PIP) --force-reinstall "torch==$(TORCH_VERSION)"
endif
	$(PIP) -e '.[notebooks,test,peers]'
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
	$(PY) -m kwslib.study.reproduce --profile $(PROFILE)

# The README's results block is rebuilt only when asked (it is a tracked file).
readme: $(STAMP)
	$(PY) -m kwslib.study.report --readme README.md

lab: $(STAMP)
	$(VENV)/bin/jupyter lab $(LAB_ROOT) $(LAB_ARGS) notebooks/

clean-results:
	rm -rf results/$(PROFILE)

# Caches are ignored by git and grow with the runs (README, "Where things are written"): prepared corpora,
# features and negative streams (results/<profile>/cache), training checkpoints, the notebooks' stamps (so the
# next `make reproduce` runs every notebook again) and results/scratch*. Trained models, records and the
# tracked results stay; the C kernels built on first use ($$KWSLIB_CACHE, default ~/.cache/kwslib) go too (`make clean-results PROFILE=...` removes a profile's whole folder).
clean-cache:
	rm -rf results/*/cache results/*/checkpoints results/*/replicates/*/checkpoints results/*/.stamps results/scratch* \
	       "$${KWSLIB_CACHE:-$$HOME/.cache/kwslib}"
