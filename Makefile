# Group-wise Deep Co-saliency Detection (Wei et al., IJCAI 2017) in Caffe.
# Every target runs through the project's virtual environment (.venv, made by `make setup`).

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_SYS ?= /usr/bin/python3
VENV       ?= .venv
PY         := $(VENV)/bin/python
export PYTHONUNBUFFERED := 1
# glog: keep Caffe quiet unless something goes wrong
export GLOG_minloglevel ?= 2

# APT=0: do not install Debian packages (you provide Caffe's build dependencies yourself)
APT        ?= 1
# Where things are (override on the command line: make eval DATASET=icoseg DATA_ROOT=~/datasets)
DATA_ROOT  ?= data
RUNS       ?= runs
DATASET    ?= icoseg
VGG16      ?= $(DATA_ROOT)/weights/VGG_ILSVRC_16_layers.caffemodel
GPU        ?=
ITERS      ?=
RESUME     ?=
# A Caffe you built yourself: make setup CAFFE_PYTHON=/path/to/caffe/python
CAFFE_PYTHON ?=
APT_PACKAGES := $(shell grep -v '^\#' scripts/apt-packages.txt)

.PHONY: help setup apt lock test test-fast test-jobs bench demo demo-ablation train eval baselines table clean distclean

help:
	@echo "make setup      apt packages, Caffe (cached build), .venv with pycaffe"
	@echo "make test       the test suite (what CI runs); make test-fast: without the slow tests"
	@echo "make bench      speed benchmarks (tables; figures kept in docs/benchmarks.md)"
	@echo "make demo       synthetic co-saliency benchmark: train tiny Ours-S + group model on the CPU, evaluate"
	@echo "make demo-ablation   Ours-S, Ours and Ours+ on anchored and free placement, 2 seeds (README)"
	@echo "make train      two-stage training (DATA_ROOT, VGG16, GPU=0, RESUME=1)"
	@echo "make eval DATASET=icoseg   predict a benchmark with the trained models and evaluate (ENGINE=opencv: fast CPU)"
	@echo "make baselines DATASET=icoseg   CBCS, CBCS-S and CSHS maps of a benchmark, evaluated"
	@echo "make table      merge every evaluated benchmark into Table 1 (RUNS/table)"
	@echo "make reproduce  Table 1 end to end: inputs checked, baselines, training, evaluation, table (DRY_RUN=1: the plan)"
	@echo "make gpu-check GPU=0   pre-flight check of the GPU path (one table; CPU mode: GPU=cpu)"
	@echo "make gpu-bundle the GPU check for a bare GPU node, one archive (BUNDLE_DIR)"
	@echo "make caffe-cuda Caffe with CUDA (prints the folder for make setup CAFFE_PYTHON=...)"
	@echo "make lock       regenerate requirements.lock (exact versions, hashes) from requirements.txt"
	@echo "make docker-build   the Docker image (DOCKER_VARIANT=cuda|cpu; docker, else buildah)"
	@echo "make docker-check   build both images, run pycaffe and a miniature make reproduce in them"
	@echo "make clean      caches only (never RUNS); make distclean also removes .venv"

# ---------------------------------------------------------------- setup
setup: $(VENV)/.setup-done

apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing apt packages:" $$missing; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends $$missing; \
	fi

$(VENV)/bin/python: | $(if $(filter 0,$(APT)),,apt)
	$(PYTHON_SYS) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip

# The project itself is installed editable (pyproject.toml): its packages import from anywhere.
# Exact versions with hashes from requirements.lock (`make lock` regenerates it from requirements.txt).
$(VENV)/.deps-done: requirements.lock pyproject.toml | $(VENV)/bin/python
	$(VENV)/bin/pip install -q --require-hashes -r requirements.lock
	$(VENV)/bin/pip install -q --no-deps -e .
	touch $@

# One stamp per CAFFE_PYTHON value, so that switching Caffe builds re-links pycaffe.
CAFFE_STAMP := $(VENV)/.caffe-$(if $(CAFFE_PYTHON),$(shell printf '%s' '$(CAFFE_PYTHON)' | md5sum | cut -c1-12),built)
$(CAFFE_STAMP): | $(VENV)/bin/python
	rm -f $(VENV)/.caffe-*
	touch $@

# pycaffe is linked into the venv through a .pth file pointing at the cached build.
$(VENV)/.setup-done: $(VENV)/.deps-done $(CAFFE_STAMP) scripts/build_caffe.sh $(wildcard patches/*.patch)
	@set -e; \
	if [ -n "$(CAFFE_PYTHON)" ]; then dir="$(CAFFE_PYTHON)"; \
	else dir=$$(PYTHON=$(PY) scripts/build_caffe.sh | tail -n 1); fi; \
	site=$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'); \
	echo "$$dir" > "$$site/pycaffe.pth"; \
	GLOG_minloglevel=2 $(PY) -c 'import caffe; print("pycaffe ready:", caffe.__file__)'
	touch $@

# requirements.lock: every package of requirements.txt and their dependencies, exact versions with
# hashes, for every Python the project supports (3.10 and newer), by uv's resolver.
LOCK_TOOL := uv==0.13.9
lock: | $(VENV)/bin/python
	$(VENV)/bin/pip install -q $(LOCK_TOOL)
	$(VENV)/bin/uv pip compile -q --universal --generate-hashes --python-version 3.10 \
	  --custom-compile-command "make lock" requirements.txt -o requirements.lock

# ---------------------------------------------------------------- the steps
# A variable as one shell word: quoted (paths with spaces), a leading ~/ expanded as the shell would.
q = '$(subst ','\'',$(patsubst ~/%,$(HOME)/%,$(1)))'
GPU_ARG := $(if $(GPU),--gpu $(call q,$(GPU)))
ENGINE  ?= caffe

demo: setup
	$(PY) -m apps.pipeline demo --runs $(call q,$(RUNS)/demo)

demo-ablation: setup
	$(PY) -m apps.ablation --runs $(call q,$(RUNS)/ablation)

train: setup
	$(PY) -m apps.pipeline train --data-root $(call q,$(DATA_ROOT)) --vgg16 $(call q,$(VGG16)) --runs $(call q,$(RUNS)) \
	  $(GPU_ARG) $(if $(ITERS),--iters $(call q,$(ITERS))) $(if $(RESUME),--resume=$(call q,$(RESUME)))

eval: setup
	$(PY) -m apps.pipeline eval --dataset $(call q,$(DATASET)) --data-root $(call q,$(DATA_ROOT)) --runs $(call q,$(RUNS)) \
	  --engine $(call q,$(ENGINE)) $(GPU_ARG)

baselines: setup
	$(PY) -m apps.pipeline baselines --dataset $(call q,$(DATASET)) --data-root $(call q,$(DATA_ROOT)) --runs $(call q,$(RUNS))

table: setup
	$(PY) -m apps.pipeline table --runs $(call q,$(RUNS))

# ---------------------------------------------------------------- checks
# The suite runs on every core (pytest-xdist), four workers at most: the slow tests' full-size nets
# take memory. TEST_JOBS=0 runs it in this process alone.
TEST_JOBS ?= auto
PYTEST := $(PY) -m pytest -q -n $(call q,$(TEST_JOBS)) --maxprocesses 4
test: test-jobs setup
	$(PYTEST)

# The edit loop: everything but the tests marked slow (training, full-size nets, whole commands).
test-fast: test-jobs setup
	$(PYTEST) -m "not slow"

# What pytest-xdist takes, checked first: anything else was pytest's usage text after the setup.
test-jobs:
	@case $(call q,$(TEST_JOBS)) in auto|logical) ;; ''|*[!0-9]*) \
	  printf 'error: TEST_JOBS=%s: expected auto, logical or a number of workers (0: none)\n' $(call q,$(TEST_JOBS)) >&2; \
	  exit 2 ;; esac

bench: setup
	@for b in bench/bench_*.py; do echo; echo "== $$b"; $(PY) $$b || exit $$?; done

# Only what can be rebuilt: caches and bytecode. Trained models and results (RUNS) are never
# deleted by make; the virtual environment goes with `make distclean`.
clean:
	rm -rf .pytest_cache
	find . -name __pycache__ -type d -not -path './.venv/*' -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)

# ---------------------------------------------------------------- CUDA, Docker, Table 1
DOCKER_VARIANT ?= cuda
DOCKER_IMAGE   ?= gwd:$(DOCKER_VARIANT)
# options of scripts/docker_check.py for `make docker-check` (CI: --trixie-tests fast)
DOCKER_CHECK_ARGS ?=
.PHONY: caffe-cuda lint-docker docker-build docker-check reproduce gpu-check gpu-bundle
ICOSEG_DEV ?= ../shared/datasets/icoseg-dev
BUNDLE_DIR ?= dist

# GPU=N checks GPU N; GPU=cpu runs the same table in CPU mode.
gpu-check: setup
	$(PY) -m apps.gpu_check $(if $(filter cpu,$(GPU)),--cpu,--gpu $(call q,$(GPU))) $(if $(wildcard $(ICOSEG_DEV)/images),--data $(call q,$(ICOSEG_DEV)))

# CAFFE_BUILD=<build folder> bundles another build than the CUDA one (make caffe-cuda). An
# ICOSEG_DEV given to make is passed as DATA (checked there); else gpu_bundle.sh takes the dev set
# where it is, toy groups elsewhere.
gpu-bundle: $(VENV)/.deps-done
	PYTHON=$(PY) $(if $(filter-out file,$(origin ICOSEG_DEV)),DATA=$(call q,$(ICOSEG_DEV))) scripts/gpu_bundle.sh $(call q,$(BUNDLE_DIR))

# Caffe with CUDA (nvcc on PATH; cuBLAS/cuRAND/NCCL from NVIDIA's wheels when the toolkit lacks
# them). Prints the pycaffe folder: use it with make setup CAFFE_PYTHON=<folder>.
caffe-cuda: $(VENV)/.deps-done
	PYTHON=$(PY) scripts/cuda_build.sh

lint-docker: $(VENV)/.deps-done
	$(VENV)/bin/hadolint Dockerfile

docker-build:
	scripts/docker_image.sh build $(DOCKER_VARIANT) $(DOCKER_IMAGE)

# Both images built and used as a user would (scripts/docker_check.py says what is checked).
docker-check: setup
	$(PY) scripts/docker_check.py $(DOCKER_CHECK_ARGS)

# Table 1 end to end: checks the inputs, then baselines, training, evaluation, table (resumable).
reproduce: setup
	$(PY) -m apps.pipeline reproduce --data-root $(call q,$(DATA_ROOT)) --vgg16 $(call q,$(VGG16)) --runs $(call q,$(RUNS)) \
	  $(GPU_ARG) --engine $(call q,$(ENGINE)) $(if $(ITERS),--iters $(call q,$(ITERS))) \
	  $(if $(DRY_RUN),--dry-run=$(call q,$(DRY_RUN)))
