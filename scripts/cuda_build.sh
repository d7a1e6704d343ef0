#!/usr/bin/env bash
# CUDA build of Caffe (`make caffe-cuda`, the Docker image) from NVIDIA's PyPI wheels where the
# machine lacks parts of the CUDA toolkit:
# - no nvcc at all (CUDA_HOME unset, none on PATH), or one of another major release than CUDA_LINE:
#   the toolkit of the line CUDA_LINE (nvcc, crt, nvvm, runtime, cccl; pinned) is installed from
#   the wheels into a cache folder and used;
# - a toolkit without cuBLAS / cuRAND / NCCL (one installed from the wheels, for example): those
#   three come from the wheels, installed into a cache folder (never into the project's .venv).
# The linker needs unversioned library names, which the wheels lack, so symlinks are added. Then
# scripts/build_caffe.sh --cuda builds with them (cached, keyed there). A toolkit that already
# has cublas_v2.h goes straight to scripts/build_caffe.sh --cuda.
#
#   scripts/cuda_build.sh [options of scripts/build_caffe.sh]
#
# Environment: PYTHON (default python3), CUDA_HOME (default: /usr/local/cuda, else nvcc's folder),
# CUDA_LINE (the CUDA major release to build with, default: the toolkit found, else 13; only 13
# can come from the wheels: PyPI's CUDA 12 nvcc wheels hold ptxas alone, not the compiler), CUDA_ARCH_BIN and CUDA_ARCH_PTX (defaults in scripts/build_caffe.sh),
# USE_NCCL (default ON), GWD_CAFFE_CACHE (default ~/.cache/gwd-caffe). The last line on stdout is
# the pycaffe folder.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${GWD_CAFFE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gwd-caffe}
python=${PYTHON:-python3}
log() { echo "[cuda_build] $*" >&2; }
fail() { echo "error: $*" >&2; exit 2; }
make_dir() {   # FOLDER WHAT: one line `error: FOLDER: ...` where it cannot be made (under a file, read-only)
  local why
  why=$(mkdir -p "$1" 2>&1) || fail "$1: cannot create the $2 (${why##*: })"
}

make_dir "$cache" "cache folder, GWD_CAFFE_CACHE,"

# Pinned wheel sets per CUDA line: the toolkit (when there is no nvcc) and the libraries.
toolkit_wheels() {
  case "$1" in
    13) echo nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88 \
             nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85 ;;
    *) log "CUDA_LINE=$1: no pinned toolkit wheels (PyPI has a complete nvcc for CUDA 13 only)"; exit 2 ;;
  esac
}

# Install wheels into a cache folder named by their hash (once; a half-done install is redone).
install_wheels() {  # wheels... ; prints the folder
  local prefix
  prefix="$cache/cuda-wheels-$(printf '%s\n' "$@" | sha256sum | cut -c1-12)"
  if [ ! -f "$prefix/.complete" ]; then
    log "installing $* into $prefix"
    rm -rf "$prefix"
    "$python" -m pip install -q --no-deps --disable-pip-version-check --target "$prefix" "$@" >&2 \
      || { log "pip could not install $*"; exit 1; }
    touch "$prefix/.complete"
  fi
  echo "$prefix"
}

# FindCUDA locates the toolkit from nvcc's folder; a wrapper script on PATH (/usr/local/bin/nvcc)
# would point it at the wrong prefix, so put the toolkit's own bin/ first.
if [ -z "${CUDA_HOME:-}" ]; then
  if [ -x /usr/local/cuda/bin/nvcc ]; then
    CUDA_HOME=/usr/local/cuda
  elif nvcc=$(command -v nvcc); then
    CUDA_HOME=$(dirname "$(dirname "$(readlink -f "$nvcc")")")
  fi
fi
toolkit_line() { "$1/bin/nvcc" --version 2>/dev/null | sed -n 's/.*release \([0-9]*\)\..*/\1/p'; }
# No toolkit, or one of another line than CUDA_LINE asks for: the toolkit from the wheels.
if [ -z "${CUDA_HOME:-}" ] || { [ -n "${CUDA_LINE:-}" ] && [ "$(toolkit_line "$CUDA_HOME")" != "$CUDA_LINE" ]; }; then
  line=${CUDA_LINE:-13}
  wl=$(toolkit_wheels "$line")
  read -r -a tk <<< "$wl"
  CUDA_HOME="$(install_wheels "${tk[@]}")/nvidia/cu$line"
  # The layout nvcc.profile and FindCUDA expect of a toolkit folder.
  make_dir "$CUDA_HOME/targets/x86_64-linux" "toolkit's folder"
  ln -sfn ../../include "$CUDA_HOME/targets/x86_64-linux/include"
  ln -sfn ../../lib "$CUDA_HOME/targets/x86_64-linux/lib"
  ln -sfn lib "$CUDA_HOME/lib64"
  ln -sfn "libcudart.so.$line" "$CUDA_HOME/lib/libcudart.so"
  log "CUDA toolkit $line from the wheels: $CUDA_HOME"
fi
[ -x "$CUDA_HOME/bin/nvcc" ] || { log "$CUDA_HOME/bin/nvcc not found (CUDA_HOME)"; exit 2; }
export CUDA_HOME CUDA_PATH=$CUDA_HOME PATH="$CUDA_HOME/bin:$PATH"
export USE_NCCL=${USE_NCCL:-ON}

release=$(nvcc --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')
if [ -f "$CUDA_HOME/include/cublas_v2.h" ] && [ -f "$CUDA_HOME/include/curand.h" ]; then
  log "CUDA $release at $CUDA_HOME has cuBLAS and cuRAND: no wheels needed"
  exec "$here/scripts/build_caffe.sh" --cuda "$@"
fi

# Wheels of the same CUDA major release as nvcc (minor-version compatible), pinned.
case "$release" in
  13.*) wheels=(nvidia-cublas==13.0.2.14 nvidia-curand==10.4.0.35 nvidia-nccl-cu13==2.27.7)
        sub=cu13 ;;
  *) log "CUDA $release: no pinned cuBLAS/cuRAND wheels for this release; install the toolkit's" \
         "cuBLAS and cuRAND development packages and rerun"; exit 2 ;;
esac
prefix=$(install_wheels "${wheels[@]}")
inc="$prefix/nvidia/$sub/include"
lib="$prefix/nvidia/$sub/lib"
# Unversioned names for the linker; NCCL's wheel keeps its own folder, so link it in beside
# cuBLAS (its header too): one include and one library folder for build_caffe.sh.
for name in cublas curand; do
  versioned=("$lib/lib$name".so.[0-9]*)
  [ -f "${versioned[0]}" ] || { log "no lib$name.so.N in $lib"; exit 1; }
  ln -sfn "$(basename "${versioned[0]}")" "$lib/lib$name.so"
done
if [ "$USE_NCCL" = ON ]; then
  ln -sfn ../../nccl/include/nccl.h "$inc/nccl.h"
  ln -sfn ../../nccl/lib/libnccl.so.2 "$lib/libnccl.so.2"
  ln -sfn libnccl.so.2 "$lib/libnccl.so"
fi
export CUDA_EXTRA_LIBDIR=$lib CUDA_EXTRA_INCDIR=$inc
exec "$here/scripts/build_caffe.sh" --cuda "$@"
