"""Train one model (Ours-S or the group model) with a Caffe solver, in the spirit of FCN's solve.py.

    python -m apps.train --model single --train-list L --data-root D --out runs/single --vgg16 W
    python -m apps.train --model group --train-list L --data-root D --out runs/group --from-single S
    (--model group_plus: Ours+, not the paper's net; README "What the group block can and cannot learn")

The run folder holds everything: the resolved train prototxt and solver, run.json (what defines
the run; a resume that contradicts it is refused), loss.csv and loss.png,
ratios.csv and ratios.png (each layer's ||dw||/||w||, core.diagnostics),
val.csv (MAE and mF on a held-out group list), snapshots/ and two pointers written atomically:
latest.json (the last complete snapshot, what --resume continues from) and weights.caffemodel
(the newest weights, what prediction uses). SIGINT / SIGTERM write a snapshot before exiting.
Resuming also skips the groups the data layer had already served, so an interrupted and resumed
run sees the same data in the same order as one that was never interrupted.

What can go wrong is found before Caffe sees it (core.netio): the prototxts' shapes, the solver's
settings, a solverstate that is corrupt or belongs to another model. A resume that fails leaves
the run folder as it was: the train prototxt and solver are written there only once the solver
has been built and restored. A run folder can be moved or copied: --resume restores from the
folder's own caffemodel, whatever path the solverstate remembers. A snapshot is pointed to only
once both of its files are complete and read back.
"""
import argparse
import csv
import hashlib
import json
import math
import os
import shutil
import signal
import sys
import tempfile
import time

import numpy as np

from core.args import ArgumentParser, caffe_rate, caffe_seed, iterations, positive_int
from core.device import gpu_option
from core.diagnostics import RatioLog, learnable_layers
from core.errors import UserError, cli, sigint_ignored
from core.inputs import check_input_file, check_input_folder, read_input_text, read_json_file
from core.layout import MODELS, SCORE_LAYER, model_files
from core.netio import (caffe, caffe_path, caffe_pb2, check_net, check_weights_file, check_weights_path, load_net,
                        read_prototxt, read_solver, read_solverstate, read_weights, restore,
                        solverstate_iteration)
from core import netgen
from core.netcheck import TWO_HISTORIES, check_solver, solver_type
from core.outputs import (STAGING_PREFIX, atomic_path, atomic_write_bytes, atomic_write_text,
                          check_space, prepare_out_dir, write_together)
from core.plotting import pyplot
from core.progress import say
from core.surgery import check_vgg16, init_bilinear, single_to_group, transplant_vgg16


# ---------------------------------------------------------------- the run's records
def train_net(src, data_params):
    """The train prototxt with the data layer's JSON param_str updated (checked, in memory)."""
    net = read_prototxt(src)
    check_net(net, src, "train")
    return netgen.with_data_params(net, data_params, src)


def run_solver(src, net_path, prefix, max_iter, gpu, overrides=()):
    """The solver file with what belongs to the run filled in (checked, in memory). A solver file
    that sets a run's own fields (core.netgen.RUN_FIELDS) is refused: nothing overrides it silently."""
    s = read_solver(src)
    owned = [f for f in netgen.RUN_FIELDS if s.HasField(f)]
    if owned:
        raise UserError(f"{src}: sets {', '.join(owned)}, which apps.train sets for each run (the "
                        "net, --out, --snapshot-every, --log-every, --gpu, binary snapshots): remove "
                        "them from the solver")
    tests = [f for f in ("test_net", "test_net_param") if getattr(s, f)]
    if tests:
        raise UserError(f"{src}: sets {', '.join(tests)}: apps.train runs no test nets of a solver "
                        "(it validates with --val-list); remove them from the solver")
    s = netgen.run_solver(s, net_path, max_iter, gpu, snapshot_prefix=prefix)
    for k, v in overrides:
        setattr(s, k, type(getattr(s, k))(v))
    check_solver(s, src)
    return s


def _without_data_params(net):
    """The net as the model and variant it describes, whatever data it is fed."""
    net = caffe_pb2.NetParameter.FromString(net.SerializeToString())
    for layer in net.layer:
        if layer.type == "Python":
            layer.python_param.param_str = ""
    return net


# What a run folder holds: a folder with only these and no latest.json is a run that failed
# before its first snapshot, which a new run may take over.
RUN_FILES = {"run.json", "train.prototxt", "solver.prototxt", "loss.csv", "val.csv", "loss.png", "ratios.csv",
             "ratios.png", "snapshots", "weights.caffemodel", "latest.json"}


class RunFolder:
    """Files of a run folder: logs, snapshots and the pointers to the newest complete ones."""

    def __init__(self, out):
        self.out = out
        self.snapdir = os.path.join(out, "snapshots")
        self.partial = os.path.join(self.snapdir, STAGING_PREFIX + "partial")
        self.latest_path = os.path.join(out, "latest.json")
        self.net_path = os.path.join(out, "train.prototxt")
        self.solver_path = os.path.join(out, "solver.prototxt")
        self.record_path = os.path.join(out, "run.json")
        self.loss_csv = os.path.join(out, "loss.csv")
        self.val_csv = os.path.join(out, "val.csv")

    def latest(self):
        if not os.path.exists(self.latest_path):
            return None
        latest = read_json_file(self.latest_path, "snapshot pointer")
        try:
            if not isinstance(latest, dict):
                raise TypeError("not a JSON object")
            latest = {k: latest[k] for k in ("iter", "caffemodel", "solverstate")}
        except (KeyError, TypeError) as e:
            reason = f"no {e}" if isinstance(e, KeyError) else e
            raise UserError(f"{self.latest_path}: not a snapshot pointer of apps.train ({reason})") from None
        it = latest["iter"]
        if not isinstance(it, int) or isinstance(it, bool) or it < 0:
            raise UserError(f"{self.latest_path}: 'iter' is {json.dumps(it)}, not an iteration number")
        for key in ("solverstate", "caffemodel"):
            self._snapshot_file(latest[key])
        # before anything compares --iters with it: the logs would be cut at the wrong row
        state = os.path.join(self.out, latest["solverstate"])
        taken = solverstate_iteration(state)
        if taken != it:
            raise UserError(f"{self.latest_path}: says iteration {it}, but {state} was taken at iteration {taken}")
        return latest

    def _snapshot_file(self, name):
        """A file latest.json names: relative and inside the folder, so that a moved or copied run
        resumes from its own snapshots, never another run's."""
        inside = isinstance(name, str) and not os.path.isabs(name) and \
            os.path.normpath(name).split(os.sep)[0] not in ("..", "")
        if not inside:
            raise UserError(f"{self.latest_path}: names {json.dumps(name)}, not a file inside {self.out}")
        path = os.path.join(self.out, name)
        if not os.path.isfile(path):
            raise UserError(f"{self.latest_path}: names {path}, which is missing or not a file")

    def record(self):
        """run.json: what defined the run when it started (RECORDED), or None for a run made
        before runs kept one."""
        if not os.path.exists(self.record_path):
            return None
        record = read_json_file(self.record_path, "run record")
        try:
            if not isinstance(record, dict):
                raise TypeError("not a JSON object")
            record = {k: record[k] for k in RECORDED}
            if not all(isinstance(record[k], t) and not isinstance(record[k], bool) for k, t in RECORDED.items()):
                raise TypeError("a value of the wrong type")
        except (KeyError, TypeError) as e:
            reason = f"no {e}" if isinstance(e, KeyError) else e
            raise UserError(f"{self.record_path}: not a run record of apps.train ({reason})") from None
        return record

    def settle(self, args):
        """The settings of a resume: what the record holds where an option is left out; an
        option given with another value is refused (it would make another run, not this one).
        A run without a record takes what is given."""
        record = self.record()
        if record is None:
            return new_run_settings(args)
        for option, key, same in (("--seed", "seed", lambda a, b: a == b),
                                  ("--base-lr", "base_lr", lambda a, b: np.float32(a) == np.float32(b))):
            given = getattr(args, key)
            if given is not None and not same(given, record[key]):
                raise UserError(f"{self.record_path}: this run was started with {option} {record[key]}, "
                                f"not {given}; leave {option} out to continue it as it was started")
        if file_sha256(args.train_list) != record["train_list_sha256"]:
            raise UserError(f"{self.record_path}: this run was started with --train-list "
                            f"{record['train_list']}, and {args.train_list} holds another list; "
                            "resume it with its own list")
        return argparse.Namespace(**dict(vars(args), seed=record["seed"], base_lr=record["base_lr"]))

    def check_same_model(self, net):
        """Refuse to resume a run of another model or variant (its records stay as they are)."""
        if not os.path.isfile(self.net_path):
            return
        old = _without_data_params(read_prototxt(self.net_path))
        if old != _without_data_params(net):
            raise UserError(f"{self.net_path}: this run was trained with another net "
                            f"('{old.name}', {len(old.layer)} layers); resume it with its own "
                            "--model and --tiny, or choose another --out")

    def write_records(self, net, solver, record=None):
        """train.prototxt, solver.prototxt and (a new run's) run.json, together, only where
        they changed."""
        files = {self.net_path: str(net), self.solver_path: str(solver)}
        if record is not None:
            files[self.record_path] = json.dumps(record, indent=1) + "\n"
        changed = {os.path.basename(p): t for p, t in files.items() if _read_text(p) != t}
        if changed:
            write_together(self.out, changed)

    def truncate_logs(self, iteration):
        """Drop log rows past `iteration` (written after the snapshot being resumed from) and
        any row cut short by a crash."""
        for path in (self.loss_csv, self.val_csv):
            if os.path.exists(path):
                rows = list(csv.reader(read_input_text(path, "log").splitlines()))
                keep = rows[:1] + [r for r in rows[1:] if len(r) == len(rows[0]) and
                                   r[0].isdigit() and int(r[0]) <= iteration]
                atomic_write_text(path, "".join(",".join(r) + "\n" for r in keep))

    def append(self, path, header, row):
        new = not os.path.exists(path)
        with open(path, "a") as f:
            if new:
                f.write(",".join(header) + "\n")
            f.write(",".join(str(x) for x in row) + "\n")

    def snapshot_bytes(self, net, kind):
        """About what one snapshot (caffemodel + solverstate) takes on disk."""
        n = sum(p.data.size for params in net.params.values() for p in params)
        return 4 * n * (2 + (kind in TWO_HISTORIES)) + (1 << 20)

    def snapshot(self, solver, prefix_name, kind):
        """Caffe writes <prefix>_iter_N.{caffemodel,solverstate} non-atomically and aborts on a
        full disk. So: free space is checked first; Caffe writes into snapshots/.tmp-partial;
        both files are read back, then moved into snapshots/; only then are weights.caffemodel
        and latest.json pointed at them. A crash at any moment leaves the pointers on the last
        complete snapshot."""
        it = solver.iter
        base = f"{prefix_name}_iter_{it}"
        check_space(self.snapdir, self.snapshot_bytes(solver.net, kind), f"the snapshot of iteration {it}")
        solver.snapshot()
        files = {}
        for ext in ("caffemodel", "solverstate"):
            src = os.path.join(self.partial, f"{base}.{ext}")
            if not os.path.isfile(src):
                raise UserError(f"{src}: Caffe did not write the snapshot")
            files[ext] = src
        read_weights(files["caffemodel"])
        if read_solverstate(files["solverstate"]).iter != it:
            raise UserError(f"{files['solverstate']}: snapshot of iteration {it} reads back wrong")
        for ext, src in files.items():
            os.replace(src, os.path.join(self.snapdir, f"{base}.{ext}"))
        model = os.path.join("snapshots", base + ".caffemodel")
        state = os.path.join("snapshots", base + ".solverstate")
        with open(os.path.join(self.out, model), "rb") as f:
            atomic_write_bytes(os.path.join(self.out, "weights.caffemodel"), f.read())
        atomic_write_text(self.latest_path, json.dumps({"iter": it, "caffemodel": model, "solverstate": state}))
        return it

    def plot(self):
        plt = pyplot()
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
        with atomic_path(os.path.join(self.out, "loss.png"), suffix=".png") as tmp:
            fig.savefig(tmp, dpi=100)
        plt.close(fig)


# What defines a run besides its net and solver type (compared through train.prototxt and the
# solverstate): the data order (seed, list) and the learning rate. The list is compared by its
# content, so that a run and its data may move; its name is kept to say which list it was.
RECORDED = {"seed": int, "train_list": str, "train_list_sha256": str, "base_lr": float}


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def new_run_settings(args):
    """The settings of a run without a record: the defaults where an option is left out."""
    return argparse.Namespace(**dict(vars(args), seed=0 if args.seed is None else args.seed))


def run_record(args, solver_param):
    """run.json of a new run: its list relative to the data root when inside it (they move
    together), else absolute."""
    lst, root = os.path.abspath(args.train_list), os.path.abspath(args.data_root)
    inside = os.path.commonpath([lst, root]) == root
    return {"seed": args.seed, "train_list": os.path.relpath(lst, root) if inside else lst,
            "train_list_sha256": file_sha256(args.train_list),
            "base_lr": float(str(np.float32(solver_param.base_lr)))}     # as Caffe holds it, shortest


def _read_text(path):
    try:
        return read_input_text(path, "record")
    except UserError:    # missing, not a file or not text: differs, and is rewritten
        return None


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
        return f"{len(copied)} layers from Ours-S {args.from_single} ({SCORE_LAYER[args.model]} zero beyond x_i)"
    if args.init:
        src = load_net(model_files(args.model, args.tiny).deploy, args.init)
        for name, params in src.params.items():
            for s, d in zip(params, net.params[name]):
                d.data[...] = s.data
        return f"all layers from {args.init}"
    return "random (fillers of the prototxt)"


def parse_args(argv):
    ap = ArgumentParser(prog="python -m apps.train", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=sorted(MODELS), required=True,
                    help="single (Ours-S), group (the paper's group model) or group_plus (Ours+, not the paper's)")
    ap.add_argument("--tiny", action="store_true", help="the narrow CPU variant (prototxt/tiny)")
    ap.add_argument("--train-list", required=True, help="JSON Lines group list (data_prep)")
    ap.add_argument("--data-root", required=True, help="folder the list's paths are relative to")
    ap.add_argument("--out", required=True, help="run folder (new or empty, unless --resume)")
    ap.add_argument("--force", action="store_true", help="start a run in a folder that holds other files")
    ap.add_argument("--solver", help="solver prototxt (default: the model's, prototxt/[tiny/]solver_<model>)")
    ap.add_argument("--iters", type=iterations, help="iterations in total (default: the solver's max_iter)")
    ap.add_argument("--base-lr", type=caffe_rate,
                    help="override the solver's base_lr (> 0); a resumed run keeps its own")
    init = ap.add_mutually_exclusive_group()
    init.add_argument("--vgg16", help="VGG_ILSVRC_16_layers.caffemodel for the semantic block (stage 1)")
    init.add_argument("--from-single", help="trained Ours-S weights to start the group model or Ours+ from (stage 2)")
    init.add_argument("--init", help="weights of this same model to start from")
    ap.add_argument("--resume", action="store_true", help="continue from the run folder's latest snapshot")
    ap.add_argument("--gpu", type=gpu_option, help="GPU id (default, or -1: CPU)")
    ap.add_argument("--snapshot-every", type=positive_int, default=1000, help="iterations between snapshots")
    ap.add_argument("--log-every", type=positive_int, default=20, help="iterations between progress lines")
    ap.add_argument("--val-list", help="held-out group list for validation")
    ap.add_argument("--val-root", help="data root of --val-list (default: --data-root)")
    ap.add_argument("--val-every", type=positive_int, default=1000, help="iterations between validations")
    ap.add_argument("--val-groups", type=positive_int, default=20, help="groups per validation (the list's first)")
    ap.add_argument("--seed", type=caffe_seed,
                    help="seed of the data order and of Caffe's fillers (Caffe takes 32 bits; default 0; "
                         "a resumed run keeps its own)")
    ap.add_argument("--cache", action="store_true", help="keep decoded training images in memory")
    ap.add_argument("--workers", type=positive_int, default=2, help="decoding threads of the data layer")
    args = ap.parse_args(argv)
    if args.from_single and args.model == "single":
        ap.error("--from-single starts a group model (group, group_plus) from Ours-S")
    if args.resume:     # a resume continues the run's own snapshot, in its own folder
        start = [o for o, v in (("--vgg16", args.vgg16), ("--from-single", args.from_single),
                                ("--init", args.init)) if v]
        if start:
            ap.error(f"{start[0]} with --resume: a resumed run continues from its own snapshot; "
                     f"leave {start[0]} out")
        if args.force:
            ap.error("--force with --resume: a resume continues the run in its own folder; leave --force out")
    return args


def fmt_time(s):
    s = int(s)
    return f"{s // 3600}h{s // 60 % 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


# ---------------------------------------------------------------- the steps of train()
def check_inputs(args):
    """The files named on the command line, before anything is touched."""
    for path, what in ((args.train_list, "train list"), (args.val_list, "validation list"),
                       (args.solver, "solver")):
        if path:
            check_input_file(path, what)
    for path in (args.vgg16, args.from_single, args.init):
        if path:
            check_weights_path(path)
    if args.vgg16:
        check_vgg16(args.vgg16)
    if args.from_single:
        check_weights_file(model_files("single", args.tiny).deploy, args.from_single)
    if args.init:
        check_weights_file(model_files(args.model, args.tiny).deploy, args.init)
    check_input_folder(args.data_root, "data root")
    if args.val_root:
        check_input_folder(args.val_root, "validation data root")


def solver_file(args):
    return args.solver or model_files(args.model, args.tiny).solver


def total_iterations(args):
    """The iterations the run is to reach: --iters, else the solver's max_iter."""
    return args.iters if args.iters is not None else read_solver(solver_file(args)).max_iter


def check_iterations(args, start):
    """A new run must train (its first snapshot is taken at iteration 1 or later); a resumed
    one cannot go back to fewer iterations than its snapshot has."""
    total = total_iterations(args)
    where, given = (args.out, "--iters") if args.iters is not None else (solver_file(args), "max_iter")
    if start == 0 and total == 0:
        raise UserError(f"{where}: {given} 0 on a new run trains nothing; give 1 or more iterations")
    if total < start:
        raise UserError(f"{where}: {given} {total} is below iteration {start}, where the run is "
                        f"already; give --iters {start + 1} or more to continue it")


def open_run(args):
    """The run folder, checked (writable, new or this run's own) and held for this command
    (core.outputs.lock_out_dir: a folder it made and left empty is removed at its end) before
    the work; the snapshot to resume from, or None; and the run's settings (args, with what its
    record holds filled in)."""
    run = RunFolder(caffe_path(os.path.abspath(os.path.expanduser(args.out)), "run folder"))   # the solver names it
    latest = run.latest() if args.resume and os.path.isdir(run.out) else None
    if args.resume and latest is None:
        raise UserError(f"{run.latest_path}: nothing to resume (no snapshot in {args.out})")
    if not args.resume and os.path.exists(run.latest_path):
        raise UserError(f"{args.out}: already holds a run; pass --resume to continue it or choose another --out")
    args = run.settle(args) if latest else new_run_settings(args)
    check_iterations(args, latest["iter"] if latest else 0)
    prepare_out_dir(run.out, force=args.force,
                    may_hold=lambda names: args.resume or set(names) <= RUN_FILES)
    shutil.rmtree(run.partial, ignore_errors=True)     # what a crash mid-snapshot left
    return run, latest, args


def build_solver(args, run, start, scratch):
    """The run's train net and solver (checked, in memory) and a Caffe solver built from copies
    of them in `scratch`, so that the run folder's records are untouched until it all worked."""
    train_proto = model_files(args.model, args.tiny).train
    solver_src = solver_file(args)
    net = train_net(train_proto, {
        "group_list": os.path.abspath(args.train_list), "data_root": os.path.abspath(args.data_root),
        "seed": args.seed, "skip": start, "cache": args.cache, "workers": args.workers})
    if start:
        run.check_same_model(net)
    max_iter = total_iterations(args)
    overrides = [("base_lr", args.base_lr)] if args.base_lr is not None else []
    solver_param = run_solver(solver_src, run.net_path, os.path.join(run.partial, args.model),
                              max_iter, args.gpu, overrides)
    staged = caffe_pb2.SolverParameter()
    staged.CopyFrom(solver_param)
    staged.net = os.path.join(scratch, "train.prototxt")
    atomic_write_text(staged.net, str(net))
    atomic_write_text(os.path.join(scratch, "solver.prototxt"), str(staged))
    solver = caffe.get_solver(os.path.join(scratch, "solver.prototxt"))
    return solver, net, solver_param


def start_weights(solver, solver_param, args, run, latest, scratch):
    """Restore the snapshot being resumed (from the run folder's own caffemodel) or initialise."""
    if latest:
        state = os.path.join(run.out, latest["solverstate"])
        restore(solver, solver_param, state, os.path.join(run.out, latest["caffemodel"]), scratch)
        run.truncate_logs(latest["iter"])     # RunFolder.latest: the state's own iteration
        return f"resumed from iteration {latest['iter']} ({latest['solverstate']})"
    run.truncate_logs(0)     # rows of an earlier start that failed before its first snapshot
    return "initialised: " + init_weights(solver.net, args)


def make_validator(args, solver):
    """(deploy net sharing the solver's weights, loader parameters) or None without --val-list."""
    if not args.val_list:
        return None
    from python_layers.group_data_layer import GroupLoader, parse_params
    test_net = load_net(model_files(args.model, args.tiny).deploy)
    test_net.share_with(solver.net)
    shape = test_net.blobs["data"].data.shape
    params = parse_params(json.dumps({
        "group_list": os.path.abspath(args.val_list), "group_size": shape[0],
        "data_root": os.path.abspath(args.val_root or args.data_root),
        "height": shape[2], "width": shape[3], "shuffle": False, "prefetch": 2}))
    GroupLoader(params).close()      # the list and its files checked now, not at the first validation
    return test_net, params


class StopSignals:
    """SIGINT / SIGTERM during the loop only set a flag: the loop ends after its step and the
    final snapshot is written. SIGINT inherited ignored stays ignored (core.errors.sigint_ignored)."""

    def __init__(self):
        self.signal = None

    def __enter__(self):
        caught = (signal.SIGTERM,) if sigint_ignored() else (signal.SIGINT, signal.SIGTERM)
        self.old = {s: signal.signal(s, self._on) for s in caught}
        return self

    def _on(self, signum, frame):
        self.signal = signum

    def __exit__(self, *exc):
        for s, h in self.old.items():
            signal.signal(s, h)


def loop(solver, run, args, max_iter, val, stop, kind, ratios):
    """Step the solver to max_iter: loss.csv every iteration, a progress line and the layers'
    update-to-weight ratios (ratios.csv) every --log-every, validation every --val-every, a
    snapshot every --snapshot-every."""
    t0, it0, recent = time.time(), solver.iter, []
    while solver.iter < max_iter and stop.signal is None:
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
            say(f"iter {it}/{max_iter}  loss {np.mean(recent):.4g}  {rate:.2f} it/s  ETA {fmt_time(eta)}")
            stalled = ratios.record(solver.net, it, loss)
            if stalled:
                say(f"warning: {stalled}")
        if val and it % args.val_every == 0:
            mae, mf = validate(val[0], val[1], args.val_groups)
            run.append(run.val_csv, ("iter", "MAE", "mF"), (it, f"{mae:.5f}", f"{mf:.5f}"))
            say(f"iter {it}  validation MAE {mae:.4f}  mF {mf:.4f}")
        if it % args.snapshot_every == 0 and it < max_iter:
            run.snapshot(solver, args.model, kind)
            run.plot()
            ratios.plot()


def train(args):
    check_inputs(args)
    run, latest, args = open_run(args)
    start = latest["iter"] if latest else 0
    if start and total_iterations(args) == start:
        say(f"{args.out}: at iteration {start} already: nothing to do (give a larger --iters to "
            "continue it)")
        return 0

    from core.device import select_mode
    select_mode(args.gpu)
    caffe.set_random_seed(args.seed)

    scratch = tempfile.mkdtemp(dir=run.out, prefix=STAGING_PREFIX)
    try:
        solver, net, solver_param = build_solver(args, run, start, scratch)
        kind = solver_type(solver_param)
        check_space(run.out, run.snapshot_bytes(solver.net, kind), "a snapshot")
        say(start_weights(solver, solver_param, args, run, latest, scratch))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    # only now: the solver was built and restored
    run.write_records(net, solver_param, None if latest else run_record(args, solver_param))
    os.makedirs(run.partial, exist_ok=True)
    val = make_validator(args, solver)

    ratios = RatioLog(run.out, [n for n in learnable_layers(net) if n in solver.net.params], start)
    with StopSignals() as stop:
        loop(solver, run, args, solver_param.max_iter, val, stop, kind, ratios)
        if solver.iter > start or not os.path.exists(run.latest_path):
            it = run.snapshot(solver, args.model, kind)
            run.plot()
            ratios.plot()
            if stop.signal is None:
                say(f"snapshot at iteration {it}: {os.path.join(args.out, 'weights.caffemodel')}")
    if stop.signal is not None:
        say(f"stopped by signal {stop.signal} at iteration {solver.iter} (snapshot written); "
            "continue with --resume")
        return 128 + stop.signal
    return 0


@cli
def main(argv=None):
    # SIGTERM before the training loop (which has nothing to snapshot yet) is core.errors.cli's
    # one line and 143, the run folder as before: its scratch files removed on the way out.
    sys.exit(train(parse_args(argv)))


if __name__ == "__main__":
    main()
