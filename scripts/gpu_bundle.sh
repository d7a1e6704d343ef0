#!/usr/bin/env bash
# `make gpu-bundle`: the GPU check for a bare node (no network, no package manager, Python 3.12 so
# no pycaffe): one archive with the C++ `caffe` tool of the CUDA build, every shared library it
# needs that such a node lacks, the nets, solvers and HDF5 data of real groups, and
# gpu_check.sh, which is also written beside the archive:
#
#   scripts/gpu_bundle.sh OUT_DIR      -> OUT_DIR/gwd-gpu-bundle.tar.gz, OUT_DIR/gpu_check.sh
#
# Environment: PYTHON (the project's, default python3), DATA (iCoseg folder with images/ and
# ground_truth/; unset: ../shared/datasets/icoseg-dev where it is, else toy groups), CAFFE_BUILD (a build
# folder of scripts/build_caffe.sh, the one holding src/ and build/; default: the CUDA build,
# made by scripts/cuda_build.sh when not cached). Glibc, libstdc++ and libgcc_s stay the node's;
# the CUDA libraries (cudart, cuBLAS, cuRAND, NCCL) come from the node's NVIDIA wheels.
# Its inputs are checked before the minutes of building and packing, as the project's commands
# check theirs: a mistake is one line `error: <file>: ...` and exit status 2.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=${PYTHON:-python3}
limit_mib=60
log() { echo "[gpu_bundle] $*" >&2; }
fail() { echo "error: $*" >&2; exit 2; }

[ $# -eq 1 ] && [ -n "$1" ] || fail "usage: scripts/gpu_bundle.sh OUT_DIR (the folder to write the bundle to)"
case $1 in /*) out=$1 ;; *) out=$PWD/$1 ;; esac
command -v "$python" > /dev/null || fail "$python: not found; set PYTHON to the project's .venv/bin/python"
case $python in */*) python=$(cd "$(dirname "$python")" && pwd)/$(basename "$python") ;; esac   # used from $here
# Python with pycaffe and the project: what writes the bundle's data at the end
why=$(cd "$here" && "$python" -c 'import apps.gpu_check' 2>&1 | tail -n 1) \
  || fail "$python: cannot run the project's apps.gpu_check ($why); set PYTHON to the project's .venv/bin/python"
# OUT_DIR by the project's own check (core.outputs.prepare_out_dir): under a file, a file, unwritable
(cd "$here" && "$python" -c 'import sys
from core.errors import cli
from core.outputs import prepare_out_dir
cli(lambda: prepare_out_dir(sys.argv[1], force=True))()' "$out")
if [ -n "${DATA:-}" ]; then
  [ -d "$DATA/images" ] \
    || fail "$DATA: no images/ folder; DATA must be an iCoseg folder with images/ and ground_truth/ (unset: toy groups)"
  data_arg=(--data "$(cd "$DATA" && pwd)")
elif [ -d "$here/../shared/datasets/icoseg-dev/images" ]; then
  data_arg=(--data "$here/../shared/datasets/icoseg-dev")
else
  data_arg=()
fi
build=${CAFFE_BUILD:-}
if [ -n "$build" ]; then
  [ -d "$build/build" ] \
    || fail "$build: not a Caffe build folder (no build/); CAFFE_BUILD must be a folder of scripts/build_caffe.sh"
else
  pydir=$(PYTHON="$python" "$here/scripts/cuda_build.sh" | tail -n 1)
  build=$(dirname "$(dirname "$pydir")")
fi
tool=$build/build/tools/caffe
if [ ! -x "$tool" ]; then                         # builds cached before the tool was a target
  log "building the caffe tool in $build/build"
  make -C "$build/build" caffe.bin > "$build/build/make-tool.log" 2>&1 \
    || { tail -20 "$build/build/make-tool.log" >&2
         echo "error: $build/build/make-tool.log: cannot build the caffe tool" >&2; exit 1; }
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
stage=$work/gwd-gpu-bundle
mkdir -p "$stage/bin" "$stage/lib"
cp "$tool" "$stage/bin/caffe"
# Every library the loader resolves, except what any Linux node has (glibc, the C++ runtime) and
# the CUDA libraries, which are large and which the node has from NVIDIA's wheels.
ldd "$tool" | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}' | while read -r name path; do
  case "$name" in
    libc.so.*|libm.so.*|libdl.so.*|libpthread.so.*|librt.so.*|ld-linux*|libstdc++.so.*|libgcc_s.so.*) ;;
    libcuda.so.*|libcudart.so.*|libcublas*.so.*|libcurand.so.*|libnccl.so.*|libnvidia*) ;;
    *) cp -L "$path" "$stage/lib/$name" ;;
  esac
done
strip --strip-unneeded "$stage/bin/caffe" "$stage"/lib/*.so* 2>/dev/null || true
info=$build/src/python/gwd-caffe-build.json
if [ -f "$info" ]; then cp "$info" "$stage/build.json"; else echo '{"variant": "cpu"}' > "$stage/build.json"; fi

(cd "$here" && "$python" -m apps.gpu_check --write-bundle "$stage" "${data_arg[@]}") | sed 's/^/[gpu_bundle] data: /' >&2
cp "$here/scripts/gpu_bundle/gpu_check.sh" "$here/scripts/gpu_bundle/compare_h5.py" "$stage/"

# gzip when it fits: any node (and a minimal Debian) unpacks it; else xz, which gpu_check.sh
# unpacks with xz or, on a node without it, with python3's tarfile.
mkdir -p "$out"
rm -f "$out/gwd-gpu-bundle.tar.gz" "$out/gwd-gpu-bundle.tar.xz"
archive=$work/gwd-gpu-bundle.tar.gz
tar -C "$work" -czf "$archive" gwd-gpu-bundle
if [ "$(stat -c %s "$archive")" -gt $((limit_mib * 1048576)) ]; then
  log "gzip gives $(( $(stat -c %s "$archive") / 1048576 )) MiB, over $limit_mib MiB: using xz"
  archive=$work/gwd-gpu-bundle.tar.xz
  tar -C "$work" -cf - gwd-gpu-bundle | xz -9 -T2 > "$archive"
fi
size=$(stat -c %s "$archive")
if [ "$size" -gt $((limit_mib * 1048576)) ]; then
  echo "error: $archive: the archive is $((size / 1048576)) MiB, over the $limit_mib MiB limit" >&2; exit 1
fi
mv "$archive" "$out/"
cp "$here/scripts/gpu_bundle/gpu_check.sh" "$out/"
log "$out/$(basename "$archive"): $(awk -v s="$size" 'BEGIN { printf "%.1f", s / 1048576 }') MiB" \
    "($(ls "$stage/lib" | wc -l) libraries); run: bash gpu_check.sh OUT [GPU] beside it"
echo "$out/$(basename "$archive")"
