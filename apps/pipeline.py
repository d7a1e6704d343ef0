"""The project's steps chained into the commands users run (`make train`, `make eval`, `make demo`).

Each step is one command of the package (printed before it runs, so any step can be rerun by
hand) and leaves a result that marks it done; rerunning a pipeline skips finished steps and
resumes an interrupted training from its last snapshot.

    python -m apps.pipeline train --data-root DIR --vgg16 W [--runs DIR] [--gpu N] [--iters N]
    python -m apps.pipeline eval --dataset icoseg --data-root DIR [--runs DIR] [--engine opencv]
    python -m apps.pipeline baselines --dataset icoseg --data-root DIR [--runs DIR]
    python -m apps.pipeline table [--runs DIR]
    python -m apps.pipeline demo [--runs DIR]
"""
import argparse
import json
import os
import shlex
import subprocess
import sys
import time

from core.errors import UserError, cli

from core.layout import DATASET_FOLDERS, MODELS, PROJECT_ROOT, maps_dir, model_files

# The CPU demo (README "Demo"): tiny nets on the synthetic benchmark.
DEMO = {"size": "64x128", "train_groups": 3000, "test_groups": 100, "iters_single": 8000,
        "iters_group": 8000, "seed": 0, "placement": "anchored"}


def step(title, argv, done=None):
    """Run `python -m ...` unless `done` (a path) exists; failures end the pipeline with the
    step's own exit status."""
    if done and os.path.exists(done):
        print(f"== {title}: done already ({os.path.relpath(done)})", file=sys.stderr)
        return
    cmd = [sys.executable, "-m", *map(str, argv)]
    print(f"== {title}\n$ python -m {' '.join(shlex.quote(str(a)) for a in argv)}", file=sys.stderr)
    t = time.time()
    r = subprocess.run(cmd, cwd=PROJECT_ROOT)
    if r.returncode != 0:
        raise SystemExit(r.returncode)
    print(f"== {title}: {time.time() - t:.0f} s", file=sys.stderr)


def solver_iters(model, tiny=False):
    from core.netio import caffe_pb2, read_prototxt
    return read_prototxt(model_files(model, tiny).solver, caffe_pb2.SolverParameter).max_iter


def trained(run_dir, iters):
    """The run's snapshot at `iters` exists."""
    p = os.path.join(run_dir, "latest.json")
    if not os.path.exists(p):
        return False
    with open(p) as f:
        it = json.load(f)["iter"]
    return it >= iters


def train_stage(model, train_list, data_root, out, iters, init, tiny=False, gpu=None, extra=(), resume=True):
    """One training stage; an unfinished run in `out` is resumed when `resume`, else refused."""
    if trained(out, iters):
        print(f"== train {model}: done already ({os.path.relpath(out)})", file=sys.stderr)
        return
    argv = ["apps.train", "--model", model, "--train-list", train_list, "--data-root", data_root, "--out", out]
    if tiny:
        argv.append("--tiny")
    argv += ["--iters", iters]
    if gpu is not None:
        argv += ["--gpu", gpu]
    if os.path.exists(os.path.join(out, "latest.json")):
        if not resume:
            raise UserError(f"{out}: holds an unfinished {model} run; continue it with RESUME=1 (--resume) "
                            "or move it away")
        argv.append("--resume")
    else:
        argv += list(init)
    step(f"train {model}", argv + list(extra))


def need(path, what, how):
    if not os.path.exists(path):
        raise UserError(f"{path}: {what} not found; {how}")


def evaluate(dataset, root, runs, out=None):
    """Evaluate every method whose maps of `dataset` are complete (models and baselines alike),
    so one results.json per dataset holds all of Table 1's columns that exist."""
    out = out or os.path.join(runs, "eval", dataset)
    base = os.path.join(runs, "maps", dataset)
    methods = []
    for name in sorted(os.listdir(base)) if os.path.isdir(base) else []:
        if os.path.exists(os.path.join(base, name, ".complete")):
            methods += ["--method", f"{name}={os.path.join(base, name)}"]
    if not methods:
        raise UserError(f"{base}: no complete maps to evaluate")
    step(f"evaluate {dataset}", ["eval", "--dataset", dataset, "--root", root,
                                 "--out", out, *methods])
    with open(os.path.join(out, "table.md")) as f:
        print(f.read())
    return out


def predict(dataset, root, runs, weights, engine, gpu=None, tiny=False):
    """Maps of `dataset` from each trained model, in <runs>/maps/<dataset>/<method>."""
    for model, w in weights.items():
        name = MODELS[model]
        pred = maps_dir(runs, dataset, name)
        argv = ["apps.predict", "--dataset", dataset, "--root", root,
                "--weights", w, "--model", model, "--out", pred, "--engine", engine, "--force"]
        if tiny:
            argv += ["--prototxt", model_files(model, tiny=True).deploy]
        if gpu is not None:
            argv += ["--gpu", gpu]
        done = os.path.join(pred, ".complete")
        if os.path.exists(done) and os.path.getmtime(done) < os.path.getmtime(w):
            os.remove(done)     # the weights changed since: predict again
        step(f"predict {dataset} with {name}", argv, done=done)
        _touch(done)


def _touch(path):
    with open(path, "w"):
        pass


def cmd_train(args):
    runs = args.runs
    root = os.path.join(args.data_root, DATASET_FOLDERS["coco9213"])
    need(root, "COCO9213 training set", "see README 'Datasets' (python -m data_prep coco9213 builds it)")
    need(args.vgg16, "VGG16 weights", "download VGG_ILSVRC_16_layers.caffemodel (README 'Reproducing Table 1')")
    train_list = os.path.join(runs, "train_groups.jsonl")
    step("training groups (GIST + Lab nearest neighbours)",
         ["data_prep", "train-groups", "--dataset", "coco9213", "--root", root, "--out", train_list], done=train_list)
    single, group = os.path.join(runs, "single"), os.path.join(runs, "group")
    iters = {m: args.iters or solver_iters(m) for m in ("single", "group")}
    train_stage("single", train_list, root, single, iters["single"], ["--vgg16", args.vgg16], gpu=args.gpu,
                resume=args.resume)
    train_stage("group", train_list, root, group, iters["group"],
                ["--from-single", os.path.join(single, "weights.caffemodel")], gpu=args.gpu, resume=args.resume)


def cmd_eval(args):
    root = dataset_root(args)
    weights = {}
    for model in ("group", "single"):
        w = getattr(args, f"{model}_weights") or os.path.join(args.runs, model, "weights.caffemodel")
        need(w, f"trained {MODELS[model]} weights", "run `make train` first (or pass --group-weights / --single-weights)")
        weights[model] = w
    predict(args.dataset, root, args.runs, weights, args.engine, args.gpu)
    evaluate(args.dataset, root, args.runs)


def dataset_root(args):
    folder = DATASET_FOLDERS.get(args.dataset)
    if folder is None or args.dataset == "coco9213":
        raise UserError(f"unknown benchmark '{args.dataset}'; one of "
                        f"{', '.join(sorted(set(DATASET_FOLDERS) - {'coco9213'}))}")
    root = args.root or os.path.join(args.data_root, folder)
    need(root, f"dataset {args.dataset}", "put it there (README 'Datasets') or pass --root")
    return root


def cmd_baselines(args):
    root = dataset_root(args)
    for name, extra in (("CBCS", []), ("CBCS-S", ["--single"])):
        out = maps_dir(args.runs, args.dataset, name)
        done = os.path.join(out, ".complete")
        argv = ["baselines.cbcs", "--dataset", args.dataset, "--root", root, "--out", out, *extra]
        if os.path.isdir(out) and not os.path.exists(done):
            argv.append("--resume")
        step(f"{name} on {args.dataset}", argv, done=done)
        _touch(done)
    evaluate(args.dataset, root, args.runs)


def cmd_table(args):
    base = os.path.join(args.runs, "eval")
    results = sorted(os.path.join(base, d, "results.json") for d in (os.listdir(base) if os.path.isdir(base) else [])
                     if os.path.exists(os.path.join(base, d, "results.json")))
    if not results:
        raise UserError(f"{base}: no results yet; run `make eval` or `make baselines` first")
    out = os.path.join(args.runs, "table")
    step("Table 1", ["eval", "table", "--results", *results, "--out", out])
    with open(os.path.join(out, "table.md")) as f:
        print(f.read())


def cmd_demo(args):
    d = os.path.abspath(args.runs)
    cfg = dict(DEMO, **{k: v for k, v in vars(args).items() if k in DEMO and v is not None})
    t0 = time.time()
    syn = os.path.join(d, "synthetic")
    step("synthetic co-saliency benchmark",
         ["data_prep", "synthetic", "--out", syn, "--train-groups", cfg["train_groups"], "--test-groups",
          cfg["test_groups"], "--size", cfg["size"], "--seed", cfg["seed"], "--placement", cfg["placement"]])
    lists = {}
    for split in ("train", "test"):
        lists[split] = os.path.join(d, f"{split}_groups.jsonl")
        step(f"{split} group list", ["data_prep", "groups", "--dataset", "synthetic", "--root",
                                     os.path.join(syn, split), "--out", lists[split]], done=lists[split])
    def val(iters):   # progress, validation and snapshots every 500 iterations (or at the end)
        every = min(500, iters)
        return ["--val-list", lists["test"], "--val-root", os.path.join(syn, "test"), "--val-every", every,
                "--val-groups", 20, "--log-every", min(100, every), "--snapshot-every", every]
    train_root = os.path.join(syn, "train")
    single, group = os.path.join(d, "single"), os.path.join(d, "group")
    train_stage("single", lists["train"], train_root, single, cfg["iters_single"], [], tiny=True,
                extra=val(cfg["iters_single"]))
    train_stage("group", lists["train"], train_root, group, cfg["iters_group"],
                ["--from-single", os.path.join(single, "weights.caffemodel")], tiny=True, extra=val(cfg["iters_group"]))
    test_root = os.path.join(syn, "test")
    predict("synthetic", test_root, d, {"group": os.path.join(group, "weights.caffemodel"),
                                        "single": os.path.join(single, "weights.caffemodel")},
            engine="opencv", tiny=True)
    out = evaluate("synthetic", test_root, d)
    with open(os.path.join(out, "results.json")) as f:
        res = json.load(f)
    print(verdict(res), file=sys.stderr)
    print(f"demo finished in {(time.time() - t0) / 60:.1f} min; figures in {os.path.relpath(out)}", file=sys.stderr)


def _metrics(results, method):
    for run in results["runs"]:
        for m in run["methods"]:
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


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="python -m apps.pipeline", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="training groups, stage 1 (Ours-S from VGG16), stage 2 (group model)")
    t.add_argument("--data-root", required=True, help="folder holding COCO9213/ (README 'Datasets')")
    t.add_argument("--vgg16", required=True, help="VGG_ILSVRC_16_layers.caffemodel")
    t.add_argument("--iters", type=int, help="iterations per stage (default: the solvers' 60000)")
    t.add_argument("--resume", action="store_true", help="continue unfinished stages from their snapshots")
    e = sub.add_parser("eval", help="predict a benchmark with both trained models and evaluate them")
    b = sub.add_parser("baselines", help="CBCS and CBCS-S maps of a benchmark, evaluated")
    for p in (e, b):
        p.add_argument("--dataset", required=True, help=", ".join(sorted(set(DATASET_FOLDERS) - {"coco9213"})))
        p.add_argument("--data-root", default="data", help="folder holding the benchmarks (README 'Datasets')")
        p.add_argument("--root", help="the dataset's own folder (default: <data-root>/<its folder>)")
    tb = sub.add_parser("table", help="merge every evaluated dataset into Table 1 (<runs>/table)")
    e.add_argument("--group-weights", help="default: <runs>/group/weights.caffemodel")
    e.add_argument("--single-weights", help="default: <runs>/single/weights.caffemodel")
    e.add_argument("--engine", choices=["caffe", "opencv"], default="caffe")
    m = sub.add_parser("demo", help="synthetic benchmark, tiny models trained on the CPU, evaluation")
    for k in ("train_groups", "test_groups", "iters_single", "iters_group"):
        m.add_argument("--" + k.replace("_", "-"), type=int, help=f"default {DEMO[k]}")
    m.add_argument("--placement", choices=["anchored", "free"],
                   help="synthetic benchmark placement (default anchored; free: the control where "
                        "the paper's merge has nothing to use, README 'Demo')")
    for p, default in ((t, "runs"), (e, "runs"), (b, "runs"), (tb, "runs"), (m, "runs/demo")):
        p.add_argument("--runs", default=default, help=f"output folder (default {default})")
        if p in (t, e):
            p.add_argument("--gpu", type=int, help="GPU id (default: CPU)")
    return ap.parse_args(argv)


@cli
def main(argv=None):
    args = parse_args(argv)
    {"train": cmd_train, "eval": cmd_eval, "baselines": cmd_baselines, "table": cmd_table,
     "demo": cmd_demo}[args.cmd](args)


if __name__ == "__main__":
    main()
