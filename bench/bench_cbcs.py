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
import tempfile
import time

import numpy as np


from baselines import cbcs
from data_prep.datasets import Dataset, Item, load_dataset
from core.imageio import atomic_write_bytes
from core.toydata import icoseg_dev_root

ICOSEG_DEV = icoseg_dev_root()
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


def cpu_seconds():
    """CPU seconds of this process and its finished children (the worker processes, once
    joined)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def timed(fn, *args, **kwargs):
    """(wall seconds, CPU seconds of this process and its workers) of fn(*args, **kwargs)."""
    c, t = cpu_seconds(), time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - t, cpu_seconds() - c


def benchmark_dataset(folder):
    """(dataset, description): the iCoseg development subset, or a synthetic one in `folder`."""
    if (ICOSEG_DEV / "images").is_dir():
        return load_dataset("icoseg", ICOSEG_DEV), "iCoseg dev subset"
    return synthetic_dataset(folder), "synthetic (iCoseg dev not found)"


def machine():
    """The CPU model, core count and load average, for the table's heading."""
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}"


def main():
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        ds, source = benchmark_dataset(tmp / "data")
        n = len(ds)
        rows = []
        for single in (False, True):
            for workers in (1, 2):
                out = tmp / f"out-{int(single)}-{workers}"
                dt, cpu = timed(cbcs.run, ds, out, single=single, workers=workers,
                                progress=False)
                rows.append(("CBCS-S" if single else "CBCS", workers, dt, n / dt, cpu))
    print(f"CBCS baselines on {source}: {len(ds.groups)} groups, {n} images; {machine()}")
    print()
    print("| method | workers | seconds | images/s | CPU seconds (all processes) |")
    print("|---|---|---|---|---|")
    for method, workers, dt, ips, cpu_s in rows:
        print(f"| {method} | {workers} | {dt:.2f} | {ips:.1f} | {cpu_s:.2f} |")


if __name__ == "__main__":
    main()
