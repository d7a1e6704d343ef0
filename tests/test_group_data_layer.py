"""GroupDataLayer through a temporary prototxt that names the module, as BVLC's own
test_python_layer.py does; values checked against hand computation."""
import json
import os

import cv2
import numpy as np
import pytest

from core.errors import UserError
from core.grouplist import write_group_list
from core.netio import caffe
from core.preprocess import VGG_MEAN_BGR
from python_layers.group_data_layer import GroupLoader, parse_params
from core.toydata import write_toy_groups


def data_net(tmp_path, **params):
    prm = json.dumps(json.dumps(params))
    path = tmp_path / "data.prototxt"
    path.write_text(f'''name: "d"
layer {{ name: "data" type: "Python" top: "data" top: "label"
  python_param {{ module: "python_layers.group_data_layer" layer: "GroupDataLayer" param_str: {prm} }} }}
''')
    return caffe.Net(str(path), caffe.TRAIN)


def write_exact_group(root, k=5):
    """Images whose preprocessed values are known: a constant BGR colour per image at the net's
    size (no resize), masks as 1-bit PNG written by OpenCV (0/255 -> 0/1)."""
    imgs, masks = [], []
    os.makedirs(os.path.join(root, "a"), exist_ok=True)
    for i in range(k):
        img = np.zeros((16, 32, 3), np.uint8)
        img[:] = (10 * i, 100, 200)                    # B, G, R
        img[:, :16] = (0, 0, 255)                      # left half pure red
        m = np.zeros((16, 32), np.uint8)
        m[4:8, 4 + i:12 + i] = 255
        cv2.imwrite(os.path.join(root, f"a/{i}.png"), img)
        cv2.imwrite(os.path.join(root, f"a/{i}_m.png"), m, [cv2.IMWRITE_PNG_BILEVEL, 1])
        imgs.append(f"a/{i}.png")
        masks.append(f"a/{i}_m.png")
    write_group_list(os.path.join(root, "g.jsonl"), [{"group": "a", "images": imgs, "masks": masks}])
    return os.path.join(root, "g.jsonl")


def test_values_bgr_order_mean_and_mask_scaling(tmp_path):
    lst = write_exact_group(str(tmp_path))
    net = data_net(tmp_path, group_list=lst, data_root=str(tmp_path), height=16, width=32, shuffle=False)
    net.forward()
    data, label = net.blobs["data"].data, net.blobs["label"].data
    assert data.shape == (5, 3, 16, 32) and label.shape == (5, 1, 16, 32)
    mb, mg, mr = VGG_MEAN_BGR
    for i in range(5):
        # channel 0 is blue: BGR order as VGG16 was trained
        np.testing.assert_allclose(data[i, :, 0, 20], [10 * i - mb, 100 - mg, 200 - mr], rtol=1e-6)
        np.testing.assert_allclose(data[i, :, 0, 0], [-mb, -mg, 255 - mr], rtol=1e-6)
        want = np.zeros((16, 32), np.float32)
        want[4:8, 4 + i:12 + i] = 1.0
        np.testing.assert_array_equal(label[i, 0], want)


def test_resizes_to_the_net_input(tmp_path):
    lst = write_toy_groups(str(tmp_path), n_groups=1, size=(60, 80))
    net = data_net(tmp_path, group_list=lst, data_root=str(tmp_path), height=32, width=64)
    net.forward()
    assert net.blobs["data"].data.shape == (5, 3, 32, 64)
    lab = net.blobs["label"].data
    assert 0.0 <= lab.min() and lab.max() <= 1.0 and lab.max() > 0.9


def _sequence(lst, root, seed, n=12, shuffle=True):
    p = parse_params(json.dumps({"group_list": lst, "data_root": root, "height": 8, "width": 8,
                                 "shuffle": shuffle, "seed": seed, "workers": 2, "prefetch": 3}))
    loader = GroupLoader(p)
    try:
        return [float(loader.next()[0].sum()) for _ in range(n)]
    finally:
        loader.close()


def test_shuffle_with_seed_is_reproducible(tmp_path):
    lst = write_toy_groups(str(tmp_path), n_groups=6)
    a = _sequence(lst, str(tmp_path), seed=3)
    assert a == _sequence(lst, str(tmp_path), seed=3)
    assert a != _sequence(lst, str(tmp_path), seed=4)
    # every epoch visits every group once
    assert sorted(a[:6]) == sorted(a[6:12]) and len(set(a[:6])) == 6
    plain = _sequence(lst, str(tmp_path), seed=0, shuffle=False)
    assert plain[:6] == plain[6:12]


def test_cache_gives_identical_data(tmp_path):
    lst = write_toy_groups(str(tmp_path), n_groups=2)
    p = parse_params(json.dumps({"group_list": lst, "data_root": str(tmp_path), "height": 16, "width": 16,
                                 "shuffle": False, "cache": True}))
    loader = GroupLoader(p)
    first = [loader.next()[0].copy() for _ in range(2)]
    again = [loader.next()[0].copy() for _ in range(2)]
    loader.close()
    for x, y in zip(first, again):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("param_str,message", [
    ("{not json", "not valid JSON"),
    ('["a"]', "must be a JSON object"),
    ('{"group_list": "x", "bogus": 1}', "unknown key(s) ['bogus']"),
    ('{"data_root": "."}', "missing required key(s) ['group_list']"),
    ('{"group_list": "x", "group_size": 0}', "'group_size' must be a positive integer"),
    ('{"group_list": "x", "mean": [1, 2]}', "'mean' must be a list of 3 numbers"),
])
def test_bad_param_str_is_a_clear_python_error(tmp_path, param_str, message):
    path = tmp_path / "bad.prototxt"
    path.write_text('layer { name: "data" type: "Python" top: "data" top: "label" python_param { '
                    'module: "python_layers.group_data_layer" layer: "GroupDataLayer" '
                    f'param_str: {json.dumps(param_str)} }} }}')
    with pytest.raises(UserError) as e:
        caffe.Net(str(path), caffe.TRAIN)
    assert message in str(e.value)


def test_group_of_wrong_size_and_missing_file(tmp_path):
    lst = write_toy_groups(str(tmp_path), n_groups=1, k=4)
    with pytest.raises(UserError, match="has 4 images, the net takes groups of 5"):
        data_net(tmp_path, group_list=lst, data_root=str(tmp_path))
    lst = write_toy_groups(str(tmp_path), n_groups=1, k=5)
    os.remove(tmp_path / "gt/g 0/3.png")
    with pytest.raises(UserError, match=r"gt/g 0/3.png: image or mask not found"):
        data_net(tmp_path, group_list=lst, data_root=str(tmp_path))


def test_corrupt_image_fails_in_forward_naming_the_file(tmp_path):
    lst = write_toy_groups(str(tmp_path), n_groups=1)
    (tmp_path / "img/g 0/2.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    net = data_net(tmp_path, group_list=lst, data_root=str(tmp_path), prefetch=1)
    with pytest.raises(UserError, match=r"img/g 0/2.jpg: truncated file"):
        net.forward()


def test_grayscale_alpha_and_mismatched_mask(tmp_path, capsys):
    os.makedirs(tmp_path / "x")
    gray = np.full((20, 30), 77, np.uint8)
    bgra = np.zeros((20, 30, 4), np.uint8)
    bgra[..., :3] = (1, 2, 3)
    bgra[..., 3] = 9
    cv2.imwrite(str(tmp_path / "x/gray.png"), gray)
    cv2.imwrite(str(tmp_path / "x/alpha.png"), bgra)
    cv2.imwrite(str(tmp_path / "x/m.png"), np.full((20, 30), 255, np.uint8))
    cv2.imwrite(str(tmp_path / "x/m_small.png"), np.full((10, 15), 255, np.uint8))
    imgs = ["x/gray.png", "x/alpha.png", "x/gray.png", "x/gray.png", "x/gray.png"]
    masks = ["x/m.png", "x/m.png", "x/m_small.png", "x/m.png", "x/m.png"]
    write_group_list(tmp_path / "g.jsonl", [{"group": "x", "images": imgs, "masks": masks}])
    p = parse_params(json.dumps({"group_list": str(tmp_path / "g.jsonl"), "height": 20, "width": 30,
                                 "shuffle": False, "prefetch": 1}))
    loader = GroupLoader(p)
    data, label = loader.next()
    loader.next()
    loader.close()
    mismatch = [x for x in capsys.readouterr().err.splitlines() if "m_small.png: mask is 15x10" in x]
    assert len(mismatch) == 1 and mismatch[0].startswith("warning: ")   # one line, once, not per epoch
    mb, mg, mr = VGG_MEAN_BGR
    np.testing.assert_allclose(data[0, :, 5, 5], [77 - mb, 77 - mg, 77 - mr], rtol=1e-6)
    np.testing.assert_allclose(data[1, :, 5, 5], [1 - mb, 2 - mg, 3 - mr], rtol=1e-6)
    np.testing.assert_allclose(label[2], 1.0)
