"""Small data in the real formats, for tests, benchmarks and the Docker and GPU checks: groups of
images with masks and their group list, and a caffemodel with VGG16's layer names and shapes."""
import os
import pathlib

import cv2
import numpy as np

from .grouplist import write_group_list
from .netio import caffe_pb2
from .surgery import VGG16_CONVS, VGG16_SHAPES


def write_toy_groups(root, n_groups=2, k=5, size=(60, 80), seed=0):
    """Groups of random JPEG images with a bright rectangle and its PNG mask; returns the list path."""
    rng = np.random.RandomState(seed)
    groups = []
    for g in range(n_groups):
        imgs, masks = [], []
        for i in range(k):
            h, w = size
            img = rng.randint(0, 255, (h, w, 3), dtype=np.uint8)
            mask = np.zeros((h, w), np.uint8)
            y, x = rng.randint(0, h // 2), rng.randint(0, w // 2)
            mask[y:y + h // 3, x:x + w // 3] = 255
            img[mask > 0] = (40, 200, 240)
            rel_i, rel_m = f"img/g {g}/{i}.jpg", f"gt/g {g}/{i}.png"
            os.makedirs(os.path.join(root, f"img/g {g}"), exist_ok=True)
            os.makedirs(os.path.join(root, f"gt/g {g}"), exist_ok=True)
            cv2.imwrite(os.path.join(root, rel_i), img)
            cv2.imwrite(os.path.join(root, rel_m), mask)
            imgs.append(rel_i)
            masks.append(rel_m)
        groups.append({"group": f"g {g}", "images": imgs, "masks": masks})
    path = os.path.join(root, "groups.jsonl")
    write_group_list(path, groups)
    return path


def write_vgg16_like(path, seed=0, legacy=True, break_layer=None):
    """A caffemodel with VGG16's layer names and shapes (the real 528 MB file cannot be fetched
    here), in the old V1 format of the published file, plus an fc layer the net does not have."""
    rng = np.random.RandomState(seed)
    net = caffe_pb2.NetParameter(name="VGG_ILSVRC_16_layers")
    expected = {}
    for name in VGG16_CONVS + ("fc8",):
        n_out, n_in = VGG16_SHAPES.get(name, (10, 7))
        k = 3 if name != "fc8" else 1
        if name == break_layer:
            n_in += 1
        layer = net.layers.add() if legacy else net.layer.add()
        layer.name = name
        if legacy:
            layer.type = caffe_pb2.V1LayerParameter.CONVOLUTION
        else:
            layer.type = "Convolution"
        w = (rng.randn(n_out, n_in, k, k) * np.sqrt(2.0 / (n_in * k * k))).astype(np.float32)   # He scale
        b = (0.01 * rng.randn(n_out)).astype(np.float32)
        for arr, dims in ((w, w.shape), (b, (1, 1, 1, n_out))):
            blob = layer.blobs.add()
            if legacy:
                blob.num, blob.channels, blob.height, blob.width = dims if arr.ndim == 1 else arr.shape
            else:
                blob.shape.dim.extend(arr.shape)
            blob.data.extend(arr.ravel().tolist())
        expected[name] = (w, b)
    with open(path, "wb") as f:
        f.write(net.SerializeToString())
    return expected


def icoseg_dev_root():
    """The real iCoseg development subset (8 groups with masks) used by tests, benchmarks and
    checks: $ICOSEG_DEV, else ../shared/datasets/icoseg-dev beside the project. It may not exist
    (a user's machine has no ../shared): callers skip what needs it."""
    from .layout import PROJECT_ROOT
    return pathlib.Path(os.environ.get("ICOSEG_DEV", PROJECT_ROOT.parent / "shared" / "datasets" / "icoseg-dev"))
