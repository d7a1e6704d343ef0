"""Speed of the CSHS baseline: images per second through `baselines.cshs.run` (read, working
resolution, hierarchy and its two cuts, cues, group similarity, resize back, PNG write) with 1
and 2 worker processes, and where one image's time goes (one process, the same images).

Uses the real iCoseg development subset when it is there (ICOSEG_DEV), otherwise the synthetic
set of bench_cbcs. Prints markdown tables; the CPU seconds (this process and its workers) tell how
much of a slow figure is other jobs sharing the cores. The goal: at least 2 images/s on 2 cores.
"""
import pathlib
import tempfile
import time

from baselines import cshs
from bench_cbcs import benchmark_dataset, machine, timed
from core.imageio import read_image


def stage_seconds(ds):
    """Seconds spent in each step over all images of `ds`, one process."""
    totals = dict.fromkeys(("read", "working image", "hierarchy + cuts", "fine-level cues",
                            "global similarity"), 0.0)
    for items in ds.groups.values():
        t = time.perf_counter()
        images = [read_image(ds.root / it.image) for it in items]
        totals["read"] += time.perf_counter() - t
        cues = []
        for im in images:
            t = time.perf_counter()
            lab = cshs.working_image(im)
            totals["working image"] += time.perf_counter() - t
            t = time.perf_counter()
            fine, coarse, parent = cshs.segmentations(lab)
            totals["hierarchy + cuts"] += time.perf_counter() - t
            t = time.perf_counter()
            hist = cshs.region_histograms(fine, cshs.quantise(lab))
            areas, centroids = cshs.region_geometry(fine)
            cshs.intra_saliency(hist, areas, centroids)
            cshs.object_prior(coarse)
            totals["fine-level cues"] += time.perf_counter() - t
            cues.append(hist)
        t = time.perf_counter()
        cshs.global_similarity(cues)
        totals["global similarity"] += time.perf_counter() - t
    return totals


def main():
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        ds, source = benchmark_dataset(tmp / "data")
        n = len(ds)
        rows = []
        for workers in (1, 2):
            dt, cpu = timed(cshs.run, ds, tmp / f"out-{workers}", workers=workers, progress=False)
            rows.append((workers, dt, n / dt, cpu))
        stages = stage_seconds(ds)
    print(f"CSHS baseline on {source}: {len(ds.groups)} groups, {n} images; {machine()}")
    print()
    print("| workers | seconds | images/s | CPU seconds (all processes) |")
    print("|---|---|---|---|")
    for workers, dt, ips, cpu_s in rows:
        print(f"| {workers} | {dt:.2f} | {ips:.1f} | {cpu_s:.2f} |")
    print()
    print("| step (one process) | ms per image |")
    print("|---|---|")
    for step, s in stages.items():
        print(f"| {step} | {1000 * s / n:.0f} |")


if __name__ == "__main__":
    main()
