"""Pre-flight check of the GPU path, run before committing a GPU for days of training.

    python -m apps.gpu_check --gpu 0      (make gpu-check GPU=0)
    python -m apps.gpu_check --cpu        the same table in CPU mode (reduced iteration counts)

Prints one table; exit status 0 only when every line passes (1 otherwise). Lines:
  - the build, driver and device (core.device) and the architectures compiled for;
  - the group model (Ours) and Ours-S with the same random weights (He normal, fixed seed) on the
    same real group: GPU forward against CPU forward, gradients of conv1_1, the group block and
    the score layer, and one step of the paper's solver from the same state; in --cpu mode the
    second run is a CPU run too (the lines then check determinism and the checking code itself);
  - training speed with the real data layer and the paper's solver: iterations/s of stage 1
    (Ours-S) and stage 2 (Ours), the share of time spent waiting for data, peak GPU memory, the
    projected time of the paper's 2 x 60000 iterations;
  - a short training run of `python -m apps.train` on real images whose loss must go down.
Bad input (a CPU-only build, no driver, a GPU id that does not exist, an architecture the build
lacks, too little GPU memory) is a one-line error before any Caffe call, exit status 2.
"""
import csv
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from core import device
from core.args import ArgumentParser
from core.errors import UserError, cli
from core.inputs import check_input_folder
from core.grouplist import write_group_list
from core.layout import MODELS, PROJECT_ROOT, SCORE_LAYER, model_files
from core.netgen import hdf5_layer, input_layer, run_solver, with_data_layer, with_data_params
from core.netio import caffe, caffe_pb2, read_prototxt
from core.outputs import atomic_write_text, prepare_out_dir, prepare_out_file, staged_dir
from core.surgery import he_init, init_bilinear

# GPU and CPU results differ by rounding only: cuBLAS and OpenBLAS sum the 3x3xC products of each
# convolution output (up to 4608 terms) in different orders, in float32 (eps 6e-8), through 16
# conv layers. Such differences stay near 1e-6 of the signal's norm (they add up like a random
# walk); a wrong kernel, a missing architecture or a race gives errors of order 1. 1e-3 of the
# norm separates the two with room for ReLUs whose input sits at zero and flips on one device.
RTOL = 1e-3
# The full group model needs about 0.84 GiB for one group (blobs, gradients, solver history:
# the "memory estimate" line computes it); the CUDA context and cuBLAS workspaces add about 1 GiB.
MIN_GPU_MEMORY = 4 * 2**30
WAIT_SHARE_MAX = 0.05
PAPER_ITERS = 60000
LOSS_DROP = 0.8          # the short run passes when its last losses average < 0.8 x its first ones
GRAD_LAYERS = {"group": ("conv1_1", "conv_g1", "conv_g2", "conv_g3", "score_co"),
               "single": ("conv1_1", "score")}
SEED = 0
# Iteration counts: (warm-up, timed, short run); the CPU ones are cut to fit 2 cores.
ITERS = {"gpu": (5, 50, 300), "cpu": (1, 2, 200)}


class Table:
    """The check's table: one row per line, status PASS / FAIL / 'no GPU'."""

    def __init__(self):
        self.rows = []

    def add(self, check, result, status):
        self.rows.append((check, result, status))
        print(f"  {status:6s}  {check}: {result}", file=sys.stderr, flush=True)

    def ok(self):
        return all(s != "FAIL" for _, _, s in self.rows)

    def markdown(self):
        lines = ["| check | result | status |", "|---|---|---|"]
        lines += [f"| {c} | {r} | {s} |" for c, r, s in self.rows]
        return "\n".join(lines) + "\n"


def passed(ok):
    return "PASS" if ok else "FAIL"


def rel_err(a, b):
    """||a - b|| / ||b|| (the norm-relative difference of two arrays)."""
    nb = float(np.linalg.norm(b))
    return float(np.linalg.norm(np.asarray(a, np.float64) - b)) / (nb if nb > 0 else 1.0)


# ---------------------------------------------------------------- data
def real_groups(data, workdir):
    """A training group list of real images: the iCoseg groups under `data` whose images all have
    masks; without that folder, core.toydata groups. Returns (list path, data root, description)."""
    if data and os.path.isdir(data):
        from data_prep.datasets import load_dataset
        from data_prep.test_groups import make_test_groups
        groups = [g for g in make_test_groups(load_dataset("icoseg", data), 5, SEED)
                  if g["masks"] and all(g["masks"])]
        if not groups:
            raise UserError(f"{data}: no group of 5 images that all have masks (ground_truth/<group>/<stem>.png)")
        path = os.path.join(workdir, "icoseg_groups.jsonl")
        write_group_list(path, groups)
        return path, data, f"{len(groups)} iCoseg groups of {data}"
    from core.toydata import write_toy_groups
    root = os.path.join(workdir, "toy")
    path = write_toy_groups(root, n_groups=4, size=(128, 256), seed=SEED)
    return path, root, "4 toy groups (no iCoseg folder)"


def data_params(list_path, root, **extra):
    return dict({"group_list": os.path.abspath(list_path), "data_root": os.path.abspath(root),
                 "seed": SEED}, **extra)


def first_group(list_path, root, h, w):
    """(data, label) of the list's first group at h x w, as the data layer makes them."""
    from python_layers.group_data_layer import GroupLoader, parse_params
    loader = GroupLoader(parse_params(json.dumps(data_params(list_path, root, height=h, width=w,
                                                             shuffle=False, prefetch=1))))
    try:
        return loader.next()
    finally:
        loader.close()


# ---------------------------------------------------------------- modes
def set_mode(gpu):
    if gpu is None:
        caffe.set_mode_cpu()
    else:
        caffe.set_device(gpu)
        caffe.set_mode_gpu()


def write_text(path, msg):
    with open(path, "w") as f:
        f.write(str(msg))
    return path


def paper_solver(model, net_path, max_iter, gpu, out):
    src = model_files(model).solver
    s = run_solver(read_prototxt(src, caffe_pb2.SolverParameter), net_path, max_iter, gpu)
    return write_text(out, s)


# ---------------------------------------------------------------- GPU == CPU
def one_pass(solver_path, group, gpu, model):
    """From the seeded weights: forward + backward on `group`, then one solver step, in the mode
    of `gpu`. Returns (saliency, {layer: gradient}, {layer: weights after the step}, {layer: update})."""
    set_mode(gpu)
    solver = caffe.get_solver(solver_path)
    net = solver.net
    he_init(net, SEED)
    init_bilinear(net)
    net.blobs["data"].data[...], net.blobs["label"].data[...] = group
    net.forward()
    net.clear_param_diffs()
    net.backward()
    out = net.blobs["saliency"].data.copy()
    grads = {n: net.params[n][0].diff.copy() for n in GRAD_LAYERS[model]}
    solver.step(1)
    after = {n: p[0].data.copy() for n, p in net.params.items()}
    update = {n: p[0].diff.copy() for n, p in net.params.items()}
    blob_bytes = sum(b.data.nbytes * 2 for b in net.blobs.values())
    param_bytes = sum(p.data.nbytes * 3 for ps in net.params.values() for p in ps)   # data, diff, history
    return out, grads, after, update, blob_bytes + param_bytes


def equality_lines(table, model, group, gpu, tmp):
    train = model_files(model).train
    k, _, h, w = group[0].shape
    param = with_data_layer(read_prototxt(train), input_layer({"data": (k, 3, h, w), "label": (k, 1, h, w)}),
                            train)
    net_path = write_text(os.path.join(tmp, f"{model}_input.prototxt"), param)
    solver = paper_solver(model, net_path, 1, gpu, os.path.join(tmp, f"{model}_eq_solver.prototxt"))
    ref = one_pass(solver, group, None, model)
    other = one_pass(solver, group, gpu, model)
    what = "GPU vs CPU" if gpu is not None else "CPU vs CPU (no GPU)"
    name = MODELS[model]
    e = rel_err(other[0], ref[0])
    table.add(f"{name}: forward, {what}", f"saliency rel. error {e:.1e} (tolerance {RTOL:g})", passed(e <= RTOL))
    errs = {n: rel_err(other[1][n], ref[1][n]) for n in GRAD_LAYERS[model]}
    worst = max(errs, key=errs.get)
    table.add(f"{name}: gradients {', '.join(GRAD_LAYERS[model])}, {what}",
              f"largest rel. error {errs[worst]:.1e} ({worst})", passed(errs[worst] <= RTOL))
    ew = max(rel_err(other[2][n], ref[2][n]) for n in ref[2])
    eu = max(rel_err(other[3][n], ref[3][n]) for n in ref[3])
    table.add(f"{name}: one step of the paper's solver, {what}",
              f"weights rel. error {ew:.1e}, update rel. error {eu:.1e}", passed(max(ew, eu) <= RTOL))
    return ref[4]


# ---------------------------------------------------------------- speed
def speed_line(table, stage, model, list_path, root, gpu, warmup, iters, tmp):
    """Iterations/s of the paper's solver with the real data layer; returns (it/s, peak bytes)."""
    train = model_files(model).train
    p = data_params(list_path, root)
    param = with_data_params(read_prototxt(train), p, train)
    net_path = write_text(os.path.join(tmp, f"{model}_train.prototxt"), param)
    solver_path = paper_solver(model, net_path, 10**6, gpu, os.path.join(tmp, f"{model}_speed_solver.prototxt"))
    set_mode(gpu)
    caffe.set_random_seed(SEED)
    solver = caffe.get_solver(solver_path)
    loader = solver.net.layers[0].loader
    waited = [0.0]
    fetch = loader.next

    def timed_next(*a):          # time the solver spends inside the data layer's forward
        t = time.perf_counter()
        r = fetch(*a)
        waited[0] += time.perf_counter() - t
        return r
    loader.next = timed_next
    peak = 0
    solver.step(warmup)
    waited[0] = 0.0
    t0 = time.perf_counter()
    for _ in range(iters):
        solver.step(1)
        if gpu is not None:
            peak = max(peak, device.gpu_memory_used() or 0)
    dt = time.perf_counter() - t0
    rate, share = iters / dt, waited[0] / dt
    workers = p.get("workers", 2)
    advice = "" if share <= WAIT_SHARE_MAX else (
        f"; the GPU starves: raise the decoding threads (apps.train --workers {2 * workers}) or keep "
        "decoded images in memory (--cache)")
    table.add(f"speed, stage {stage} ({MODELS[model]}), {iters} timed iterations",
              f"{rate:.2f} it/s, waiting for data {100 * share:.1f}% of the time{advice}",
              passed(share <= WAIT_SHARE_MAX))
    loader.close()
    del solver
    return rate, peak


# ---------------------------------------------------------------- short run
def short_run(table, list_path, root, gpu, iters, tmp):
    out = os.path.join(tmp, "short_run")
    cmd = [sys.executable, "-m", "apps.train", "--model", "single", "--train-list", list_path,
           "--data-root", root, "--out", out, "--iters", str(iters), "--log-every", "20",
           "--snapshot-every", str(10 * iters)]
    if gpu is None:
        cmd.append("--tiny")         # the full model at ~2 s/iteration is out of reach on 2 cores
        what = f"tiny Ours-S (64x128), its Adam solver, {iters} iterations on the CPU"
    else:
        # Adam is insensitive to the loss scale, so random weights train without VGG16; the paper's
        # SGD at base_lr 1e-10 needs VGG16's activations (see docs/benchmarks.md, ratios).
        cmd += ["--gpu", str(gpu), "--solver", str(model_files("single", tiny=True).solver)]
        what = f"Ours-S (128x256), Adam, {iters} iterations"
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=PROJECT_ROOT)
    if r.returncode != 0:
        table.add(f"short training run: {what}", f"apps.train failed: {r.stderr.strip().splitlines()[-1:]}", "FAIL")
        return
    with open(os.path.join(out, "loss.csv")) as f:
        loss = [float(row["loss"]) for row in csv.DictReader(f)]
    n = max(1, len(loss) // 4)
    first, last = float(np.mean(loss[:n])), float(np.mean(loss[-n:]))
    table.add(f"short training run: {what}, real images",
              f"mean loss of the first {n} iterations {first:.4g}, of the last {n} {last:.4g} "
              f"(must fall below {LOSS_DROP:g}x)", passed(last < LOSS_DROP * first))


# ---------------------------------------------------------------- the bare-node bundle
BUNDLE_GROUPS = 8        # real groups in the bundle's HDF5 files (size: 60 MiB in all)


def bundle_net(model, source, msra=True, tiny=False):
    """A train net of `model` reading HDF5 `source`; msra: He-normal fillers in place of the
    prototxt's (random weights whose activations stay O(1), so that losses and updates compare)."""
    train = model_files(model, tiny).train
    param = with_data_layer(read_prototxt(train), hdf5_layer(source, 5), train)
    if msra:
        for layer in param.layer:
            if layer.type == "Convolution":
                layer.convolution_param.weight_filler.Clear()
                layer.convolution_param.weight_filler.type = "msra"
    return param


def write_bundle_inputs(out, data, n_groups=BUNDLE_GROUPS):
    """The nets, solvers, HDF5 data and parameter order the bundle's gpu_check.sh runs with the
    C++ `caffe` tool; every path inside is relative to `out` (the script runs there). They are
    staged and replace those of an earlier bundle together: a failed or interrupted run leaves
    `out` as it was."""
    with tempfile.TemporaryDirectory() as tmp:
        groups = real_groups(data, tmp)         # first: data refused leaves `out` untouched
        with staged_dir(out) as stage:
            return _write_bundle(stage, groups, n_groups)


def _write_bundle(out, groups, n_groups):
    import h5py
    list_path, root, desc = groups
    for d in ("nets", "solvers", "data"):
        os.makedirs(os.path.join(out, d), exist_ok=True)
    for name, (h, w) in (("full", (128, 256)), ("tiny", (64, 128))):
        from python_layers.group_data_layer import GroupLoader, parse_params
        loader = GroupLoader(parse_params(json.dumps(data_params(list_path, root, height=h, width=w,
                                                                 shuffle=False, prefetch=1))))
        n = min(n_groups, len(loader.groups))
        pairs = [loader.next() for _ in range(n)]
        loader.close()
        with h5py.File(os.path.join(out, "data", f"{name}.h5"), "w") as f:
            for key, i in (("data", 0), ("label", 1)):
                f.create_dataset(key, data=np.concatenate([p[i] for p in pairs]),
                                 compression="gzip", compression_opts=9, shuffle=True)
        write_text(os.path.join(out, "data", f"{name}.txt"), f"data/{name}.h5\n")
    nets = {"group": bundle_net("group", "data/full.txt"), "single": bundle_net("single", "data/full.txt"),
            "single_tiny": bundle_net("single", "data/tiny.txt", msra=False, tiny=True)}
    for name, param in nets.items():
        write_text(os.path.join(out, "nets", f"{name}.prototxt"), param)
    for model in ("group", "single"):
        # the order of Caffe's solver history: every parameter blob, layer by layer
        order = [[x.name, i] for x in nets[model].layer if x.type in ("Convolution", "Deconvolution")
                 for i in range(2 if x.convolution_param.bias_term else 1)]
        write_text(os.path.join(out, "nets", f"{model}.params.json"),
                   json.dumps({"order": order, "grad_layers": GRAD_LAYERS[model]}))
        paper = read_prototxt(model_files(model).solver, caffe_pb2.SolverParameter)
        net = f"nets/{model}.prototxt"
        write_text(os.path.join(out, "solvers", f"{model}_init.prototxt"),
                   run_solver(paper, net, 0, random_seed=SEED + 1, snapshot_prefix=f"work/{model}_init"))
        write_text(os.path.join(out, "solvers", f"{model}_step.prototxt"),
                   run_solver(paper, net, 1, snapshot_prefix=f"work/{model}_step",
                              snapshot_format=caffe_pb2.SolverParameter.HDF5))
    adam = read_prototxt(model_files("single", tiny=True).solver, caffe_pb2.SolverParameter)
    for name, net, iters in (("short_full", "nets/single.prototxt", ITERS["gpu"][2]),
                             ("short_tiny", "nets/single_tiny.prototxt", ITERS["cpu"][2])):
        write_text(os.path.join(out, "solvers", f"{name}.prototxt"),
                   run_solver(adam, net, iters, display=10, random_seed=SEED + 1,
                              snapshot_after_train=False, snapshot_prefix=f"work/{name}"))
    return desc


# ---------------------------------------------------------------- the check
def preflight(gpu):
    """Build, driver, device, architectures and memory, before any Caffe call (UserError if unusable)."""
    info = device.check_gpu(gpu)
    if info.memory_bytes < MIN_GPU_MEMORY:
        raise UserError(f"GPU {gpu} ({info.name}) has {info.memory_bytes / 2**30:.1f} GiB; the full group model "
                        f"needs at least {MIN_GPU_MEMORY / 2**30:.0f} GiB: choose another GPU")
    return info


def run_check(gpu, data, out=None):
    build = device.caffe_build()
    info = preflight(gpu) if gpu is not None else None
    warmup, iters, short_iters = ITERS["gpu" if gpu is not None else "cpu"]
    table = Table()
    if info is None:
        table.add("build", build.describe(), "no GPU")
        table.add("driver and device", "not checked (--cpu)", "no GPU")
        table.add("architectures", "not checked (--cpu)", "no GPU")
    else:
        table.add("build", build.describe(), "PASS")
        table.add("driver and device", info.describe(), "PASS")
        cc = "%d%d" % info.compute_capability
        archs = " ".join([f"sm_{a}" for a in build.arch_bin] + [f"compute_{a}" for a in build.arch_ptx]) or "unknown"
        table.add("architectures", f"built for {archs}; device sm_{cc}", "PASS")
    with tempfile.TemporaryDirectory(prefix="gwd-gpu-check-") as tmp:
        list_path, root, desc = real_groups(data, tmp)
        table.add("data", desc, "PASS")
        group = first_group(list_path, root, 128, 256)
        need = 0
        for model in ("group", "single"):
            need = max(need, equality_lines(table, model, group, gpu, tmp))
        table.add("memory estimate (largest model, one group)",
                  f"{need / 2**30:.2f} GiB of blobs, gradients and solver history; "
                  f"{MIN_GPU_MEMORY / 2**30:.0f} GiB required of the GPU", passed(need < MIN_GPU_MEMORY / 2))
        rates, peak = [], 0
        for stage, model in ((1, "single"), (2, "group")):
            rate, p = speed_line(table, stage, model, list_path, root, gpu, warmup, iters, tmp)
            rates.append(rate)
            peak = max(peak, p)
        if gpu is None:
            table.add("peak GPU memory", "not measured (--cpu)", "no GPU")
        else:
            table.add("peak GPU memory", f"{peak / 2**30:.2f} GiB of {info.memory_bytes / 2**30:.0f} GiB",
                      passed(0 < peak < info.memory_bytes))
        hours = sum(PAPER_ITERS / r for r in rates) / 3600
        table.add(f"projected time of 2 x {PAPER_ITERS} iterations", f"{hours:.1f} h"
                  + (" (CPU; reduced iteration counts: 2 timed iterations per stage)" if gpu is None else ""), "PASS")
        short_run(table, list_path, root, gpu, short_iters, tmp)
    text = table.markdown()
    print(text)
    if out:
        os.makedirs(out, exist_ok=True)
        atomic_write_text(os.path.join(out, "gpu_check.md"), text)
    return 0 if table.ok() else 1


def default_data():
    return os.path.join(PROJECT_ROOT.parent, "shared", "datasets", "icoseg-dev")


@cli
def main(argv=None):
    ap = ArgumentParser(prog="python -m apps.gpu_check", description=__doc__.split("\n\n")[0])
    where = ap.add_mutually_exclusive_group()
    where.add_argument("--gpu", type=device.gpu_option, help="GPU id to check")
    where.add_argument("--cpu", action="store_true", help="the same table in CPU mode (reduced iterations)")
    ap.add_argument("--data", default=None, help="iCoseg folder with images/ and ground_truth/ "
                    "(default: ../shared/datasets/icoseg-dev when present, else toy groups)")
    ap.add_argument("--out", help="also write the table to OUT/gpu_check.md")
    ap.add_argument("--write-bundle", metavar="DIR", help="write the nets, solvers and HDF5 data of "
                    "the bare-node bundle (make gpu-bundle) to DIR and exit")
    args = ap.parse_args(argv)
    if args.data is not None:      # given: never the toy groups instead
        check_input_folder(args.data, "data folder")
    if args.write_bundle:
        out = prepare_out_dir(args.write_bundle, force=True)   # before the work: a file, read-only
        print(write_bundle_inputs(out, args.data or default_data()))
        return
    if args.out:
        prepare_out_file(os.path.join(os.path.expanduser(args.out), "gpu_check.md"))   # before the work
    gpu = None
    if not args.cpu:
        gpu = device.parse_gpu(args.gpu)
        if gpu is None:
            raise UserError("no GPU given: make gpu-check GPU=0 (or python -m apps.gpu_check --gpu 0); "
                            "--cpu runs the check in CPU mode")
    sys.exit(run_check(gpu, args.data or default_data(), args.out))


if __name__ == "__main__":
    main()
