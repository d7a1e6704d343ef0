"""results.json: the evaluation results of one or more datasets, mergeable into one Table 1.

    {"format": "gwd-eval-results/1",
     "definitions": {metric: how it is computed},
     "runs": [{"dataset", "paper_dataset", "root", "normalization": "minmax" | "raw",
               "groups", "images", "skipped_no_gt",
               "methods": [{"name", "paper_method", "pred_dir", "resized", "resized_example",
                            "metrics": {mF, AUC, AUC_img, MAE, AP, maxF, meanF, S, maxE, meanE},
                            "paper": {mF, AUC, MAE} | null, "later": {...} | null,
                            "curves": {precision, recall, fmeasure, tpr, fpr, emeasure:
                                       256 values, index = threshold t}}]}]}

A run is one dataset evaluated under one normalisation convention. Merging concatenates runs;
the same method on the same dataset and convention twice is an error.
"""
import json
import math

from core.errors import UserError
from core.inputs import read_json_file

from . import paper
from .metrics import DEFINITIONS

FORMAT = "gwd-eval-results/1"
NORMALIZATIONS = {"minmax": "maps min-max normalised", "raw": "raw maps, not normalised"}


def dataset_entry(dataset, images, skipped_no_gt, normalize):
    """One entry of "runs": a dataset evaluated under one convention, its methods to be appended."""
    return {"dataset": dataset.name, "paper_dataset": paper.paper_dataset(dataset.name),
            "root": str(dataset.root), "normalization": "minmax" if normalize else "raw",
            "groups": len(dataset.groups), "images": images, "skipped_no_gt": skipped_no_gt,
            "methods": []}


def method_entry(dataset_name, name, folder, metrics, curves, resized, resized_example):
    """One method's metrics and curves on a dataset, with the paper's values beside them."""
    return {"name": name, "paper_method": paper.paper_method(name), "pred_dir": str(folder),
            "resized": resized, "resized_example": resized_example, "metrics": metrics,
            "paper": paper.reported(dataset_name, name), "later": paper.reported_later(dataset_name, name),
            "curves": curves}


def make_results(runs):
    return {"format": FORMAT, "definitions": dict(DEFINITIONS), "runs": list(runs)}


def _number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_method(m, i, run, where):
    """A method's name, metrics (finite numbers, null where not computed) and curves (256 finite
    values each); a table or a figure made from anything else would fail halfway or show nan."""
    if not (isinstance(m, dict) and isinstance(m.get("name"), str) and isinstance(m.get("metrics"), dict)):
        raise UserError(f"{where}: run {i} ({run['dataset']}) has a method without "
                        "'name' and 'metrics'")
    for k, v in m["metrics"].items():
        if v is not None and not _number(v):
            raise UserError(f"{where}: run {i} ({run['dataset']}), method '{m['name']}': metric "
                            f"'{k}' is {json.dumps(v)}, not a finite number or null")
    for key in ("paper", "later"):     # the published values beside ours
        ref = m.get(key)
        numbers = isinstance(ref, dict) and all(v is None or _number(v) for v in ref.values())
        if ref is not None and not numbers:
            raise UserError(f"{where}: run {i} ({run['dataset']}), method '{m['name']}': '{key}' "
                            "must be an object of numbers or null")
    curves = m.get("curves", {})
    if not isinstance(curves, dict):
        raise UserError(f"{where}: run {i} ({run['dataset']}), method '{m['name']}': 'curves' "
                        "must be an object of 256-value lists")
    for k, v in curves.items():
        if not isinstance(v, list) or len(v) != 256 or not all(map(_number, v)):
            raise UserError(f"{where}: run {i} ({run['dataset']}), method '{m['name']}': curve "
                            f"'{k}' must be a list of 256 finite numbers")


def _check(res, where):
    if not isinstance(res, dict) or res.get("format") != FORMAT:
        raise UserError(f"{where}: not an evaluation results file (expected \"format\": "
                        f"\"{FORMAT}\")")
    runs = res.get("runs")
    if not isinstance(runs, list):
        raise UserError(f"{where}: 'runs' must be a list")
    if not runs:
        raise UserError(f"{where}: holds no evaluated runs ('runs' is empty)")
    for i, run in enumerate(runs):
        if not isinstance(run, dict) or not isinstance(run.get("methods"), list):
            raise UserError(f"{where}: run {i} has no 'methods' list")
        for key in ("dataset", "normalization", "images"):
            if key not in run:
                raise UserError(f"{where}: run {i} lacks '{key}'")
        if not isinstance(run["dataset"], str) or not run["dataset"]:
            raise UserError(f"{where}: run {i}: 'dataset' must be a dataset name, "
                            f"not {json.dumps(run['dataset'])}")
        if not isinstance(run.get("paper_dataset", ""), (str, type(None))):
            raise UserError(f"{where}: run {i}: 'paper_dataset' must be a name or null")
        if not isinstance(run["normalization"], str) or run["normalization"] not in NORMALIZATIONS:
            raise UserError(f"{where}: run {i}: unknown normalization {json.dumps(run['normalization'])} "
                            f"(expected one of: {', '.join(NORMALIZATIONS)})")
        if not isinstance(run["images"], int) or isinstance(run["images"], bool) or run["images"] < 0:
            raise UserError(f"{where}: run {i} ({run['dataset']}): 'images' must be a count >= 0, "
                            f"not {json.dumps(run['images'])}")
        for m in run["methods"]:
            _check_method(m, i, run, where)
    return res


def load_results(path):
    """A results.json, validated. Bad files are a UserError naming the file."""
    return _check(read_json_file(path, "results file"), path)


def merge_results(named):
    """One results dict from [(path, results)], runs in the given order.
    Raises UserError when a method appears twice for the same dataset and convention."""
    seen = {}
    runs = []
    for path, res in named:
        for run in res["runs"]:
            for m in run["methods"]:
                key = (run["dataset"].lower(), run["normalization"], m["name"].lower())
                if key in seen:
                    raise UserError(f"{path}: method '{m['name']}' on dataset '{run['dataset']}' "
                                    f"({run['normalization']}) is also in {seen[key]}")
                seen[key] = path
            runs.append(run)
    return make_results(runs)


def dumps(res):
    """JSON text: indented, with each 256-value curve on one line."""
    curves = []

    def strip(run):
        run = dict(run)
        run["methods"] = [dict(m) for m in run["methods"]]
        for m in run["methods"]:
            if "curves" in m:
                c = {}
                for k, v in m["curves"].items():
                    c[k] = f"@@curve{len(curves)}@@"
                    curves.append(json.dumps([float(x) for x in v]))
                m["curves"] = c
        return run

    text = json.dumps({**res, "runs": [strip(r) for r in res["runs"]]}, indent=1,
                      ensure_ascii=False)
    for i, c in enumerate(curves):
        text = text.replace(f'"@@curve{i}@@"', c, 1)
    return text + "\n"
