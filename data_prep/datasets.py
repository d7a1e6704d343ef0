"""Dataset readers: every benchmark (and a user's folder) seen through one interface.

    ds = load_dataset("icoseg", "/path/to/iCoseg")
    for item in ds.items(): item.group, item.name, item.image, item.mask

`Item.image` and `Item.mask` are paths relative to `Dataset.root`; `mask` is None for an image
without ground truth. Predicted maps for an item live at `<out>/<group>/<name>.png`, the layout
that prediction, the baselines and the evaluation share (see `core.layout.prediction_path`).

READERS maps each dataset name to its reader; readers are filled in below this interface.
"""
import collections
import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import pathlib
from typing import Optional

from core.errors import UserError
from core.imageio import decode_file, is_image_file
from core.inputs import check_input_folder, read_json_file
from core.outputs import atomic_write_text

# The header probe's names are part of this module's interface (issue names, FileInfo).
from .imagefiles import (EMPTY_FILE, EXT_KIND, TOO_LARGE, TRUNCATED, UNREADABLE, FileInfo,  # noqa: F401
                         probe_image)


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


READERS = {}   # name -> callable(root: pathlib.Path) -> Dataset


def dataset_names():
    return sorted(READERS)


def load_dataset(name, root):
    """Read dataset `name` at `root`. A dataset with nothing usable is a UserError."""
    key = name.lower()
    if key not in READERS:
        raise UserError(f"unknown dataset '{name}'; known: {', '.join(dataset_names())}")
    root = pathlib.Path(check_input_folder(root, "dataset folder", f" (dataset '{name}')"))
    refuse_incomplete(root)
    ds = READERS[key](root)
    if len(ds) == 0:
        raise UserError(f"{root}: no usable images found for dataset '{name}' ({ds.summary()})")
    return ds


# A data preparation command's mark on a dataset folder while it writes it (INCOMPLETE, JSON:
# the command and its parameters). A run that stops midway leaves it, and the readers refuse
# the folder rather than take the part written for the whole; a folder without it is complete,
# or a user's own.
INCOMPLETE = ".incomplete.json"


def mark_incomplete(root, command, parameters=None):
    """Put the mark on the dataset folder `root` (created if need be); returns its path.
    command: what writes it, as the user would run it again; parameters: what it was run with."""
    mark = pathlib.Path(root) / INCOMPLETE
    atomic_write_text(mark, json.dumps({"command": command, "parameters": parameters}) + "\n")
    return mark


@contextlib.contextmanager
def being_written(root, command, parameters=None):
    """Mark the dataset folder `root` for the duration of the block (see mark_incomplete)."""
    mark = mark_incomplete(root, command, parameters)
    yield
    mark.unlink()


def incomplete_mark(root):
    """The mark's {"command", "parameters"} on `root`, or None for a folder without one."""
    mark = pathlib.Path(root) / INCOMPLETE
    if not os.path.lexists(mark):
        return None
    try:
        found = read_json_file(mark, "mark")
        return found if isinstance(found, dict) else {}
    except UserError:
        return {}


def refuse_incomplete(root):
    """UserError when `root` bears the mark of a preparation that stopped midway."""
    mark = incomplete_mark(root)
    if mark is not None:
        command = mark.get("command") or "the data preparation command"
        raise UserError(f"{root}: `{command}` stopped before it finished writing this dataset; "
                        "run it again")


# ================================================================ readers
__doc__ += """
Readers (`name`: the layout expected under the root you pass)

    icoseg      images/<group>/*.jpg            ground_truth/<group>/<stem>.png   (official release)
    icoseg5     as icoseg, 5 images per group (our fixed subset, rule below)
    msrc        images/<group>/*.bmp|jpg        ground_truth/<group>/<stem>.png   (co-saliency)
    msrc7       as msrc, only the groups of the 7-class subset (MSRC7_CLASSES, below)
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

MSRC-v2 raw (`data_prep.msrc.convert_msrc_raw`): images are grouped by the number before the first '_' of their
name (the 20 image classes of the release). Ground truths are colour-coded with the 21-class
MSRC-v2 palette (MSRC_CLASSES); void, and horse and mountain (dropped from MSRC-v2's 21 classes),
are ignored. The group's object class is the class with the most pixels over the group's ground
truths among the non-background classes (background: BACKGROUND_CLASSES, the "stuff" classes).
Each image's mask is its pixels of that class; an image without any such pixel has no common
object and is left out (counted). Groups are named "<number, 2 digits>_<class>", e.g. "05_cow".

MSRC 7-class subset (`msrc7`): the paper describes the whole MSRC-v2 (591 images, 23 classes),
but most co-saliency papers evaluate a subset of it of 7 groups and 233 images (so listed in the
public ICNet (NeurIPS 2020) and CoSOD3k (CVPR 2020) repositories). Neither names the groups, and
no public text we could search does, so MSRC7_CLASSES is NOT a verified list but a candidate:
the 7 classes of the MSRC-v1 subset used in multi-view clustering (aeroplane, bicycle, building,
car, cow, face, tree; the sources we could search give that subset's size, 210 images in 7
classes, but not its names, which are recalled). `msrc7` reads the same folder as `msrc` and keeps the groups whose object
class (the name after "<number>_", as msrc-convert names them) is in the list; the groups left
out are counted. msrc-convert treats tree as background, so no converted group is named after
it: with this list the subset has 6 groups, and any count other than 7 groups and 233 images
means the list or the conversion rule differs from the literature's.

Quirks are never fatal; each is counted in `Dataset.issues` and shown by `Dataset.summary()`:
non-image files (Thumbs.db, .DS_Store, AppleDouble "._*" files), images without a mask, masks
without an image, 1-bit and palette PNG masks (read_mask decodes them), masks stored as JPEG,
masks whose size differs from their image (the consumer resizes), empty and unreadable files,
contents that do not match the extension, duplicate stems, nested folders, empty groups.

Cost of the checks: a reader opens every file once and reads its header (a few hundred bytes)
and its last few kilobytes: that catches empty files, files that are not images at all (an HTML
error page saved as .jpg), headers cut short and data cut short (a JPEG without its end marker
after the last scan, a PNG without IEND), and gives every JPEG/PNG/BMP size for the mask-size
check, without decoding pixels. Every command that reads a dataset therefore skips and counts
the same broken files. `verify_dataset` (CLI: --verify) also decodes every file completely and
drops those that are complete but still do not decode (damaged in the middle).
"""

IMAGE_DIRS = ("images", "image", "img", "imgs")
MASK_DIRS = ("ground_truth", "groundtruth", "gt", "gts", "binary", "masks", "mask")

# Issue names (the keys of Dataset.issues), one place so that readers and tests agree.
NON_IMAGE = "non-image files skipped"
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
NOT_UTF8 = "names not UTF-8 skipped"


def _utf8_name(p):
    """Whether a file or folder name can be written to a group list, a descriptor cache or a
    seed (UTF-8). A name that is not (a Latin-1 archive unpacked as is) reaches Python with
    surrogates, which every one of them refuses."""
    try:
        p.name.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


# ---------------------------------------------------------------- folder scanning
def _subdirs(folder, issues=None):
    """Sorted visible sub-folders; hidden ones and zip leftovers (__MACOSX) are skipped."""
    out = []
    for p in sorted(folder.iterdir()):
        if not _utf8_name(p):
            if issues is not None:
                issues[NOT_UTF8] += 1
            continue
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
        if not _utf8_name(p):
            issues[NOT_UTF8] += 1
            continue
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
        if EXT_KIND.get(p.suffix.lower()) != info.kind:
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
LAYOUTS["msrc7"] = LAYOUTS["msrc"]


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


# Unverified (see the module docstring, "MSRC 7-class subset"); class names as in MSRC-v2.
MSRC7_CLASSES = ("aeroplane", "bicycle", "building", "car", "cow", "face", "tree")
OUTSIDE_SUBSET = "groups outside the subset"


def msrc_group_class(group):
    """The object class of an MSRC group named "<number>_<class>" (msrc-convert), else the name."""
    number, sep, cls = group.partition("_")
    return cls if sep and number.isdigit() else group


def read_msrc7(root, classes=MSRC7_CLASSES):
    """MSRC in the co-saliency layout (as `msrc`), restricted to the groups of `classes`."""
    ds = read_paired("msrc7", root)
    keep = {g: items for g, items in ds.groups.items() if msrc_group_class(g) in classes}
    ds.issues[OUTSIDE_SUBSET] += len(ds.groups) - len(keep)
    return Dataset("msrc7", root, keep, +ds.issues)


def _read_msrc_raw(root):
    from .msrc import read_msrc_raw     # data_prep.msrc builds on this module
    return read_msrc_raw(root)


for _n in ("icoseg", "msrc", "cosal2015", "coca", "cosod3k", "coco9213", "synthetic"):
    READERS[_n] = functools.partial(read_paired, _n)
READERS["icoseg5"] = read_icoseg5
READERS["msrc7"] = read_msrc7
READERS["msrc-raw"] = _read_msrc_raw
READERS["folder"] = read_folder


# ---------------------------------------------------------------- full check
def _decode_fully(path):
    """(H, W) of a completely decodable file, or (None, issue)."""
    info, problem = probe_image(path)
    if problem:
        return None, problem
    try:
        return decode_file(path).shape[:2], None
    except UserError:
        return None, UNREADABLE


def verify_dataset(ds, progress=True):
    """Decode every image and mask of `ds` completely; return a new Dataset without the items
    whose image does not decode or is truncated (a bad mask only drops the mask). Issues found
    here are added to the returned Dataset's issues. progress: show a progress bar."""
    from core.progress import progress as progress_bar

    issues = collections.Counter(ds.issues)
    groups = {}
    for it in progress_bar(list(ds.items()), desc=f"{ds.name}: verifying", unit="img", enabled=progress):
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
    """Add the `summary` command to the data_prep command line."""
    p = subparsers.add_parser("summary", help="read a dataset and print its one-line summary",
                              description="Read a dataset and print what was read and every "
                              "quirk found, counted. Datasets: " + ", ".join(dataset_names()))
    p.add_argument("--dataset", required=True, help="dataset name: " + ", ".join(dataset_names()))
    p.add_argument("--root", required=True, help="the dataset's folder")
    p.add_argument("--verify", action="store_true",
                   help="decode every file completely (slow) instead of checking headers")
    p.set_defaults(func=_cmd_summary)


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
