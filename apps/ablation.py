"""The merge ablation (`make demo-ablation`): tiny Ours-S, Ours and Ours+ on the synthetic benchmark
with anchored and with free placement, several training seeds each (README "What the group block
can and cannot learn").

    python -m apps.ablation [--runs DIR] [--iters N] [--seeds 0 1] [--train-groups N] [--test-groups N]

Per placement one benchmark; per seed a stage 1 trains Ours-S for N iterations, and a stage 2 of N
iterations, each with a fresh solver, starts all three models from it: Ours-S itself (--init), Ours
and Ours+ (--from-single, core/surgery.py). Every model sees the same 2N iterations of data with
the same recipe; a stage 2 for Ours-S as well matters, because restarting the solver alone changes
the result at this budget (README "What the group block can and cannot learn"). Each seed's maps are predicted with
OpenCV DNN and evaluated like the demo's; the table gives the mean over seeds and the range
(min-max), the figure the PR curves (mean over seeds, each seed thin). Rerunning skips finished
steps, as `make demo` does.
"""
import json
import os
import sys
import time

import numpy as np

from apps.pipeline import Steps, evaluate, predict, runs_folder, train_stage
from core.args import ArgumentParser, caffe_seed, positive_int, positive_iterations
from core.errors import cli
from core.inputs import read_json_file
from core.layout import MODELS, run_dir
from core.outputs import write_together
from core.plotting import pyplot

ABLATION = {"size": "64x128", "train_groups": 1500, "test_groups": 60, "iters": 500, "seeds": [0, 1],
            "placements": ["anchored", "free"], "benchmark_seed": 0}
ORDER = ("single", "group", "group_plus")            # Ours-S, the paper's merge, Ours+
COLUMNS = ("mF", "MAE", "S", "maxF")


def benchmark(d, placement, cfg):
    """The synthetic benchmark of one placement and its two group lists: (train, test) roots and lists."""
    steps = Steps(os.path.join(d, placement))
    syn = steps.runs / "synthetic"
    steps.run("synthetic", f"synthetic benchmark, {placement} placement",
              ["data_prep", "synthetic", "--out", syn, "--train-groups", cfg["train_groups"], "--test-groups",
               cfg["test_groups"], "--size", cfg["size"], "--seed", cfg["benchmark_seed"], "--placement", placement])
    roots, lists = {}, {}
    for split in ("train", "test"):
        roots[split] = syn / split
        lists[split] = steps.runs / f"{split}_groups.jsonl"
        steps.run(f"groups-{split}", f"{placement} {split} group list",
                  ["data_prep", "groups", "--dataset", "synthetic", "--root", roots[split], "--out", lists[split]])
    return roots, lists


def train_seed(steps, roots, lists, n, seed):
    """Stage 1 (Ours-S) under <runs>/stage1, then the three models' stage 2 under steps.runs;
    returns model -> weights."""
    extra = ["--seed", seed, "--snapshot-every", n, "--log-every", min(250, n)]
    stage1 = Steps(steps.runs / "stage1")
    train_stage(stage1, "single", lists["train"], roots["train"], n, [], tiny=True, extra=extra)
    start = run_dir(stage1.runs, "single") / "weights.caffemodel"
    for model in ORDER:
        init = ["--init" if model == "single" else "--from-single", start]
        train_stage(steps, model, lists["train"], roots["train"], n, init, tiny=True, extra=extra)
    return {m: run_dir(steps.runs, m) / "weights.caffemodel" for m in ORDER}


def evaluate_seed(steps, test_root, weights):
    """Maps of the test split from each model, evaluated; returns the seed's results.json."""
    predict(steps, "synthetic", test_root, weights, engine="opencv", tiny=True)
    return read_json_file(evaluate(steps, "synthetic", test_root) / "results.json", "results file")


def methods_of(results):
    """paper name -> the method's entry of a results.json (one run: the synthetic test split)."""
    return {m["name"]: m for m in results["runs"][0]["methods"]}


def summarise(per_seed):
    """per_seed: placement -> [results.json of each seed]. Returns placement -> model -> metric ->
    (mean, min, max), and placement -> model -> mean PR curve (precision, recall)."""
    table, curves = {}, {}
    for placement, results in per_seed.items():
        table[placement], curves[placement] = {}, {}
        for model in ORDER:
            ms = [methods_of(r)[MODELS[model]] for r in results]
            table[placement][model] = {k: (float(np.mean(v)), float(np.min(v)), float(np.max(v)))
                                       for k in COLUMNS for v in [[m["metrics"][k] for m in ms]]}
            curves[placement][model] = {k: [np.asarray(m["curves"][k]) for m in ms] for k in ("precision", "recall")}
    return table, curves


def table_markdown(table, seeds):
    head = f"| placement | model | {' | '.join(COLUMNS)} |"
    lines = [f"Mean over training seeds {', '.join(map(str, seeds))} (min-max in brackets); "
             "mF, S, max F: higher is better, MAE: lower.", "", head, "|" + "---|" * (len(COLUMNS) + 2)]
    for placement, models in table.items():
        for model in ORDER:
            cells = [f"{m:.4f} ({lo:.4f}-{hi:.4f})" for m, lo, hi in (models[model][k] for k in COLUMNS)]
            lines.append(f"| {placement} | {MODELS[model]} | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


def plot_pr(curves):
    import io

    plt = pyplot()
    fig, axes = plt.subplots(1, len(curves), figsize=(4.4 * len(curves), 4), squeeze=False)
    for ax, (placement, models) in zip(axes[0], curves.items()):
        for i, model in enumerate(ORDER):
            c = models[model]
            for p, r in zip(c["precision"], c["recall"]):
                ax.plot(r, p, lw=0.6, alpha=0.35, color=f"C{i}")
            ax.plot(np.mean(c["recall"], 0), np.mean(c["precision"], 0), lw=1.8, color=f"C{i}",
                    label=MODELS[model])
        ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="Recall", ylabel="Precision",
               title=f"synthetic, {placement} placement")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower left", fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def run_ablation(args):
    d = str(runs_folder(args.runs))
    cfg = dict(ABLATION, **{k: v for k, v in vars(args).items() if k in ABLATION and v is not None})
    for key in ("seeds", "placements"):         # one named twice is run (and averaged) once
        cfg[key] = list(dict.fromkeys(cfg[key]))
    t0 = time.time()
    per_seed = {}
    for placement in cfg["placements"]:
        roots, lists = benchmark(d, placement, cfg)
        per_seed[placement] = []
        for seed in cfg["seeds"]:
            steps = Steps(os.path.join(d, placement, f"seed{seed}"))
            weights = train_seed(steps, roots, lists, cfg["iters"], seed)
            per_seed[placement].append(evaluate_seed(steps, roots["test"], weights))
    table, curves = summarise(per_seed)
    md = table_markdown(table, cfg["seeds"])
    minutes = (time.time() - t0) / 60
    summary = {"config": cfg, "minutes": round(minutes, 1),
               "table": {p: {MODELS[m]: v for m, v in ms.items()} for p, ms in table.items()}}
    write_together(d, {"pr_curves.png": plot_pr(curves), "ablation.json": json.dumps(summary, indent=1) + "\n",
                       "ablation.md": md})
    print(md)
    print(f"ablation finished in {minutes:.1f} min; table in {os.path.relpath(d)}/ablation.md, "
          f"PR curves in {os.path.relpath(d)}/pr_curves.png", file=sys.stderr)


def parse_args(argv):
    ap = ArgumentParser(prog="python -m apps.ablation", description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", default="runs/ablation", help="output folder (default runs/ablation)")
    ap.add_argument("--iters", type=positive_iterations,
                    help=f"N: iterations of each stage (default {ABLATION['iters']})")
    ap.add_argument("--seeds", type=caffe_seed, nargs="+", help=f"training seeds (default {ABLATION['seeds']})")
    ap.add_argument("--train-groups", type=positive_int, help=f"default {ABLATION['train_groups']}")
    ap.add_argument("--test-groups", type=positive_int, help=f"default {ABLATION['test_groups']}")
    ap.add_argument("--placements", nargs="+", choices=ABLATION["placements"],
                    help="default: both")
    return ap.parse_args(argv)


@cli
def main(argv=None):
    run_ablation(parse_args(argv))


if __name__ == "__main__":
    main()
