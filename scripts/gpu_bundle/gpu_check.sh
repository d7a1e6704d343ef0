#!/usr/bin/env bash
# GPU pre-flight check on a bare node (no network, no package manager), with the C++ `caffe` tool
# of the bundle that `make gpu-bundle` writes. Needs bash, tar, gzip and awk; python3 with numpy
# and h5py, when present, compares the weights and gradients of one solver step.
#
#   bash gpu_check.sh OUT [GPU]     GPU id, default 0; run beside gwd-gpu-bundle.tar.gz
#
# Unpacks the bundle into OUT/gwd-gpu-bundle, runs the check there and writes the table to
# OUT/gpu_check.md (the tool's logs to OUT/logs). Without a usable GPU the CPU lines still run and
# the GPU lines say "no GPU". Exit status: 0 every line passed, 1 a line failed, 2 no GPU or a
# problem with the bundle itself (a library the node lacks, say).
# The CUDA libraries come from the node: NVIDIA's wheels (nvidia/*/lib beside python3's packages)
# or GWD_CUDA_LIBS (folders, colon-separated).
set -uo pipefail

out=${1:-}
gpu=${2:-0}
[ -n "$out" ] || { echo "usage: bash gpu_check.sh OUT [GPU]" >&2; exit 2; }
case "$gpu" in ''|*[!0-9]*) echo "error: GPU '$gpu': expected a GPU number (0, 1, ...)" >&2; exit 2 ;; esac
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
why=$(mkdir -p "$out" 2>&1) || { echo "error: $out: cannot create the output folder (${why##*: })" >&2; exit 2; }
out=$(cd "$out" && pwd)

if [ ! -x "$here/bin/caffe" ]; then            # beside the archive: unpack, run the unpacked copy
  archive=$(ls "$here"/gwd-gpu-bundle.tar.gz "$here"/gwd-gpu-bundle.tar.xz 2>/dev/null | head -1)
  [ -n "$archive" ] || { echo "error: no gwd-gpu-bundle.tar.gz or .tar.xz in $here: keep gpu_check.sh beside the archive" >&2; exit 2; }
  rm -rf "$out/gwd-gpu-bundle"
  case "$archive" in
    *.gz) tar -xzf "$archive" -C "$out" ;;
    *) if command -v xz >/dev/null 2>&1; then tar -xJf "$archive" -C "$out"
       else python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$archive" "$out"; fi ;;
  esac || { echo "error: cannot unpack $archive into $out" >&2; exit 2; }
  exec bash "$out/gwd-gpu-bundle/gpu_check.sh" "$out" "$gpu"
fi

# ---------------------------------------------------------------- setup
RTOL=1e-3            # GPU against CPU, norm-relative (apps/gpu_check.py says why)
MIN_MEM_MIB=4096     # the full group model's need with room (apps/gpu_check.py MIN_GPU_MEMORY)
LOSS_DROP=0.8
PAPER_ITERS=60000
cd "$here" || exit 2
logs=$out/logs
table=$out/gpu_check.md
rm -rf work "$logs"
mkdir -p work/cpu work/gpu "$logs"
printf '| check | result | status |\n|---|---|---|\n' > "$table.tmp"
fail=0
row() {   # check result status
  printf '| %s | %s | %s |\n' "$1" "$2" "$3" >> "$table.tmp"
  printf '  %-6s  %s: %s\n' "$3" "$1" "$2" >&2
  [ "$3" = FAIL ] && fail=1
  return 0
}
finish() {  # exit status
  mv "$table.tmp" "$table"
  cat "$table"
  exit "$1"
}

cuda_dirs=${GWD_CUDA_LIBS:-}
if command -v python3 >/dev/null 2>&1; then
  wheels=$(python3 -c 'import glob, nvidia; print(":".join(d for p in nvidia.__path__ for d in sorted(glob.glob(p + "/*/lib"))))' 2>/dev/null)
  cuda_dirs=${cuda_dirs:+$cuda_dirs:}$wheels
fi
export LD_LIBRARY_PATH="$here/lib${cuda_dirs:+:$cuda_dirs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export GLOG_logtostderr=1 GLOG_minloglevel=0
caffe=$here/bin/caffe
py_h5=0
command -v python3 >/dev/null 2>&1 && python3 -c 'import numpy, h5py' 2>/dev/null && py_h5=1

# ---------------------------------------------------------------- bundle, build, device
missing=$(ldd "$caffe" 2>&1 | awk '/not found/ {print $1}' | tr '\n' ' ')
if [ -n "$missing" ]; then
  row "bundle" "libraries not found: $missing(CUDA ones come from NVIDIA's wheels: set GWD_CUDA_LIBS)" FAIL
  finish 2
fi
row "bundle" "bin/caffe and every library it needs load" PASS
variant=$(sed -n 's/.*"variant": *"\([^"]*\)".*/\1/p' build.json)
arch_bin=$(sed -n 's/.*"cuda_arch_bin": *"\([^"]*\)".*/\1/p' build.json)
arch_ptx=$(sed -n 's/.*"cuda_arch_ptx": *"\([^"]*\)".*/\1/p' build.json)

have_gpu=0
has_driver() {   # libcuda.so.1 where the loader looks: its cache or LD_LIBRARY_PATH
  ldconfig -p 2>/dev/null | grep -q 'libcuda\.so\.1 ' && return 0
  local d; IFS=: read -ra dirs <<< "$LD_LIBRARY_PATH"
  for d in "${dirs[@]}"; do [ -e "$d/libcuda.so.1" ] && return 0; done
  return 1
}
if [ "$variant" = cpu ]; then
  row "build" "CPU-only Caffe" "no GPU"
  row "driver and device" "not checked (CPU-only build)" "no GPU"
elif ! has_driver; then
  row "build" "Caffe $variant, GPU code for sm_${arch_bin// / sm_} compute_${arch_ptx// / compute_}" PASS
  row "driver and device" "no NVIDIA driver (libcuda.so.1 not found)" "no GPU"
elif "$caffe" device_query -gpu "$gpu" > "$logs/device_query.log" 2>&1; then
  have_gpu=1
  name=$(sed -n 's/.*Name: *//p' "$logs/device_query.log" | head -1)
  major=$(sed -n 's/.*Major revision number: *//p' "$logs/device_query.log" | head -1)
  minor=$(sed -n 's/.*Minor revision number: *//p' "$logs/device_query.log" | head -1)
  mem=$(sed -n 's/.*Total global memory: *//p' "$logs/device_query.log" | head -1)
  mem_mib=$(( ${mem:-0} / 1048576 ))
  row "build" "Caffe $variant, GPU code for sm_${arch_bin// / sm_} compute_${arch_ptx// / compute_}" PASS
  row "driver and device" "GPU $gpu: $name, compute capability $major.$minor, $mem_mib MiB" PASS
  cc=$((major * 10 + minor)) ok=0
  for a in $arch_bin; do [ $((a / 10)) = "$major" ] && [ $((a % 10)) -le "$minor" ] && ok=1; done
  for a in $arch_ptx; do [ "$a" -le "$cc" ] && ok=1; done
  if [ $ok = 1 ]; then row "architectures" "built for $arch_bin (PTX $arch_ptx); device sm_$cc" PASS
  else row "architectures" "built for $arch_bin (PTX $arch_ptx); device sm_$cc: rebuild with CUDA_ARCH_BIN=$cc" FAIL; finish 2; fi
  if [ "$mem_mib" -lt $MIN_MEM_MIB ]; then
    row "GPU memory" "$mem_mib MiB; the full group model needs $MIN_MEM_MIB MiB" FAIL; finish 2
  fi
else
  why=$(grep -E "Check failed|error" "$logs/device_query.log" | tail -1 | sed 's/.*\] //')
  row "build" "Caffe $variant, GPU code for sm_${arch_bin// / sm_} compute_${arch_ptx// / compute_}" PASS
  row "driver and device" "no usable GPU $gpu (${why:-caffe device_query failed}; logs/device_query.log)" "no GPU"
fi
gpu_arg=(-gpu "$gpu")

# ---------------------------------------------------------------- GPU == CPU
loss_of() { sed -n 's/.*Loss: *\([-0-9.e+]*\).*/\1/p' "$1" | tail -1; }
relerr() { awk -v a="$1" -v b="$2" 'BEGIN { d = a - b; if (d < 0) d = -d; if (b < 0) b = -b; printf "%.1e", d / (b > 0 ? b : 1) }'; }
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= b) }'; }
for model in group single; do
  name=$([ $model = group ] && echo Ours || echo Ours-S)
  "$caffe" train -solver "solvers/${model}_init.prototxt" > "$logs/${model}_init.log" 2>&1
  init=work/${model}_init_iter_0.caffemodel
  if [ ! -f "$init" ]; then row "$name: random weights" "caffe train failed (logs/${model}_init.log)" FAIL; continue; fi
  "$caffe" test -model "nets/$model.prototxt" -weights "$init" -iterations 1 > "$logs/${model}_test_cpu.log" 2>&1
  cpu_loss=$(loss_of "$logs/${model}_test_cpu.log")
  if [ -z "$cpu_loss" ]; then row "$name: forward" "caffe test failed on the CPU (logs/${model}_test_cpu.log)" FAIL; continue; fi
  "$caffe" train -solver "solvers/${model}_step.prototxt" -weights "$init" > "$logs/${model}_step_cpu.log" 2>&1
  mv work/${model}_step_iter_1.* work/cpu/ 2>/dev/null
  if [ $have_gpu = 0 ]; then
    row "$name: forward, GPU vs CPU" "CPU loss $cpu_loss" "no GPU"
    row "$name: one step of the paper's solver, GPU vs CPU" "CPU step written (work/cpu)" "no GPU"
    continue
  fi
  "$caffe" test -model "nets/$model.prototxt" -weights "$init" -iterations 1 "${gpu_arg[@]}" > "$logs/${model}_test_gpu.log" 2>&1
  gpu_loss=$(loss_of "$logs/${model}_test_gpu.log")
  if [ -z "$gpu_loss" ]; then row "$name: forward, GPU vs CPU" "caffe test failed on the GPU (logs/${model}_test_gpu.log)" FAIL; continue; fi
  e=$(relerr "$gpu_loss" "$cpu_loss")
  le "$e" $RTOL && s=PASS || s=FAIL
  row "$name: forward, GPU vs CPU" "loss $gpu_loss vs $cpu_loss, rel. error $e (tolerance $RTOL)" $s
  "$caffe" train -solver "solvers/${model}_step.prototxt" -weights "$init" "${gpu_arg[@]}" > "$logs/${model}_step_gpu.log" 2>&1
  mv work/${model}_step_iter_1.* work/gpu/ 2>/dev/null
  if [ $py_h5 = 0 ]; then
    row "$name: one step, gradients and weights, GPU vs CPU" "not compared: needs python3 with numpy and h5py" FAIL
  elif res=$(python3 compare_h5.py work/cpu work/gpu "nets/$model.params.json" $RTOL 2>&1); then
    row "$name: one step of the paper's solver, GPU vs CPU" "$res" PASS
  else
    row "$name: one step of the paper's solver, GPU vs CPU" "$res" FAIL
  fi
done

# ---------------------------------------------------------------- speed
if [ $have_gpu = 1 ]; then iters=50; where="GPU $gpu"; dev=("${gpu_arg[@]}"); else iters=1; where="CPU, 1 iteration"; dev=(); fi
peak=0
watch_memory() {   # poll nvidia-smi while the speed runs go; largest MiB in use to work/peak
  while :; do
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i "$gpu" 2>/dev/null | head -1 >> work/memory.txt
    sleep 0.5
  done
}
watcher=
if [ $have_gpu = 1 ] && command -v nvidia-smi >/dev/null 2>&1; then watch_memory & watcher=$!; fi
hours=0
for stage in 1 2; do
  model=$([ $stage = 1 ] && echo single || echo group)
  "$caffe" time -model "nets/$model.prototxt" -iterations $iters "${dev[@]}" > "$logs/${model}_time.log" 2>&1
  ms=$(sed -n 's/.*Average Forward-Backward: *\([0-9.]*\) ms.*/\1/p' "$logs/${model}_time.log" | tail -1)
  if [ -z "$ms" ]; then row "speed, stage $stage" "caffe time failed (logs/${model}_time.log)" FAIL; continue; fi
  rate=$(awk -v ms="$ms" 'BEGIN { printf "%.2f", 1000 / ms }')
  hours=$(awk -v h="$hours" -v ms="$ms" -v n=$PAPER_ITERS 'BEGIN { printf "%.2f", h + n * ms / 3.6e6 }')
  row "speed, stage $stage ($model), $where" "$rate forward-backward/s ($ms ms; data from memory, HDF5: decoding not measured by the caffe tool)" PASS
done
[ -n "$watcher" ] && kill "$watcher" 2>/dev/null
if [ -s work/memory.txt ]; then
  peak=$(sort -n work/memory.txt | tail -1)
  row "peak GPU memory" "$peak MiB (nvidia-smi)" PASS
elif [ $have_gpu = 1 ]; then
  row "peak GPU memory" "not measured (no nvidia-smi)" PASS
else
  row "peak GPU memory" "not measured" "no GPU"
fi
row "projected time of 2 x $PAPER_ITERS iterations" "$hours h ($where; forward-backward only)" PASS

# ---------------------------------------------------------------- short training run
if [ $have_gpu = 1 ]; then solver=short_full; what="Ours-S 128x256, Adam, 300 iterations, GPU $gpu"
else solver=short_tiny; what="tiny Ours-S 64x128, Adam, 200 iterations, CPU"; fi
"$caffe" train -solver "solvers/$solver.prototxt" "${dev[@]}" > "$logs/short_run.log" 2>&1
sed -n 's/.*Iteration \([0-9]*\) ([^)]*), loss = \([-0-9.e+]*\).*/\1 \2/p' "$logs/short_run.log" > work/short_loss.txt
n=$(wc -l < work/short_loss.txt)
if [ "$n" -lt 4 ]; then
  row "short training run: $what" "too few loss lines (logs/short_run.log)" FAIL
else
  res=$(awk -v drop=$LOSS_DROP '{ l[NR] = $2 } END { q = int(NR / 4); for (i = 1; i <= q; i++) { a += l[i]; b += l[NR - q + i] }
        a /= q; b /= q; printf "mean loss of the first %d logged iterations %.4g, of the last %d %.4g (must fall below %gx)", q, a, q, b, drop; exit !(b < drop * a) }' work/short_loss.txt)
  [ $? = 0 ] && s=PASS || s=FAIL
  row "short training run: $what, real images" "$res" $s
fi

[ $have_gpu = 0 ] && { echo "no GPU: the GPU lines say so; the CPU lines ran" >&2; finish 2; }
finish $fail
