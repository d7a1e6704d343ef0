"""MSRC-v2: the raw release (colour-coded class ground truths) turned into the co-saliency layout.

`python -m data_prep msrc-convert --root <release>` writes one binary mask per image of its
group's object class (the rule: data_prep.datasets' docstring, "MSRC-v2 raw"); the `msrc-raw`
reader then reads the converted layout."""
import collections
import contextlib
import json
import os
import pathlib

import numpy as np

from core.errors import UserError
from core.imageio import read_image, write_png
from core.outputs import atomic_write_bytes, atomic_write_text, prepare_out_dir, staged_dir
from core.progress import progress as progress_bar

from .datasets import (INCOMPLETE, NO_IMAGE, NO_MASK, OUTSIDE, UNREADABLE, Dataset, Item, _find_dir,
                       _match_masks, _scan_files, mark_incomplete, read_paired, refuse_incomplete)

# The MSRC-v2 ground-truth colour table (RGB); horse and mountain are not among MSRC-v2's 21
# classes and are treated like void.
MSRC_CLASSES = {
    (0, 0, 0): "void", (128, 0, 0): "building", (0, 128, 0): "grass", (128, 128, 0): "tree",
    (0, 0, 128): "cow", (128, 0, 128): "horse", (0, 128, 128): "sheep", (128, 128, 128): "sky",
    (64, 0, 0): "mountain", (192, 0, 0): "aeroplane", (64, 128, 0): "water",
    (192, 128, 0): "face", (64, 0, 128): "car", (192, 0, 128): "bicycle",
    (64, 128, 128): "flower", (192, 128, 128): "sign", (0, 64, 0): "bird", (128, 64, 0): "book",
    (0, 192, 0): "chair", (128, 64, 128): "road", (0, 192, 128): "cat", (128, 192, 128): "dog",
    (64, 64, 0): "body", (192, 64, 0): "boat",
}
IGNORED_CLASSES = frozenset({"void", "horse", "mountain"})
BACKGROUND_CLASSES = frozenset({"grass", "tree", "sky", "water", "road"})
MSRC_CONVERTED = "cosal"              # default output folder of convert_msrc_raw, under the root
MSRC_MARKER = "msrc_conversion.json"  # written last: a conversion is complete with it and no INCOMPLETE mark


def msrc_labels(gt_bgr):
    """Class names -> boolean masks of one colour-coded ground truth (uint8 BGR, as cv2 reads).
    Returns (dict name -> mask, number of pixels whose colour is not in MSRC_CLASSES)."""
    code = (gt_bgr[..., 2].astype(np.int32) << 16) | (gt_bgr[..., 1].astype(np.int32) << 8) \
        | gt_bgr[..., 0].astype(np.int32)
    out = {}
    known = np.zeros(code.shape, bool)
    for (r, g, b), name in MSRC_CLASSES.items():
        m = code == ((r << 16) | (g << 8) | b)
        known |= m
        if name not in IGNORED_CLASSES and m.any():
            out[name] = m
    return out, int((~known).sum())


def _read_bgr(path):
    try:
        return read_image(path)
    except UserError:
        return None


def convert_msrc_raw(root, out_dir=None, progress=True):
    """Write the co-saliency layout of a raw MSRC-v2 release (rule in the module docstring).

    root: the release folder (Images/*.bmp, GroundTruth/*_GT.bmp). out_dir: where to write
    images/<group>/<name>.bmp (copied unchanged) and ground_truth/<group>/<name>.png (0/255);
    default <root>/cosal, where the 'msrc-raw' reader looks. progress: show a progress bar.
    Returns (Dataset of the written layout, {group: class}). The files replace an earlier
    conversion's as a set (its groups that this one lacks go), so a failed conversion leaves the
    earlier one whole; from the swap until the marker file is written the folder bears the
    readers' mark (data_prep.datasets.INCOMPLETE), so one interrupted then is refused by every
    reader until a rerun finishes, never taken for a complete one."""
    root = pathlib.Path(os.path.expanduser(str(root)))
    out_dir = pathlib.Path(out_dir) if out_dir is not None else root / MSRC_CONVERTED
    img_dir, gt_dir = _find_dir(root, ("images",)), _find_dir(root, ("groundtruth",))
    if img_dir is None or gt_dir is None:
        raise UserError(f"{root}: not a raw MSRC-v2 release (expected Images/*.bmp and "
                        "GroundTruth/*_GT.bmp)")
    _check_out(root, out_dir, (img_dir, gt_dir))
    issues = collections.Counter()
    images = _scan_files(img_dir, issues)
    gts = _match_masks(_scan_files(gt_dir, issues, prefer_lossless=True), images, issues)
    issues[NO_IMAGE] += sum(1 for s in gts if s not in images)
    by_group = collections.defaultdict(list)
    for stem in sorted(images):
        prefix = stem.split("_", 1)[0]
        if not prefix.isdigit():
            issues[OUTSIDE] += 1
            continue
        if stem not in gts:
            issues[NO_MASK] += 1
            continue
        by_group[int(prefix)].append(stem)

    # Pass 1: pixels per class and image, and each group's object class. Ground truths are
    # decoded again in pass 2 rather than kept: 591 images x their classes would not be small.
    pixels, classes = {}, {}
    work = [(g, s) for g in sorted(by_group) for s in by_group[g]]
    for g, stem in progress_bar(work, desc="msrc: reading ground truths", unit="img", enabled=progress):
        gt = _read_bgr(gts[stem][0])
        if gt is None:
            issues[UNREADABLE] += 1
            continue
        lab, unknown = msrc_labels(gt)
        if unknown:
            issues["ground truths with unknown colours"] += 1
        pixels[stem] = {c: int(m.sum()) for c, m in lab.items()}
    for g in sorted(by_group):
        counts = collections.Counter()
        for stem in by_group[g]:
            for cls, n in pixels.get(stem, {}).items():
                if cls not in BACKGROUND_CLASSES:
                    counts[cls] += n
        if counts:   # most pixels; ties to the name first in order
            classes[g] = min(counts, key=lambda c: (-counts[c], c))
        else:
            issues["groups without an object class"] += 1

    # Pass 2: write images and masks, staged: they replace an earlier conversion as a set, its
    # groups that this one lacks included (core.outputs.staged_dir).
    written = {}
    created = not out_dir.exists()
    mark = out_dir / INCOMPLETE
    marked_before = os.path.lexists(mark)       # an earlier conversion that stopped midway
    try:
        with staged_dir(out_dir, owned=_converted_files(out_dir)) as stage:
            for g, stem in progress_bar(work, desc="msrc: writing", unit="img", enabled=progress):
                if g not in classes or stem not in pixels:
                    continue
                if not pixels[stem].get(classes[g]):
                    issues["images without the group's object"] += 1
                    continue
                gt = _read_bgr(gts[stem][0])
                if gt is None:      # readable in pass 1, not now
                    issues[UNREADABLE] += 1
                    continue
                mask = msrc_labels(gt)[0][classes[g]]
                group = f"{g:02d}_{classes[g]}"
                src = images[stem][0]
                atomic_write_bytes(os.path.join(stage, "images", group, src.name), src.read_bytes())
                write_png(os.path.join(stage, "ground_truth", group, f"{stem}.png"), mask.astype(np.uint8) * 255)
                written.setdefault(group, []).append(stem)
            if not written:     # the marker would call an empty folder a complete conversion
                found = ", ".join(f"{k}: {v}" for k, v in sorted(issues.items()) if v) or "no images"
                raise UserError(f"{root}: no image of the release could be converted ({found})")
            # From the swap until the marker is rewritten the folder is not one whole conversion
            # (a Ctrl-C held back through the swap lands right after it): readers refuse it.
            mark_incomplete(out_dir, "python -m data_prep msrc-convert")
    except UserError:
        if os.path.lexists(mark) and not marked_before:    # the swap failed and put the earlier set back
            mark.unlink()
            if created:
                with contextlib.suppress(OSError):
                    out_dir.rmdir()
        raise
    names = {f"{g:02d}_{c}": c for g, c in classes.items()}
    atomic_write_text(out_dir / MSRC_MARKER, json.dumps({
        "source": str(root), "groups": names, "images": {g: len(v) for g, v in written.items()},
        "issues": dict(sorted(issues.items())),
        "rule": "object class = most frequent non-background, non-void class of the group"},
        indent=1, ensure_ascii=False) + "\n")
    mark.unlink()
    ds = read_paired("msrc-raw", out_dir)
    ds.issues.update(issues)
    return ds, names


def _converted_files(out_dir):
    """The files of an earlier conversion in out_dir, as paths relative to it."""
    return [os.path.relpath(os.path.join(d, f), out_dir) for sub in ("images", "ground_truth")
            for d, _, files in os.walk(out_dir / sub) for f in files]


def _check_out(root, out_dir, release_dirs):
    """The output folder, before the work: not the release itself, a folder above it or one of
    its own folders (the converted images/ would sit beside, or inside, its Images/), and new,
    empty or an earlier conversion's."""
    out, top = out_dir.resolve(), root.resolve()      # a symlink to the release is the release
    if out == top or top.is_relative_to(out) or any(out.is_relative_to(d.resolve()) for d in release_dirs):
        raise UserError(f"{out_dir}: is the release's own folder {root} or lies in or above it; "
                        f"choose another --out (default: {root / MSRC_CONVERTED})")
    held = {p.name for p in out_dir.iterdir() if not p.name.startswith(".")} if out_dir.is_dir() else set()
    if held and MSRC_MARKER not in held and not held <= {"images", "ground_truth"}:
        raise UserError(f"{out_dir}: holds other files than a conversion of MSRC-v2; choose another --out")
    prepare_out_dir(out_dir, force=True)


def read_msrc_raw(root):
    """The raw MSRC-v2 release through its converted co-saliency layout at <root>/cosal.
    Item paths stay relative to root (cosal/images/...)."""
    conv = root / MSRC_CONVERTED
    refuse_incomplete(conv)
    if not (conv / MSRC_MARKER).is_file():
        raise UserError(f"{root}: no converted MSRC-v2 layout at {conv}; run "
                        f"`python -m data_prep msrc-convert --root {root}` first")
    ds = read_paired("msrc-raw", conv)
    groups = {g: [Item(it.group, it.name, f"{MSRC_CONVERTED}/{it.image}",
                       f"{MSRC_CONVERTED}/{it.mask}" if it.mask else None) for it in items]
              for g, items in ds.groups.items()}
    return Dataset("msrc-raw", root, groups, ds.issues)


# ---------------------------------------------------------------- command line
def register(subparsers):
    """Add the `msrc-convert` command to the data_prep command line."""
    p = subparsers.add_parser("msrc-convert", help="write the co-saliency layout of a raw "
                              "MSRC-v2 release (read as dataset 'msrc-raw')",
                              description="Turn the colour-coded class ground truths of the raw "
                              "MSRC-v2 release into one binary mask per image of its group's "
                              "object class.")
    p.add_argument("--root", required=True, help="the raw release (Images/, GroundTruth/)")
    p.add_argument("--out", help=f"output folder (default: <root>/{MSRC_CONVERTED}, where the "
                   "'msrc-raw' reader looks)")
    p.set_defaults(func=_cmd_msrc_convert)


def _cmd_msrc_convert(args):
    root = pathlib.Path(os.path.expanduser(args.root))
    if not root.is_dir():
        raise UserError(f"{root}: folder not found")
    ds, classes = convert_msrc_raw(root, args.out)
    for g in sorted(classes):
        print(f"{g}: {len(ds.groups.get(g, []))} images")
    print(ds.summary())
