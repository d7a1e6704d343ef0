"""Command line of the evaluation.

    python -m eval --dataset NAME --root DIR --method NAME=DIR [--method NAME=DIR ...] --out DIR
                   [--raw] [--workers N] [--vis-groups N] [--no-progress]
    python -m eval table --results A.json [B.json ...] --out DIR

The first form evaluates every method's maps (<DIR>/<group>/<name>.png) on one dataset and
writes results.json, table.md, table.csv, pr_curves.png, ap.png and visual.png to --out. The
second merges results.json files of several datasets (or methods) into one Table 1 with the
same tables and curve figures. Every file is replaced atomically, after all of them have been
computed, so a failed run leaves the previous results as they were.
"""
import argparse
import os
import sys

from core.errors import UserError, cli
from core.imageio import atomic_write_bytes

from . import report
from .results import dumps, load_results, make_results, merge_results


def _parse_method(spec):
    name, sep, folder = spec.partition("=")
    name = name.strip()
    if not sep or not name or not folder:
        raise UserError(f"--method '{spec}': expected NAME=DIR (e.g. Ours=runs/icoseg/ours)")
    return name, os.path.expanduser(folder)


def _write_all(out_dir, files):
    """files: {name: str | bytes}, all computed before the first write."""
    os.makedirs(out_dir, exist_ok=True)
    for name, content in files.items():
        data = content.encode("utf-8") if isinstance(content, str) else content
        atomic_write_bytes(os.path.join(out_dir, name), data)


def _tables_and_curves(results):
    return {"table.md": report.table_markdown(results), "table.csv": report.table_csv(results),
            "pr_curves.png": report.plot_pr_curves(results), "ap.png": report.plot_ap(results)}


def _summary(md):
    return md.split("## Definitions")[0].rstrip()


def cmd_evaluate(argv):
    p = argparse.ArgumentParser(prog="python -m eval", description=(
        "Evaluate saliency maps on a dataset: the paper's metrics (mF, AUC both as the area under "
        "the image-averaged ROC and as the mean of per-image areas, MAE, AP, PR curve) "
        "and S, max/mean E, max/mean F (PySODMetrics), with Table 1's values beside ours. "
        "'python -m eval table --results ... --out DIR' merges results of several runs."))
    p.add_argument("--dataset", required=True, help="dataset name (data_prep.datasets.READERS)")
    p.add_argument("--root", required=True, help="the dataset's folder")
    p.add_argument("--method", action="append", required=True, metavar="NAME=DIR",
                   help="a method and its maps folder <DIR>/<group>/<name>.png (repeatable; "
                        "names of Table 1, e.g. Ours, Ours-S, CBCS, CBCS-S, CSHS, are matched "
                        "case-insensitively)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--raw", action="store_true",
                   help="evaluate the maps as they are (default: min-max normalised)")
    p.add_argument("--workers", type=int, default=None,
                   help="processes (default: every CPU this process may use, at most one per "
                        "100 images)")
    p.add_argument("--vis-groups", type=int, default=3,
                   help="groups shown in visual.png (0: no visual grid)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    a = p.parse_args(argv)

    from data_prep.datasets import load_dataset

    from .evaluate import evaluate, resize_warning

    methods = [_parse_method(s) for s in a.method]
    ds = load_dataset(a.dataset, a.root)
    print(ds.summary(), file=sys.stderr)
    evaluation = evaluate(ds, methods, normalize=not a.raw, workers=a.workers,
                   progress=not a.no_progress)
    warning = resize_warning(evaluation)
    if warning:
        print(warning, file=sys.stderr)
    results = make_results([evaluation])
    files = _tables_and_curves(results)
    if a.vis_groups > 0:
        items = report.pick_visual_items(ds, a.vis_groups)
        if items:
            files["visual.png"] = report.plot_visual_grid(ds, methods, items)
    files["results.json"] = dumps(results)
    _write_all(a.out, files)
    print(_summary(files["table.md"]))
    print(f"wrote {', '.join(files)} to {a.out}", file=sys.stderr)


def cmd_table(argv):
    p = argparse.ArgumentParser(prog="python -m eval table", description=(
        "Merge results.json files (one per dataset, or per method) into one Table 1: writes "
        "results.json, table.md, table.csv, pr_curves.png and ap.png."))
    p.add_argument("--results", nargs="+", required=True, help="results.json files to merge")
    p.add_argument("--out", required=True, help="output folder")
    a = p.parse_args(argv)
    results = merge_results([(path, load_results(path)) for path in a.results])
    files = _tables_and_curves(results)
    files["results.json"] = dumps(results)
    _write_all(a.out, files)
    print(_summary(files["table.md"]))
    print(f"wrote {', '.join(files)} to {a.out}", file=sys.stderr)


@cli
def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "table":
        return cmd_table(argv[1:])
    return cmd_evaluate(argv)


if __name__ == "__main__":
    main()
