# syntax=docker/dockerfile:1
# Group-wise deep co-saliency detection (Wei et al., IJCAI 2017): Caffe (BVLC 99bd997) built with
# CUDA by scripts/build_caffe.sh and the project's patches/ (the same recipe as `make setup` and
# `make caffe-cuda`), the project and its venv. Default command: `make reproduce` (Table 1).
#
#   docker build -t gwd .                                # CUDA 12.8 (driver >= 570, or >= 525 without PTX JIT)
#   docker build -t gwd:cpu --build-arg VARIANT=cpu .    # CPU only (ubuntu:24.04)
#   docker run --rm --gpus all -v "$HOME/datasets:/data:ro" -v "$HOME/weights:/weights:ro" \
#       -v "$HOME/gwd-out:/out" gwd
#
# Nothing is downloaded at run time: Caffe's sources (Debian archive, SHA-256 checked) and the
# Python packages are fetched while building.

# cuda or cpu
ARG VARIANT=cuda

# ---------------------------------------------------------------- base images
# CUDA 12.8 on Ubuntu 24.04 (Python 3.12, Boost 1.83, protobuf 3.21): devel to compile, runtime
# (cuBLAS, cuRAND, NCCL included) to run. The images ship NCCL, so the CUDA build has USE_NCCL=ON.
FROM nvidia/cuda:12.8.1-devel-ubuntu24.04 AS build-cuda
FROM nvidia/cuda:12.8.1-runtime-ubuntu24.04 AS run-cuda
ENV GPU=0
FROM ubuntu:24.04 AS build-cpu
FROM ubuntu:24.04 AS run-cpu
ENV GPU=""

# ---------------------------------------------------------------- Caffe
# (build-cuda or build-cpu: a stage above, tagged there)
# hadolint ignore=DL3006
FROM build-${VARIANT} AS caffe
ARG VARIANT
# Real code for Volta ... Hopper, PTX for newer GPUs. With a CUDA 13 base drop 70 (CUDA 13 has
# no Volta target).
ARG CUDA_ARCH_BIN="70 75 80 86 89 90"
ARG CUDA_ARCH_PTX="90"
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GWD_CAFFE_CACHE=/opt/caffe
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /opt/gwd
COPY Makefile requirements.txt ./
# The apt package list is the Makefile's APT_PACKAGES (`make apt`), one list for every install;
# make itself first, and xz-utils (Debian's source tarball is .tar.xz), which the minimal
# Ubuntu image lacks. Versions are left to the distribution's security updates, not pinned.
# hadolint ignore=DL3008
RUN apt-get update -q \
 && apt-get install -y -q --no-install-recommends make xz-utils \
 && make apt \
 && rm -rf /var/lib/apt/lists/*
# pycaffe compiles against numpy: the same requirement line the project's venv installs
RUN python3 -m venv /opt/buildenv \
 && /opt/buildenv/bin/pip install -q -r <(grep -E '^numpy' requirements.txt)
COPY scripts/build_caffe.sh scripts/
COPY patches/ patches/
RUN args=(); if [ "$VARIANT" = cuda ]; then args=(--cuda); fi \
 && dir=$(USE_NCCL=ON CUDA_ARCH_BIN="$CUDA_ARCH_BIN" CUDA_ARCH_PTX="$CUDA_ARCH_PTX" \
          PYTHON=/opt/buildenv/bin/python scripts/build_caffe.sh "${args[@]}" | tail -n 1) \
 && ln -s "$dir" /opt/caffe/python \
 && rm -rf /opt/caffe/downloads \
 && find /opt/caffe -name '*.o' -delete

# ---------------------------------------------------------------- runtime
# (run-cuda or run-cpu: a stage above, tagged there)
# hadolint ignore=DL3006
FROM run-${VARIANT}
ARG USER_UID=1000
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DATA_ROOT=/data VGG16=/weights/VGG_ILSVRC_16_layers.caffemodel RUNS=/out \
    APT=0
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /opt/gwd
COPY Makefile requirements.txt ./
# (APT=0 above only stops later make runs from re-checking the packages installed here)
# hadolint ignore=DL3008
RUN apt-get update -q \
 && apt-get install -y -q --no-install-recommends make \
 && make apt \
 && rm -rf /var/lib/apt/lists/*
RUN make .venv/.deps-done
# Same folder as in the build stage: pycaffe's _caffe.so links into it by absolute path.
COPY --from=caffe /opt/caffe /opt/caffe
COPY . .
# Link the CUDA (or CPU) pycaffe into the venv (CAFFE_PYTHON stays set, so every later make
# uses this build and never builds another); the last check fails the build if any setup
# stamp were older than its inputs, since `make reproduce` must not rebuild at run time.
ENV CAFFE_PYTHON=/opt/caffe/python
RUN make setup \
 && make -q .venv/.setup-done

# Ubuntu 24.04 images have a user "ubuntu" with uid 1000; the project's user takes that uid so
# that files written to /out belong to the usual first user of the host.
RUN if id -u ubuntu >/dev/null 2>&1; then userdel --remove ubuntu; fi \
 && useradd --no-log-init --create-home --uid "$USER_UID" --shell /bin/bash gwd \
 && mkdir -p /data /weights /out \
 && chown gwd:gwd /out
VOLUME ["/data", "/weights", "/out"]
USER ${USER_UID}
CMD ["make", "reproduce"]
