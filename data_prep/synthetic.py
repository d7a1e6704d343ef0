"""A synthetic co-saliency benchmark where one image alone cannot tell what is co-salient.

Every group of K images (default 5) has a *common* object class, present in all K images and
marked in the ground truth, and *distractors* of other classes, each present in one or two
images of the group (never in all of them) and not marked. Every image holds the common object
and one or two distractors drawn from the same distributions of size, aspect, rotation, colour
strength, position and depth order, so within one image nothing but the class separates them,
and across groups every class is the common one equally often (a shuffled balanced schedule)
and a distractor otherwise. A single-image model can therefore do no better than calling every
object of an image equally salient (1/2 or 1/3 each); a model that sees the whole group can
find the one class present in every image. This is the paper's central claim made testable on
a CPU with a tiny net.

Classes (the first C of these; C = 6 by default, 3..8): a shape and a colour family, some with
a texture, so that a small CNN can recognise them at 64 x 128:
    disk/red/stripes, square/blue/checks, triangle/green, cross/yellow, ring/magenta,
    star/cyan, heart/orange/stripes, crescent/violet.
Within-class variation: hue +-10 degrees, saturation, brightness, size, aspect, rotation,
texture phase and a soft shading gradient.
Background: a low-saturation two-colour gradient, smooth low-frequency noise, large soft blobs
and small clutter shapes (ellipses, bars, lines, small polygons, all muted). No per-pixel noise:
it would double the size of the PNG files and teaches the demo's tiny net nothing.
Objects may overlap (each keeps at least 70% of its area visible); the mask is the visible
part of the common object.

Files (the Cosal2015 layout; PNG for images too, so that pixels, and hence masks and object
edges, are exactly what the generator drew: JPEG would blur the thin stripes and checks at the
small demo size and its artefacts differ between libjpeg builds):
    <out>/<split>/Image/<group>/<name>.png        (split: train, test)
    <out>/<split>/GroundTruth/<group>/<name>.png  0/255
    <out>/<split>/objects.jsonl                   per image: every object's class, centre,
                                                  radius, depth, visible area, common or not
    <out>/manifest.json                           generator parameters and seed, written last
A rerun with the same parameters finds the manifest and the files and skips the work.

Placement (--placement). "free": every object anywhere, independently. "anchored": every class
present in a group gets a group anchor (uniform over the image, anchors at least ANCHOR_GAP
apart), and each of its objects lies at that anchor plus a jitter (sd JITTER of the image size);
common objects and distractors are placed by the same rule, so one image still shows nothing
that tells them apart, but across the group the common object recurs at one place in all K
images while a distractor recurs in at most two. This is what the paper's net can use: its
group block sees the K feature maps stacked position by position, and its merge adds one map
computed from the group, the same for all K images, to each image's own score (a linear conv on
Concat(x_i, X)). It can boost the places where an object recurs across the group; it cannot
test "is this object of the class that every image holds" at different positions. The demo uses
"anchored" (README, "Demo").

Determinism: group i of a split is drawn from numpy's SeedSequence([seed, split, 1, i]) and the
class schedule of a split from SeedSequence([seed, split, 0]) (split 0 = train, 1 = test), so
the splits use disjoint random streams and the output does not depend on the worker count.
"""
import colorsys
import concurrent.futures
import contextlib
import dataclasses
import json
import multiprocessing
import os
import pathlib
import shutil
import sys

import cv2
import numpy as np

from core.args import positive_int
from core.errors import UserError
from core.imageio import write_png
from core.inputs import read_json_file
from core.outputs import atomic_write_text, lock_out_dir, prepare_out_dir
from core.progress import progress as progress_bar
from core.workers import available_cpus, ignore_interrupts, interrupts_deferred, shut_down, worker_count

from .datasets import being_written, incomplete_mark

GENERATOR = "gwd-synthetic-cosal"
VERSION = 1
SPLITS = ("train", "test")
SS = 4                     # supersampling of object outlines (anti-aliased alpha)
MIN_VISIBLE = 0.7          # each object keeps at least this share of its area visible
RADIUS = (0.13, 0.21)      # object radius relative to min(height, width)
PLACEMENTS = ("free", "anchored")
JITTER = 0.06              # anchored: sd of an object's offset from its class anchor (image fraction)
ANCHOR_GAP = 0.35          # anchored: least distance between two anchors of a group (image fraction)
MAX_SIDE = 4096            # pixels per side at most; the benchmark's images are 128x256


@dataclasses.dataclass(frozen=True)
class ObjectClass:
    name: str
    shape: str
    hue: float       # degrees
    texture: str     # solid | stripes | checks


CLASSES = (
    ObjectClass("disk", "disk", 0.0, "stripes"),
    ObjectClass("square", "square", 225.0, "checks"),
    ObjectClass("triangle", "triangle", 120.0, "solid"),
    ObjectClass("cross", "cross", 55.0, "solid"),
    ObjectClass("ring", "ring", 300.0, "solid"),
    ObjectClass("star", "star", 185.0, "solid"),
    ObjectClass("heart", "heart", 28.0, "stripes"),
    ObjectClass("crescent", "crescent", 265.0, "solid"),
)


@dataclasses.dataclass(frozen=True)
class Config:
    """Generator parameters.

    height, width: image size in pixels.
    group_size: images per group (K).
    classes: number of object classes used (the first of CLASSES).
    seed: master seed.
    max_distractors: distractors per image, drawn uniformly from 1..max_distractors.
    placement: "free" or "anchored" (module docstring).
    """
    height: int = 128
    width: int = 256
    group_size: int = 5
    classes: int = 6
    seed: int = 0
    max_distractors: int = 2
    placement: str = "free"

    def validate(self):
        if self.height < 24 or self.width < 24:
            raise UserError(f"image size {self.height}x{self.width} is too small (at least 24x24)")
        if max(self.height, self.width) > MAX_SIDE:     # would end in a MemoryError mid-run
            raise UserError(f"image size {self.height}x{self.width} is too large "
                            f"(each side at most {MAX_SIDE})")
        if self.seed < 0:
            raise UserError(f"--seed must be >= 0 (got {self.seed})")
        if not 3 <= self.classes <= len(CLASSES):
            raise UserError(f"--classes must be between 3 and {len(CLASSES)} (got {self.classes})")
        if self.group_size < 2:
            raise UserError(f"--group-size must be at least 2 (got {self.group_size})")
        if self.placement not in PLACEMENTS:
            raise UserError(f"--placement must be one of {', '.join(PLACEMENTS)} (got '{self.placement}')")
        if self.max_distractors < 1:
            raise UserError(f"max_distractors must be at least 1 (got {self.max_distractors})")
        if max_uses(self.group_size) * (self.classes - 1) < self.group_size:
            raise UserError(f"{self.classes} classes are too few for groups of {self.group_size}: "
                            f"every image needs a distractor and a distractor class may appear "
                            f"in at most {max_uses(self.group_size)} images of a group")


def max_uses(group_size):
    """Images of a group in which one distractor class may appear: 1 or 2, never all."""
    return min(2, group_size - 1)


@dataclasses.dataclass
class Rendered:
    """One generated image. labels: int8 map, 0 = background, j + 1 = objects[j] visible there."""
    image: np.ndarray      # uint8 BGR (H, W, 3)
    mask: np.ndarray       # uint8 (H, W), 255 on the visible common object
    labels: np.ndarray
    objects: list          # dicts: class, name, common, cx, cy, r, aspect, angle, depth, area, visible


# ---------------------------------------------------------------- shapes
def _circle(r=1.0, cx=0.0, cy=0.0, n=48):
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1)


def _star(points=5, outer=1.15, inner=0.5):
    t = np.arange(2 * points) * np.pi / points - np.pi / 2
    rad = np.where(np.arange(2 * points) % 2 == 0, outer, inner)
    return np.stack([rad * np.cos(t), rad * np.sin(t)], axis=1)


def _heart(n=48):
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    pts = np.stack([x, y + 2.5], axis=1) / 15.0
    return pts


def _cross(w=0.36, a=1.05):
    return np.array([(-w, -a), (w, -a), (w, -w), (a, -w), (a, w), (w, w), (w, a), (-w, a),
                     (-w, w), (-a, w), (-a, -w), (-w, -w)], float)


# shape -> (filled outlines, holes), in units of the object radius, y pointing down
SHAPES = {
    "disk": ([_circle()], []),
    "square": ([np.array([(-.85, -.85), (.85, -.85), (.85, .85), (-.85, .85)])], []),
    "triangle": ([_circle(1.2, n=3)], []),
    "cross": ([_cross()], []),
    "ring": ([_circle()], [_circle(0.55)]),
    "star": ([_star()], []),
    "heart": ([_heart()], []),
    "crescent": ([_circle()], [_circle(0.82, cx=0.5, cy=-0.1)]),
}


def _hsv_bgr(h, s, v):
    r, g, b = colorsys.hsv_to_rgb((h / 360.0) % 1.0, float(np.clip(s, 0, 1)), float(np.clip(v, 0, 1)))
    return np.array([b, g, r], np.float32) * 255.0


def _transform(pts, obj):
    """Local shape coordinates -> image coordinates (x right, y down)."""
    sa = np.sqrt(obj["aspect"])
    local = pts * np.array([obj["r"] * sa, obj["r"] / sa])
    c, s = np.cos(obj["angle"]), np.sin(obj["angle"])
    rot = local @ np.array([[c, s], [-s, c]])
    return rot + np.array([obj["cx"], obj["cy"]])


def object_box(obj, height, width):
    """(x0, y0, x1, y1): the pixels an object may touch, clipped to the image."""
    allp = np.concatenate([_transform(p, obj) for p in SHAPES[CLASSES[obj["class"]].shape][0]])
    x0 = int(max(0, np.floor(allp[:, 0].min()) - 1))
    y0 = int(max(0, np.floor(allp[:, 1].min()) - 1))
    x1 = int(min(width, np.ceil(allp[:, 0].max()) + 2))
    y1 = int(min(height, np.ceil(allp[:, 1].max()) + 2))
    return x0, y0, max(x0, x1), max(y0, y1)


def object_alpha(obj, height, width):
    """Anti-aliased coverage (float32 (H, W) in [0, 1]) of one object, by 4x supersampling."""
    fills, holes = SHAPES[CLASSES[obj["class"]].shape]
    fills = [_transform(p, obj) for p in fills]
    holes = [_transform(p, obj) for p in holes]
    x0, y0, x1, y1 = object_box(obj, height, width)
    alpha = np.zeros((height, width), np.float32)
    if x1 <= x0 or y1 <= y0:
        return alpha
    canvas = np.zeros(((y1 - y0) * SS, (x1 - x0) * SS), np.uint8)
    shift = 4

    def pts(p):
        # supersampled pixel centres are at (i + 0.5) / SS in image coordinates
        q = (p - (x0, y0)) * SS - 0.5
        return [np.round(q * (1 << shift)).astype(np.int32)]

    for p in fills:
        cv2.fillPoly(canvas, pts(p), 255, lineType=cv2.LINE_8, shift=shift)
    for p in holes:
        cv2.fillPoly(canvas, pts(p), 0, lineType=cv2.LINE_8, shift=shift)
    small = cv2.resize(canvas, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
    alpha[y0:y1, x0:x1] = small.astype(np.float32) / 255.0
    return alpha


def _object_colour(obj, box):
    """The object's texture and shading (float32 BGR) over box = (x0, y0, x1, y1)."""
    cls = CLASSES[obj["class"]]
    x0, y0, x1, y1 = box
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32) + 0.5
    dx, dy = xs - obj["cx"], ys - obj["cy"]
    c, s = np.cos(obj["angle"]), np.sin(obj["angle"])
    u = (dx * c + dy * s) / obj["r"]
    v = (-dx * s + dy * c) / obj["r"]
    base = _hsv_bgr(obj["hue"], obj["sat"], obj["val"])
    second = _hsv_bgr(obj["hue"], obj["sat"] * 0.5, obj["val"] * 0.4)
    if cls.texture == "stripes":
        t = np.sin(2 * np.pi * (1.4 * u) + obj["phase"])
        mix = np.clip(0.5 + 1.5 * t, 0, 1)
    elif cls.texture == "checks":
        t = np.sin(np.pi * 1.5 * u + obj["phase"]) * np.sin(np.pi * 1.5 * v + obj["phase"])
        mix = np.clip(0.5 + 2.0 * t, 0, 1)
    else:
        mix = np.ones_like(u)
    col = mix[..., None] * base + (1 - mix[..., None]) * second
    shade = 1.0 + 0.18 * (u * np.cos(obj["light"]) + v * np.sin(obj["light"]))
    return col * np.clip(shade, 0.7, 1.3)[..., None]


# ---------------------------------------------------------------- background
def _smooth_background(rng, h, w):
    """Gradient, low-frequency noise and soft blobs: all smooth, so drawn at 1/4 size."""
    sh, sw = max(8, h // 4), max(8, w // 4)
    img = np.empty((sh, sw, 3), np.float32)
    ys, xs = np.mgrid[0:sh, 0:sw].astype(np.float32)
    ang = rng.uniform(0, 2 * np.pi)
    t = (xs * np.cos(ang) + ys * np.sin(ang))
    t = (t - t.min()) / max(1e-6, float(np.ptp(t)))
    c0 = _hsv_bgr(rng.uniform(0, 360), rng.uniform(0, 0.3), rng.uniform(0.3, 0.85))
    c1 = _hsv_bgr(rng.uniform(0, 360), rng.uniform(0, 0.3), rng.uniform(0.3, 0.85))
    img[:] = c0 + t[..., None] * (c1 - c0)
    coarse = rng.normal(0, 14, (4, 8)).astype(np.float32)
    img += cv2.resize(coarse, (sw, sh), interpolation=cv2.INTER_CUBIC)[..., None]
    unit = min(sh, sw)
    # large soft blobs of muted colour: structure, not salient objects
    for _ in range(rng.integers(2, 6)):
        layer = np.zeros((sh, sw), np.float32)
        cv2.ellipse(layer, (int(rng.uniform(0, sw)), int(rng.uniform(0, sh))),
                    (int(rng.uniform(0.15, 0.5) * unit) + 1, int(rng.uniform(0.1, 0.35) * unit) + 1),
                    rng.uniform(0, 180), 0, 360, 1.0, -1, cv2.LINE_AA)
        layer = cv2.GaussianBlur(layer, (0, 0), 0.06 * unit + 0.5) * rng.uniform(0.25, 0.55)
        col = _hsv_bgr(rng.uniform(0, 360), rng.uniform(0, 0.3), rng.uniform(0.25, 0.9))
        img += layer[..., None] * (col - img)
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)


def _background(rng, h, w):
    img = _smooth_background(rng, h, w)
    unit = min(h, w)
    # small muted clutter: ellipses, bars, lines, small polygons (none of the object classes)
    for _ in range(rng.integers(6, 16)):
        col = tuple(float(x) for x in _hsv_bgr(rng.uniform(0, 360), rng.uniform(0, 0.35),
                                               rng.uniform(0.15, 0.95)))
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        size = rng.uniform(0.02, 0.07) * unit
        kind = rng.integers(4)
        if kind == 0:
            cv2.ellipse(img, (int(cx), int(cy)), (max(1, int(size)), max(1, int(size * rng.uniform(0.3, 1)))),
                        rng.uniform(0, 180), 0, 360, col, -1, cv2.LINE_AA)
        elif kind == 1:
            box = cv2.boxPoints(((cx, cy), (size * 2, size * rng.uniform(0.3, 0.8)), rng.uniform(0, 180)))
            cv2.fillPoly(img, [np.round(box).astype(np.int32)], col, cv2.LINE_AA)
        elif kind == 2:
            a = rng.uniform(0, np.pi)
            d = np.array([np.cos(a), np.sin(a)]) * size * 2.5
            p0 = (int(cx - d[0]), int(cy - d[1]))
            p1 = (int(cx + d[0]), int(cy + d[1]))
            cv2.line(img, p0, p1, col, max(1, int(unit / 96)), cv2.LINE_AA)
        else:
            n = int(rng.integers(4, 7))
            t = np.sort(rng.uniform(0, 2 * np.pi, n))
            rr = size * rng.uniform(0.6, 1.2, n)
            poly = np.stack([cx + rr * np.cos(t), cy + rr * np.sin(t)], axis=1)
            cv2.fillPoly(img, [np.round(poly).astype(np.int32)], col, cv2.LINE_AA)
    return img


# ---------------------------------------------------------------- groups
def class_schedule(config, split, n_groups):
    """Common class of each group of a split: every class equally often (counts differ by at
    most one), in an order shuffled per round of C groups."""
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, SPLITS.index(split), 0]))
    rounds = [rng.permutation(config.classes) for _ in range(-(-n_groups // config.classes))]
    return [int(c) for c in np.concatenate(rounds)[:n_groups]] if rounds else []


def plan_distractors(rng, common, config):
    """Distractor classes of each image of a group: 1..max_distractors per image, distinct
    within an image, none equal to the common class, each class in at most max_uses images.
    Label-symmetric, so within one image the common class is exchangeable with the others."""
    k, cap = config.group_size, max_uses(config.group_size)
    uses = np.zeros(config.classes, int)
    plans = []
    for i in range(k):
        avail = [c for c in range(config.classes) if c != common and uses[c] < cap]
        left_after = k - 1 - i
        spare = int(sum(cap - uses[c] for c in avail)) - left_after   # keep one for each later image
        want = int(rng.integers(1, config.max_distractors + 1))
        m = max(1, min(want, len(avail), spare))
        chosen = [int(c) for c in rng.choice(avail, size=m, replace=False)]
        uses[chosen] += 1
        plans.append(chosen)
    order = rng.permutation(k)   # the early images of the loop would otherwise get more
    return [plans[j] for j in order]


def plan_anchors(rng, classes):
    """anchored placement: one point in [0, 1]^2 per class of a group, ANCHOR_GAP apart."""
    for _attempt in range(1000):
        pts = rng.uniform(0, 1, (len(classes), 2))
        d = np.hypot(*(pts[:, None, :] - pts[None, :, :]).transpose(2, 0, 1))
        if len(classes) < 2 or d[np.triu_indices(len(classes), 1)].min() >= ANCHOR_GAP:
            break
    return {int(c): (float(x), float(y)) for c, (x, y) in zip(classes, pts)}


def _draw_object(rng, cls, common, h, w, anchor=None):
    unit = min(h, w)
    r = rng.uniform(*RADIUS) * unit
    if anchor is None:
        fx, fy = rng.uniform(0, 1, 2)
    else:
        fx, fy = np.clip(np.asarray(anchor) + rng.normal(0, JITTER, 2), 0, 1)
    return {
        "class": int(cls), "name": CLASSES[cls].name, "common": bool(common),
        "r": float(r), "aspect": float(np.exp(rng.uniform(-0.22, 0.22))),
        "angle": float(rng.uniform(0, 2 * np.pi)),
        "cx": float(0.95 * r + fx * (w - 1.9 * r)),
        "cy": float(0.95 * r + fy * (h - 1.9 * r)),
        "hue": float(CLASSES[cls].hue + rng.uniform(-10, 10)),
        "sat": float(rng.uniform(0.6, 1.0)), "val": float(rng.uniform(0.6, 1.0)),
        "phase": float(rng.uniform(0, 2 * np.pi)), "light": float(rng.uniform(0, 2 * np.pi)),
    }


def visible_weights(alphas, depth):
    """(n + 1, H, W): background weight, then each object's visible weight, compositing
    objects back to front in `depth` order (depth[j] = rank of object j, 0 = furthest back)."""
    n = len(alphas)
    weights = np.empty((n + 1,) + alphas[0].shape, np.float32)
    cover = np.zeros_like(alphas[0])          # opacity of everything in front, built front first
    for j in sorted(range(n), key=lambda j: -depth[j]):
        weights[j + 1] = alphas[j] * (1.0 - cover)
        cover = cover + alphas[j] * (1.0 - cover)
    weights[0] = 1.0 - cover
    return weights


def render_image(rng, classes_here, common, config, anchors=None):
    """One image holding objects of `classes_here`; the object of class `common` is marked.
    anchors: class -> anchor point (anchored placement), or None."""
    h, w = config.height, config.width
    for _attempt in range(200):
        objs = [_draw_object(rng, c, c == common, h, w, anchors[c] if anchors else None)
                for c in classes_here]
        order = rng.permutation(len(objs))      # list order mixes common and distractors
        objs = [objs[j] for j in order]
        depth = [int(d) for d in rng.permutation(len(objs))]
        alphas = [object_alpha(o, h, w) for o in objs]
        weights = visible_weights(alphas, depth)
        labels = np.argmax(weights, axis=0).astype(np.int8)
        areas = [float(a.sum()) for a in alphas]
        vis = [int((labels == j + 1).sum()) for j in range(len(objs))]
        if all(a > 0 and v >= MIN_VISIBLE * a for a, v in zip(areas, vis)):
            break
    else:  # pragma: no cover - 3 objects always fit after a few tries
        raise RuntimeError("could not place the objects")
    img = _background(rng, h, w)
    for j in sorted(range(len(objs)), key=lambda j: depth[j]):   # back to front
        x0, y0, x1, y1 = box = object_box(objs[j], h, w)
        a = alphas[j][y0:y1, x0:x1, None]
        region = img[y0:y1, x0:x1]
        region += a * (_object_colour(objs[j], box) - region)
    image = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    ci = next(j for j, o in enumerate(objs) if o["common"])
    mask = np.where(labels == ci + 1, 255, 0).astype(np.uint8)
    for j, o in enumerate(objs):
        o.update(depth=depth[j], area=round(areas[j], 2), visible=vis[j])
    return Rendered(image, mask, labels, objs)


def group_name(index, common):
    return f"{index:05d}_{CLASSES[common].name}"


def generate_group(config, split, index, common):
    """The K rendered images of group `index` of `split` whose common class is `common`."""
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, SPLITS.index(split), 1, index]))
    plans = plan_distractors(rng, common, config)
    anchors = None
    if config.placement == "anchored":
        anchors = plan_anchors(rng, sorted({common}.union(*map(set, plans))))
    return [render_image(rng, [common] + plan, common, config, anchors) for plan in plans]


def image_name(j):
    return f"{j:02d}"


def _write_group(args):
    config, out, split, index, common = args
    cv2.setNumThreads(1)
    gname = group_name(index, common)
    split_dir = pathlib.Path(out) / split
    records = []
    for j, r in enumerate(generate_group(config, split, index, common)):
        name = image_name(j)
        write_png(split_dir / "Image" / gname / f"{name}.png", r.image)
        write_png(split_dir / "GroundTruth" / gname / f"{name}.png", r.mask)
        objs = [{k: (round(v, 2) if isinstance(v, float) else v) for k, v in o.items()
                 if k in ("class", "name", "common", "cx", "cy", "r", "depth", "area", "visible")}
                for o in r.objects]
        records.append({"group": gname, "name": name, "common_class": CLASSES[common].name,
                        "objects": objs})
    return records


# ---------------------------------------------------------------- writing a benchmark
def manifest_for(config, train_groups, test_groups):
    return {"generator": GENERATOR, "version": VERSION, "seed": config.seed,
            "size": [config.height, config.width], "group_size": config.group_size,
            "classes": [c.name for c in CLASSES[:config.classes]],
            "max_distractors": config.max_distractors, "placement": config.placement,
            "groups": {"train": train_groups, "test": test_groups}, "format": "png"}


def _count_files(d):
    return sum(len(files) for _, _, files in os.walk(d)) if d.is_dir() else 0


def _is_complete(out, manifest):
    k = manifest["group_size"]
    return all(_count_files(out / s / "Image") == n * k and _count_files(out / s / "GroundTruth") == n * k
               for s, n in manifest["groups"].items())


def generate(out, config, train_groups, test_groups, workers=None, progress=True):
    """Write the benchmark under `out` (see the module docstring). Returns True when files were
    written, False when an identical benchmark was already there.

    Parameters
        out: output folder.
        config: Config.
        train_groups, test_groups: number of groups per split (0 allowed).
        workers: processes (default: all cores); 1 renders in this process.
        progress: a progress bar on stderr (core.progress).
    """
    config.validate()
    if train_groups < 0 or test_groups < 0:
        raise UserError("group counts must not be negative")
    out = pathlib.Path(prepare_out_dir(out, force=True))   # its own files are checked below
    manifest = manifest_for(config, train_groups, test_groups)
    mpath = out / "manifest.json"
    old = None
    interrupted = [s for s in SPLITS if incomplete_mark(out / s) is not None]     # a run of ours
    if mpath.exists():
        try:
            old = read_json_file(mpath, "manifest")
        except UserError:
            old = None
        if not isinstance(old, dict) or old.get("generator") != GENERATOR:
            raise UserError(f"{mpath}: not a manifest of this generator; choose another --out")
        if old == manifest and not interrupted and _is_complete(out, manifest):
            print(f"{out}: synthetic benchmark up to date (manifest matches), nothing to do",
                  file=sys.stderr)
            return False
    elif any((out / s).exists() for s in SPLITS) and not interrupted:
        raise UserError(f"{out}: has train/ or test/ folders but no manifest.json of this "
                        f"generator; choose an empty --out")
    if old is not None or interrupted:   # ours, with other parameters or incomplete: start again
        mpath.unlink(missing_ok=True)
        for s in SPLITS:
            if (out / s).exists():
                shutil.rmtree(out / s)
    with contextlib.ExitStack() as marks:     # each split refused by the readers until done
        for s in SPLITS:
            if manifest["groups"][s]:
                marks.enter_context(being_written(out / s, "python -m data_prep synthetic"))
        _write_benchmark(out, config, manifest, workers, progress)
    return True


def _write_benchmark(out, config, manifest, workers, progress):
    """The groups of both splits, objects.jsonl and manifest.json (generate)."""
    tasks = []
    for split, n in manifest["groups"].items():
        tasks += [(config, str(out), split, i, c)
                  for i, c in enumerate(class_schedule(config, split, n))]
    records = {s: [] for s in SPLITS}
    workers = worker_count(workers)
    bar = progress_bar(total=len(tasks), desc="synthetic groups", unit="group", enabled=progress)
    if workers == 1 or len(tasks) <= 1:
        results = map(_write_group, tasks)
        pool = None
    else:
        ctx = multiprocessing.get_context("spawn")   # no fork of a process that holds OpenCV threads
        pool = concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx, initializer=ignore_interrupts)
        with interrupts_deferred():
            results = pool.map(_write_group, tasks, chunksize=max(1, min(32, len(tasks) // (8 * workers))))
    try:
        for task, recs in zip(tasks, results):
            records[task[2]].extend(recs)
            bar.update()
    finally:
        bar.close()
        if pool is not None:
            shut_down(pool)
    for s in SPLITS:
        if manifest["groups"][s]:
            atomic_write_text(out / s / "objects.jsonl",
                              "".join(json.dumps(r) + "\n" for r in records[s]))
    atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=1) + "\n")


# ---------------------------------------------------------------- command line
def parse_size(text):
    """'HxW' -> (H, W)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UserError(f"--size must look like HxW, e.g. 128x256 (got '{text}')") from None
    return h, w


def register(subparsers):
    """Add `python -m data_prep synthetic`."""
    p = subparsers.add_parser(
        "synthetic", help="generate the synthetic co-saliency benchmark (Cosal2015 layout)",
        description="Generate groups in which the co-salient object is only identifiable from "
                    "the whole group: every image holds the common object and distractors of "
                    "other classes with the same size, contrast and position statistics.")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--train-groups", type=positive_int, default=2000, help="training groups (default 2000)")
    p.add_argument("--test-groups", type=positive_int, default=200, help="test groups (default 200)")
    p.add_argument("--size", default="128x256", help="image size HxW (default 128x256)")
    p.add_argument("--seed", type=int, default=0, help="master seed (default 0)")
    p.add_argument("--classes", type=int, default=6, help=f"object classes, 3..{len(CLASSES)} (default 6)")
    p.add_argument("--group-size", type=int, default=5, help="images per group (default 5)")
    p.add_argument("--placement", choices=PLACEMENTS, default="free",
                   help="free: objects anywhere; anchored: each class of a group recurs near one "
                        "place (what the paper's group block can use; the demo's choice)")
    p.add_argument("--workers", type=int, default=available_cpus(),
                   help="processes (default: all cores)")
    p.set_defaults(func=_cmd)
    return p


def _cmd(args):
    h, w = parse_size(args.size)
    if args.workers < 1:
        raise UserError(f"--workers must be at least 1 (got {args.workers})")
    config = Config(height=h, width=w, group_size=args.group_size, classes=args.classes,
                    seed=args.seed, placement=args.placement)
    lock_out_dir(args.out)      # one writer at a time, from the manifest's check to the end
    wrote = generate(args.out, config, args.train_groups, args.test_groups, workers=args.workers)
    if wrote:
        print(f"{args.out}: {args.train_groups} train and {args.test_groups} test groups of "
              f"{config.group_size} images ({h}x{w}, {config.classes} classes, seed {config.seed})",
              file=sys.stderr)
    return 0
