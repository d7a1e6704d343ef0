"""Dataset reading cost: the default header check against a full decode (--verify), and
test-group sampling (files in the page cache), on a generated dataset of 2000 image/mask pairs
(320x240 JPEG + PNG) and on the real iCoseg subset when it is present. Prints a markdown table."""
import pathlib
import sys
import tempfile
import time

import cv2
import numpy as np

from data_prep.datasets import load_dataset, verify_dataset
from data_prep.test_groups import make_test_groups
from core.toydata import icoseg_dev_root

ICOSEG_DEV = icoseg_dev_root()


def make_dataset(root, n_groups=40, per_group=50, size=(240, 320)):
    rng = np.random.default_rng(0)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    for g in range(n_groups):
        (root / "Image" / f"g{g:02d}").mkdir(parents=True)
        (root / "GroundTruth" / f"g{g:02d}").mkdir(parents=True)
        for i in range(per_group):
            base = ((xx * rng.uniform(0.2, 1) + yy * rng.uniform(0.2, 1)) % 256).astype(np.uint8)
            img = np.dstack([base, base[::-1], base[:, ::-1]])
            img = cv2.add(img, rng.integers(0, 20, img.shape, dtype=np.uint8))
            cv2.imwrite(str(root / "Image" / f"g{g:02d}" / f"{i:03d}.jpg"), img)
            m = np.zeros((h, w), np.uint8)
            centre = (int(rng.integers(60, w - 60)), int(rng.integers(60, h - 60)))
            cv2.circle(m, centre, 50, 255, -1)
            cv2.imwrite(str(root / "GroundTruth" / f"g{g:02d}" / f"{i:03d}.png"), m)


def timed(fn, repeat=3):
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main():
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        make_dataset(root)
        sets = [("generated 2000 pairs", "cosal2015", root)]
        if (ICOSEG_DEV / "images").is_dir():
            sets.append(("iCoseg dev (100 images, 95 masks)", "icoseg", ICOSEG_DEV))
        for label, name, path in sets:
            t_read, ds = timed(lambda: load_dataset(name, path))
            t_verify, _ = timed(lambda: verify_dataset(ds, progress=False), repeat=1)
            t_groups, groups = timed(lambda: make_test_groups(ds, 5, 0))
            n_files = len(ds) + sum(it.mask is not None for it in ds.items())
            rows.append((label, n_files, t_read, t_verify, t_groups, len(groups)))
    print("| dataset | files | read (header check) s | per 1000 files ms | verify (full decode) s "
          "| per 1000 files ms | test groups s (groups) |")
    print("|---|---|---|---|---|---|---|")
    for label, n, tr, tv, tg, ng in rows:
        print(f"| {label} | {n} | {tr:.3f} | {1e6 * tr / n:.0f} | {tv:.2f} | "
              f"{1e6 * tv / n:.0f} | {tg:.4f} ({ng}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
