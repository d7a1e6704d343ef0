# Group-wise Deep Co-saliency Detection (Wei et al., IJCAI 2017) in Caffe.
# Every target runs through the project's virtual environment (.venv, made by `make setup`).

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_SYS ?= /usr/bin/python3
VENV       ?= .venv
PY         := $(VENV)/bin/python
export PYTHONPATH := $(CURDIR)$(if $(PYTHONPATH),:$(PYTHONPATH))
export PYTHONUNBUFFERED := 1
# glog: keep Caffe quiet unless something goes wrong
export GLOG_minloglevel ?= 2

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
APT_PACKAGES := cmake build-essential curl ca-certificates patch \
  libboost-python-dev libboost-system-dev libboost-filesystem-dev libboost-thread-dev \
  libgoogle-glog-dev libgflags-dev libprotobuf-dev protobuf-compiler libhdf5-dev libopenblas-dev \
  python3-dev python3-venv

.PHONY: help setup apt venv caffe test bench demo train eval predict clean

help:
	@echo "make setup      apt packages, Caffe (cached build), .venv with pycaffe"
	@echo "make test       the test suite (what CI runs)"
	@echo "make bench      speed benchmarks (tables; figures kept in docs/benchmarks.md)"
	@echo "make demo       synthetic co-saliency benchmark: train tiny Ours-S + group model on the CPU, evaluate"
	@echo "make train      two-stage training (DATA_ROOT, VGG16, GPU=0, RESUME=1)"
	@echo "make eval DATASET=icoseg   predict a benchmark with the trained models and write Table 1"

# ---------------------------------------------------------------- setup
setup: $(VENV)/.setup-done

apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing apt packages:" $$missing; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends $$missing; \
	fi

$(VENV)/bin/python:
	$(PYTHON_SYS) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip

$(VENV)/.deps-done: requirements.txt | $(VENV)/bin/python
	$(VENV)/bin/pip install -q -r requirements.txt
	touch $@

# pycaffe is linked into the venv through a .pth file pointing at the cached build.
$(VENV)/.setup-done: $(VENV)/.deps-done scripts/build_caffe.sh $(wildcard patches/*.patch)
	@if [ -z "$(CAFFE_PYTHON)" ]; then $(MAKE) --no-print-directory apt; fi
	@set -e; \
	if [ -n "$(CAFFE_PYTHON)" ]; then dir="$(CAFFE_PYTHON)"; \
	else dir=$$(PYTHON=$(PY) scripts/build_caffe.sh | tail -n 1); fi; \
	site=$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'); \
	echo "$$dir" > "$$site/pycaffe.pth"; \
	GLOG_minloglevel=2 $(PY) -c 'import caffe; print("pycaffe ready:", caffe.__file__)'
	touch $@

# ---------------------------------------------------------------- checks
test: setup
	$(PY) -m pytest -q

bench: setup
	@for b in bench/bench_*.py; do echo; echo "== $$b"; $(PY) $$b || exit $$?; done

clean:
	rm -rf $(RUNS)
