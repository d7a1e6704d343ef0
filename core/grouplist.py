"""Group lists: the JSON Lines files that connect data preparation, the data layer and prediction.

One group per line:
    {"group": "<name>", "images": ["<path>", ...], "masks": ["<path>", ...]}
Paths are relative to a data root and may contain any character (spaces, commas, '!').
"masks" is omitted (or null) for prediction-only lists; when present it has one entry per image,
and an entry may be null for an image without ground truth.
"""
import json
import os

from .errors import UserError
from .inputs import parse_json, read_input_text
from .outputs import atomic_write_text

KEYS = {"group", "images", "masks"}
# The most images one group of a list may hold: far beyond any net's batch (the paper's is 5),
# small enough that a mistyped size cannot fill the memory with repeated images.
MAX_GROUP_SIZE = 1000


def parse_group(line, where="<group list>"):
    g = parse_json(line, where)
    if not isinstance(g, dict):
        raise UserError(f"{where}: expected a JSON object, got {type(g).__name__}")
    unknown = set(g) - KEYS
    if unknown:
        raise UserError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(KEYS)}")
    if not isinstance(g.get("group"), str) or not g["group"]:
        raise UserError(f"{where}: 'group' must be a non-empty string")
    imgs = g.get("images")
    if not isinstance(imgs, list) or not imgs or not all(isinstance(p, str) and p for p in imgs):
        raise UserError(f"{where}: 'images' must be a non-empty list of paths")
    masks = g.get("masks")
    if masks is not None:
        if not isinstance(masks, list) or len(masks) != len(imgs):
            raise UserError(f"{where}: 'masks' must list one entry per image "
                            f"({len(imgs)} images, {len(masks) if isinstance(masks, list) else 'no'} masks)")
        if not all(m is None or (isinstance(m, str) and m) for m in masks):
            raise UserError(f"{where}: each 'masks' entry must be a path or null")
    return {"group": g["group"], "images": list(imgs), "masks": None if masks is None else list(masks)}


def read_group_list(path):
    """All groups of a JSON Lines file, validated; blank lines (and a byte-order mark) are skipped."""
    path = os.fspath(path)
    text = read_input_text(path, "group list")
    # the line ends open() knows; str.splitlines would also split a name holding U+2028
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    groups, seen = [], {}
    for i, line in enumerate(lines, 1):
        if line.strip():
            g = parse_group(line, f"{path}:{i}")
            _refuse_repeat(g, seen, f"{path}:{i}")
            groups.append(g)
    if not groups:
        raise UserError(f"{path}: group list is empty")
    return groups


def _refuse_repeat(group, seen, where):
    """A group listed twice (a list appended to itself, say) would be trained on or predicted
    twice as often as the others; groups may share a name but not their images."""
    key = (group["group"], tuple(group["images"]))
    if key in seen:
        raise UserError(f"{where}: group {group['group']!r} repeats line {seen[key].rsplit(':', 1)[1]}")
    seen[key] = where


def format_group(group, images, masks=None):
    d = {"group": group, "images": list(images)}
    if masks is not None:
        d["masks"] = list(masks)
    return json.dumps(d, ensure_ascii=False)


def write_group_list(path, groups):
    """groups: iterable of dicts with keys group, images and optionally masks. Written atomically."""
    lines = [format_group(g["group"], g["images"], g.get("masks")) for g in groups]
    atomic_write_text(path, "\n".join(lines) + "\n")
