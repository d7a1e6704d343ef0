"""Train one model (Ours-S or the group model) with a Caffe solver, in the spirit of FCN's solve.py.

    python -m apps.train --model single --train-list L --data-root D --out runs/single --vgg16 W
    python -m apps.train --model group --train-list L --data-root D --out runs/group --from-single S

The run folder holds everything: the resolved train prototxt and solver, loss.csv and loss.png,
val.csv (MAE and mF on a held-out group list), snapshots/ and two pointers written atomically:
latest.json (the last complete snapshot, what --resume continues from) and weights.caffemodel
(the newest weights, what prediction uses). SIGINT / SIGTERM write a snapshot before exiting.
Resuming also skips the groups the data layer had already served, so an interrupted and resumed
run sees the same data in the same order as one that was never interrupted.
"""
import argparse
import csv
import json
import math
import os
import signal
import sys
import time

import numpy as np

from core.errors import UserError, cli
from core.imageio import atomic_write_bytes, atomic_write_text
from core.layout import SCORE_LAYER, model_files
from core.netio import caffe, caffe_pb2, check_net, load_net, read_prototxt
from core.surgery import init_bilinear, single_to_group, transplant_vgg16

def write_train_net(src, dst, data_params):
    """Copy the train prototxt with the data layer's JSON param_str updated."""
    net = read_prototxt(src)
    check_net(net, src)
    layer = next((x for x in net.layer if x.type == "Python"), None)
    if layer is None:
        raise UserError(f"{src}: no Python data layer to configure")
    p = json.loads(layer.python_param.param_str or "{}")
    p.update(data_params)
    layer.python_param.param_str = json.dumps(p)
    atomic_write_text(dst, str(net))
    return p


# Solver fields that belong to a run, not to a solver file: apps.train sets them itself (it takes
# its own snapshots, with pointers written after them, and prints its own progress).
RUN_FIELDS = ("net", "train_net", "snapshot", "snapshot_prefix", "display", "solver_mode", "device_id")


def write_solver(src, dst, net_path, prefix, max_iter, gpu, overrides=()):
    s = read_prototxt(src, caffe_pb2.SolverParameter)
    owned = [f for f in RUN_FIELDS if s.HasField(f)]
    if owned:
        raise UserError(f"{src}: sets {', '.join(owned)}, which apps.train sets for each run "
                        "(--out, --snapshot-every, --log-every, --gpu): remove them from the solver")
    s.net = net_path
    s.snapshot_prefix = prefix
    s.max_iter = max_iter
    s.snapshot = 0
    s.display = 0
    s.solver_mode = caffe_pb2.SolverParameter.GPU if gpu is not None else caffe_pb2.SolverParameter.CPU
    for k, v in overrides:
        setattr(s, k, type(getattr(s, k))(v))
    atomic_write_text(dst, str(s))
    return s


class Run:
    """Files of a run folder: logs, snapshots and the pointers to the newest complete ones."""

    def __init__(self, out):
        self.out = out
        self.snapdir = os.path.join(out, "snapshots")
        os.makedirs(self.snapdir, exist_ok=True)
        self.latest_path = os.path.join(out, "latest.json")
        self.loss_csv = os.path.join(out, "loss.csv")
        self.val_csv = os.path.join(out, "val.csv")

    def latest(self):
        if not os.path.exists(self.latest_path):
            return None
        with open(self.latest_path) as f:
            latest = json.load(f)
        state = os.path.join(self.out, latest["solverstate"])
        if not os.path.isfile(state):
            raise UserError(f"{self.latest_path}: names {state}, which is missing")
        return latest

    def truncate_logs(self, iteration):
        """Drop log rows past `iteration` (written after the snapshot being resumed from)."""
        for path in (self.loss_csv, self.val_csv):
            if os.path.exists(path):
                with open(path, newline="") as f:
                    rows = list(csv.reader(f))
                keep = rows[:1] + [r for r in rows[1:] if int(r[0]) <= iteration]
                atomic_write_text(path, "".join(",".join(r) + "\n" for r in keep))

    def append(self, path, header, row):
        new = not os.path.exists(path)
        with open(path, "a") as f:
            if new:
                f.write(",".join(header) + "\n")
            f.write(",".join(str(x) for x in row) + "\n")

    def snapshot(self, solver, prefix_name):
        """Caffe writes <prefix>_iter_N.{caffemodel,solverstate} non-atomically; the pointers are
        written only once both exist, so a crash mid-snapshot never corrupts what resume uses."""
        solver.snapshot()
        it = solver.iter
        base = f"{prefix_name}_iter_{it}"
        model = os.path.join("snapshots", base + ".caffemodel")
        state = os.path.join("snapshots", base + ".solverstate")
        with open(os.path.join(self.out, model), "rb") as f:
            atomic_write_bytes(os.path.join(self.out, "weights.caffemodel"), f.read())
        atomic_write_text(self.latest_path, json.dumps({"iter": it, "caffemodel": model, "solverstate": state}))
        return it

    def plot(self):
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        it, loss = [], []
        with open(self.loss_csv) as f:
            for r in list(csv.reader(f))[1:]:
                it.append(int(r[0]))
                loss.append(float(r[1]))
        if not it:
            return
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.plot(it, loss, lw=0.5, alpha=0.4, label="loss")
        w = max(1, min(100, len(loss) // 10))
        if len(loss) >= w:
            ax.plot(it[w - 1:], np.convolve(loss, np.ones(w) / w, "valid"), lw=1.5, label=f"mean of {w}")
        ax.set_xlabel("iteration")
        ax.set_ylabel("Euclidean loss")
        ax.set_yscale("log")
        ax.legend()
        fig.tight_layout()
        tmp = os.path.join(self.out, ".loss.png.tmp.png")
        fig.savefig(tmp, dpi=100)
        plt.close(fig)
        os.replace(tmp, os.path.join(self.out, "loss.png"))


def validate(test_net, loader_params, n_groups):
    """MAE and mF (the paper's metrics) of the current weights on the first `n_groups` groups
    of the held-out list, the same groups every time so that the numbers compare."""
    from eval.metrics import dataset_metrics
    from python_layers.group_data_layer import GroupLoader
    loader = GroupLoader(loader_params)
    pairs = []
    try:
        for _ in range(min(n_groups, len(loader.groups))):
            data, label = loader.next()
            test_net.blobs["data"].data[...] = data
            out = test_net.forward()["saliency"]
            pairs += [(np.clip(o[0], 0, 1), lab[0]) for o, lab in zip(out, label)]
    finally:
        loader.close()
    m, _ = dataset_metrics(pairs, modern=False)
    return m["MAE"], m["mF"]


def init_weights(net, args):
    """Starting weights of a fresh run; returns a one-line description."""
    init_bilinear(net)
    if args.vgg16:
        transplant_vgg16(net, args.vgg16)
        return f"semantic block from VGG16 {args.vgg16}"
    if args.from_single:
        single = load_net(model_files("single", args.tiny).deploy, args.from_single)
        copied = single_to_group(single, net, SCORE_LAYER["single"], SCORE_LAYER[args.model])
        return f"{len(copied)} layers from Ours-S {args.from_single} (X half of {SCORE_LAYER[args.model]} zero)"
    if args.init:
        src = load_net(model_files(args.model, args.tiny).deploy, args.init)
        for name, params in src.params.items():
            for s, d in zip(params, net.params[name]):
                d.data[...] = s.data
        return f"all layers from {args.init}"
    return "random (fillers of the prototxt)"


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="python -m apps.train", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=["single", "group"], required=True, help="Ours-S or the group model")
    ap.add_argument("--tiny", action="store_true", help="the narrow CPU variant (prototxt/tiny)")
    ap.add_argument("--train-list", required=True, help="JSON Lines group list (data_prep)")
    ap.add_argument("--data-root", required=True, help="folder the list's paths are relative to")
    ap.add_argument("--out", required=True, help="run folder")
    ap.add_argument("--solver", help="solver prototxt (default: the model's, prototxt/[tiny/]solver_<model>)")
    ap.add_argument("--iters", type=int, help="iterations in total (default: the solver's max_iter)")
    ap.add_argument("--base-lr", type=float, help="override the solver's base_lr")
    init = ap.add_mutually_exclusive_group()
    init.add_argument("--vgg16", help="VGG_ILSVRC_16_layers.caffemodel for the semantic block (stage 1)")
    init.add_argument("--from-single", help="trained Ours-S weights to start the group model from (stage 2)")
    init.add_argument("--init", help="weights of this same model to start from")
    ap.add_argument("--resume", action="store_true", help="continue from the run folder's latest snapshot")
    ap.add_argument("--gpu", type=int, help="GPU id (default: CPU)")
    ap.add_argument("--snapshot-every", type=int, default=1000, help="iterations between snapshots")
    ap.add_argument("--log-every", type=int, default=20, help="iterations between progress lines")
    ap.add_argument("--val-list", help="held-out group list for validation")
    ap.add_argument("--val-root", help="data root of --val-list (default: --data-root)")
    ap.add_argument("--val-every", type=int, default=1000, help="iterations between validations")
    ap.add_argument("--val-groups", type=int, default=20, help="groups per validation (the list's first)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the data order and of Caffe's fillers")
    ap.add_argument("--cache", action="store_true", help="keep decoded training images in memory")
    ap.add_argument("--workers", type=int, default=2, help="decoding threads of the data layer")
    args = ap.parse_args(argv)
    for k in ("snapshot_every", "log_every", "val_every", "val_groups", "workers"):
        if getattr(args, k) < 1:
            ap.error(f"--{k.replace('_', '-')} must be >= 1")
    if args.iters is not None and args.iters < 0:
        ap.error("--iters must be >= 0")
    return args


def fmt_time(s):
    s = int(s)
    return f"{s // 3600}h{s // 60 % 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def train(args):
    train_proto, deploy_proto, solver_proto = model_files(args.model, args.tiny)
    solver_src = args.solver or solver_proto
    run = Run(os.path.abspath(args.out))
    latest = run.latest() if args.resume else None
    if args.resume and latest is None:
        raise UserError(f"{run.latest_path}: nothing to resume (no snapshot in {args.out})")
    if not args.resume and os.path.exists(run.latest_path):
        raise UserError(f"{args.out}: already holds a run; pass --resume to continue it or choose another --out")
    start = latest["iter"] if latest else 0
    for path, what in ((args.train_list, "train list"), (args.val_list, "validation list")):
        if path and not os.path.isfile(path):
            raise UserError(f"{path}: {what} not found")

    from core.device import select_mode
    select_mode(args.gpu)
    caffe.set_random_seed(args.seed)

    net_path = os.path.join(run.out, "train.prototxt")
    write_train_net(train_proto, net_path, {
        "group_list": os.path.abspath(args.train_list), "data_root": os.path.abspath(args.data_root),
        "seed": args.seed, "skip": start, "cache": args.cache, "workers": args.workers})
    solver_param = read_prototxt(solver_src, caffe_pb2.SolverParameter)
    max_iter = args.iters if args.iters is not None else solver_param.max_iter
    overrides = [("base_lr", args.base_lr)] if args.base_lr is not None else []
    prefix_name = args.model
    write_solver(solver_src, os.path.join(run.out, "solver.prototxt"), net_path,
                 os.path.join(run.snapdir, prefix_name), max_iter, args.gpu, overrides)
    solver = caffe.get_solver(os.path.join(run.out, "solver.prototxt"))

    if latest:
        solver.restore(os.path.join(run.out, latest["solverstate"]))
        run.truncate_logs(start)
        print(f"resumed from iteration {start} ({latest['solverstate']})", file=sys.stderr)
    else:
        print("initialised:", init_weights(solver.net, args), file=sys.stderr)

    val = None
    if args.val_list:
        from python_layers.group_data_layer import GroupLoader, parse_params
        test_net = load_net(deploy_proto)
        test_net.share_with(solver.net)
        shape = test_net.blobs["data"].data.shape
        val = (test_net, parse_params(json.dumps({
            "group_list": os.path.abspath(args.val_list), "group_size": shape[0],
            "data_root": os.path.abspath(args.val_root or args.data_root),
            "height": shape[2], "width": shape[3], "shuffle": False, "prefetch": 2})))
        GroupLoader(val[1]).close()      # the list and its files checked now, not at the first validation

    stop = {"signal": None}

    def on_signal(signum, frame):
        stop["signal"] = signum

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    t0, it0, recent = time.time(), solver.iter, []
    try:
        while solver.iter < max_iter and stop["signal"] is None:
            solver.step(1)
            it = solver.iter
            loss = float(solver.net.blobs["loss"].data)
            if not math.isfinite(loss):
                raise UserError(f"loss became {loss} at iteration {it}; lower the learning rate (--base-lr)")
            run.append(run.loss_csv, ("iter", "loss", "seconds"), (it, f"{loss:.6g}", f"{time.time() - t0:.2f}"))
            recent = (recent + [loss])[-args.log_every:]
            if it % args.log_every == 0 or it == max_iter:
                rate = (it - it0) / max(time.time() - t0, 1e-9)
                eta = (max_iter - it) / rate if rate > 0 else 0
                print(f"iter {it}/{max_iter}  loss {np.mean(recent):.4g}  {rate:.2f} it/s  ETA {fmt_time(eta)}",
                      file=sys.stderr)
            if val and it % args.val_every == 0:
                mae, mf = validate(val[0], val[1], args.val_groups)
                run.append(run.val_csv, ("iter", "MAE", "mF"), (it, f"{mae:.5f}", f"{mf:.5f}"))
                print(f"iter {it}  validation MAE {mae:.4f}  mF {mf:.4f}", file=sys.stderr)
            if it % args.snapshot_every == 0 and it < max_iter:
                run.snapshot(solver, prefix_name)
                run.plot()
        if solver.iter > start or not os.path.exists(run.latest_path):
            it = run.snapshot(solver, prefix_name)
            run.plot()
            print(f"snapshot at iteration {it}: {os.path.join(args.out, 'weights.caffemodel')}", file=sys.stderr)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    if stop["signal"] is not None:
        print(f"stopped by signal {stop['signal']} at iteration {solver.iter}; continue with --resume",
              file=sys.stderr)
        return 128 + stop["signal"]
    return 0


@cli
def main(argv=None):
    sys.exit(train(parse_args(argv)))


if __name__ == "__main__":
    main()
