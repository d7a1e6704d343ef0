# Group-wise deep co-saliency detection (Wei et al., IJCAI 2017): BVLC Caffe 99bd997 built by
# scripts/build_caffe.sh (CPU) or scripts/cuda_build.sh (CUDA 13 from NVIDIA's PyPI wheels) with
# the project's patches/, the same recipe as `make setup` / `make caffe-cuda` on a Debian 12 host,
# then the project and its venv from requirements.lock. Default command: `make reproduce`.
#
#   DOCKER_BUILDKIT=1 docker build -t gwd:cuda .                         # CUDA 13.0: driver >= 580
#   DOCKER_BUILDKIT=1 docker build -t gwd:cpu --build-arg VARIANT=cpu .  # CPU only
#   docker run --rm --gpus all -v "$HOME/datasets:/data:ro" -v "$HOME/weights:/weights:ro" \
#       -v "$HOME/gwd-out:/out" gwd:cuda
#
# BuildKit is needed (the default builder since Docker 23; DOCKER_BUILDKIT=1 for Docker 20.10-22;
# buildah and podman): the steps that run pip mount the optional build secret `pip-ca`, a CA
# bundle for pip behind a proxy that intercepts TLS (`--secret id=pip-ca,src=FILE`;
# scripts/docker_image.sh passes the host pip's own bundle). Without it pip uses its own CAs.
# There is no `# syntax=` line: the builder's own Dockerfile frontend has all this file uses, so
# nothing but the base image is pulled.
#
# Nothing is downloaded at run time. Layers are ordered so that the Caffe build depends only on
# the base system, scripts/build_caffe.sh, scripts/cuda_build.sh and patches/: editing the
# project's sources rebuilds the last layers only.

# cuda or cpu
ARG VARIANT=cuda

# ---------------------------------------------------------------- the system (both stages)
FROM debian:12.15-slim AS system
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# The list of `make apt` (scripts/apt-packages.txt); versions come with Debian 12's security
# updates, not pinned.
COPY scripts/apt-packages.txt /opt/apt-packages.txt
# hadolint ignore=DL3008
RUN apt-get update -q \
 && grep -v '^#' /opt/apt-packages.txt | xargs apt-get install -y -q --no-install-recommends \
 && rm -rf /var/lib/apt/lists/* /opt/apt-packages.txt

# ---------------------------------------------------------------- Caffe
FROM system AS caffe
ARG VARIANT
# GPU architectures: empty means scripts/build_caffe.sh's defaults (SASS for 7.5, 8.0 and 9.0,
# PTX of 9.0).
ARG CUDA_ARCH_BIN=""
ARG CUDA_ARCH_PTX=""
ENV GWD_CAFFE_CACHE=/opt/caffe
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /opt/gwd
# pycaffe compiles against numpy 2 (its ABI serves every numpy 2.x of requirements.lock)
RUN --mount=type=secret,id=pip-ca \
    { [ ! -s /run/secrets/pip-ca ] || export PIP_CERT=/run/secrets/pip-ca; } \
 && python3 -m venv /opt/buildenv \
 && /opt/buildenv/bin/pip install -q numpy==2.3.4
COPY scripts/build_caffe.sh scripts/cuda_build.sh scripts/
COPY patches/ patches/
# The CUDA libraries pycaffe loads (cudart, cuBLAS, cuRAND, NCCL) are copied to /opt/cuda-libs;
# the toolkit and the wheels stay in this stage. /opt/caffe-seed exists only where the build is
# given one (scripts/docker_image.sh mounts the host's build cache there with buildah): a build
# of the same key found there is copied instead of compiled (GWD_CAFFE_SEED, build_caffe.sh).
RUN --mount=type=secret,id=pip-ca \
    { [ ! -s /run/secrets/pip-ca ] || export PIP_CERT=/run/secrets/pip-ca; } \
 && if [ "$VARIANT" = cuda ]; then build=scripts/cuda_build.sh; else build=scripts/build_caffe.sh; fi \
 && dir=$(CUDA_LINE=13 CUDA_ARCH_BIN="$CUDA_ARCH_BIN" CUDA_ARCH_PTX="$CUDA_ARCH_PTX" \
          GWD_CAFFE_SEED=/opt/caffe-seed PYTHON=/opt/buildenv/bin/python "$build" | tail -n 1) \
 && ln -s "$dir" /opt/caffe/python \
 && mkdir /opt/cuda-libs \
 && { LD_LIBRARY_PATH=$(printf '%s:' /opt/caffe/cuda-wheels-*/nvidia/cu*/lib) ldd "$dir/caffe/_caffe.so" \
      | awk '$3 ~ /^\/opt\/caffe\/cuda-wheels/ {print $3}' | xargs -r cp -L -t /opt/cuda-libs; } \
 && rm -rf /opt/caffe/downloads /opt/caffe/cuda-wheels-* \
 && find /opt/caffe -name '*.o' -delete

# ---------------------------------------------------------------- runtime
# The same Debian 12 with only what runs Caffe and the project (scripts/apt-runtime-packages.txt):
# no compiler, no -dev packages, no CUDA toolkit; the CUDA libraries come from /opt/cuda-libs.
FROM debian:12.15-slim AS runtime
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
COPY scripts/apt-runtime-packages.txt /opt/apt-runtime-packages.txt
# hadolint ignore=DL3008
RUN apt-get update -q \
 && grep -v '^#' /opt/apt-runtime-packages.txt | xargs apt-get install -y -q --no-install-recommends \
 && rm -rf /var/lib/apt/lists/* /opt/apt-runtime-packages.txt

FROM runtime AS run-cuda
ENV GPU=0
FROM runtime AS run-cpu
ENV GPU=""

# (run-cuda or run-cpu, above)
# hadolint ignore=DL3006
FROM run-${VARIANT}
ARG USER_UID=1000
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV PYTHONDONTWRITEBYTECODE=1 \
    DATA_ROOT=/data VGG16=/weights/VGG_ILSVRC_16_layers.caffemodel RUNS=/out \
    APT=0 CAFFE_PYTHON=/opt/caffe/python LD_LIBRARY_PATH=/opt/cuda-libs
WORKDIR /opt/gwd
# The locked Python packages first: a source change does not reinstall them.
COPY requirements.lock ./
RUN --mount=type=secret,id=pip-ca \
    { [ ! -s /run/secrets/pip-ca ] || export PIP_CERT=/run/secrets/pip-ca; } \
 && python3 -m venv .venv \
 && .venv/bin/pip install -q --require-hashes -r requirements.lock
# Same folder as in the build stage: pycaffe's _caffe.so links into it by absolute path.
COPY --from=caffe /opt/caffe /opt/caffe
COPY --from=caffe /opt/cuda-libs /opt/cuda-libs
COPY . .
# Link pycaffe into the venv and install the project editable (APT=0 and CAFFE_PYTHON above: no
# apt, no second Caffe build, nothing compiled: every locked package is a wheel); the last check
# fails the build if any setup stamp were older than its inputs, since `make reproduce` must not
# rebuild at run time.
RUN --mount=type=secret,id=pip-ca \
    { [ ! -s /run/secrets/pip-ca ] || export PIP_CERT=/run/secrets/pip-ca; } \
 && make setup \
 && make -q .venv/.setup-done

# The project's user takes uid 1000 (USER_UID), the usual first user of a host, so that files
# written to /out belong to that user.
RUN useradd --no-log-init --create-home --uid "$USER_UID" --shell /bin/bash gwd \
 && mkdir -p /data /weights /out \
 && chown gwd:gwd /out
VOLUME ["/data", "/weights", "/out"]
USER ${USER_UID}
CMD ["make", "reproduce"]
