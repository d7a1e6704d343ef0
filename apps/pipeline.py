"""The one orchestrator: the project's steps chained into the commands users run.

    python -m apps.pipeline train --data-root DIR --vgg16 W [--runs DIR] [--gpu N] [--iters N] [--resume]
    python -m apps.pipeline eval --dataset icoseg [--data-root DIR | --root DIR] [--runs DIR] [--engine opencv]
    python -m apps.pipeline baselines --dataset icoseg [--data-root DIR | --root DIR] [--runs DIR]
    python -m apps.pipeline table [--runs DIR]
    python -m apps.pipeline demo [--runs DIR]
    python -m apps.pipeline reproduce --data-root DIR --vgg16 W [--runs DIR] [--gpu N] [--iters N] [--dry-run]

`make train/eval/baselines/table/demo/reproduce` call these. Each step is one command of the
project, printed before it runs, so any step can be rerun by hand. A finished step leaves a stamp,
<runs>/.steps/<step>.json, holding its command and the size and modification time of its inputs;
a rerun skips every step whose stamp still matches (a changed input, e.g. retrained weights, redoes
the steps that read it, and a deleted output its step; delete a stamp to redo its step). An
interrupted training resumes from its last snapshot. Paths under the runs folder are recorded
relative to it, so a runs folder can be moved (or mounted elsewhere in Docker) and continued.
"""
import json
import os
import pathlib
import shlex
import signal
import subprocess
import sys
import time

from core.args import ArgumentParser, positive_int, positive_iterations, switch
from core.device import check_gpu, gpu_option
from core.errors import BROKEN_PIPE, INTERRUPTED, UserError, cli
from core.inputs import read_json_file
from core.outputs import atomic_write_text
from core.layout import (DATASET_FOLDERS, MODELS, PROJECT_ROOT, TABLE1_DATASETS, TRAINING_DATASET,
                         dataset_root, eval_dir, maps_dir, model_files, run_dir, table_dir)
from core.surgery import check_vgg16
from core.workers import interrupts_deferred

# The baselines of Table 1: method name -> the command's module and its extra arguments.
BASELINES = {"CBCS": ("baselines.cbcs", []), "CBCS-S": ("baselines.cbcs", ["--single"]),
             "CSHS": ("baselines.cshs", [])}
BENCHMARKS = sorted(set(DATASET_FOLDERS) - {TRAINING_DATASET})

# Where to get each input `reproduce` needs, printed when it is missing (README "Reproducing Table 1").
SOURCES = {
    "icoseg": ("iCoseg", "images/<group>/*.jpg and ground_truth/<group>/*.png (643 images, 38 groups)",
               "the iCoseg dataset page (Batra et al., 'iCoseg: Interactive Co-segmentation with "
               "Intelligent Scribble Guidance', CVPR 2010)"),
    "msrc": ("MSRC-v2", "images/<group>/*.bmp and ground_truth/<group>/*.png (the co-saliency layout)",
             "the MSRC object class recognition database v2 page (Microsoft Research Cambridge, 591 "
             "images); convert the release (Images/, GroundTruth/) with: python -m data_prep "
             "msrc-convert --root <release> --out {folder}"),
    "cosal2015": ("Cosal2015", "Image/<group>/*.jpg and GroundTruth/<group>/*.png (2015 images, 50 groups)",
                  "the Cosal2015 dataset page (Zhang et al., 'Co-saliency Detection via a Self-paced "
                  "Multiple-instance Learning Framework', TPAMI 2017)"),
    "coco9213": ("COCO9213 (training)", "img/<class>/*.jpg and gt/<class>/*.png (9213 images, 65 classes)",
                 "the COCO dataset page (Microsoft COCO: '2017 Train images' and '2017 Train/Val "
                 "annotations'), then: python -m data_prep coco9213 --coco-root <coco>/train2017 "
                 "--annotations <coco>/annotations/instances_train2017.json --out {folder}"),
    "vgg16": ("VGG16 weights", None,
              "the Caffe Model Zoo page, model 'VGG_ILSVRC_16_layers' (Simonyan & Zisserman, 'Very Deep "
              "Convolutional Networks for Large-Scale Image Recognition'): VGG_ILSVRC_16_layers.caffemodel"),
}

# The CPU demo (README "Demo"): tiny nets on the synthetic benchmark; iterations: the tiny solvers'.
DEMO = {"size": "64x128", "train_groups": 3000, "test_groups": 100, "seed": 0, "placement": "anchored"}


# ---------------------------------------------------------------- steps and their stamps
def runs_folder(runs):
    """--runs as an absolute path, refused when empty (make ... RUNS=) or when it is the
    project's folder or above it: the steps would write eval/, maps/ and the run folders among
    the project's own files."""
    if not str(runs).strip():
        raise UserError("--runs is empty: give the runs folder (make ... RUNS=runs)")
    runs = pathlib.Path(runs).absolute()
    if PROJECT_ROOT.resolve().is_relative_to(runs.resolve()):
        raise UserError(f"{runs}: is the project's folder or above it; give --runs a folder of its own "
                        "(default: runs)")
    return runs


class Steps:
    """Runs the project's commands as steps under one runs folder and remembers which are done."""

    def __init__(self, runs, dry_run=False):
        self.runs = runs_folder(runs)
        if self.runs.exists() and not self.runs.is_dir():
            raise UserError(f"{self.runs}: is a file, not a runs folder; give --runs a folder")
        self.dry_run = dry_run
        self.planned = []

    def _portable(self, arg):
        """An argument as recorded in a stamp: paths under the runs folder relative to it."""
        s = str(arg)
        if os.path.isabs(s):
            try:
                return "<runs>/" + pathlib.Path(s).relative_to(self.runs).as_posix()
            except ValueError:
                return s
        return s

    def _stamp(self, step_id):
        return self.runs / ".steps" / f"{step_id}.json"

    def _signature(self, argv, inputs):
        sig = {}
        for p in inputs:
            st = os.stat(p)
            sig[self._portable(os.path.abspath(p))] = [st.st_size, st.st_mtime_ns]
        return {"argv": [self._portable(a) for a in argv], "inputs": sig}

    def _read_stamp(self, path):
        """A stamp's record, or None where it is missing or damaged (the step then runs again).
        Something other than a file in its place would only fail once the step has run: refused."""
        if os.path.lexists(path) and not os.path.isfile(path):
            raise UserError(f"{path}: not a step record (a folder or other non-file); remove it")
        try:
            stamp = read_json_file(path, "step record")
        except UserError:
            return None
        return stamp if isinstance(stamp, dict) and isinstance(stamp.get("argv"), list) else None

    def done(self, step_id, argv, inputs=(), outputs=None):
        """The step ran to the end with this command, its inputs have not changed since, and
        what it made is still there (`outputs`; default: its --out), so that a deleted output
        is made again instead of failing every later step."""
        stamp = self._read_stamp(self._stamp(step_id))
        if outputs is None:
            outputs = [argv[argv.index("--out") + 1]] if "--out" in argv else []
        if stamp is None or not all(os.path.exists(p) for p in outputs):
            return False
        try:
            return {k: stamp.get(k) for k in ("argv", "inputs")} == self._signature(argv, inputs)
        except OSError:     # an input is gone: not done, and the step says what is missing
            return False

    def run(self, step_id, title, argv, inputs=(), extra=(), command=None, outputs=None):
        """Run `python -m <argv> <extra>` unless done. `extra`: arguments that do not change what
        the step makes (--gpu); `command`: what to run instead of argv (a resumed training), the
        step still being recorded as argv; `outputs`: what it makes (see done). A failure ends
        the pipeline with the step's own status."""
        if self.done(step_id, argv, inputs, outputs):
            print(f"== {title}: done already", file=sys.stderr)
            return False
        command = [*(argv if command is None else command), *extra]
        line = "python -m " + " ".join(shlex.quote(str(a)) for a in command)
        if self.dry_run:
            print(f"== {title}: would run: {line}", file=sys.stderr)
            self.planned.append(step_id)
            return True
        print(f"== {title}\n$ {line}", file=sys.stderr)
        t = time.time()
        returncode = run_step_command([sys.executable, "-m", *map(str, command)])
        if returncode == BROKEN_PIPE:   # the reader of its output went away (`make eval | head`)
            raise SystemExit(BROKEN_PIPE)
        if returncode != 0:
            print(f"== {title}: failed (exit {returncode}); rerun to continue from this step", file=sys.stderr)
            raise SystemExit(returncode)
        elapsed = time.time() - t
        stamp = dict(self._signature(argv, inputs), step=step_id, seconds=round(elapsed, 1),
                     finished=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        self._stamp(step_id).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self._stamp(step_id), json.dumps(stamp, indent=1) + "\n")
        print(f"== {title}: {elapsed:.0f} s", file=sys.stderr)
        return True

    def finished_maps(self, dataset):
        """Methods whose maps of `dataset` are complete: {name: folder}."""
        d = self.runs / ".steps" / "maps" / dataset
        names = sorted(p.stem for p in d.glob("*.json") if self._read_stamp(p)) if d.is_dir() else []
        return {n: maps_dir(self.runs, dataset, n) for n in names if maps_dir(self.runs, dataset, n).is_dir()}


def _own_process_group():
    """In the step's process, before it starts (process_group=0 needs Python 3.11)."""
    os.setpgrp()
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_step_command(cmd, limit=300.0):
    """Run a step's command and return its exit status. The step runs in a process group of
    its own, so that a Ctrl-C reaches it exactly once, forwarded from here: it then finishes its
    own way out (its snapshot, its workers, its one line) instead of being killed after 0.25 s
    as subprocess.run does, which left its worker processes running; killed only after `limit`
    seconds. An interrupted step that said so ends the pipeline with 130 and no second line;
    a second Ctrl-C meanwhile is the step's to answer (it got the first), not a second line of
    the pipeline's that leaves the step running on. The step takes SIGINT even where the
    pipeline ignores it (a background job): no terminal reaches its process group, and the
    pipeline forwards a SIGTERM to it as SIGINT."""
    p = subprocess.Popen(cmd, cwd=PROJECT_ROOT, preexec_fn=_own_process_group)
    try:
        return p.wait()
    except KeyboardInterrupt:
        os.killpg(p.pid, signal.SIGINT)
        try:
            with interrupts_deferred():
                p.wait(limit)
        except (KeyboardInterrupt, subprocess.TimeoutExpired):
            pass
        if p.returncode is None:      # still running after `limit` seconds
            p.kill()
            p.wait()
            raise KeyboardInterrupt from None
        if p.returncode == INTERRUPTED:
            raise SystemExit(INTERRUPTED) from None
        raise


def _gpu_args(gpu):
    return ["--gpu", gpu] if gpu is not None else []


def solver_iters(model, tiny=False):
    from core.netio import caffe_pb2, read_prototxt
    return read_prototxt(model_files(model, tiny).solver, caffe_pb2.SolverParameter).max_iter


def train_stage(steps, model, train_list, data_root, iters, init, tiny=False, gpu=None, extra=(), resume=True):
    """One training stage into <runs>/<model>; an unfinished run there is resumed when `resume`,
    else refused. `init`: the arguments that initialise a new run (--vgg16 W, --from-single S)."""
    out = run_dir(steps.runs, model)
    base = ["apps.train", "--model", model, "--train-list", train_list, "--data-root", data_root,
            "--out", out, "--iters", iters, *(["--tiny"] if tiny else []), *extra]
    argv, inputs = [*base, *init], [train_list] + [a for a in init if os.path.isfile(str(a))]
    command, outputs = None, [out / "weights.caffemodel"]
    if (out / "latest.json").exists() and not steps.done(f"train/{model}", argv, inputs, outputs):
        if not resume:
            raise UserError(f"{out}: holds an unfinished {model} run; continue it with RESUME=1 (--resume) "
                            "or move it away")
        command = [*base, "--resume"]
    steps.run(f"train/{model}", f"train {model}" + (" (resumed)" if command else ""), argv, inputs,
              _gpu_args(gpu), command, outputs)


def need(path, what, how):
    if not os.path.exists(path):
        raise UserError(f"{path}: {what} not found; {how}")


def predict(steps, dataset, root, weights, engine, gpu=None, tiny=False):
    """Maps of `dataset` from each trained model, in <runs>/maps/<dataset>/<method>."""
    for model, w in weights.items():
        name = MODELS[model]
        argv = ["apps.predict", "--dataset", dataset, "--root", root, "--weights", w, "--model", model,
                "--out", maps_dir(steps.runs, dataset, name), "--engine", engine, "--force"]
        if tiny:
            argv += ["--prototxt", model_files(model, tiny=True).deploy]
        steps.run(f"maps/{dataset}/{name}", f"predict {dataset} with {name}", argv, [w], _gpu_args(gpu))


def baselines(steps, dataset, root):
    """Maps of `dataset` from each baseline of Table 1."""
    for name, (module, extra) in BASELINES.items():
        out = maps_dir(steps.runs, dataset, name)
        argv = [module, "--dataset", dataset, "--root", root, "--out", out, *extra]
        partial = out.is_dir() and not steps.done(f"maps/{dataset}/{name}", argv)
        steps.run(f"maps/{dataset}/{name}", f"{name} on {dataset}", argv, extra=["--resume"] if partial else [])


def evaluate(steps, dataset, root):
    """Evaluate every method whose maps of `dataset` are complete (models and baselines alike),
    so one results.json per dataset holds every column of Table 1 that exists."""
    methods = steps.finished_maps(dataset)
    if not methods and not steps.dry_run:
        raise UserError(f"{maps_dir(steps.runs, dataset, '')}: no complete maps to evaluate")
    out = eval_dir(steps.runs, dataset)
    argv = ["eval", "--dataset", dataset, "--root", root, "--out", out]
    for name, folder in methods.items():
        argv += ["--method", f"{name}={folder}"]
    stamps = [steps._stamp(f"maps/{dataset}/{n}") for n in methods]
    steps.run(f"eval/{dataset}", f"evaluate {dataset}", argv, stamps,   # eval prints its table
              outputs=[out / "results.json"])
    return out


def table(steps):
    results = sorted(eval_dir(steps.runs, "").glob("*/results.json"))
    if not results and not steps.dry_run:
        raise UserError(f"{eval_dir(steps.runs, '')}: no results yet; run `make eval` or `make baselines` first")
    out = table_dir(steps.runs)
    steps.run("table", "Table 1", ["eval", "table", "--results", *results, "--out", out], results,
              outputs=[out / "results.json"])


# ---------------------------------------------------------------- the commands
def benchmark_root(args):
    if args.dataset not in BENCHMARKS:
        raise UserError(f"unknown benchmark '{args.dataset}'; one of {', '.join(BENCHMARKS)}")
    root = args.root or dataset_root(args.data_root, args.dataset)
    need(root, f"dataset {args.dataset}", "put it there (README 'Datasets') or pass --root")
    return pathlib.Path(root)


def train_both(steps, data_root, vgg16, iters=None, gpu=None, resume=False):
    """COCO9213 training groups, stage 1 (Ours-S from VGG16), stage 2 (the group model from Ours-S)."""
    root = dataset_root(data_root, TRAINING_DATASET)
    need(root, "COCO9213 training set", "see README 'Datasets' (python -m data_prep coco9213 builds it)")
    need(vgg16, "VGG16 weights", "download VGG_ILSVRC_16_layers.caffemodel (README 'Reproducing Table 1')")
    train_list = steps.runs / "train_groups.jsonl"
    steps.run("train-groups", "training groups (GIST + Lab nearest neighbours)",
              ["data_prep", "train-groups", "--dataset", TRAINING_DATASET, "--root", root, "--out", train_list])
    single = run_dir(steps.runs, "single") / "weights.caffemodel"
    train_stage(steps, "single", train_list, root, iters or solver_iters("single"), ["--vgg16", vgg16],
                gpu=gpu, resume=resume)
    train_stage(steps, "group", train_list, root, iters or solver_iters("group"), ["--from-single", single],
                gpu=gpu, resume=resume)


def trained_weights(args):
    weights = {}
    for model in ("group", "single"):
        w = getattr(args, f"{model}_weights") or run_dir(args.runs, model) / "weights.caffemodel"
        need(w, f"trained {MODELS[model]} weights", "run `make train` first (or pass --group-weights / --single-weights)")
        weights[model] = w
    return weights


def cmd_train(args):
    train_both(Steps(args.runs), args.data_root, args.vgg16, args.iters, args.gpu, args.resume)


def cmd_eval(args):
    root = benchmark_root(args)
    steps = Steps(args.runs)
    predict(steps, args.dataset, root, trained_weights(args), args.engine, args.gpu)
    evaluate(steps, args.dataset, root)


def cmd_baselines(args):
    root = benchmark_root(args)
    steps = Steps(args.runs)
    baselines(steps, args.dataset, root)
    evaluate(steps, args.dataset, root)


def cmd_table(args):
    table(Steps(args.runs))


def check_inputs(data_root, vgg16, gpu):
    """Everything `reproduce` needs, checked by the readers themselves before any step runs:
    a list of problems, each with what was expected and where to get it (empty: all there)."""
    from data_prep.datasets import load_dataset
    problems = []
    for name in (TRAINING_DATASET, "icoseg", "msrc", "cosal2015"):
        folder = dataset_root(data_root, name)
        label, layout, source = SOURCES[name]
        try:
            ds = load_dataset(name, folder)
            if any(item.mask for item in ds.items()):
                continue
            msg = f"{folder}: no ground-truth masks ({ds.summary()})"
        except UserError as e:
            msg = str(e)
        other = [p for p in folder.parent.glob("*") if p.name.lower() == folder.name.lower() and p != folder] \
            if folder.parent.is_dir() else []
        if other:
            problems.append(f"{label}: found {other[0]}, but the folder must be named {folder}")
            continue
        problems.append(f"{label}: {msg}\n      expected: {folder}/{layout}\n"
                        f"      get it from: {source.format(folder=folder)}")
    try:
        check_vgg16(vgg16)
    except UserError as e:
        problems.append(f"{SOURCES['vgg16'][0]}: {e}\n      get it from: {SOURCES['vgg16'][2]}")
    if gpu is not None:
        try:
            print(f"reproduce: {check_gpu(gpu).describe()}", file=sys.stderr)
        except UserError as e:
            problems.append(str(e))
    return problems


def cmd_reproduce(args):
    data_root, vgg16 = pathlib.Path(args.data_root).absolute(), pathlib.Path(args.vgg16).absolute()
    problems = check_inputs(data_root, vgg16, args.gpu)
    if problems:
        lines = [f"reproduce: cannot start, {len(problems)} problem(s):"] + [f"  - {p}" for p in problems]
        lines.append(f"data root {data_root}, VGG16 {vgg16}, GPU {args.gpu if args.gpu is not None else '(CPU)'}: "
                     "set them on the command line (make reproduce DATA_ROOT=... VGG16=... GPU=...) or mount "
                     "them in Docker (README 'Reproducing Table 1').")
        print("\n".join(lines), file=sys.stderr)
        raise SystemExit(2)
    steps = Steps(args.runs, dry_run=args.dry_run)
    for dataset in TABLE1_DATASETS:
        baselines(steps, dataset, dataset_root(data_root, dataset))
        evaluate(steps, dataset, dataset_root(data_root, dataset))
    train_both(steps, data_root, vgg16, args.iters, args.gpu, resume=True)
    weights = {m: run_dir(steps.runs, m) / "weights.caffemodel" for m in ("group", "single")}
    for dataset in TABLE1_DATASETS:
        root = dataset_root(data_root, dataset)
        if steps.dry_run:
            print(f"== predict {dataset} with Ours and Ours-S, evaluate: after training", file=sys.stderr)
            continue
        predict(steps, dataset, root, weights, args.engine, args.gpu)
        evaluate(steps, dataset, root)
    if steps.dry_run:
        print(f"reproduce: {len(steps.planned)} step(s) to run before the trained models exist; nothing was run",
              file=sys.stderr)
        return
    table(steps)
    print(f"reproduce: all steps done; Table 1 and the figures are in {table_dir(steps.runs)}", file=sys.stderr)


def cmd_demo(args):
    steps = Steps(args.runs)
    cfg = dict(DEMO, **{k: v for k, v in vars(args).items() if k in DEMO and v is not None})
    iters = {m: getattr(args, f"iters_{m}") or solver_iters(m, tiny=True) for m in ("single", "group")}
    t0 = time.time()
    syn = steps.runs / "synthetic"
    steps.run("synthetic", "synthetic co-saliency benchmark",
              ["data_prep", "synthetic", "--out", syn, "--train-groups", cfg["train_groups"], "--test-groups",
               cfg["test_groups"], "--size", cfg["size"], "--seed", cfg["seed"], "--placement", cfg["placement"]])
    lists = {}
    for split in ("train", "test"):
        lists[split] = steps.runs / f"{split}_groups.jsonl"
        steps.run(f"groups-{split}", f"{split} group list",
                  ["data_prep", "groups", "--dataset", "synthetic", "--root", syn / split, "--out", lists[split]])

    def val(n):   # progress, validation and snapshots every 500 iterations (or at the end)
        every = min(500, n)
        return ["--val-list", lists["test"], "--val-root", syn / "test", "--val-every", every,
                "--val-groups", 20, "--log-every", min(100, every), "--snapshot-every", every]
    single = run_dir(steps.runs, "single") / "weights.caffemodel"
    train_stage(steps, "single", lists["train"], syn / "train", iters["single"], [], tiny=True,
                extra=val(iters["single"]))
    train_stage(steps, "group", lists["train"], syn / "train", iters["group"], ["--from-single", single],
                tiny=True, extra=val(iters["group"]))
    weights = {m: run_dir(steps.runs, m) / "weights.caffemodel" for m in ("group", "single")}
    predict(steps, "synthetic", syn / "test", weights, engine="opencv", tiny=True)
    out = evaluate(steps, "synthetic", syn / "test")
    print(verdict(read_json_file(out / "results.json", "results file")), file=sys.stderr)
    print(f"demo finished in {(time.time() - t0) / 60:.1f} min; figures in {os.path.relpath(out)}", file=sys.stderr)


def _metrics(results, method):
    for entry in results["runs"]:
        for m in entry["methods"]:
            if m.get("name") == method:
                return m["metrics"]
    raise KeyError(method)


def verdict(results):
    g, s = _metrics(results, "Ours"), _metrics(results, "Ours-S")
    gain = g["mF"] - s["mF"]
    ok = gain >= 0.05 and g["MAE"] < s["MAE"]
    return (f"group model vs Ours-S: mF {g['mF']:.4f} vs {s['mF']:.4f} ({gain:+.4f}), "
            f"MAE {g['MAE']:.4f} vs {s['MAE']:.4f}: "
            + ("the group model wins, as the paper claims" if ok else "the paper's claim is NOT reproduced here"))


# ---------------------------------------------------------------- command line
def build_parser():
    ap = ArgumentParser(prog="python -m apps.pipeline", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name, func, help, runs="runs"):
        p = sub.add_parser(name, help=help, description=help)
        p.add_argument("--runs", default=runs, help=f"output folder (default {runs})")
        p.set_defaults(func=func)
        return p

    t = add("train", cmd_train, "training groups, stage 1 (Ours-S from VGG16), stage 2 (the group model)")
    r = add("reproduce", cmd_reproduce, "Table 1 end to end: inputs checked, baselines, training, "
            "evaluation, table (resumable)")
    for p in (t, r):
        p.add_argument("--data-root", required=True, help="folder holding COCO9213/ and the benchmarks "
                       "(README 'Datasets')")
        p.add_argument("--vgg16", required=True, help="VGG_ILSVRC_16_layers.caffemodel")
        p.add_argument("--iters", type=positive_iterations, help="iterations per stage (default: the solvers' 60000)")
    t.add_argument("--resume", nargs="?", type=switch("RESUME"), const=True, default=False, metavar="1|0",
                   help="continue unfinished stages from their snapshots (--resume=0: do not)")
    r.add_argument("--dry-run", nargs="?", type=switch("DRY_RUN"), const=True, default=False, metavar="1|0",
                   help="check the inputs, print the plan, run nothing (--dry-run=0: run)")
    e = add("eval", cmd_eval, "predict a benchmark with both trained models and evaluate them")
    b = add("baselines", cmd_baselines, "the baselines' maps of a benchmark (CBCS, CBCS-S, CSHS), evaluated")
    for p in (e, b):
        p.add_argument("--dataset", required=True, help=", ".join(BENCHMARKS))
        p.add_argument("--data-root", default="data", help="folder holding the benchmarks (README 'Datasets')")
        p.add_argument("--root", help="the dataset's own folder (default: <data-root>/<its folder>)")
    e.add_argument("--group-weights", help="default: <runs>/group/weights.caffemodel")
    e.add_argument("--single-weights", help="default: <runs>/single/weights.caffemodel")
    for p in (e, r):
        p.add_argument("--engine", choices=["caffe", "opencv"], default="caffe", help="prediction engine")
    for p in (t, e, r):
        p.add_argument("--gpu", type=gpu_option, help="GPU id (default, or -1: CPU)")
    add("table", cmd_table, "merge every evaluated dataset into Table 1 (<runs>/table)")
    m = add("demo", cmd_demo, "synthetic benchmark, tiny models trained on the CPU, evaluation", runs="runs/demo")
    for k in ("train_groups", "test_groups"):
        m.add_argument("--" + k.replace("_", "-"), type=positive_int, help=f"default {DEMO[k]}")
    for k in ("single", "group"):
        m.add_argument(f"--iters-{k}", type=positive_iterations, help="default: the tiny solver's max_iter")
    m.add_argument("--placement", choices=["anchored", "free"],
                   help="synthetic benchmark placement (default anchored; free: the control where "
                        "the paper's merge has nothing to use, README 'Demo')")
    return ap


def _terminated(signum, frame):
    """SIGTERM (kill, timeout, docker stop, a cancelled job) ends the pipeline as Ctrl-C does: the
    running step, in its own process group, gets the interrupt and ends its own way instead of
    running on without its parent."""
    raise KeyboardInterrupt


@cli
def main(argv=None):
    args = build_parser().parse_args(argv)
    runs_folder(args.runs)      # before the other inputs: a mistake here is the one to name
    signal.signal(signal.SIGTERM, _terminated)
    args.func(args)


if __name__ == "__main__":
    main()
