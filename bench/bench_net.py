"""Deploy speed: pycaffe against OpenCV DNN on the same prototxt and the same (random) weights.

1. One forward of one group (5 x 3 x 128 x 256) of the full group model and of Ours-S: a few
   warm-up runs, then the median of N; with the largest difference between the two outputs.
2. End to end (`apps.predict.write_maps`: JPEG decoding, preprocessing, forward, averaging, resizing
   back, PNG writing) in images per second on the real iCoseg development subset, for the tiny
   and the full group model.

    python bench/bench_net.py [--runs 5] [--warmup 2] [--full-groups 3]

The iCoseg subset is read from $ICOSEG_DEV or ../shared/datasets/icoseg-dev next to the project;
without it the end-to-end rows are left out. Prints markdown tables.
"""
import argparse
import ctypes
import os
import pathlib
import platform
import statistics
import tempfile
import time

import cv2
import numpy as np

from data_prep.datasets import Dataset, load_dataset
from core.netio import load_net
from apps.predict import CaffeEngine, OpenCVEngine, plan_groups, write_maps
from core.surgery import he_init

from core.layout import PROTOTXT_DIR as P
from core.toydata import icoseg_dev_root
ICOSEG_DEV = icoseg_dev_root()


def random_weights(prototxt, path, seed):
    """He-normal weights, conv1_1 scaled by 1/100 (the input is in pixel units) so that the
    outputs are O(1) and the reported difference is on the scale of a saliency map."""
    net = load_net(prototxt)
    he_init(net, seed=seed)
    net.params["conv1_1"][0].data[...] *= 0.01
    net.save(str(path))
    return str(path)


def _openblas():
    """The OpenBLAS library Caffe is linked to (ctypes handle), or None."""
    with open("/proc/self/maps") as f:
        libs = {line.split()[-1] for line in f if "libopenblas" in line and "scipy" not in line}
    for lib in sorted(libs):
        try:
            handle = ctypes.CDLL(lib)
            handle.openblas_get_num_threads
            return handle
        except (OSError, AttributeError):
            continue
    return None


def openblas_threads(n=None):
    """Set Caffe's OpenBLAS threads to n (if given); return the count in use (None: not OpenBLAS)."""
    lib = _openblas()
    if lib is None:
        return None
    if n is not None:
        lib.openblas_set_num_threads(int(n))
    return int(lib.openblas_get_num_threads())


def median_seconds(fn, runs, warmup):
    """(median wall-clock s, median process CPU s) of fn() over `runs` calls after `warmup`.
    The CPU time is the one to compare on a busy machine with one thread per engine."""
    for _ in range(warmup):
        fn()
    wall, cpu = [], []
    for _ in range(runs):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return statistics.median(wall), statistics.median(cpu)


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def forward_rows(tmp, runs, warmup):
    rng = np.random.RandomState(0)
    blob = rng.uniform(-100, 100, (5, 3, 128, 256)).astype(np.float32)
    rows = []
    for label, name in (("group model (Ours)", "group"), ("Ours-S", "single")):
        proto = P / f"{name}_deploy.prototxt"
        w = random_weights(proto, tmp / f"{name}.caffemodel", seed=1)
        cf = CaffeEngine(proto, w)
        t_cf = median_seconds(lambda: cf.forward(blob), runs, warmup)
        a = cf.forward(blob)
        del cf
        cv = OpenCVEngine(proto, w)
        t_cv = median_seconds(lambda: cv.forward(blob), runs, warmup)
        b = cv.forward(blob)
        del cv
        rows.append((label, t_cf, t_cv, float(np.abs(a - b).max()), float(np.abs(a).max())))
    return rows


def e2e_rows(tmp, full_groups):
    if not (ICOSEG_DEV / "images").is_dir():
        return []
    ds = load_dataset("icoseg", ICOSEG_DEV)
    rows = []
    for label, proto, n_groups in (("tiny group model, 64x128", P / "tiny" / "group_deploy.prototxt", None),
                                   ("full group model, 128x256", P / "group_deploy.prototxt", full_groups)):
        sub = ds if n_groups is None else Dataset(ds.name, ds.root, dict(list(ds.groups.items())[:n_groups]))
        w = random_weights(proto, tmp / "e2e.caffemodel", seed=2)
        speeds = {}
        for kind, make in (("caffe", CaffeEngine), ("opencv", OpenCVEngine)):
            engine = make(proto, w)
            engine.forward(np.zeros(engine.shape, np.float32))   # first-call allocations
            t = time.perf_counter()
            n = write_maps(engine, sub, tmp / f"out-{kind}-{len(rows)}", progress=False)
            speeds[kind] = n / (time.perf_counter() - t)
            del engine
        rows.append((label, len(sub), len(plan_groups(sub, 5)), speeds["caffe"], speeds["opencv"]))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="timed forwards per engine (median)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed forwards first")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                    help="threads of each engine: cv2.setNumThreads and Caffe's OpenBLAS "
                         "(default: the core count)")
    ap.add_argument("--full-groups", type=int, default=3,
                    help="iCoseg groups predicted end to end with the full model (default 3)")
    args = ap.parse_args()

    cores = os.cpu_count() or 1
    cv2.setNumThreads(args.threads)
    openblas_threads(args.threads)
    with tempfile.TemporaryDirectory() as d:
        tmp = pathlib.Path(d)
        fwd = forward_rows(tmp, args.runs, args.warmup)
        e2e = e2e_rows(tmp, args.full_groups)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{cpu_name()}, {cores} cores; threads: OpenCV {cv2.getNumThreads()}, "
          f"Caffe's OpenBLAS {openblas_threads()}; OpenCV {cv2.__version__}; "
          f"load average {load:.2f} at the end\n")
    print(f"One group forward, 5 x 3 x 128 x 256 (median of {args.runs} after {args.warmup} warm-up)\n")
    print("| net | pycaffe s | OpenCV DNN s | speed-up | pycaffe CPU s | OpenCV CPU s | CPU ratio "
          "| max abs diff (output scale) |")
    print("|---|---|---|---|---|---|---|---|")
    for label, (a, ac), (b, bc), diff, scale in fwd:
        print(f"| {label} | {a:.3f} | {b:.3f} | {a / b:.2f}x | {ac:.3f} | {bc:.3f} | {ac / bc:.2f}x "
              f"| {diff:.1e} ({scale:.2f}) |")
    if e2e:
        print("\nEnd to end on iCoseg dev JPEGs (read, preprocess, forward, average, resize, write PNG)\n")
        print("| net | images | groups of 5 | pycaffe images/s | OpenCV DNN images/s | speed-up |")
        print("|---|---|---|---|---|---|")
        for label, n, g, a, b in e2e:
            print(f"| {label} | {n} | {g} | {a:.2f} | {b:.2f} | {b / a:.2f}x |")
    else:
        print(f"\n(end-to-end rows left out: no iCoseg dev subset at {ICOSEG_DEV})")


if __name__ == "__main__":
    main()
