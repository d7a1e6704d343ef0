"""Peak memory and time of the COCO9213 builder on a simulated COCO train2017: 118,287 images,
860,001 annotations with polygons, a JSON of about 450 MB (the real file's scale), and one small
JPEG linked as every image (the rule only checks that the image exists). The builder runs in a child
process, whose peak resident memory is read from the kernel. Prints a markdown table.

    python bench/bench_coco9213.py [--scale 1] [--keep DIR]

The default scale, 0.1, keeps `make bench` quick; docs/benchmarks.md has the full one."""
import argparse
import json
import os
import pathlib
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

H, W = 48, 64      # small images: the masks are cheap to write, the JSON is what is measured


def write_instances(path, img_dir, n_images, n_annotations, seed=0):
    """A COCO instances file written as a stream (never held in memory), and the image files."""
    import cv2
    rng = np.random.default_rng(seed)
    img_dir.mkdir(parents=True, exist_ok=True)
    jpeg = img_dir / "template.jpg"      # every image is a symbolic link to one small JPEG
    jpeg.write_bytes(cv2.imencode(".jpg", rng.integers(0, 255, (H, W, 3), np.uint8))[1].tobytes())
    with open(path, "w") as f:
        f.write('{"info": {}, "licenses": [], "images": [')
        for i in range(1, n_images + 1):
            name = f"{i:012d}.jpg"
            os.symlink(jpeg, img_dir / name)
            f.write(("," if i > 1 else "") + json.dumps({
                "license": 1, "file_name": name, "coco_url": f"http://images.example/{name}",
                "height": H, "width": W, "date_captured": "2013-11-14 16:28:13",
                "flickr_url": f"http://farm.example/{name}", "id": i}))
        f.write('], "annotations": [')
        # a pool of polygon texts reused across annotations: as much to parse, quick to write
        polygons = [json.dumps([rng.uniform(0, [W, H], (26, 2)).round(2).ravel().tolist()])
                    for _ in range(2000)]
        image_of = rng.integers(1, n_images + 1, n_annotations)
        cats = rng.integers(1, 81, n_annotations)
        areas = rng.uniform(0.02, 0.5, n_annotations) * H * W
        for a in range(n_annotations):
            f.write(f'{"," if a else ""}{{"segmentation": {polygons[a % len(polygons)]}, '
                    f'"area": {areas[a]:.2f}, "iscrowd": 0, "image_id": {image_of[a]}, '
                    f'"bbox": [0.0, 0.0, {W}.0, {H}.0], "category_id": {cats[a]}, "id": {a + 1}}}')
        f.write('], "categories": [' + ",".join(json.dumps(
            {"supercategory": "thing", "id": c, "name": f"class{c}"}) for c in range(1, 81)) + "]}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, default=0.1,
                    help="fraction of train2017's 118,287 images and 860,001 annotations (default 0.1)")
    ap.add_argument("--keep", help="folder for the simulated COCO (default: a temporary one)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = pathlib.Path(args.keep or tmp)
        ann = base / "annotations" / "instances_train2017.json"
        ann.parent.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        n_images, n_annotations = int(118287 * args.scale), int(860001 * args.scale)
        write_instances(ann, base / "train2017", n_images, n_annotations)
        made = time.perf_counter() - t
        t = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "data_prep", "coco9213", "--coco-root", str(base),
                            "--annotations", str(ann), "--out", str(base / "COCO9213")],
                           capture_output=True, text=True)
        took = time.perf_counter() - t
        if r.returncode != 0:
            sys.exit(r.stderr)
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 ** 2   # KiB -> GiB
        print(f"| simulated COCO | JSON | builder time | builder peak RSS |\n|---|---|---|---|\n"
              f"| {n_images} images, {n_annotations} annotations (written in {made:.0f} s) | "
              f"{ann.stat().st_size / 1e6:.0f} MB | {took:.0f} s | {peak:.2f} GiB |")


if __name__ == "__main__":
    main()
