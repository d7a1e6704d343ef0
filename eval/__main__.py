"""Command line of the evaluation.

    python -m eval [evaluate] --dataset NAME --root DIR --method NAME=DIR [--method NAME=DIR ...]
                   --out DIR [--raw] [--workers N] [--vis-groups N] [--no-progress]
    python -m eval table --results A.json [B.json ...] --out DIR

The first form evaluates every method's maps (<DIR>/<group>/<name>.png) on one dataset and
writes results.json, table.md, table.csv, pr_curves.png, ap.png and visual.png to --out. The
second merges results.json files of several datasets (or methods) into one Table 1 with the
same tables and curve figures. --out is checked before the work (a new folder, an earlier
evaluation's folder, or any folder with --force); the files are written together after all of
them have been computed, so a failed or interrupted run leaves the previous results as they were.
"""
import os
import sys

from core.args import ArgumentParser, non_negative_int, positive_int
from core.errors import UserError, cli
from core.outputs import prepare_out_dir, utf8_text, write_together

from . import report
from .results import dumps, load_results, make_results, merge_results


def _parse_method(spec):
    name, sep, folder = spec.partition("=")
    name = utf8_text(name.strip())      # it goes into files and figures as text
    if not sep or not name or not folder:
        raise UserError(f"--method '{spec}': expected NAME=DIR (e.g. Ours=runs/icoseg/ours)")
    return name, os.path.expanduser(folder)


# Everything either form writes: a folder holding only these is an earlier evaluation, replaced
# as a whole; anything else there needs --force.
OUTPUTS = ("results.json", "table.md", "table.csv", "pr_curves.png", "ap.png", "visual.png")


def _prepare_out(out, force):
    return prepare_out_dir(out, force, may_hold=lambda names: _own(out, names))


def _own(out, names):
    """Only our file names, and a results.json that is an evaluation's: a file of that name
    from elsewhere is not replaced without --force."""
    if not set(names) <= set(OUTPUTS):
        return False
    if "results.json" not in names:
        return True
    try:
        load_results(os.path.join(os.path.expanduser(os.fspath(out)), "results.json"))
    except UserError:
        return False
    return True


def _write_all(out_dir, files):
    """files: {name: str | bytes}, all computed before: they replace the folder's previous
    outputs together (a stale visual.png of another run included), or nothing changes."""
    write_together(out_dir, files, owned=OUTPUTS)


def _tables_and_curves(results):
    return {"table.md": report.table_markdown(results), "table.csv": report.table_csv(results),
            "pr_curves.png": report.plot_pr_curves(results), "ap.png": report.plot_ap(results)}


def _summary(md):
    return md.split("## Definitions")[0].rstrip()


def _add_evaluate(sub):
    p = sub.add_parser("evaluate", help="evaluate the maps of methods on one dataset (the default command)",
                       description=(
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
    p.add_argument("--force", action="store_true", help="write into a folder that holds other files")
    p.add_argument("--raw", action="store_true",
                   help="evaluate the maps as they are (default: min-max normalised)")
    p.add_argument("--workers", type=positive_int, default=None,
                   help="processes (default: every CPU this process may use, at most one per "
                        "100 images)")
    p.add_argument("--vis-groups", type=non_negative_int, default=3,
                   help="groups shown in visual.png (0: no visual grid)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(a):
    from data_prep.datasets import load_dataset

    from .evaluate import evaluate, resize_warning

    methods = [_parse_method(s) for s in a.method]
    _prepare_out(a.out, a.force)
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
    print(_summary(files["table.md"]), flush=True)   # before the stderr line that follows
    print(f"wrote {', '.join(files)} to {a.out}", file=sys.stderr)


def _add_table(sub):
    p = sub.add_parser("table", help="merge results.json files into one Table 1", description=(
        "Merge results.json files (one per dataset, or per method) into one Table 1: writes "
        "results.json, table.md, table.csv, pr_curves.png and ap.png."))
    p.add_argument("--results", nargs="+", required=True, help="results.json files to merge")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--force", action="store_true", help="write into a folder that holds other files")
    p.set_defaults(func=cmd_table)


def cmd_table(a):
    _prepare_out(a.out, a.force)
    results = merge_results([(path, load_results(path)) for path in a.results])
    files = _tables_and_curves(results)
    files["results.json"] = dumps(results)
    _write_all(a.out, files)
    print(_summary(files["table.md"]), flush=True)   # before the stderr line that follows
    print(f"wrote {', '.join(files)} to {a.out}", file=sys.stderr)


COMMANDS = ("evaluate", "table")


def build_parser():
    parser = ArgumentParser(prog="python -m eval", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_evaluate(sub)
    _add_table(sub)
    return parser


@cli
def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in (*COMMANDS, "-h", "--help"):
        argv = ["evaluate", *argv]      # `python -m eval --dataset ...`: evaluate is the default
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    main()
