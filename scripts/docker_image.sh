#!/usr/bin/env bash
# Build and run the project's image with whatever container tool the machine has: docker where a
# Docker daemon answers, else buildah (chroot isolation: no daemon, no cgroups needed).
#
#   scripts/docker_image.sh engine                 print docker or buildah (exit 2: neither)
#   scripts/docker_image.sh base [IMAGE]           make sure the Debian base image exists: pull
#                                                  it, else make it with mmdebstrap (buildah only)
#   scripts/docker_image.sh build VARIANT TAG [build options...]
#                                                  (CUDA_ARCH_BIN / CUDA_ARCH_PTX, when set, are
#                                                  passed as the build arguments of those names)
#   scripts/docker_image.sh run TAG [--user U] [-v HOST:CTR[:ro]]... -- COMMAND...
#   scripts/docker_image.sh pip-cert               print the CA bundle the host's pip trusts, if any
#
# buildah builds keep their layers (--layers), so an unchanged step is reused on the next build;
# docker builds use BuildKit (DOCKER_BUILDKIT=1), which the Dockerfile's secret mounts need.
# Where the host's pip trusts a CA bundle of its own (pip config global.cert, or PIP_CERT), the
# build gets it as the Dockerfile's optional build secret `pip-ca`: pip inside the build then
# reaches PyPI the way the host does. A machine with direct access needs none of this.
# buildah builds also mount the host's Caffe build cache (GWD_CAFFE_SEED, default the cache of
# scripts/build_caffe.sh; GWD_CAFFE_SEED= turns it off) read-only at /opt/caffe-seed: a build of
# the same key there is copied into the image instead of compiled again.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
log() { echo "[docker_image] $*" >&2; }

engine() {
  if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    echo docker
  elif command -v buildah >/dev/null 2>&1; then
    echo buildah
  else
    log "no container tool: install Docker (https://docs.docker.com/engine/install/) or buildah" \
        "(Debian/Ubuntu: apt-get install buildah)"
    exit 2
  fi
}

# The FROM image of the Dockerfile's first stage.
base_image() { sed -n 's/^FROM \([^ ]*\) AS system$/\1/p' "$here/Dockerfile"; }

# debian:<release>-slim from Docker Hub, else built here from Debian's archive (minbase, the
# packages a -slim image has); the name makes the Dockerfile's FROM find it.
ensure_base() {  # image
  local image=$1 eng tar release ctr
  eng=$(engine)
  if [ "$eng" = docker ]; then
    docker image inspect "$image" >/dev/null 2>&1 || docker pull "$image" >&2
    return
  fi
  buildah inspect --type image "$image" >/dev/null 2>&1 && return
  if timeout 60 buildah pull -q "docker.io/library/$image" >/dev/null 2>&1; then return; fi
  command -v mmdebstrap >/dev/null || { log "cannot pull $image and no mmdebstrap to make it (apt-get install mmdebstrap)"; exit 2; }
  case "$image" in
    debian:12*|debian:bookworm*) release=bookworm ;;
    debian:13*|debian:trixie*) release=trixie ;;
    *) log "cannot pull $image and do not know how to make it"; exit 2 ;;
  esac
  tar=$(mktemp --suffix .tar)
  log "cannot pull $image: making it from Debian $release (mmdebstrap --variant=minbase)"
  mmdebstrap --quiet --variant=minbase "$release" "$tar" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >&2
  ctr=$(buildah from scratch)
  buildah add -q "$ctr" "$tar" / >/dev/null
  buildah config --cmd /bin/bash --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$ctr"
  buildah commit -q "$ctr" "docker.io/library/$image" >/dev/null
  buildah rm "$ctr" >/dev/null
  rm -f "$tar"
  log "made $image"
}

# The CA bundle the host's pip trusts, if it has one of its own (PIP_CERT wins over pip's config,
# as in pip); nothing otherwise.
pip_cert() {
  local cert=${PIP_CERT:-}
  [ -n "$cert" ] || cert=$(python3 -m pip config get global.cert 2>/dev/null || true)
  [ -z "$cert" ] || [ ! -f "$cert" ] || echo "$cert"
}

# The build secret pip-ca (both engines), when the host's pip has a CA bundle of its own.
pip_secret() {
  local cert
  cert=$(pip_cert)
  [ -z "$cert" ] || echo "--secret id=pip-ca,src=$cert"
}

build() {  # variant tag [options]
  local variant=$1 tag=$2 eng v
  shift 2
  eng=$(engine)
  # GPU architectures from the environment, as for `make caffe-cuda`: the same key as the host's
  # build, so a seeded build finds it.
  for v in CUDA_ARCH_BIN CUDA_ARCH_PTX; do
    [ -z "${!v:-}" ] || set -- --build-arg "$v=${!v}" "$@"
  done
  ensure_base "$(base_image)"
  log "building $tag (VARIANT=$variant) with $eng"
  if [ "$eng" = docker ]; then
    # shellcheck disable=SC2046  # the secret option is words
    DOCKER_BUILDKIT=1 docker build --build-arg "VARIANT=$variant" -t "$tag" $(pip_secret) "$@" "$here"
  else
    local seed=${GWD_CAFFE_SEED-${GWD_CAFFE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gwd-caffe}} seeds=()
    if [ -n "$seed" ] && [ -d "$seed" ]; then seeds=(-v "$seed:/opt/caffe-seed:ro"); log "seed: $seed"; fi
    # shellcheck disable=SC2046  # the mounts are words
    buildah bud --layers --format docker --isolation chroot --network host --build-arg "VARIANT=$variant" \
      -t "$tag" $(pip_secret) "${seeds[@]}" "$@" "$here"
  fi
}

run() {  # tag [--user U] [-v M]... -- command...
  local tag=$1 eng ctr rc=0 opts=()
  shift
  while [ $# -gt 0 ] && [ "$1" != -- ]; do opts+=("$1"); shift; done
  [ "${1:-}" = -- ] && shift
  eng=$(engine)
  if [ "$eng" = docker ]; then
    docker run --rm "${opts[@]}" "$tag" "$@"
    return
  fi
  ctr=$(buildah from -q "$tag")
  # A folder mounted where the image declares a VOLUME: drop that volume from the container first,
  # else buildah 1.28 mounts either the folder or an empty volume there, by chance.
  local i dst
  for ((i = 0; i < ${#opts[@]}; i++)); do
    if [ "${opts[i]}" = -v ]; then
      dst=${opts[i+1]#*:}; dst=${dst%%:*}
      buildah config --volume "$dst-" "$ctr" 2>/dev/null || true
    fi
  done
  buildah run --isolation chroot "${opts[@]}" "$ctr" -- "$@" || rc=$?
  buildah rm "$ctr" >/dev/null
  return "$rc"
}

cmd=${1:-}
shift || true
case "$cmd" in
  engine) engine ;;
  base) ensure_base "${1:-$(base_image)}" ;;
  build) [ $# -ge 2 ] || { log "usage: build VARIANT TAG [options]"; exit 2; }; build "$@" ;;
  run) [ $# -ge 1 ] || { log "usage: run TAG [options] -- COMMAND"; exit 2; }; run "$@" ;;
  pip-cert) pip_cert ;;
  *) sed -n 2,16p "$0"; exit 2 ;;
esac
