"""Speed of the CBCS / CBCS-S baselines: images per second through `baselines.cbcs.run` (read,
200 x 200 working scale, k-means, cues, resize back, PNG write) with 1 and 2 worker processes.

Uses the real iCoseg development subset when it is there (ICOSEG_DEV, default
../shared/datasets/icoseg-dev next to the project), otherwise a synthetic set of the same shape
(8 groups, 100 photograph-sized images of 500 x 375). Prints a markdown table; the CPU seconds
(this process and its workers) tell how much of a slow figure is other jobs sharing the cores.
"""
import os
import pathlib
import platform
import sys
import tempfile
import time

import numpy as np

from core.layout import PROJECT_ROOT as ROOT

from baselines import cbcs
from data_prep.datasets import Dataset, Item, load_dataset
from core.outputs import atomic_write_bytes
from core.workers import available_cpus

ICOSEG_DEV = pathlib.Path(os.environ.get("ICOSEG_DEV",
                                         ROOT.parent / "shared" / "datasets" / "icoseg-dev"))
GROUP_SIZES = (5, 11, 15, 25, 10, 11, 18, 5)      # as in the iCoseg development subset


def synthetic_dataset(folder):
    """Smooth random backgrounds with a few coloured ellipses, JPEG-encoded like photographs."""
    import cv2

    rng = np.random.default_rng(0)
    groups = {}
    for g, n in enumerate(GROUP_SIZES):
        name = f"group{g}"
        items = []
        for i in range(n):
            h, w = (375, 500) if i % 2 else (500, 375)
            im = cv2.resize(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), (w, h),
                            interpolation=cv2.INTER_CUBIC)
            for _ in range(3):
                cv2.ellipse(im, (int(rng.integers(w)), int(rng.integers(h))),
                            (int(rng.integers(20, 120)), int(rng.integers(20, 120))), 0, 0, 360,
                            tuple(int(c) for c in rng.integers(0, 256, 3)), -1)
            im = np.clip(im + rng.normal(0, 2, im.shape), 0, 255).astype(np.uint8)
            rel = f"images/{name}/{i:03d}.jpg"
            atomic_write_bytes(folder / rel, cv2.imencode(".jpg", im)[1].tobytes())
            items.append(Item(name, f"{i:03d}", rel, None))
        groups[name] = items
    return Dataset("synthetic-bench", folder, groups)


def _cpu_seconds():
    # this process and its finished children (the worker processes, once joined)
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def main():
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        if (ICOSEG_DEV / "images").is_dir():
            ds, source = load_dataset("icoseg", ICOSEG_DEV), "iCoseg dev subset"
        else:
            ds, source = synthetic_dataset(tmp / "data"), "synthetic (iCoseg dev not found)"
        n = len(ds)
        rows = []
        for single in (False, True):
            for workers in (1, 2):
                out = tmp / f"out-{int(single)}-{workers}"
                c, t = _cpu_seconds(), time.perf_counter()
                cbcs.run(ds, out, single=single, workers=workers, progress=False)
                dt, cpu = time.perf_counter() - t, _cpu_seconds() - c
                rows.append(("CBCS-S" if single else "CBCS", workers, dt, n / dt, cpu))
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    print(f"CBCS baselines on {source}: {len(ds.groups)} groups, {n} images; "
          f"{cpu}, {available_cpus()} cores, load average {os.getloadavg()[0]:.1f}")
    print()
    print("| method | workers | seconds | images/s | CPU seconds (all processes) |")
    print("|---|---|---|---|---|")
    for method, workers, dt, ips, cpu_s in rows:
        print(f"| {method} | {workers} | {dt:.2f} | {ips:.1f} | {cpu_s:.2f} |")


if __name__ == "__main__":
    main()
