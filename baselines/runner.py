"""What every baseline's command line shares: the common arguments, the output-folder rules
(refuse a non-empty folder unless --force, --resume only with the same settings), the run over a
dataset's groups in worker processes with a progress bar, and the 8-bit map encoding.

A baseline supplies a module-level `process(task)` that computes and writes the maps of one
group and returns how many it wrote; `task` is (group, [(name, image path), ...], out, *extra).
"""
import concurrent.futures
import concurrent.futures.process
import json
import multiprocessing
import os
import pathlib

import numpy as np

from core.args import ArgumentParser, positive_int
from core.errors import UserError
from core.inputs import read_json_file
from core.outputs import atomic_write_text, prepare_out_dir
from core.progress import progress as progress_bar
from core.workers import ignore_interrupts, interrupts_deferred, shut_down, worker_count
from data_prep.imagefiles import probe_image

from .matlab_ops import round_half_away


def to_uint8(saliency):
    """MATLAB im2uint8 of a map in [0, 1]: clamp, x 255, round half away from zero."""
    return round_half_away(np.clip(saliency, 0.0, 1.0) * 255.0).astype(np.uint8)


def _finished_map(path):
    """Whether `path` is a whole PNG (data_prep's header and end-of-data probe): maps are written
    whole, so anything else there (another file, one cut short by a copy) is a map still to make."""
    info, _ = probe_image(path)
    return info is not None and info.kind == "png"


def run_groups(dataset, out, process, extra=(), method="", workers=None, groups=None,
               skip_done=False, progress=True):
    """Run `process` over the groups of `dataset`, writing under `out`.

    Parameters: dataset: a data_prep.datasets.Dataset; out: output folder; process: module-level
    function of one task (picklable, it runs in a worker process); extra: further task fields;
    method: the progress bar's label; workers: processes, one group each at a time (default: all
    CPU cores); groups: names of the groups to run (default all); skip_done: leave groups whose
    maps all exist; progress: show a progress bar. Returns the number of images written."""
    from core.layout import prediction_path

    names = list(dataset.groups) if groups is None else list(dict.fromkeys(groups))   # a group named twice runs once
    unknown = [g for g in names if g not in dataset.groups]
    if unknown:
        raise UserError(f"{dataset.root}: no group named {unknown[0]!r} "
                        f"in dataset '{dataset.name}'")
    tasks = []
    for g in names:
        items = dataset.groups[g]
        if skip_done and all(_finished_map(prediction_path(out, it)) for it in items):
            continue
        tasks.append((g, [(it.name, str(dataset.root / it.image)) for it in items],
                      str(out), *extra))
    tasks.sort(key=lambda t: -len(t[1]))       # largest groups first balance the workers
    workers = worker_count(workers)
    total = sum(len(t[1]) for t in tasks)
    done = 0
    with progress_bar(total=total, unit="img", desc=method, enabled=progress) as bar:
        if workers == 1 or len(tasks) <= 1:
            for t in tasks:
                done += process(t)
                bar.update(len(t[1]))
        else:
            ctx = multiprocessing.get_context("spawn")
            pool = concurrent.futures.ProcessPoolExecutor(min(workers, len(tasks)), mp_context=ctx,
                                                         initializer=ignore_interrupts)
            try:
                with interrupts_deferred():
                    futures = [pool.submit(process, t) for t in tasks]
                for fut in concurrent.futures.as_completed(futures):
                    n = _result(fut, out)
                    done += n
                    bar.update(n)
            finally:
                shut_down(pool)
    return done


def _result(future, out):
    """A worker's result; a worker that died (killed, out of memory, a crash in native code)
    is one line, not the pool's traceback: the maps written so far stay for --resume."""
    try:
        return future.result()
    except concurrent.futures.process.BrokenProcessPool:
        raise UserError(f"{out}: a worker process died (killed, out of memory or crashed); the maps "
                        "written so far are kept, continue with --resume (or --workers 1)") from None


def prepare_out(out, settings, run_file, force=False, resume=False):
    """Check the output folder before the work (core.outputs.prepare_out_dir): a non-empty one
    only with `force`, or with `resume` and the same `settings`, which are then recorded in
    `out`/`run_file`."""
    def own(names):     # resuming adopts maps only from a folder this baseline wrote
        if resume and run_file not in names:
            raise UserError(f"{out}: holds no {run_file}, so it is not an interrupted run of this "
                            "baseline to resume (use --force to write into it, or another --out)")
        return resume

    out = pathlib.Path(prepare_out_dir(out, force, may_hold=own,
                                       flag="--force to overwrite or --resume to finish an interrupted run"))
    path = out / run_file
    if resume and os.path.lexists(path):
        previous = read_json_file(path, "previous run's settings")
        if previous != settings:
            raise UserError(f"{path}: the maps there were made with {previous}, "
                            f"not {settings}; use --force or another --out")
    atomic_write_text(path, json.dumps(settings, sort_keys=True) + "\n")


def argument_parser(prog, description):
    """A parser with the arguments every baseline takes: --dataset, --root, --out, --workers,
    --group, and --force / --resume."""
    p = ArgumentParser(prog=prog, description=description)
    p.add_argument("--dataset", required=True, help="dataset name, e.g. icoseg")
    p.add_argument("--root", required=True, help="the dataset's folder")
    p.add_argument("--out", required=True, help="output folder for the maps")
    p.add_argument("--workers", type=positive_int, default=None,
                   help="processes, each working on one group at a time (default: CPU cores)")
    p.add_argument("--group", action="append", dest="groups", metavar="NAME",
                   help="only this group (repeatable)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--force", action="store_true", help="write into a non-empty output folder")
    mode.add_argument("--resume", action="store_true",
                      help="continue an interrupted run: skip groups whose maps all exist")
    return p


def parse_arguments(parser, argv):
    """Parse the common arguments (argparse checks their ranges)."""
    return parser.parse_args(argv)


def output_folder(args):
    return pathlib.Path(os.path.expanduser(args.out))
