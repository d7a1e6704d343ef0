"""Data preparation speed: GIST + Lab descriptors on the real iCoseg JPEGs (1 and 2 workers),
exact neighbour search for 9213 descriptors (COCO9213 size) and an estimate for 100k, and
synthetic benchmark generation. Prints a markdown table."""
import os
import pathlib
import tempfile
import time

import numpy as np

from data_prep import descriptors, synthetic, train_groups
from core.toydata import icoseg_dev_root

ICOSEG_DEV = icoseg_dev_root()


def bench_descriptors(rows):
    images = ICOSEG_DEV / "images"
    files = sorted(images.rglob("*.jpg")) if images.is_dir() else []
    if not files:
        rows.append(("descriptors, iCoseg dev JPEGs", "skipped: ../shared/datasets/icoseg-dev absent", ""))
        return
    descriptors.describe_files(files[:4], workers=1, progress=False)   # tables, imports
    for workers in (1, 2):
        t = time.perf_counter()
        descriptors.describe_files(files, workers=workers, progress=False)
        dt = time.perf_counter() - t
        rows.append((f"descriptors, {len(files)} iCoseg JPEGs, {workers} worker(s)",
                     f"{len(files) / dt:.0f} images/s", f"{dt:.2f} s"))
    with tempfile.TemporaryDirectory() as tmp:
        cache = pathlib.Path(tmp) / "c.h5"
        descriptors.describe_files(files, workers=2, cache_path=cache, progress=False)
        t = time.perf_counter()
        descriptors.describe_files(files, workers=2, cache_path=cache, progress=False)
        dt = time.perf_counter() - t
        rows.append(("descriptors again, from the HDF5 cache", f"{len(files) / dt:.0f} images/s",
                     f"{dt:.3f} s"))


def bench_neighbours(rows):
    rng = np.random.default_rng(0)
    x = rng.random((9213, descriptors.DIM), dtype=np.float32)
    t = time.perf_counter()
    train_groups.nearest_neighbours(x, 4)
    rows.append(("neighbour search, 9213 x 1024, k = 4", "exact", f"{time.perf_counter() - t:.2f} s"))
    del x
    n, part = 100_000, 2_000
    x = rng.random((n, descriptors.DIM), dtype=np.float32)
    t = time.perf_counter()
    train_groups.nearest_neighbours(x, 4, rows=(0, part))
    dt = time.perf_counter() - t
    rows.append((f"neighbour search, 100k x 1024: {part} query rows timed", "exact, chunked",
                 f"{dt:.2f} s; all 100k: about {dt * n / part:.0f} s"))


def bench_synthetic(rows):
    for size, groups in (((64, 128), 1000), ((128, 256), 300)):
        with tempfile.TemporaryDirectory() as tmp:
            cfg = synthetic.Config(height=size[0], width=size[1])
            t = time.perf_counter()
            synthetic.generate(pathlib.Path(tmp) / "s", cfg, groups, 0, workers=os.cpu_count(),
                               progress=False)
            dt = time.perf_counter() - t
            mb = sum(p.stat().st_size for p in pathlib.Path(tmp).rglob("*") if p.is_file()) / 2**20
            rows.append((f"synthetic, {groups} groups of 5 at {size[0]}x{size[1]}, "
                         f"{os.cpu_count()} processes",
                         f"{groups / dt:.0f} groups/s", f"{dt:.1f} s, {mb / groups:.2f} MB/group"))


def main():
    rows = []
    bench_descriptors(rows)
    bench_neighbours(rows)
    bench_synthetic(rows)
    print("| task | rate | time |")
    print("|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    model = "unknown CPU"
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f
                          if line.startswith("model name")), model)
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    print(f"\n{os.cpu_count()} cores ({model}); load average at the end: {load}")


if __name__ == "__main__":
    main()
