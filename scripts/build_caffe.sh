#!/usr/bin/env bash
# Build BVLC Caffe (upstream commit 99bd997, as Debian packages it: caffe 1.0.0+git20180821.99bd997-8)
# with pycaffe and Python layers. One recipe for the host (`make setup`, CPU), the CUDA build
# (`make caffe-cuda`) and the Docker image.
#
#   scripts/build_caffe.sh [--cuda] [--python PY] [--cache DIR] [--jobs N]
#
# Sources are fetched from the Debian archive, checked against pinned SHA-256 sums, Debian's
# patch series is applied, then the project's patches/ in order. The build lands in
# $CACHE/<key>, where key hashes the sources, every patch, the flags, and the Python/numpy ABI,
# so a second run with the same inputs returns at once. On success the last line printed on
# stdout is the folder that holds the `caffe` Python package.
#
# GWD_CAFFE_SEED=DIR: another cache folder (read-only is fine). When it holds a complete build of
# the same key (same sources, patches, flags, compiler release, Python/numpy ABI; the key does not
# depend on where a cache lives), that build is copied instead of compiled and its libraries'
# RUNPATHs are moved to this cache (patchelf). `make docker-check` seeds the images this way from
# the host's builds, so CI compiles each variant once.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cuda=0
python=${PYTHON:-python3}
cache=${GWD_CAFFE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gwd-caffe}
jobs=$(nproc 2>/dev/null || echo 2)
# Turing (7.5), Ampere/Ada (8.x: sm_80 code runs on 8.6 and 8.9), Hopper (9.0); PTX of 9.0 for
# newer GPUs (compiled by the driver). CUDA 13 has no Volta (7.0) target.
cuda_arch_bin=${CUDA_ARCH_BIN:-75 80 90}
cuda_arch_ptx=${CUDA_ARCH_PTX:-90}
cuda_libdir=${CUDA_EXTRA_LIBDIR:-}

while [ $# -gt 0 ]; do
  case "$1" in
    --cuda) cuda=1 ;;
    --python) python=$2; shift ;;
    --cache) cache=$2; shift ;;
    --jobs) jobs=$2; shift ;;
    -h|--help) sed -n 2,12p "$0"; exit 0 ;;
    *) echo "build_caffe.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
pool="$mirror/pool/main/c/caffe"
orig=caffe_1.0.0+git20180821.99bd997.orig.tar.gz
orig_sha=e0eb3f06794f7402c77b7dec8e8480273ee1a1bb192e9122b621a69d4147ad0c
deb=caffe_1.0.0+git20180821.99bd997-8.debian.tar.xz
deb_sha=07cf073227494a6b07234e40cb5df91db566616593eef9baafdc4d06ad159f21

log() { echo "[build_caffe] $*" >&2; }

python=$(command -v "$python") || { log "Python not found"; exit 2; }
case "$python" in /*) ;; *) python="$PWD/$python" ;; esac  # cmake runs elsewhere; keep venv symlink
pyabi=$("$python" -c 'import sys, numpy; print("py%d.%d-np%s" % (sys.version_info[:2] + (numpy.__version__.split(".")[0],)))') \
  || { log "'$python' cannot import numpy (pycaffe is compiled against it): install numpy first"; exit 2; }

flags=(-DCMAKE_BUILD_TYPE=Release -DBUILD_python=ON -DBUILD_python_layer=ON -Dpython_version=3
       -DBUILD_docs=OFF -DUSE_OPENCV=OFF -DUSE_LEVELDB=OFF -DUSE_LMDB=OFF -DUSE_HDF5=ON
       -DBLAS=Open)
if [ "$cuda" = 1 ]; then
  command -v nvcc >/dev/null || { log "--cuda needs nvcc on PATH"; exit 2; }
  # Caffe's own arch list starts at compute_20, which nvcc 11+ rejects: name them explicitly.
  # cuDNN stays off: Caffe 99bd997 calls cuDNN 7's algorithm-query API, removed in cuDNN 8.
  flags+=(-DCPU_ONLY=OFF -DUSE_CUDNN=OFF "-DUSE_NCCL=${USE_NCCL:-OFF}" -DCUDA_ARCH_NAME=Manual
          "-DCUDA_ARCH_BIN=$cuda_arch_bin" "-DCUDA_ARCH_PTX=$cuda_arch_ptx")
  if [ -n "$cuda_libdir" ]; then
    # cuBLAS/cuRAND (and NCCL) from the nvidia-* wheels (scripts/cuda_build.sh): FindCUDA resets
    # the cuBLAS/cuRAND paths on the first configure, hence the second configure below.
    flags+=("-DCUDA_cublas_LIBRARY=$cuda_libdir/libcublas.so" "-DCUDA_curand_LIBRARY=$cuda_libdir/libcurand.so")
    if [ -n "${CUDA_EXTRA_INCDIR:-}" ]; then
      flags+=("-DCMAKE_CXX_FLAGS=-I$CUDA_EXTRA_INCDIR" "-DCUDA_NVCC_FLAGS=-I$CUDA_EXTRA_INCDIR")
      if [ "${USE_NCCL:-OFF}" = ON ] && [ -f "$cuda_libdir/libnccl.so" ]; then
        flags+=("-DNCCL_INCLUDE_DIR=$CUDA_EXTRA_INCDIR" "-DNCCL_LIBRARIES=$cuda_libdir/libnccl.so")
      fi
    fi
  fi
  variant=cuda-$(nvcc --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')
  compiler=$(nvcc --version | tail -n 1)  # the exact build of nvcc, for the key
else
  flags+=(-DCPU_ONLY=ON)
  variant=cpu
  compiler=
fi

# Paths inside the cache (the CUDA wheels' folders) enter the key relative to it.
key=$( { echo "$orig_sha $deb_sha $pyabi $variant${compiler:+ $compiler}"; printf '%s\n' "${flags[@]//"$cache"/<cache>}"
         cat "$here"/patches/*.patch; } | sha256sum | cut -c1-16)
dest="$cache/$variant-$pyabi-$key"
# Not in the key: any venv with the same Python and numpy ABI can use the build.
flags+=("-DPYTHON_EXECUTABLE=$python")
if [ -f "$dest/.complete" ]; then
  log "cached build: $dest"
  echo "$dest/src/python"
  exit 0
fi

mkdir -p "$cache/downloads"
exec 9>"$cache/.lock"
flock 9  # two builds at once would fight over the same folder

# A complete build of the same key in GWD_CAFFE_SEED: copy it, and point the RUNPATHs of its ELF
# files and its absolute symlinks (which name the seed's own cache folder, read from _caffe.so's
# RUNPATH) at this cache.
seed_copy() {  # seed-cache-folder
  local src old f rp
  src="$1/$(basename "$dest")"
  [ -f "$src/.complete" ] || return 1
  command -v patchelf >/dev/null || { log "GWD_CAFFE_SEED needs patchelf (apt-get install patchelf)"; exit 2; }
  old=$(patchelf --print-rpath "$src/build/lib/_caffe.so" | tr ':' '\n' \
        | sed -n "s|/$(basename "$dest")/build/lib\$||p" | head -n 1)
  [ -n "$old" ] || { log "$src: cannot tell which cache folder it was built in; compiling"; return 1; }
  log "copying the build of the same key from $src (not compiling)"
  rm -rf "$dest"
  cp -a "$src" "$dest"
  rm -f "$dest/.complete"
  while IFS= read -r -d '' f; do
    rp=$(patchelf --print-rpath "$f" 2>/dev/null) || continue
    if [[ $rp == *"$old"* ]]; then patchelf --set-rpath "${rp//"$old"/"$cache"}" "$f"; fi
  done < <(find "$dest" -type f \( -name '*.so*' -o -perm -u+x \) -print0)
  # CMake links pycaffe's _caffe.so into src/python by absolute path: repoint such links too.
  while IFS= read -r -d '' f; do
    rp=$(readlink "$f")
    if [[ $rp == "$old"/* ]]; then ln -sfn "$cache${rp#"$old"}" "$f"; fi
  done < <(find "$dest" -type l -print0)
  touch "$dest/.complete"
}
if [ -n "${GWD_CAFFE_SEED:-}" ] && [ -d "$GWD_CAFFE_SEED" ] && seed_copy "$GWD_CAFFE_SEED"; then
  echo "$dest/src/python"
  exit 0
fi
fetch() {  # name sha
  local f="$cache/downloads/$1"
  if [ ! -f "$f" ] || ! echo "$2  $f" | sha256sum -c --quiet - 2>/dev/null; then
    log "downloading $1"
    curl -fsSL --retry 3 -o "$f.part" "$pool/$1" || { log "cannot download $pool/$1"; exit 1; }
    mv "$f.part" "$f"
  fi
  echo "$2  $f" | sha256sum -c --quiet - || { log "checksum mismatch for $f"; rm -f "$f"; exit 1; }
}
fetch "$orig" "$orig_sha"
fetch "$deb" "$deb_sha"

rm -rf "$dest"
mkdir -p "$dest/src" "$dest/build"
tar -xzf "$cache/downloads/$orig" -C "$dest/src"
tar -xJf "$cache/downloads/$deb" -C "$dest/src"
cd "$dest/src"
while read -r p; do
  case "$p" in ''|'#'*) continue ;; esac
  patch -s -p1 < "debian/patches/$p"
done < debian/patches/series
for p in "$here"/patches/*.patch; do
  log "applying $(basename "$p")"
  patch -s -p1 < "$p"
done

cd "$dest/build"
log "configuring ($variant, $pyabi)"
cmake "${flags[@]}" ../src > cmake.log 2>&1 || { tail -30 cmake.log >&2; log "cmake failed: $dest/build/cmake.log"; exit 1; }
if [ "$cuda" = 1 ] && [ -n "$cuda_libdir" ]; then
  cmake "${flags[@]}" ../src >> cmake.log 2>&1
fi
log "compiling with $jobs jobs (on 2 cores: CPU 2-8 min, CUDA 20-30 min for three GPU architectures)"
start=$(date +%s)
make -j"$jobs" caffe caffe.bin pycaffe > make.log 2>&1 || { tail -40 make.log >&2; log "build failed: $dest/build/make.log"; exit 1; }
log "compiled in $(( $(date +%s) - start )) s"
if [ "$cuda" = 1 ]; then
  # Read by core/device.py: which GPU architectures this build can run on.
  printf '{"variant": "%s", "cuda_arch_bin": "%s", "cuda_arch_ptx": "%s", "nccl": "%s"}\n' \
    "$variant" "$cuda_arch_bin" "$cuda_arch_ptx" "${USE_NCCL:-OFF}" > "$dest/src/python/gwd-caffe-build.json"
fi
touch "$dest/.complete"
echo "$dest/src/python"
