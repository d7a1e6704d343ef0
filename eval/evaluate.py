"""Evaluating methods' saliency maps on a dataset: reading, resizing, parallel per-image metrics,
deterministic averaging. The result of one dataset is a "run" (see eval.results)."""
import multiprocessing

import cv2
import numpy as np

from core.layout import prediction_path
from core.errors import UserError
from core.imageio import read_gray, read_mask
from core.inputs import InputNotFound, check_input_file, check_input_folder
from core.progress import progress as progress_bar
from core.workers import ignore_interrupts, interrupts_deferred, worker_count

from . import results
from .metrics import MetricAccumulator, binarize_gt, image_metrics

MAX_LISTED = 3   # missing predictions named in the error message


def load_prediction(path):
    """A saliency map file: 8-bit maps come back as their exact uint8 values (so that the metrics
    see k / 255 in float64, as PySODMetrics does), other encodings as float64 in [0, 1]."""
    g = read_gray(path)
    u8 = cv2.convertScaleAbs(g, alpha=255.0)   # rounds and saturates, in one pass
    back = u8.astype(np.float32)
    back /= 255.0                              # read_gray's own operation for 8-bit files
    if np.array_equal(back, g):
        return u8
    return g.astype(np.float64)


def resize_to(pred, shape):
    """Bilinear resize of a map to (h, w) = shape; an 8-bit map stays 8-bit."""
    h, w = shape
    if pred.dtype == np.uint8:
        return cv2.resize(pred, (w, h), interpolation=cv2.INTER_LINEAR)
    out = cv2.resize(pred.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    return np.clip(out, 0.0, 1.0).astype(np.float64)


def _evaluate_item(task):
    """One image, every method: [(per-image metrics, original shape if resized else None)]."""
    gt_path, pred_paths, normalize, modern = task
    gt = binarize_gt(read_mask(gt_path))
    out = []
    for path in pred_paths:
        pred = load_prediction(path)
        resized = None
        if pred.shape != gt.shape:
            resized = pred.shape
            pred = resize_to(pred, gt.shape)
        out.append((image_metrics(pred, gt, normalize, modern), resized))
    return out


def _pool_context():
    """Worker processes that do not inherit this process's threads: OpenCV is not fork-safe
    (a forked child can hang in its thread pool). A fork server started fresh, with this module
    preloaded, starts workers fast; elsewhere (Windows) they are spawned."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload([__name__])
        return ctx
    return multiprocessing.get_context("spawn")


def _map_ordered(tasks, workers, progress, desc):
    """Results of _evaluate_item in task order (the order of summation, so 1 and N workers give
    the same numbers bit for bit)."""
    bar = progress_bar(total=len(tasks), desc=desc, unit="img", enabled=progress)
    try:
        if workers <= 1 or len(tasks) < 2:
            for t in tasks:
                yield _evaluate_item(t)
                bar.update()
            return
        chunk = max(1, min(16, len(tasks) // (4 * workers)))
        with interrupts_deferred():
            pool = _pool_context().Pool(min(workers, len(tasks)), initializer=ignore_interrupts)
        with pool:
            for r in pool.imap(_evaluate_item, tasks, chunksize=chunk):
                yield r
                bar.update()
    finally:
        bar.close()


def check_predictions(dataset, methods):
    """UserError naming how many predictions are missing (per method) and the first few paths,
    or a map path that is something else (a folder, a FIFO) or cannot be looked at.
    Parameters: dataset -- data_prep Dataset; methods -- [(name, folder)]."""
    missing = {}
    for name, folder in methods:
        check_input_folder(folder, f"prediction folder of method '{name}'")
        missing[name] = []
        for it in dataset.items():
            if it.mask is not None:
                path = prediction_path(folder, it)
                try:
                    check_input_file(path, f"saliency map of method '{name}' (a PNG)")
                except InputNotFound:
                    missing[name].append(str(path))
    total = sum(len(v) for v in missing.values())
    if total:
        counts = ", ".join(f"{n}: {len(v)}" for n, v in missing.items() if v)
        first = [p for v in missing.values() for p in v][:MAX_LISTED]
        more = ", ..." if total > len(first) else ""
        raise UserError(f"{total} prediction(s) missing for dataset '{dataset.name}' ({counts}): "
                        f"{', '.join(first)}{more}")


def evaluate(dataset, methods, normalize=True, modern=True, workers=None, progress=True):
    """Every metric of every method on one dataset.

    Parameters: dataset -- data_prep Dataset (items with mask None are skipped and counted);
    methods -- [(name, folder)], maps at data_prep.datasets.prediction_path(folder, item);
    normalize -- min-max normalise the maps (False: raw); modern -- also S and E-measure;
    workers -- processes (default: the CPUs this process may use, at most one per 100 images;
    they are started by a fork server or spawned, so a script calling this with workers > 1
    needs the usual `if __name__ == "__main__":` guard); progress -- a progress bar (core.progress).
    Returns: one entry of results.json's "runs" (eval.results.dataset_entry) with, per method,
    "resized" (how many maps were of
    another size than their ground truth) and "resized_example" (one such path, or None).
    """
    names = [n for n, _ in methods]
    if len({n.lower() for n in names}) != len(names):
        raise UserError(f"method names must be unique (case-insensitively): {', '.join(names)}")
    items = [it for it in dataset.items() if it.mask is not None]
    skipped = len(dataset) - len(items)
    if not items:
        raise UserError(f"{dataset.root}: no image of dataset '{dataset.name}' has ground truth; "
                        "nothing to evaluate")
    check_predictions(dataset, methods)
    tasks = [(str(dataset.root / it.mask), [str(prediction_path(d, it)) for _, d in methods],
              normalize, modern) for it in items]
    accs = [MetricAccumulator(modern) for _ in methods]
    resized = [0] * len(methods)
    example = [None] * len(methods)
    # starting worker processes costs about a second: by default one per 100 images
    workers = worker_count(workers, None if workers else len(tasks) // 100)
    for i, per_method in enumerate(_map_ordered(tasks, workers, progress,
                                                f"eval {dataset.name}")):
        for j, (img, shape) in enumerate(per_method):
            accs[j].add(img)
            if shape is not None:
                resized[j] += 1
                if example[j] is None:
                    example[j] = (tasks[i][1][j], shape, tasks[i][0])
    entry = results.dataset_entry(dataset, len(items), skipped, normalize)
    for (name, folder), acc, n_res, ex in zip(methods, accs, resized, example):
        metrics, curves = acc.summarize()
        example_text = None if ex is None else f"{ex[0]} ({ex[1][0]}x{ex[1][1]}, ground truth {_shape_of(ex[2])})"
        entry["methods"].append(results.method_entry(dataset.name, name, folder, metrics, curves, n_res,
                                                     example_text))
    return entry


def _shape_of(mask_path):
    h, w = read_mask(mask_path).shape
    return f"{h}x{w}"


def resize_warning(run):
    """The one warning line about resized maps of a run, or None when nothing was resized."""
    counts = [(m["name"], m["resized"]) for m in run["methods"] if m["resized"]]
    if not counts:
        return None
    total = sum(c for _, c in counts)
    per = ", ".join(f"{n}: {c}" for n, c in counts)
    ex = next(m["resized_example"] for m in run["methods"] if m["resized"])
    return (f"warning: {total} prediction(s) differ in size from their ground truth and were "
            f"resized to it (bilinear) ({per}), e.g. {ex}")
