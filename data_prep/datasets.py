"""Dataset readers: every benchmark (and a user's folder) seen through one interface.

    ds = load_dataset("icoseg", "/path/to/iCoseg")
    for item in ds.items(): item.group, item.name, item.image, item.mask

`Item.image` and `Item.mask` are paths relative to `Dataset.root`; `mask` is None for an image
without ground truth. Predicted maps for an item live at `<out>/<group>/<name>.png`, the layout
that prediction, the baselines and the evaluation share (see `prediction_path`).

READERS maps each dataset name to its reader; readers are filled in below this interface.
"""
import collections
import dataclasses
import os
import pathlib
from typing import Optional

from gwd.errors import UserError


@dataclasses.dataclass(frozen=True)
class Item:
    group: str
    name: str             # image file stem, unique within its group
    image: str            # relative to the dataset root
    mask: Optional[str]   # relative to the dataset root; None: no ground truth


@dataclasses.dataclass
class Dataset:
    name: str
    root: pathlib.Path
    groups: "dict[str, list[Item]]"   # group name -> items, both sorted
    issues: collections.Counter = dataclasses.field(default_factory=collections.Counter)

    def items(self):
        for g in self.groups.values():
            yield from g

    def __len__(self):
        return sum(len(g) for g in self.groups.values())

    def summary(self):
        """One line: what was read and every quirk that was skipped or repaired, counted."""
        n_masks = sum(1 for it in self.items() if it.mask is not None)
        s = f"{self.name}: {len(self.groups)} groups, {len(self)} images, {n_masks} masks"
        if self.issues:
            s += " (" + ", ".join(f"{k}: {v}" for k, v in sorted(self.issues.items())) + ")"
        return s


def prediction_path(out_dir, item):
    """Where a method's saliency map for `item` is stored (8-bit PNG)."""
    return pathlib.Path(out_dir) / item.group / f"{item.name}.png"


READERS = {}   # name -> callable(root: pathlib.Path) -> Dataset


def dataset_names():
    return sorted(READERS)


def load_dataset(name, root):
    """Read dataset `name` at `root`. A dataset with nothing usable is a UserError."""
    key = name.lower()
    if key not in READERS:
        raise UserError(f"unknown dataset '{name}'; known: {', '.join(dataset_names())}")
    root = pathlib.Path(os.path.expanduser(str(root)))
    if not root.is_dir():
        raise UserError(f"{root}: dataset folder not found (dataset '{name}')")
    ds = READERS[key](root)
    if len(ds) == 0:
        raise UserError(f"{root}: no usable images found for dataset '{name}' ({ds.summary()})")
    return ds


# ================================================================ readers
__doc__ += """
Readers (`name`: the layout expected under the root you pass)

    icoseg      images/<group>/*.jpg            ground_truth/<group>/<stem>.png   (official release)
    icoseg5     as icoseg, 5 images per group (our fixed subset, rule below)
    msrc        images/<group>/*.bmp|jpg        ground_truth/<group>/<stem>.png   (co-saliency)
    msrc-raw    the raw MSRC-v2 release: Images/*.bmp, GroundTruth/*_GT.bmp; read from the
                co-saliency layout that `python -m data_prep msrc-convert` writes to <root>/cosal
    cosal2015, coca, cosod3k
                Image/<group>/*.jpg             GroundTruth/<group>/<stem>.png
    synthetic   <split>/Image/<group>/*.png     <split>/GroundTruth/<group>/<stem>.png
                (pass the split folder, <root>/train or <root>/test, as the root)
    coco9213    img/<class>/*.jpg               gt/<class>/<stem>.png
    folder      <root>/<group>/* (a flat folder is one group named after it); no masks

Every paired reader accepts any of these folder names (compared case-insensitively), so each
benchmark can be read in whichever of its common packagings the user has: images in one of
IMAGE_DIRS, masks in one of MASK_DIRS. Masks are matched to images by file stem (also
`<stem>_GT`). The synthetic benchmark is read per split: pass <root>/train or <root>/test.

iCoseg-5 (`icoseg5`): the paper evaluates on the official 5-images-per-group subsets, whose lists
are not available offline, so we fix our own: in every group, the images that have a mask are
ranked by SHA-256 of "<group>/<image stem>" and the 5 first are kept (all of them when a group has
fewer than 5 masked images). The rule depends on nothing but the names, so the subset is the same
on every machine and for every copy of iCoseg.

MSRC-v2 raw (`convert_msrc_raw`): images are grouped by the number before the first '_' of their
name (the 20 image classes of the release). Ground truths are colour-coded with the 21-class
MSRC-v2 palette (MSRC_CLASSES); void, and horse and mountain (dropped from MSRC-v2's 21 classes),
are ignored. The group's object class is the class with the most pixels over the group's ground
truths among the non-background classes (background: BACKGROUND_CLASSES, the "stuff" classes).
Each image's mask is its pixels of that class; an image without any such pixel has no common
object and is left out (counted). Groups are named "<number, 2 digits>_<class>", e.g. "05_cow".

Quirks are never fatal; each is counted in `Dataset.issues` and shown by `Dataset.summary()`:
non-image files (Thumbs.db, .DS_Store, AppleDouble "._*" files), images without a mask, masks
without an image, 1-bit and palette PNG masks (read_mask decodes them), masks stored as JPEG,
masks whose size differs from their image (the consumer resizes), empty and unreadable files,
contents that do not match the extension, duplicate stems, nested folders, empty groups.

Cost of the checks: a reader opens every file once and reads its header (a few hundred bytes):
that catches empty files, files that are not images at all (an HTML error page saved as .jpg)
and headers cut short, and gives every JPEG/PNG/BMP size for the mask-size check, without
decoding pixels. `verify_dataset` (CLI: --verify) decodes every file completely and also drops
files whose data is cut short (a JPEG without its end marker after the last scan, a PNG without
IEND), which the header check cannot see.
"""

import functools
import hashlib
import json
import struct

import cv2
import numpy as np

from gwd.imageio import atomic_write_bytes, atomic_write_text, is_image_file, read_image, write_png

IMAGE_DIRS = ("images", "image", "img", "imgs")
MASK_DIRS = ("ground_truth", "groundtruth", "gt", "gts", "binary", "masks", "mask")

# Issue names (the keys of Dataset.issues), one place so that readers and tests agree.
NON_IMAGE = "non-image files skipped"
EMPTY_FILE = "empty files"
UNREADABLE = "unreadable files"
TRUNCATED = "truncated files"
WRONG_EXT = "content does not match extension"
NO_MASK = "images without mask"
NO_IMAGE = "masks without image"
JPEG_MASK = "masks stored as JPEG"
ONE_BIT = "1-bit masks"
PALETTE = "palette masks"
SIZE_DIFF = "mask size differs from image"
DUPLICATE = "duplicate names"
NESTED = "nested folders skipped"
OUTSIDE = "images outside group folders"
EMPTY_GROUP = "empty groups"
NO_MASK_DIR = "mask folder missing"


# ---------------------------------------------------------------- cheap header probe
@dataclasses.dataclass(frozen=True)
class FileInfo:
    """What a file's header says. width/height are None where the format is not parsed."""
    kind: str                    # jpeg, png, bmp, tiff, webp, pnm
    width: Optional[int] = None
    height: Optional[int] = None
    bits: Optional[int] = None   # PNG bit depth per sample, BMP bits per pixel
    palette: bool = False        # PNG colour type 3


_EXT_KIND = {".jpg": "jpeg", ".jpeg": "jpeg", ".png": "png", ".bmp": "bmp", ".tif": "tiff",
             ".tiff": "tiff", ".webp": "webp", ".ppm": "pnm", ".pgm": "pnm"}
# JPEG start-of-frame markers (C4 DHT, C8 JPG, CC DAC are not frames)
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_frame(f):
    """(width, height) from the first SOF segment, walking the marker segments; None if the
    header ends or breaks before one."""
    f.seek(2)
    while True:
        b = f.read(1)
        if b != b"\xff":
            return None
        m = f.read(1)
        while m == b"\xff":          # fill bytes
            m = f.read(1)
        if not m:
            return None
        m = m[0]
        if m == 0x01 or 0xD0 <= m <= 0xD8:   # markers without a length
            continue
        if m in (0xD9, 0xDA):                # image data or end before any frame header
            return None
        seg = f.read(2)
        if len(seg) < 2:
            return None
        n = struct.unpack(">H", seg)[0]
        if m in _SOF:
            d = f.read(5)
            if len(d) < 5:
                return None
            _, h, w = struct.unpack(">BHH", d)
            return w, h
        if n < 2:
            return None
        f.seek(n - 2, 1)


def probe_image(path):
    """Check a file's header without decoding its pixels.

    path: the file. Returns (FileInfo, None) for an image, or (None, issue) where issue is
    EMPTY_FILE or UNREADABLE (not an image, or a header cut short)."""
    try:
        with open(path, "rb") as f:
            head = f.read(32)
            if not head:
                return None, EMPTY_FILE
            if head[:3] == b"\xff\xd8\xff":
                wh = _jpeg_frame(f)
                if wh is None:
                    return None, UNREADABLE
                w, h = wh
                return FileInfo("jpeg", w or None, h or None), None
    except OSError:
        return None, UNREADABLE
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        if len(head) < 26 or head[12:16] != b"IHDR":
            return None, UNREADABLE
        w, h = struct.unpack(">II", head[16:24])
        return FileInfo("png", w, h, bits=head[24], palette=head[25] == 3), None
    if head[:2] == b"BM":
        if len(head) < 30:
            return None, UNREADABLE
        dib = struct.unpack("<I", head[14:18])[0]
        if dib == 12:   # OS/2 BITMAPCOREHEADER
            w, h, _, bpp = struct.unpack("<HHHH", head[18:26])
        else:
            w, h = struct.unpack("<ii", head[18:26])
            bpp = struct.unpack("<H", head[28:30])[0]
        return FileInfo("bmp", abs(w), abs(h), bits=bpp), None
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return FileInfo("tiff"), None
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return FileInfo("webp"), None
    if head[:1] == b"P" and head[1:2] in b"1234567" and len(head) > 2:
        return FileInfo("pnm"), None
    return None, UNREADABLE


# ---------------------------------------------------------------- folder scanning
def _subdirs(folder, issues=None):
    """Sorted visible sub-folders; hidden ones and zip leftovers (__MACOSX) are skipped."""
    out = []
    for p in sorted(folder.iterdir()):
        if p.is_dir():
            if p.name.startswith(".") or p.name == "__MACOSX":
                if issues is not None:
                    issues[NESTED] += 1
                continue
            out.append(p)
    return out


def _scan_files(folder, issues, prefer_lossless=False):
    """stem -> (path, FileInfo) for the readable images directly in `folder`; everything else is
    counted in `issues`. Two files with one stem: the first in name order is kept, or, for
    masks (prefer_lossless), a PNG/BMP over a JPEG."""
    found = {}
    for p in sorted(folder.iterdir()):
        if p.is_dir():
            issues[NESTED] += 1
            continue
        if p.name.startswith(".") or not is_image_file(p.name):
            issues[NON_IMAGE] += 1
            continue
        info, problem = probe_image(p)
        if problem:
            issues[problem] += 1
            continue
        if _EXT_KIND.get(p.suffix.lower()) != info.kind:
            issues[WRONG_EXT] += 1
        if p.stem in found:
            issues[DUPLICATE] += 1
            if not (prefer_lossless and found[p.stem][1].kind == "jpeg" and info.kind != "jpeg"):
                continue
        found[p.stem] = (p, info)
    return found


def _find_dir(root, names):
    """The first of `names` (case-insensitive) that is a folder of root, or None."""
    by_lower = {}
    for p in _subdirs(root):
        by_lower.setdefault(p.name.lower(), p)
    return next((by_lower[n] for n in names if n in by_lower), None)


def _match_masks(masks, stems, issues):
    """Re-key masks named <stem>_GT (any case) to <stem> when only that matches an image; an
    exact stem wins over a _GT name (the loser counts as a duplicate)."""
    out = {s: v for s, v in masks.items() if s in stems}
    for s, v in masks.items():
        if s in stems:
            continue
        key = s[:-3] if s[-3:].lower() == "_gt" and s[:-3] in stems else s
        if key in out:
            issues[DUPLICATE] += 1
            continue
        out[key] = v
    return out


def _rel(root, p):
    return p.relative_to(root).as_posix()


LAYOUTS = {
    "icoseg": "<root>/images/<group>/<image>.jpg with masks <root>/ground_truth/<group>/<stem>.png",
    "msrc": "<root>/images/<group>/<image> with masks <root>/ground_truth/<group>/<stem>.png",
    "cosal2015": "<root>/Image/<group>/<image>.jpg with masks "
                 "<root>/GroundTruth/<group>/<stem>.png",
    "coco9213": "<root>/img/<class>/<image>.jpg with masks <root>/gt/<class>/<stem>.png",
}
for _n in ("coca", "cosod3k"):
    LAYOUTS[_n] = LAYOUTS["cosal2015"]
LAYOUTS["synthetic"] = ("<root>/Image/<group>/<image>.png with masks "
                        "<root>/GroundTruth/<group>/<stem>.png, root being a split folder")
LAYOUTS["icoseg5"] = LAYOUTS["icoseg"]


def read_paired(name, root, select=None):
    """A dataset laid out as <image folder>/<group>/<image> and <mask folder>/<group>/<mask>.

    name: the dataset name (for Dataset.name and messages); root: pathlib.Path of the dataset;
    select: optional callable(group, items) -> the items to keep (a subset), applied before the
    masks' quirks are counted so the summary describes what is kept. The image folder is the
    first of IMAGE_DIRS under root, the mask folder the first of MASK_DIRS; without a mask
    folder every image is read without mask (counted)."""
    issues = collections.Counter()
    layout = LAYOUTS.get(name, LAYOUTS["cosal2015"])
    img_dir = _find_dir(root, IMAGE_DIRS)
    if img_dir is None:
        hint = ""
        if name == "synthetic" and any((root / s).is_dir() for s in ("train", "test")):
            hint = f"; this looks like the synthetic root: pass {root / 'test'} or {root / 'train'}"
        raise UserError(f"{root}: no image folder ({'/, '.join(IMAGE_DIRS)}/) for dataset "
                        f"'{name}'; expected {layout}{hint}")
    mask_dir = _find_dir(root, MASK_DIRS)
    if mask_dir is None:
        issues[NO_MASK_DIR] += 1
    group_dirs = _subdirs(img_dir, issues)
    loose = [p for p in img_dir.iterdir() if p.is_file()]
    n_loose_images = sum(1 for p in loose if is_image_file(p.name) and not p.name.startswith("."))
    issues[OUTSIDE] += n_loose_images
    issues[NON_IMAGE] += len(loose) - n_loose_images
    if not group_dirs and n_loose_images:
        hint = (" (the raw MSRC-v2 release: run `python -m data_prep msrc-convert --root "
                f"{root}` and read it as dataset 'msrc-raw')"
                if (root / "GroundTruth").is_dir() and name.startswith("msrc") else "")
        raise UserError(f"{img_dir}: images are not in group sub-folders; expected {layout}{hint}")

    groups = {}
    for gdir in group_dirs:
        images = _scan_files(gdir, issues)
        masks = {}
        if mask_dir is not None and (mask_dir / gdir.name).is_dir():
            masks = _match_masks(_scan_files(mask_dir / gdir.name, issues, prefer_lossless=True),
                                 images, issues)
        infos, items = {}, []
        for stem in sorted(images):
            ipath, iinfo = images[stem]
            mpath, minfo = masks.pop(stem, (None, None))
            if mpath is None:
                issues[NO_MASK] += 1
            items.append(Item(gdir.name, stem, _rel(root, ipath),
                              None if mpath is None else _rel(root, mpath)))
            infos[stem] = (iinfo, minfo)
        issues[NO_IMAGE] += len(masks)
        if select is not None:
            items = select(gdir.name, items)
        for it in items:
            iinfo, minfo = infos[it.name]
            if minfo is None:
                continue
            issues[JPEG_MASK] += minfo.kind == "jpeg"
            issues[ONE_BIT] += minfo.bits == 1
            issues[PALETTE] += minfo.palette
            issues[SIZE_DIFF] += None not in (iinfo.width, minfo.width) and \
                (iinfo.width, iinfo.height) != (minfo.width, minfo.height)
        if items:
            groups[gdir.name] = items
        else:
            issues[EMPTY_GROUP] += 1
    if mask_dir is not None:   # mask groups that have no image group at all
        names = {g.name for g in group_dirs}
        for mdir in _subdirs(mask_dir):
            if mdir.name not in names:
                issues[NO_IMAGE] += sum(1 for p in mdir.iterdir()
                                        if p.is_file() and is_image_file(p.name)
                                        and not p.name.startswith("."))
    return Dataset(name, root, groups, +issues)


def read_folder(root):
    """A user's images without masks: every visible sub-folder of root is a group, and images
    lying directly in root form one more group named after root (a flat folder is one group)."""
    issues = collections.Counter()
    groups = {}
    for gdir in _subdirs(root, issues):
        items = [Item(gdir.name, s, _rel(root, p), None)
                 for s, (p, _) in sorted(_scan_files(gdir, issues).items())]
        if items:
            groups[gdir.name] = items
        else:
            issues[EMPTY_GROUP] += 1
    loose = collections.Counter()
    top = _scan_loose_files(root, loose)
    issues.update(loose)
    if top:
        name = root.resolve().name or "images"
        while name in groups:      # a sub-folder with the root's own name
            name += "_"
        groups[name] = [Item(name, s, _rel(root, p), None) for s, (p, _) in sorted(top.items())]
    return Dataset("folder", root, dict(sorted(groups.items())), +issues)


def _scan_loose_files(folder, issues):
    """_scan_files without counting sub-folders (they are the groups)."""
    tmp = collections.Counter()
    found = _scan_files(folder, tmp)
    tmp.pop(NESTED, None)
    issues.update(tmp)
    return found


def read_icoseg5(root, k=5):
    """iCoseg restricted to our fixed k-per-group subset (rule in the module docstring).
    root: the iCoseg folder; k: images per group."""
    def select(group, items):
        masked = [it for it in items if it.mask is not None]
        if len(masked) < k:
            short[0] += 1
        rank = sorted(masked, key=lambda it: hashlib.sha256(f"{group}/{it.name}".encode()).digest())
        return sorted(rank[:k], key=lambda it: it.name)

    short = [0]
    ds = read_paired("icoseg5", root, select)
    ds.issues[f"groups with fewer than {k} masks"] += short[0]
    ds.issues = +ds.issues
    return ds


# ---------------------------------------------------------------- MSRC-v2 raw release
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
MSRC_MARKER = "msrc_conversion.json"  # written last: its presence means a complete conversion


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
    Returns (Dataset of the written layout, {group: class}). Files are written atomically and
    the marker file last, so an interrupted conversion is never taken for a complete one."""
    from tqdm import tqdm

    root = pathlib.Path(os.path.expanduser(str(root)))
    out_dir = pathlib.Path(out_dir) if out_dir is not None else root / MSRC_CONVERTED
    img_dir, gt_dir = _find_dir(root, ("images",)), _find_dir(root, ("groundtruth",))
    if img_dir is None or gt_dir is None:
        raise UserError(f"{root}: not a raw MSRC-v2 release (expected Images/*.bmp and "
                        "GroundTruth/*_GT.bmp)")
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
    for g, stem in tqdm(work, desc="msrc: reading ground truths", disable=not progress or None):
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

    # Pass 2: write images and masks.
    written = {}
    for g, stem in tqdm(work, desc="msrc: writing", disable=not progress or None):
        if g not in classes or stem not in pixels:
            continue
        if not pixels[stem].get(classes[g]):
            issues["images without the group's object"] += 1
            continue
        mask = msrc_labels(_read_bgr(gts[stem][0]))[0][classes[g]]
        group = f"{g:02d}_{classes[g]}"
        src = images[stem][0]
        atomic_write_bytes(out_dir / "images" / group / src.name, src.read_bytes())
        write_png(out_dir / "ground_truth" / group / f"{stem}.png", mask.astype(np.uint8) * 255)
        written.setdefault(group, []).append(stem)
    names = {f"{g:02d}_{c}": c for g, c in classes.items()}
    atomic_write_text(out_dir / MSRC_MARKER, json.dumps({
        "source": str(root), "groups": names, "images": {g: len(v) for g, v in written.items()},
        "issues": dict(sorted(issues.items())),
        "rule": "object class = most frequent non-background, non-void class of the group"},
        indent=1, ensure_ascii=False) + "\n")
    ds = read_paired("msrc-raw", out_dir)
    ds.issues.update(issues)
    return ds, names


def read_msrc_raw(root):
    """The raw MSRC-v2 release through its converted co-saliency layout at <root>/cosal.
    Item paths stay relative to root (cosal/images/...)."""
    conv = root / MSRC_CONVERTED
    if not (conv / MSRC_MARKER).is_file():
        raise UserError(f"{root}: no converted MSRC-v2 layout at {conv}; run "
                        f"`python -m data_prep msrc-convert --root {root}` first")
    ds = read_paired("msrc-raw", conv)
    groups = {g: [Item(it.group, it.name, f"{MSRC_CONVERTED}/{it.image}",
                       f"{MSRC_CONVERTED}/{it.mask}" if it.mask else None) for it in items]
              for g, items in ds.groups.items()}
    return Dataset("msrc-raw", root, groups, ds.issues)


for _n in ("icoseg", "msrc", "cosal2015", "coca", "cosod3k", "coco9213", "synthetic"):
    READERS[_n] = functools.partial(read_paired, _n)
READERS["icoseg5"] = read_icoseg5
READERS["msrc-raw"] = read_msrc_raw
READERS["folder"] = read_folder


# ---------------------------------------------------------------- full check
def _data_complete(kind, data):
    """False when the encoded data visibly stops early (JPEG: no end marker after the last
    scan, whose entropy-coded data cannot contain one; PNG: no IEND after the last IDAT)."""
    if kind == "jpeg":
        sos = data.rfind(b"\xff\xda")
        return sos >= 0 and data.find(b"\xff\xd9", sos) >= 0
    if kind == "png":
        return data.rfind(b"IEND") > data.rfind(b"IDAT") >= 0
    return True


def _decode_fully(path):
    """(H, W) of a completely decodable file, or (None, issue)."""
    info, problem = probe_image(path)
    if problem:
        return None, problem
    data = pathlib.Path(path).read_bytes()
    if not _data_complete(info.kind, data):
        return None, TRUNCATED
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        return None, UNREADABLE
    return img.shape[:2], None


def verify_dataset(ds, progress=True):
    """Decode every image and mask of `ds` completely; return a new Dataset without the items
    whose image does not decode or is truncated (a bad mask only drops the mask). Issues found
    here are added to the returned Dataset's issues. progress: show a progress bar."""
    from tqdm import tqdm

    issues = collections.Counter(ds.issues)
    groups = {}
    for it in tqdm(list(ds.items()), desc=f"{ds.name}: verifying", disable=not progress or None):
        ishape, problem = _decode_fully(ds.root / it.image)
        if problem:
            issues[problem] += 1
            continue
        mask = it.mask
        if mask is not None:
            mshape, problem = _decode_fully(ds.root / mask)
            if problem:
                issues[problem] += 1
                issues[NO_MASK] += 1
                mask = None
            else:
                iinfo, _ = probe_image(ds.root / it.image)
                minfo, _ = probe_image(ds.root / mask)
                known = iinfo.width is not None and minfo.width is not None
                if not known and mshape != ishape:   # else the reader counted it already
                    issues[SIZE_DIFF] += 1
        groups.setdefault(it.group, []).append(dataclasses.replace(it, mask=mask))
    issues[EMPTY_GROUP] += len(ds.groups) - len(groups)
    return Dataset(ds.name, ds.root, groups, +issues)


# ---------------------------------------------------------------- command line
def register(subparsers):
    """Add the `summary` and `msrc-convert` commands to the data_prep command line."""
    p = subparsers.add_parser("summary", help="read a dataset and print its one-line summary",
                              description="Read a dataset and print what was read and every "
                              "quirk found, counted. Datasets: " + ", ".join(dataset_names()))
    p.add_argument("--dataset", required=True, help="dataset name: " + ", ".join(dataset_names()))
    p.add_argument("--root", required=True, help="the dataset's folder")
    p.add_argument("--verify", action="store_true",
                   help="decode every file completely (slow) instead of checking headers")
    p.set_defaults(func=_cmd_summary)

    p = subparsers.add_parser("msrc-convert", help="write the co-saliency layout of a raw "
                              "MSRC-v2 release (read as dataset 'msrc-raw')",
                              description="Turn the colour-coded class ground truths of the raw "
                              "MSRC-v2 release into one binary mask per image of its group's "
                              "object class.")
    p.add_argument("--root", required=True, help="the raw release (Images/, GroundTruth/)")
    p.add_argument("--out", help=f"output folder (default: <root>/{MSRC_CONVERTED}, where the "
                   "'msrc-raw' reader looks)")
    p.set_defaults(func=_cmd_msrc_convert)


def load_for_cli(args):
    """load_dataset for a command with --dataset/--root[/--verify]; prints the summary to
    stderr so that stdout stays free for a command's own output."""
    import sys
    ds = load_dataset(args.dataset, args.root)
    if getattr(args, "verify", False):
        ds = verify_dataset(ds)
        if len(ds) == 0:
            raise UserError(f"{ds.root}: no image of dataset '{args.dataset}' decodes "
                            f"({ds.summary()})")
    print(ds.summary(), file=sys.stderr)
    return ds


def _cmd_summary(args):
    ds = load_dataset(args.dataset, args.root)
    if args.verify:
        ds = verify_dataset(ds)
    print(ds.summary())


def _cmd_msrc_convert(args):
    root = pathlib.Path(os.path.expanduser(args.root))
    if not root.is_dir():
        raise UserError(f"{root}: folder not found")
    ds, classes = convert_msrc_raw(root, args.out)
    for g in sorted(classes):
        print(f"{g}: {len(ds.groups.get(g, []))} images")
    print(ds.summary())
