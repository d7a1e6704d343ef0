"""Co-saliency maps for any folder of images or benchmark dataset, with a trained deploy net.

    python -m apps.predict --weights W --images DIR --out OUT [--engine opencv]
    python -m apps.predict --weights W --dataset icoseg --root DIR --out OUT

Every dataset group (a sub-folder of DIR; images lying directly in DIR form one more group) is
covered by groups of K images drawn with data_prep.test_groups (design.md section 3); an image
drawn more than once gets the mean of its maps. Maps are resized back to each image's size,
clipped to [0, 1] and written as 8-bit PNG at <OUT>/<group>/<name>.png
(data_prep.datasets.prediction_path).

Two engines run the same deploy prototxt and weights: pycaffe ("caffe", CPU or GPU) and OpenCV's
DNN module ("opencv", the fast CPU path). Both are checked with core.netio before they read the
model, so weights for another net are a one-line error and not a Caffe abort.
"""
import collections
import os
import pathlib
import sys
import time

import cv2
import numpy as np

from core.layout import MODELS, model_files, prediction_path
from data_prep.datasets import load_dataset, verify_dataset
from data_prep.test_groups import sample_subgroups
from core.device import gpu_option, parse_gpu, select_mode
from core.args import ArgumentParser, positive_int
from core.errors import UserError, cli
from core.inputs import check_input_folder
from core.imageio import read_image, write_png
from core.outputs import prepare_out_dir, staged_dir
from core.netio import (caffe_path, check_net, check_weights_file, check_weights_fit, check_weights_path,
                        load_net, net_learnable_shapes, read_prototxt, read_weights)
from core.preprocess import image_to_blob
from core.progress import progress as progress_bar

ENGINES = ("caffe", "opencv")


# ---------------------------------------------------------------- the deploy net
def deploy_input_shape(prototxt):
    """(K, 3, H, W) of the deploy net's Input layer, after the checks of core.netio.check_net.

    prototxt: path of a deploy prototxt whose first input is an Input layer of one group."""
    prototxt = os.fspath(prototxt)
    param = read_prototxt(prototxt)
    check_net(param, prototxt)
    inputs = [layer for layer in param.layer if layer.type == "Input"]
    if not inputs or not inputs[0].input_param.shape:
        raise UserError(f"{prototxt}: no Input layer with a shape (is this a deploy prototxt?)")
    dims = tuple(inputs[0].input_param.shape[0].dim)
    if len(dims) != 4 or dims[1] != 3 or min(dims) < 1:
        raise UserError(f"{prototxt}: Input shape {list(dims)} is not (K, 3, H, W)")
    return dims


def _output_name(net):
    return "saliency" if "saliency" in net.outputs else net.outputs[0]


def _check_output(net, shape, prototxt):
    k, _, h, w = shape
    got = tuple(net.blobs[_output_name(net)].data.shape)
    if got != (k, 1, h, w):
        raise UserError(f"{prototxt}: output blob '{_output_name(net)}' has shape {list(got)}, "
                        f"prediction needs {[k, 1, h, w]}")


class CaffeEngine:
    """pycaffe forward of a deploy net. forward(blob (K, 3, H, W)) -> maps (K, H, W) float32."""
    name = "caffe"

    def __init__(self, prototxt, weights, gpu=None):
        """prototxt, weights: the deploy net and its .caffemodel; gpu: GPU id, or None (or a
        negative id, or '') for the CPU."""
        self.shape = deploy_input_shape(prototxt)
        self.mode = select_mode(gpu)   # checks the GPU first: Caffe aborts on an unusable one
        self.net = load_net(prototxt, weights)
        _check_output(self.net, self.shape, prototxt)
        self.out = _output_name(self.net)

    def forward(self, blob):
        self.net.blobs["data"].data[...] = blob
        return self.net.forward()[self.out][:, 0].copy()


class OpenCVEngine:
    """The same deploy net in cv2.dnn. forward(blob (K, 3, H, W)) -> maps (K, H, W) float32."""
    name = "opencv"

    def __init__(self, prototxt, weights, threads=None):
        """prototxt, weights: the deploy net and its .caffemodel; threads: cv2.setNumThreads
        (None: leave OpenCV's default, one per core)."""
        prototxt, weights = os.fspath(prototxt), caffe_path(weights, "weights file")
        self.shape = deploy_input_shape(prototxt)
        # cv2 has no shape checks of its own worth the name (a mismatch is a cv2.error, a
        # crash or silently wrong maps): check the weights against pycaffe's view of the net.
        check = load_net(prototxt)
        check_weights_fit(net_learnable_shapes(check), read_weights(weights), weights, require=list(check.params),
                          net_path=prototxt)
        _check_output(check, self.shape, prototxt)
        del check
        if threads is not None:
            cv2.setNumThreads(int(threads))
        try:
            self.net = cv2.dnn.readNetFromCaffe(prototxt, weights)
        except cv2.error as e:
            msg = str(e).strip().splitlines()[-1] if str(e).strip() else "cv2.error"
            raise UserError(f"{prototxt}: OpenCV DNN cannot read this net ({msg})") from None
        self.net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        self.net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)

    def forward(self, blob):
        self.net.setInput(np.ascontiguousarray(blob, dtype=np.float32))
        return self.net.forward()[:, 0].copy()


def open_engine(engine, prototxt, weights, gpu=None, threads=None):
    """An engine by name ("caffe" or "opencv") on a deploy prototxt and its weights."""
    check_weights_path(weights)
    if engine == "caffe":
        return CaffeEngine(prototxt, weights, gpu)
    if engine == "opencv":
        if parse_gpu(gpu) is not None:
            raise UserError("--gpu needs --engine caffe (OpenCV's DNN engine here is CPU-only)")
        return OpenCVEngine(prototxt, weights, threads)
    raise UserError(f"unknown engine '{engine}'; known: {', '.join(ENGINES)}")


# ---------------------------------------------------------------- groups and maps
def plan_groups(dataset, k, seed=0):
    """The test groups covering every image of `dataset` (a data_prep.datasets.Dataset):
    a list of (group name, [Item] * k), drawn by data_prep.test_groups.sample_subgroups."""
    return [(g, sub) for g, items in dataset.groups.items()
            for sub in sample_subgroups(items, k, seed, g)]


class RunningMean:
    """The mean of the maps predicted for each image, released when its last map is in.

    counts: {key: how many maps the image will get}. add(key, map) returns the mean map
    (float32) on the key's last occurrence and None before; memory holds only open images."""

    def __init__(self, counts):
        self.total = dict(counts)
        self.left = dict(counts)
        self.sum = {}

    def add(self, key, m):
        if self.left.get(key, 0) < 1:
            raise KeyError(f"{key!r}: more maps than announced")
        m = np.asarray(m, dtype=np.float64)
        self.sum[key] = self.sum[key] + m if key in self.sum else m.copy()
        self.left[key] -= 1
        if self.left[key]:
            return None
        return (self.sum.pop(key) / self.total[key]).astype(np.float32)


def to_image_size(m, height, width):
    """A net-resolution map -> (height, width) float32: bilinear, clipped to [0, 1]."""
    m = np.asarray(m, dtype=np.float32)
    if m.shape != (height, width):
        m = cv2.resize(m, (width, height), interpolation=cv2.INTER_LINEAR)
    return np.clip(m, 0.0, 1.0)


def predict_maps(engine, dataset, seed=0, progress=True):
    """Yield (Item, float32 map in [0, 1] at the image's own size), once per image of `dataset`.

    engine: a CaffeEngine or OpenCVEngine; dataset: a data_prep.datasets.Dataset; seed: the
    draw of the test groups; progress: a progress bar on stderr (core.progress)."""
    k, _, h, w = engine.shape
    plan = plan_groups(dataset, k, seed)
    mean = RunningMean(collections.Counter(it for _, sub in plan for it in sub))
    for _, sub in progress_bar(plan, desc=f"predict ({engine.name})", unit="group", enabled=progress):
        images = {}
        for it in sub:
            if it not in images:
                try:
                    images[it] = read_image(dataset.root / it.image)
                except UserError as e:
                    raise UserError(f"{e} (--verify skips files that do not decode)") from None
        maps = engine.forward(np.stack([image_to_blob(images[it], h, w) for it in sub]))
        for it, m in zip(sub, maps):
            done = mean.add(it, m)
            if done is not None:
                yield it, to_image_size(done, *images[it].shape[:2])


def write_maps(engine, dataset, out_dir, seed=0, progress=True):
    """Predict every image of `dataset` and write its 8-bit PNG under out_dir. The maps are
    staged and replace those of an earlier run together, at the end (core.outputs.staged_dir):
    a failed or interrupted run leaves the folder as it was. Returns the number of maps."""
    n = 0
    with staged_dir(out_dir) as stage:
        for it, m in predict_maps(engine, dataset, seed, progress):
            write_png(prediction_path(stage, it), m)
            n += 1
    return n


# ---------------------------------------------------------------- command line
def _check_out_dir(out, force, source_root):
    """--out checked before any work (core.outputs.prepare_out_dir), and not inside the input."""
    out = pathlib.Path(os.path.expanduser(out))
    src = pathlib.Path(source_root).resolve()
    if out.resolve() == src or src in out.resolve().parents:
        raise UserError(f"{out}: --out must not be inside the input folder {src} "
                        "(the maps would be read as images next time)")
    return pathlib.Path(prepare_out_dir(out, force))


def build_parser():
    p = ArgumentParser(
        prog="python -m apps.predict",
        description="Co-saliency maps for a folder of images (sub-folders are groups) or a "
                    "benchmark dataset, written as 8-bit PNG to <out>/<group>/<name>.png.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", help="a folder of images; each sub-folder is one group, images "
                                      "directly in it form one more group")
    src.add_argument("--dataset", help="a benchmark dataset name (see `python -m data_prep "
                                       "summary --help`), read from --root")
    p.add_argument("--root", help="the dataset's folder (with --dataset)")
    p.add_argument("--weights", required=True, help="trained .caffemodel")
    p.add_argument("--out", required=True, help="output folder (must be empty unless --force)")
    p.add_argument("--model", choices=sorted(MODELS), default="group",
                   help="group: the group model (Ours); single: Ours-S; group_plus: Ours+, not the paper's net (default group)")
    p.add_argument("--prototxt", help="deploy prototxt (default: prototxt/<model>_deploy.prototxt)")
    p.add_argument("--group-size", type=positive_int, default=None,
                   help="images per group; must match the deploy net's batch (default: the net's)")
    p.add_argument("--engine", choices=ENGINES, default="caffe",
                   help="caffe: pycaffe (CPU or --gpu); opencv: OpenCV DNN, the fast CPU path")
    p.add_argument("--gpu", type=gpu_option, help="GPU id (pycaffe engine only; empty or -1: CPU)")
    p.add_argument("--seed", type=int, default=0, help="seed of the group draw (default 0)")
    p.add_argument("--force", action="store_true", help="write into a non-empty --out")
    p.add_argument("--verify", action="store_true",
                   help="decode every image first and skip those that do not decode (slower)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


@cli
def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.dataset is not None and not args.root:
        raise UserError("--dataset needs --root (the dataset's folder)")
    if args.images is not None and args.root:
        raise UserError("--root goes with --dataset; with --images give the folder to --images")
    prototxt = args.prototxt or model_files(args.model).deploy
    shape = deploy_input_shape(prototxt)
    check_weights_file(prototxt, os.path.expanduser(args.weights))   # before the dataset is read
    if args.group_size is not None and args.group_size != shape[0]:
        raise UserError(f"--group-size {args.group_size} does not match the deploy net's batch of "
                        f"{shape[0]} ({prototxt}); pass a prototxt with that Input shape")
    if args.images is not None:
        name, root = "folder", args.images
        check_input_folder(root, "images folder")
    else:
        name, root = args.dataset, args.root
    out = _check_out_dir(args.out, args.force, os.path.expanduser(root))
    ds = load_dataset(name, root)
    if args.verify:
        ds = verify_dataset(ds, progress=not args.quiet)
        if len(ds) == 0:
            raise UserError(f"{root}: no image decodes ({ds.summary()})")
    if ds.issues:   # what was skipped (non-image files, unreadable files), counted, one line
        print(ds.summary(), file=sys.stderr)
    engine = open_engine(args.engine, prototxt, os.path.expanduser(args.weights), gpu=args.gpu)
    t0 = time.perf_counter()
    n = write_maps(engine, ds, out, seed=args.seed, progress=not args.quiet)
    dt = time.perf_counter() - t0
    where = getattr(engine, "mode", "CPU")
    print(f"wrote {n} maps for {len(ds.groups)} group(s) to {out} "
          f"({args.engine} on {where}, {dt:.1f} s, {n / max(dt, 1e-9):.2f} images/s)")


if __name__ == "__main__":
    main()
