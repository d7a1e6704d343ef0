"""Evaluation speed: the full suite (paper metrics + S-measure + E-measure + max F) on 300x470
maps read from PNG files, ours with 1 and 2 worker processes against PySODMetrics alone
(MAE + Fmeasure + Smeasure + Emeasure, sequential). Ground truths are the real iCoseg dev masks
(resized to 300x470) with blurred and noised predictions, or synthetic ellipses of that size when
the subset is absent. Prints a markdown table; also checks that both give the same numbers."""
import os
import pathlib
import platform
import tempfile
import time
import warnings

import cv2
import numpy as np
import py_sod_metrics as psm

from data_prep.datasets import Dataset, Item
from eval.evaluate import default_workers, evaluate
from core.toydata import icoseg_dev_root

ICOSEG_DEV = icoseg_dev_root()
H, W = 300, 470
PERTURBATIONS = 3


def ground_truths():
    """[(group, name, mask uint8 0/255 at H x W)] and where they come from."""
    masks = sorted((ICOSEG_DEV / "ground_truth").glob("*/*.png"))
    if masks:
        out = []
        for p in masks:
            m = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
            m = cv2.resize(m, (W, H), interpolation=cv2.INTER_NEAREST)
            out.append((p.parent.name, p.stem, np.where(m > 128, 255, 0).astype(np.uint8)))
        return out, f"iCoseg dev masks ({len(masks)})"
    rng = np.random.default_rng(0)
    out = []
    for i in range(100):
        m = np.zeros((H, W), np.uint8)
        cv2.ellipse(m, (int(rng.integers(100, W - 100)), int(rng.integers(80, H - 80))),
                    (int(rng.integers(30, 90)), int(rng.integers(30, 70))), 0, 0, 360, 255, -1)
        out.append((f"g{i // 10}", f"{i:03d}", m))
    return out, "synthetic ellipses (100)"


def make_dataset(root):
    """A dataset of len(ground truths) x PERTURBATIONS images and one method's maps."""
    rng = np.random.default_rng(0)
    gts, source = ground_truths()
    groups = {}
    for group, name, m in gts:
        for k in range(PERTURBATIONS):
            g = f"{group}-{k}"
            gt_rel = f"GroundTruth/{g}/{name}.png"
            (root / "GroundTruth" / g).mkdir(parents=True, exist_ok=True)
            (root / "maps" / g).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / gt_rel), m)
            soft = cv2.GaussianBlur(m.astype(np.float32), (0, 0), 3 + 4 * k) * rng.uniform(0.5, 1)
            pred = np.clip(soft + rng.normal(20, 15 + 10 * k, m.shape), 0, 255).astype(np.uint8)
            cv2.imwrite(str(root / "maps" / g / f"{name}.png"), pred)
            # the image is never read by the evaluation: point it at the mask
            groups.setdefault(g, []).append(Item(g, name, gt_rel, gt_rel))
    return Dataset("bench", root, groups), source


def pysod_alone(ds, maps, read_files):
    """PySODMetrics' MAE, Fmeasure, Smeasure and Emeasure over the dataset, sequentially.
    read_files: include decoding the PNGs (else arrays are read beforehand, untimed)."""
    def read(it):
        return (cv2.imread(str(maps / it.group / f"{it.name}.png"), cv2.IMREAD_GRAYSCALE),
                cv2.imread(str(ds.root / it.mask), cv2.IMREAD_GRAYSCALE))

    items = list(ds.items())
    pairs = None if read_files else [read(it) for it in items]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ms = [psm.MAE(), psm.Fmeasure(), psm.Smeasure(), psm.Emeasure()]
        t = time.perf_counter()
        for i, it in enumerate(items):
            p, g = read(it) if read_files else pairs[i]
            for m in ms:
                m.step(p, g)
        dt = time.perf_counter() - t
    f = ms[1].get_results()["fm"]
    return dt, {"MAE": ms[0].get_results()["mae"], "mF": f["adp"], "maxF": f["curve"].max(),
                "S": ms[2].get_results()["sm"], "maxE": ms[3].get_results()["em"]["curve"].max()}


def best_of(fn, repeat=2):
    best, out = float("inf"), None
    for _ in range(repeat):
        dt, out = fn()
        best = min(best, dt)
    return best, out


def ours(ds, maps, workers):
    t = time.perf_counter()
    run = evaluate(ds, [("bench", maps)], workers=workers, progress=False)
    return time.perf_counter() - t, run["methods"][0]["metrics"]


def main():
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo")
                if ln.startswith("model name")), platform.processor()) \
        if pathlib.Path("/proc/cpuinfo").exists() else platform.processor()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        ds, source = make_dataset(root)
        maps = root / "maps"
        n = len(ds)
        rows = []
        t, ref = best_of(lambda: pysod_alone(ds, maps, read_files=False))
        rows.append(("PySODMetrics alone (MAE+F+S+E), arrays in memory", 1, t))
        t, _ = best_of(lambda: pysod_alone(ds, maps, read_files=True))
        rows.append(("PySODMetrics alone (MAE+F+S+E), reading the PNGs", 1, t))
        got = None
        for w in sorted({1, 2, default_workers()}):
            t, got = best_of(lambda: ours(ds, maps, w))
            rows.append(("ours, full suite (mF AUC MAE AP maxF meanF S maxE meanE), reading "
                         "the PNGs", w, t))
    diff = max(abs(got[k] - ref[k]) for k in ref)
    print(f"{n} maps of {H}x{W} ({source} x {PERTURBATIONS} perturbations); CPU: {cpu}, "
          f"{default_workers()} usable cores, load average {load:.1f} when it started (other "
          "processes on these cores take their share; 2 processes include starting them)")
    print()
    print("| evaluation | processes | seconds | images/s |")
    print("|---|---|---|---|")
    for label, w, t in rows:
        print(f"| {label} | {w} | {t:.2f} | {n / t:.0f} |")
    print()
    print(f"largest difference from PySODMetrics over MAE, mF, maxF, S, maxE: {diff:.1e}")


if __name__ == "__main__":
    main()
