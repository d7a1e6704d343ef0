"""GroupDataLayer: feeds one group of K images (and their masks) per forward pass.

Tops
    data   (K, 3, height, width)  float32, BGR minus `mean`
    label  (K, 1, height, width)  float32 ground truth in [0, 1]

param_str is a JSON object (never evaluated as Python). Keys:
    group_list   (required) JSON Lines file of groups, see core.grouplist; every group needs masks
    data_root    folder the paths in the list are relative to (default: the list's folder)
    group_size   K, images per group; every group must have exactly K (default 5)
    height       input height (default 128)
    width        input width (default 256)
    mean         BGR mean subtracted from the images (default: VGG16 ImageNet mean)
    shuffle      visit the groups in a random order, reshuffled every epoch (default true)
    seed         seed of that order; the same seed gives the same sequence (default 0)
    prefetch     groups decoded ahead of the solver (default 8)
    workers      decoding threads; OpenCV releases the GIL, so threads run in parallel (default 2)
    skip         groups of the sequence to pass over at the start, without decoding them: a
                 resumed run continues the data order where it stopped (default 0)
    cache        keep every decoded, resized image in memory: training lists repeat each image in
                 about K groups, so this cuts decoding work K-fold at 100 KB per image (default false)

Relative group_list and data_root paths are taken relative to the current directory.
Decoding runs ahead in a thread pool; forward() only copies a ready group into the tops.
Bad input (malformed JSON, unknown keys, a group of the wrong size, a missing or unreadable file)
raises core.errors.UserError naming the file, in setup() where it can be checked up front (list
format, group sizes, file existence), otherwise in the forward() that needed the file.
"""
import collections
import concurrent.futures
import os
import threading

import caffe
import numpy as np

from core.errors import UserError
from core.grouplist import read_group_list
from core.progress import say
from core.imageio import read_image, read_mask
from core.inputs import check_input_file, check_input_folder, parse_json
from core.preprocess import VGG_MEAN_BGR, image_to_blob, mask_to_blob

DEFAULTS = {"data_root": None, "group_size": 5, "height": 128, "width": 256, "mean": list(VGG_MEAN_BGR),
            "shuffle": True, "seed": 0, "skip": 0, "prefetch": 8, "workers": 2, "cache": False}
REQUIRED = ("group_list",)


def parse_params(param_str):
    """Validated parameters from the layer's JSON param_str (defaults filled in)."""
    p = parse_json(param_str or "{}", "GroupDataLayer param_str")
    if not isinstance(p, dict):
        raise UserError("GroupDataLayer param_str must be a JSON object")
    unknown = sorted(set(p) - set(DEFAULTS) - set(REQUIRED))
    if unknown:
        raise UserError(f"GroupDataLayer: unknown key(s) {unknown}; "
                        f"known: {sorted(set(DEFAULTS) | set(REQUIRED))}")
    missing = [k for k in REQUIRED if k not in p]
    if missing:
        raise UserError(f"GroupDataLayer: missing required key(s) {missing}")
    out = dict(DEFAULTS, **p)
    for k in ("group_size", "height", "width", "prefetch", "workers"):
        if not isinstance(out[k], int) or isinstance(out[k], bool) or out[k] < 1:
            raise UserError(f"GroupDataLayer: '{k}' must be a positive integer, got {out[k]!r}")
    if not isinstance(out["skip"], int) or isinstance(out["skip"], bool) or out["skip"] < 0:
        raise UserError(f"GroupDataLayer: 'skip' must be a non-negative integer, got {out['skip']!r}")
    mean = out["mean"]
    if not (isinstance(mean, list) and len(mean) == 3 and all(isinstance(m, (int, float)) for m in mean)):
        raise UserError(f"GroupDataLayer: 'mean' must be a list of 3 numbers (B, G, R), got {mean!r}")
    if out["data_root"] is None:
        out["data_root"] = os.path.dirname(os.path.abspath(out["group_list"]))
    return out


def _in_root(root, path, where):
    """A path of the group list under the data root. One that leads outside it, absolute or
    climbing out with '..', would be read from wherever it points, or reported merely as not
    found: refused, saying why."""
    top = os.path.abspath(root)
    if os.path.commonpath([top, os.path.normpath(os.path.join(top, path))]) != top:
        how = "is absolute and outside" if os.path.isabs(path) else "leads outside"
        raise UserError(f"{where}: path {path} {how} the data root {root}; a group list's paths are "
                        "relative to its data root, and stay under it")
    return os.path.join(root, path)


class GroupLoader:
    """The decoding half of the layer, usable without Caffe: yields (data, label) arrays."""

    def __init__(self, params):
        self.p = params
        root = params["data_root"]
        check_input_folder(root, "data_root folder")
        groups = read_group_list(params["group_list"])
        k = params["group_size"]
        self.groups = []
        for i, g in enumerate(groups, 1):
            where = f"{params['group_list']}:{i} (group '{g['group']}')"
            if len(g["images"]) != k:
                raise UserError(f"{where}: has {len(g['images'])} images, the net takes groups of {k}")
            if g["masks"] is None or any(m is None for m in g["masks"]):
                raise UserError(f"{where}: every image needs a mask for training")
            imgs = [_in_root(root, x, where) for x in g["images"]]
            masks = [_in_root(root, x, where) for x in g["masks"]]
            for f in imgs + masks:
                try:
                    check_input_file(f, "image or mask")
                except UserError as e:
                    raise UserError(f"{where}: {e}") from None
            self.groups.append((imgs, masks))
        self.rng = np.random.RandomState(params["seed"])
        self.order, self.pos = [], 0
        self._cache = {} if params["cache"] else None
        self._warned = set()
        self._lock = threading.Lock()
        self.pool = concurrent.futures.ThreadPoolExecutor(params["workers"], thread_name_prefix="gwd-data")
        self.pending = collections.deque()
        for _ in range(params["skip"]):
            self._next_group()
        for _ in range(params["prefetch"]):
            self._submit()

    def _next_group(self):
        if self.pos >= len(self.order):
            self.order = (self.rng.permutation(len(self.groups)) if self.p["shuffle"]
                          else np.arange(len(self.groups)))
            self.pos = 0
        g = self.groups[self.order[self.pos]]
        self.pos += 1
        return g

    def _submit(self):
        imgs, masks = self._next_group()
        self.pending.append([self.pool.submit(self._load_pair, i, m) for i, m in zip(imgs, masks)])

    def _load_pair(self, img_path, mask_path):
        key = (img_path, mask_path)
        if self._cache is not None:
            hit = self._cache.get(key)
            if hit is not None:
                return hit
        h, w = self.p["height"], self.p["width"]
        img = read_image(img_path)
        mask = read_mask(mask_path)
        if mask.shape != img.shape[:2]:
            # both are resized to (h, w) anyway; warn once per file pair, never per epoch
            with self._lock:
                if key not in self._warned:
                    self._warned.add(key)
                    say(f"warning: {mask_path}: mask is {mask.shape[1]}x{mask.shape[0]}, image "
                        f"{img.shape[1]}x{img.shape[0]}; resizing both to {w}x{h}")
        pair = (image_to_blob(img, h, w, self.p["mean"]), mask_to_blob(mask, h, w))
        if self._cache is not None:
            self._cache[key] = pair
        return pair

    def next(self, data_out=None, label_out=None):
        """The next group as (data (K,3,H,W), label (K,1,H,W)); written into the given arrays
        when passed (the layer's tops), which avoids one copy."""
        futures = self.pending.popleft()
        self._submit()
        k, h, w = self.p["group_size"], self.p["height"], self.p["width"]
        if data_out is None:
            data_out = np.empty((k, 3, h, w), np.float32)
            label_out = np.empty((k, 1, h, w), np.float32)
        for i, f in enumerate(futures):
            data_out[i], label_out[i] = f.result()   # re-raises a worker's UserError here
        return data_out, label_out

    def close(self):
        for fs in self.pending:
            for f in fs:
                f.cancel()
        self.pool.shutdown(wait=False)


class GroupDataLayer(caffe.Layer):
    def setup(self, bottom, top):
        if len(bottom) != 0:
            raise UserError("GroupDataLayer takes no bottoms")
        if len(top) != 2:
            raise UserError("GroupDataLayer needs two tops: data and label")
        self.params = parse_params(self.param_str)
        self.loader = GroupLoader(self.params)

    def reshape(self, bottom, top):
        p = self.params
        top[0].reshape(p["group_size"], 3, p["height"], p["width"])
        top[1].reshape(p["group_size"], 1, p["height"], p["width"])

    def forward(self, bottom, top):
        self.loader.next(top[0].data, top[1].data)

    def backward(self, top, propagate_down, bottom):
        pass
