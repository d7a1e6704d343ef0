"""Build our COCO9213 training set from a COCO download (instances_*.json and its images).

The paper trains on "9213 COCO images with masks"; later co-saliency work (GICD, ICNet) ships a
COCO9213 of 65 classes, but no rule that selects it was published. This module fixes ours, so
that anyone with a COCO download gets the same set:

1. For every image and category c, from the annotations' own `area` fields: A(c) = the summed
   area of c's instances, L(c) = the largest single instance of c, both as fractions of the
   image.
2. An image is a candidate of exactly one category: its dominant one (largest A(c); ties to the
   lower category id), provided L(c) >= min_fraction (0.10: one instance large enough to be
   the salient object) and no annotation of c in the image is a crowd region (iscrowd=1, whose
   objects are not separable). Images missing from the image folder are not candidates.
3. Groups: the n_groups (65) categories with the most candidates (ties to the lower id).
4. Images: n_images (9213) shared as evenly as possible: each group takes its candidates in the
   order of SHA-256 of the image id, q of them (all of them when it has fewer), q the largest
   count that keeps the total within n_images; what is left goes one image each to the groups
   with candidates to spare, in category-id order.
5. Mask: the union of all instances of the group's category in the image (pycocotools), 0/255.

Output (read by dataset "coco9213"): <out>/img/<category name>/<COCO file name>, the original
JPEG bytes, and <out>/gt/<category name>/<stem>.png, plus <out>/selection.json (the parameters
and the chosen image ids). A run can be resumed: files already there are kept.
"""
import collections
import hashlib
import json
import os
import pathlib
import re
import warnings

import numpy as np

from core.errors import UserError
from core.imageio import write_png
from core.inputs import check_input_file, check_input_folder, read_json_file
from core.outputs import atomic_write_bytes, atomic_write_text, lock_out_dir, prepare_out_dir
from core.progress import progress as progress_bar

from .datasets import INCOMPLETE, being_written, incomplete_mark

SELECTION = "selection.json"


class Instances:
    """What the rule needs of a COCO instances file, under pycocotools' names (imgs, cats,
    imgToAnns). At train2017's scale the file is 450 MB and its polygons alone would take
    2.5 GB as Python lists: every annotation is slimmed while the JSON is parsed, and keeps its
    segmentation only where `keep(annotation)` says so."""

    def __init__(self, data):
        self.imgs = {im["id"]: im for im in data["images"]}
        self.cats = {c["id"]: c for c in data["categories"]}
        self.imgToAnns = collections.defaultdict(list)
        for a in data["annotations"]:
            self.imgToAnns[a["image_id"]].append(a)


_IMAGE_KEYS = ("id", "file_name", "height", "width")
_ANN_KEYS = ("id", "image_id", "category_id", "area", "iscrowd")


def _load_coco(annotations, keep=None):
    """Instances of a COCO instances file; keep(annotation) -> bool: keep its segmentation."""
    path = pathlib.Path(check_input_file(annotations, "COCO annotation file"))

    def slim(d):   # called for every JSON object as soon as it is parsed, innermost first
        if "image_id" in d and "category_id" in d:
            out = {k: d[k] for k in _ANN_KEYS if k in d}
            if keep is not None and "segmentation" in d and keep(out):
                out["segmentation"] = d["segmentation"]
            return out
        if "file_name" in d and "height" in d:
            return {k: d[k] for k in _IMAGE_KEYS if k in d}
        return d

    data = read_json_file(path, "COCO annotation file", object_hook=slim)
    try:
        return Instances(data)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise UserError(f"{path}: not a COCO instances file ({type(e).__name__}: {e})") from None


def _segmentation_problem(segmentation, h, w):
    """What makes an annotation's segmentation unusable for an h x w image (None: nothing):
    pycocotools would raise a bare Exception or return a mask of another size."""
    if isinstance(segmentation, list):
        ok = segmentation and all(isinstance(p, list) and p and
                                  all(isinstance(v, (int, float)) for v in p) for p in segmentation)
        # pycocotools reads the list as polygons when the first has more than 4 numbers, as boxes
        # when it has 4
        ok = ok and (len(segmentation[0]) > 4 or all(len(p) == 4 for p in segmentation))
        return None if ok else "its polygons are not lists of x, y coordinates"
    if not isinstance(segmentation, dict) or not isinstance(segmentation.get("counts"), (list, str)):
        return "it is neither polygons nor an RLE with 'counts'"
    if list(segmentation.get("size", ())) != [h, w]:
        return f"its RLE size {segmentation.get('size')} is not the image's [{h}, {w}]"
    counts = segmentation["counts"]
    if isinstance(counts, list) and (not all(isinstance(n, int) and n >= 0 for n in counts) or sum(counts) != h * w):
        return f"its RLE counts do not cover the image's {h} x {w} pixels"
    return None


def _instance_mask(segmentation, h, w):
    """One annotation's mask (uint8 0/1) from its polygons or RLE (pycocotools.mask);
    check it with _segmentation_problem first."""
    from pycocotools import mask as mask_utils
    if isinstance(segmentation, list):                        # polygons
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, h, w))
    elif isinstance(segmentation.get("counts"), list):        # uncompressed RLE
        rle = mask_utils.frPyObjects(segmentation, h, w)
    else:
        rle = segmentation
    return mask_utils.decode(rle)


def _image_path(coco_root, split, file_name):
    """The image as COCO's own layouts have it: <coco_root>/<file> or <coco_root>/<split>/<file>."""
    p = coco_root / file_name
    if p.is_file() or not split:
        return p
    return coco_root / split / file_name


def candidates(coco, coco_root, split="", min_fraction=0.10):
    """Step 1-2 of the rule: category id -> sorted candidate image ids.

    coco: a pycocotools COCO; coco_root, split: where the images are (see _image_path);
    min_fraction: the smallest allowed largest instance, as a fraction of the image."""
    out = collections.defaultdict(list)
    for img_id in sorted(coco.imgs):
        anns = coco.imgToAnns.get(img_id, [])
        if not anns:
            continue
        info = coco.imgs[img_id]
        size = float(info["width"] * info["height"])
        total, largest, crowd = collections.Counter(), collections.Counter(), set()
        for a in anns:
            c = a["category_id"]
            total[c] += a["area"]
            largest[c] = max(largest[c], a["area"])
            if a.get("iscrowd", 0):
                crowd.add(c)
        c = min(total, key=lambda c: (-total[c], c))
        if c in crowd or largest[c] < min_fraction * size:
            continue
        if _image_path(coco_root, split, info["file_name"]).is_file():
            out[c].append(img_id)
    return dict(out)


def _rank(img_id):
    return hashlib.sha256(str(img_id).encode()).digest()


def allocate(counts, n_images):
    """Step 4's shares: counts {group: candidates} -> {group: images taken}, summing to
    min(n_images, total candidates), as even as the counts allow."""
    def total(q):
        return sum(min(c, q) for c in counts.values())
    lo, hi = 0, max(counts.values(), default=0)
    while lo < hi:                       # largest q with total(q) <= n_images
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if total(mid) <= n_images else (lo, mid - 1)
    take = {g: min(c, lo) for g, c in counts.items()}
    left = n_images - sum(take.values())
    for g in sorted(counts):
        if left <= 0:
            break
        if take[g] < counts[g]:
            take[g] += 1
            left -= 1
    return take


def select(coco, coco_root, split="", n_groups=65, n_images=9213, min_fraction=0.10):
    """The whole rule (steps 1-4): {category id: [image ids]}, image ids in SHA-256 order."""
    cand = candidates(coco, coco_root, split, min_fraction)
    chosen = sorted(cand, key=lambda c: (-len(cand[c]), c))[:n_groups]
    take = allocate({c: len(cand[c]) for c in chosen}, n_images)
    return {c: sorted(cand[c], key=_rank)[:take[c]] for c in sorted(chosen)}


def build_coco9213(coco_root, annotations, out_dir, n_groups=65, n_images=9213,
                   min_fraction=0.10, progress=True):
    """Select (rule in the module docstring) and write our COCO9213.

    coco_root: the folder with the images (the COCO file names directly in it, or in a
    sub-folder named after the annotation file's split, e.g. train2017); annotations: the
    instances_<split>.json file; out_dir: where to write; n_groups, n_images, min_fraction: the
    rule's parameters; progress: show a progress bar. Returns the selection dict that is also
    written to <out_dir>/selection.json."""
    coco_root = pathlib.Path(os.path.expanduser(str(coco_root)))
    out_dir = pathlib.Path(os.path.expanduser(str(out_dir)))
    check_input_folder(coco_root, "COCO image folder")
    for option, value, ok, valid in (("--groups", n_groups, n_groups >= 1, ">= 1"),
                                     ("--images", n_images, n_images >= 1, ">= 1"),
                                     ("--min-fraction", min_fraction, 0 <= min_fraction <= 1, "[0, 1]")):
        if not ok:      # nan fails the range test too
            raise UserError(f"{option} {value} makes no sense; valid: {valid}")
    params = {"annotations": pathlib.Path(annotations).name, "n_groups": n_groups,
              "n_images": n_images, "min_fraction": min_fraction}
    prepare_out_dir(out_dir, force=True)      # before the annotations, the long part, are read
    _refuse_another_build(out_dir, params)
    m = re.match(r"instances_(.+)\.json$", pathlib.Path(annotations).name)
    split = m.group(1) if m else ""
    coco = _load_coco(annotations)
    chosen = select(coco, coco_root, split, n_groups, n_images, min_fraction)
    names = {c: coco.cats[c]["name"].replace("/", "_") for c in chosen}
    if not chosen:
        raise UserError(f"{annotations}: no image qualifies (are the images in {coco_root}?)")
    # a second pass keeps the polygons of the chosen images' chosen category only
    wanted = {(i, c) for c in chosen for i in chosen[c]}
    del coco
    coco = _load_coco(annotations, keep=lambda a: (a["image_id"], a["category_id"]) in wanted)

    work = [(c, i) for c in chosen for i in chosen[c]]
    with being_written(out_dir, "python -m data_prep coco9213", params):   # readers refuse it until done
        for c, img_id in progress_bar(work, desc="coco9213: writing", unit="img", enabled=progress):
            _write_item(coco, img_id, c, _image_path(coco_root, split, coco.imgs[img_id]["file_name"]),
                        out_dir, names[c], annotations)
        selection = {"parameters": params,
                     "groups": {names[c]: {"category_id": c, "image_ids": sorted(chosen[c])}
                                for c in chosen},
                     "images": len(work)}
        atomic_write_text(out_dir / SELECTION, json.dumps(selection, indent=1) + "\n")
    return selection


def _refuse_another_build(out_dir, params):
    """A folder holding a COCO9213 of other parameters, finished (selection.json) or stopped
    midway (the readers' mark), is not built over."""
    mark = incomplete_mark(out_dir)
    record = out_dir / (SELECTION if mark is None else INCOMPLETE)
    if mark is None and not record.is_file():
        return
    try:
        old = (mark if mark is not None else read_json_file(record, "selection")).get("parameters")
    except (UserError, AttributeError):
        old = None
    if old != params:
        raise UserError(f"{record}: {out_dir} holds {'part of ' if mark is not None else ''}a COCO9213 "
                        f"built with other parameters ({old}); remove it or choose another --out")


def _write_item(coco, img_id, category, src, out_dir, group, annotations):
    """One chosen image, copied, and its mask: the union of that category's instances."""
    dst = out_dir / "img" / group / src.name
    gt = out_dir / "gt" / group / f"{src.stem}.png"
    if not dst.is_file():
        atomic_write_bytes(dst, src.read_bytes())
    if gt.is_file():
        return
    info = coco.imgs[img_id]
    h, w = info["height"], info["width"]
    mask = np.zeros((h, w), np.uint8)
    with warnings.catch_warnings():   # pycocotools' numpy-2 copy= deprecation notice
        warnings.simplefilter("ignore", DeprecationWarning)
        for a in coco.imgToAnns[img_id]:
            if a["category_id"] == category and "segmentation" in a:
                problem = _segmentation_problem(a["segmentation"], h, w)
                if not problem:
                    try:
                        mask |= _instance_mask(a["segmentation"], h, w).astype(np.uint8)
                    except ValueError as e:      # a compressed RLE that does not decode
                        problem = str(e)
                if problem:
                    raise UserError(f"{annotations}: annotation {a.get('id')} of image {img_id}: "
                                    f"segmentation unusable ({problem})")
    write_png(gt, mask * 255)


# ---------------------------------------------------------------- command line
def register(subparsers):
    """Add the `coco9213` command to the data_prep command line."""
    p = subparsers.add_parser("coco9213", help="build our COCO9213 from a COCO download",
                              description="Select COCO images whose dominant category is large "
                              "and not a crowd, 65 categories, 9213 images, and write them with "
                              "their category masks (rule: data_prep/coco9213.py).")
    p.add_argument("--coco-root", required=True,
                   help="COCO image folder (e.g. coco/train2017, or coco/ holding train2017/)")
    p.add_argument("--annotations", required=True, help="instances_<split>.json")
    p.add_argument("--out", required=True, help="output folder (img/<class>, gt/<class>)")
    p.add_argument("--groups", type=int, default=65, help="number of categories (default 65)")
    p.add_argument("--images", type=int, default=9213, help="number of images (default 9213)")
    p.add_argument("--min-fraction", type=float, default=0.10,
                   help="smallest largest-instance area, fraction of the image (default 0.10)")
    p.set_defaults(func=_cmd_coco9213)


def _cmd_coco9213(args):
    from .datasets import load_dataset
    lock_out_dir(args.out)      # one writer at a time, from the check of its records to the end
    sel = build_coco9213(args.coco_root, args.annotations, args.out, args.groups, args.images,
                         args.min_fraction)
    print(f"{args.out}: {sel['images']} images in {len(sel['groups'])} groups")
    print(load_dataset("coco9213", args.out).summary())
