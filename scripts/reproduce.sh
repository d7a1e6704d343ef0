#!/usr/bin/env bash
# Reproduce Table 1 of the paper end to end: `make reproduce`, the Docker image's default command.
# Checks every input first, then runs the steps through the project's make targets:
#   baselines-<dataset>  CBCS and CBCS-S (no training needed)          make baselines DATASET=...
#   train                COCO9213 groups, stage 1 (Ours-S), stage 2     make train
#   eval-<dataset>       predict with both models, evaluate             make eval DATASET=...
#   table                Table 1 and the figures                        make table
# for icoseg5 (the paper's 5-images-per-group iCoseg), icoseg (all 643 images), msrc, cosal2015.
#
#   scripts/reproduce.sh [--dry-run]     (--dry-run: check the inputs, print the plan, run nothing)
#
# Environment (make reproduce passes these): DATA_ROOT (the datasets, one folder each, named as
# apps/pipeline.py's DATASETS says), VGG16 (VGG_ILSVRC_16_layers.caffemodel), GPU (GPU id; empty:
# CPU), RUNS (results), MAKE, PYTHON (the project's venv python).
# Resumable: a finished step leaves $RUNS/.reproduce/<step>.done and is skipped on a rerun (delete
# the file to redo that step); an interrupted training continues from its last snapshot.
# Exit status: 0 all done, 2 inputs missing or unusable (every problem listed), else the status of
# the step that failed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DATA_ROOT=${DATA_ROOT:-data}
VGG16=${VGG16:-$DATA_ROOT/weights/VGG_ILSVRC_16_layers.caffemodel}
GPU=${GPU:-}
RUNS=${RUNS:-runs}
# The steps run in the project folder: make relative paths absolute first.
DATA_ROOT=$(realpath -m -- "$DATA_ROOT"); VGG16=$(realpath -m -- "$VGG16"); RUNS=$(realpath -m -- "$RUNS")
MAKE=${MAKE:-make}
PYTHON=${PYTHON:-$here/.venv/bin/python}
dry_run=0
case "${1:-}" in
  --dry-run) dry_run=1 ;;
  "") ;;
  -h|--help) sed -n 2,19p "$0"; exit 0 ;;
  *) echo "reproduce.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
esac
# `make -n reproduce` runs this script anyway (its recipe names $(MAKE)): plan only, then.
mflags=${MAKEFLAGS:-}; mflags=${mflags%% *}
case "$mflags" in -*|"") ;; *[nq]*) dry_run=1 ;; esac

# Each dataset's folder under DATA_ROOT, from the pipeline itself (one list for both).
if ! folders=$(cd "$here" && "$PYTHON" -c \
    'from core.layout import DATASET_FOLDERS
for k, v in DATASET_FOLDERS.items(): print(k, v)' 2>&1); then
  echo "reproduce: cannot read the dataset folders from apps/pipeline.py with $PYTHON (run make setup): $folders" >&2
  exit 2
fi
declare -A FOLDER
while read -r k v; do FOLDER[$k]=$v; done <<< "$folders"

EVAL_SETS=(icoseg5 icoseg msrc cosal2015)
CHECK_SETS=(coco9213 icoseg msrc cosal2015)     # icoseg5 is read from iCoseg's folder
# dataset -> "name|expected layout inside its folder|where to get it"
declare -A INFO=(
  [icoseg]="iCoseg|images/<group>/*.jpg and ground_truth/<group>/*.png (643 images, 38 groups)|the iCoseg dataset page (Batra et al., 'iCoseg: Interactive Co-segmentation with Intelligent Scribble Guidance', CVPR 2010)"
  [msrc]="MSRC-v2|images/<group>/*.bmp and ground_truth/<group>/*.png (the co-saliency layout)|the MSRC object class recognition database v2 page (Microsoft Research Cambridge, 591 images), then convert the release (Images/, GroundTruth/): python -m data_prep msrc-convert --root <release> --out $DATA_ROOT/${FOLDER[msrc]:-MSRC}"
  [cosal2015]="Cosal2015|Image/<group>/*.jpg and GroundTruth/<group>/*.png (2015 images, 50 groups)|the Cosal2015 dataset page (Zhang et al., 'Co-saliency Detection via a Self-paced Multiple-instance Learning Framework', TPAMI 2017)"
  [coco9213]="COCO9213 (training)|img/<class>/*.jpg and gt/<class>/*.png (9213 images, 65 classes)|the COCO dataset page (Microsoft COCO: '2017 Train images' and '2017 Train/Val annotations'), then: python -m data_prep coco9213 --coco-root <coco>/train2017 --annotations <coco>/annotations/instances_train2017.json --out $DATA_ROOT/${FOLDER[coco9213]:-COCO9213}"
)
IMAGE_DIRS="images image img imgs"
MASK_DIRS="ground_truth groundtruth gt gts binary masks mask"
VGG16_MIN_BYTES=500000000   # the real file has 553,432,081 bytes; less is a cut-off download

problems=()
problem() { problems+=("$1"); }

# A non-empty sub-folder of $1 whose name is one of $2 (compared case-insensitively).
find_subdir() {
  local d n want
  for d in "$1"/*/; do
    [ -d "$d" ] || continue
    n=$(basename "$d"); n=${n,,}
    for want in $2; do
      if [ "$n" = "$want" ] && [ -n "$(ls -A "$d")" ]; then echo "${d%/}"; return 0; fi
    done
  done
  return 1
}

check_dataset() {  # key
  local key=$1 name layout source other images
  local dir="$DATA_ROOT/${FOLDER[$key]:?apps/pipeline.py names no folder for $key}"
  IFS='|' read -r name layout source <<< "${INFO[$key]}"
  local hint="      expected: $dir/$layout"$'\n'"      get it from: $source"
  if [ ! -d "$dir" ]; then
    other=$(find "$DATA_ROOT" -mindepth 1 -maxdepth 1 -type d -iname "${FOLDER[$key]}" 2>/dev/null | head -n 1 || true)
    if [ -n "$other" ]; then
      problem "$name: found $other, but the folder must be named $dir"
    else
      problem "$name: $dir not found"$'\n'"$hint"
    fi
    return
  fi
  if ! images=$(find_subdir "$dir" "$IMAGE_DIRS"); then
    problem "$name: no image folder (images/, Image/ or img/) with files in $dir"$'\n'"$hint"
  elif [ -z "$(find "$images" -mindepth 1 -maxdepth 1 -type d -print -quit)" ]; then
    problem "$name: $images has no group folders (a raw release?)"$'\n'"$hint"
  fi
  find_subdir "$dir" "$MASK_DIRS" > /dev/null \
    || problem "$name: no ground-truth folder (ground_truth/, GroundTruth/ or gt/) with files in $dir"$'\n'"$hint"
}

for d in "${CHECK_SETS[@]}"; do check_dataset "$d"; done

vgg_hint="      get it from: the Caffe Model Zoo page, model 'VGG_ILSVRC_16_layers' (Simonyan & Zisserman, 'Very Deep Convolutional Networks for Large-Scale Image Recognition'): VGG_ILSVRC_16_layers.caffemodel"
if [ ! -f "$VGG16" ]; then
  problem "VGG16 weights: $VGG16 not found"$'\n'"$vgg_hint"
else
  size=$(stat -c %s "$VGG16")
  if [ "$size" -lt "$VGG16_MIN_BYTES" ]; then
    problem "VGG16 weights: $VGG16 has $size bytes, the real file 553,432,081: a cut-off download?"$'\n'"$vgg_hint"
  fi
fi

if [ -n "$GPU" ]; then
  # Caffe aborts the process on an unusable GPU; ask the driver first (core/device.py).
  if ! msg=$(cd "$here" && "$PYTHON" -m core.device --gpu "$GPU" 2>&1); then
    problem "${msg#error: }"
  else
    echo "reproduce: $msg" >&2
  fi
fi

if [ ${#problems[@]} -gt 0 ]; then
  {
    echo "reproduce: cannot start, ${#problems[@]} problem(s):"
    for p in "${problems[@]}"; do echo "  - $p"; done
    echo "DATA_ROOT=$DATA_ROOT, VGG16=$VGG16, GPU=${GPU:-(CPU)}: set them on the command line"
    echo "(make reproduce DATA_ROOT=... VGG16=... GPU=...) or mount them in Docker (README 'Reproducing Table 1')."
  } >&2
  exit 2
fi

# ---------------------------------------------------------------- the steps
stamps="$RUNS/.reproduce"
steps=()
for d in "${EVAL_SETS[@]}"; do steps+=("baselines-$d"); done
steps+=(train)
for d in "${EVAL_SETS[@]}"; do steps+=("eval-$d"); done
steps+=(table)

step_args() {  # step -> the make arguments, in the array `args`
  case "$1" in
    baselines-*) args=(baselines "DATASET=${1#baselines-}") ;;
    train) args=(train "VGG16=$VGG16" "GPU=$GPU")
           # an interrupted training is continued from its snapshot (else make train refuses)
           if [ -f "$stamps/train.started" ]; then args+=(RESUME=1); fi ;;
    eval-*) args=(eval "DATASET=${1#eval-}" "GPU=$GPU") ;;
    table) args=(table) ;;
  esac
  args+=("DATA_ROOT=$DATA_ROOT" "RUNS=$RUNS")
}

todo=()
for s in "${steps[@]}"; do
  if [ -f "$stamps/$s.done" ]; then echo "reproduce: $s: done already ($stamps/$s.done)" >&2
  else todo+=("$s"); fi
done
if [ "$dry_run" = 1 ]; then
  for s in "${todo[@]}"; do step_args "$s"; echo "reproduce: $s: would run: $MAKE ${args[*]}" >&2; done
  exit 0
fi

mkdir -p "$stamps"
n=$(( ${#steps[@]} - ${#todo[@]} ))
for s in "${todo[@]}"; do
  n=$(( n + 1 ))
  step_args "$s"
  echo "reproduce: [$n/${#steps[@]}] $s: $MAKE ${args[*]}" >&2
  if [ "$s" = train ]; then date -u +%FT%TZ > "$stamps/train.started"; fi
  start=$(date +%s)
  status=0
  "$MAKE" --no-print-directory -C "$here" "${args[@]}" || status=$?
  if [ "$status" != 0 ]; then
    echo "reproduce: $s failed (exit $status); rerun to continue from this step" >&2
    exit "$status"
  fi
  echo "$(date -u +%FT%TZ), $(( $(date +%s) - start )) s: $MAKE ${args[*]}" > "$stamps/$s.done.tmp"
  mv "$stamps/$s.done.tmp" "$stamps/$s.done"
done
echo "reproduce: all steps done; Table 1 and the figures are in $RUNS" >&2
