"""The paper's network as handwritten prototxts, run by the real pycaffe."""
import json

import cv2
import numpy as np
import pytest

from core.netio import load_net, read_prototxt
from core.surgery import he_init
from core.toydata import write_toy_groups

from core.layout import PROTOTXT_DIR as P
MODELS = ["group", "single", "tiny/group", "tiny/single"]


def layers_by_name(path):
    return {layer.name: layer for layer in read_prototxt(path).layer}


@pytest.mark.parametrize("model", MODELS)
def test_train_and_deploy_agree_layer_by_layer(model):
    train = read_prototxt(f"{P}/{model}_train.prototxt").layer
    deploy = read_prototxt(f"{P}/{model}_deploy.prototxt").layer
    # the same layers in the same order, but the input (Python data layer vs Input) and the loss
    t_names = [lay.name for lay in train if lay.type not in ("Python", "EuclideanLoss")]
    d_names = [lay.name for lay in deploy if lay.type != "Input"]
    assert t_names == d_names
    t, d = {lay.name: lay for lay in train}, {lay.name: lay for lay in deploy}
    for name in t_names:
        assert t[name] == d[name], f"{model}: layer '{name}' differs between train and deploy"
    assert d["data"].input_param.shape[0].dim == [5, 3] + _hw(t["data"])
    assert [lay.type for lay in train if lay.name == "loss"] == ["EuclideanLoss"]


def _hw(data_layer):
    p = json.loads(data_layer.python_param.param_str)
    assert p["group_size"] == 5
    return [p["height"], p["width"]]


# The eight handwritten prototxts form a cube: {full, tiny} x {train, deploy} x {group, single}.
# One test per axis says what may differ along it; everything else must be equal as protobuf.
def _normalise_tiny_axis(param):
    """Blank what may differ between full and tiny: widths, weight fillers, input size, net name."""
    param = type(param).FromString(param.SerializeToString())
    param.name = ""
    for layer in param.layer:
        if layer.type == "Convolution":
            layer.convolution_param.ClearField("weight_filler")
            if layer.convolution_param.num_output > 1:
                layer.convolution_param.num_output = 0
        if layer.type == "Input":
            del layer.input_param.shape[0].dim[2:]
        if layer.type == "Python":
            p = json.loads(layer.python_param.param_str)
            p.pop("height"), p.pop("width")
            layer.python_param.param_str = json.dumps(p, sort_keys=True)
    return param


@pytest.mark.parametrize("kind", ["group", "single"])
@pytest.mark.parametrize("phase", ["train", "deploy"])
def test_full_and_tiny_differ_only_in_widths_fillers_and_input_size(kind, phase):
    full = read_prototxt(f"{P}/{kind}_{phase}.prototxt")
    tiny = read_prototxt(f"{P}/tiny/{kind}_{phase}.prototxt")
    a, b = _normalise_tiny_axis(full), _normalise_tiny_axis(tiny)
    for la, lb in zip(a.layer, b.layer):
        assert la == lb, f"{kind}_{phase}: layer '{la.name}' differs between full and tiny beyond widths"
    assert len(a.layer) == len(b.layer)
    widths = lambda p: [x.convolution_param.num_output for x in p.layer if x.type == "Convolution"]  # noqa: E731
    assert all(t < f for t, f in zip(widths(tiny), widths(full)) if f > 1)


# The layers the group model adds to Ours-S: the group block and the collaborative concatenations.
GROUP_ONLY = {"slice_s", "concat_s", "conv_g1", "relu_g1", "conv_g2", "relu_g2", "conv_g3", "relu_g3",
              "slice_x", "concat_x1", "concat_x2", "concat_x3", "concat_x4", "concat_x5", "concat_c"}


@pytest.mark.parametrize("variant", ["", "tiny/"])
@pytest.mark.parametrize("phase", ["train", "deploy"])
def test_group_and_single_differ_only_in_the_group_block(variant, phase):
    group = read_prototxt(f"{P}/{variant}group_{phase}.prototxt")
    single = read_prototxt(f"{P}/{variant}single_{phase}.prototxt")
    kept = [layer for layer in group.layer if layer.name not in GROUP_ONLY]
    assert len(kept) == len(single.layer)
    assert {x.name for x in group.layer} - {x.name for x in single.layer} == GROUP_ONLY | {"score_co"}
    for g, s in zip(kept, single.layer):
        g = type(g).FromString(g.SerializeToString())
        if g.name == "score_co":        # Ours-S scores x_i alone: same conv, its own name and input
            g.name, g.top[0], g.bottom[0] = "score", "score", "conv_s3"
        if g.name == "upscore":
            g.bottom[0] = "score"
        assert g == s, f"{variant}{phase}: layer '{s.name}' differs between group and single"


def test_group_model_blob_shapes():
    net = load_net(f"{P}/group_deploy.prototxt")
    shapes = {k: tuple(v.data.shape) for k, v in net.blobs.items()}
    assert shapes["data"] == (5, 3, 128, 256)
    assert shapes["conv5_3"] == (5, 512, 8, 16)          # s_i: stride 16, no pool5
    assert shapes["s1"] == (1, 512, 8, 16)
    assert shapes["s_cat"] == (1, 2560, 8, 16)           # 5 x 512 on channels
    assert shapes["conv_g3"] == (1, 512, 8, 16)          # X
    assert shapes["conv_s3"] == (5, 512, 8, 16)          # x_i
    assert shapes["c1"] == (1, 1024, 8, 16)              # (x_i, X)
    assert shapes["c"] == (5, 1024, 8, 16)
    assert shapes["upscore"] == (5, 1, 144, 272)
    assert shapes["saliency"] == (5, 1, 128, 256)
    assert net.params["score_co"][0].data.shape == (1, 1024, 3, 3)
    assert net.params["upscore"][0].data.shape == (1, 1, 32, 32)
    single = load_net(f"{P}/single_deploy.prototxt")
    assert single.blobs["saliency"].data.shape == (5, 1, 128, 256)
    assert single.params["score"][0].data.shape == (1, 512, 3, 3)
    assert "conv_g1" not in single.params


def test_deconvolution_is_bilinear_and_crop_is_aligned():
    net = load_net(f"{P}/tiny/single_deploy.prototxt")
    w = net.params["upscore"][0].data[0, 0]
    f = np.array([1 - abs(i - 15.5) / 16 for i in range(32)])
    np.testing.assert_allclose(w, np.outer(f, f), atol=1e-6)
    # a constant score map upsamples to that constant away from the border (where only one
    # input cell contributes), and the offset-8 crop is centred: the border ramps are symmetric
    net.blobs["score"].data[...] = 1.0
    net.forward(start="upscore")
    out = net.blobs["saliency"].data
    np.testing.assert_allclose(out[..., 8:-8, 8:-8], 1.0, atol=1e-5)
    np.testing.assert_allclose(out, out[..., ::-1, ::-1], atol=1e-6)
    assert out[0, 0, 0, 0] == pytest.approx((1 - 7.5 / 16) ** 2, abs=1e-5)


@pytest.mark.slow
def test_train_forward_backward_reaches_first_layer_and_group_block(tmp_path):
    lst = write_toy_groups(str(tmp_path), n_groups=2)
    param = read_prototxt(f"{P}/group_train.prototxt")
    p = json.loads(param.layer[0].python_param.param_str)
    p.update(group_list=lst, data_root=str(tmp_path), workers=1, prefetch=1)
    param.layer[0].python_param.param_str = json.dumps(p)
    path = tmp_path / "train.prototxt"
    path.write_text(str(param))
    net = load_net(path, phase="train")
    he_init(net)
    for k in net.params:    # keep the loss finite with random weights
        net.params[k][0].data[...] *= 0.5
    loss = float(net.forward()["loss"])
    assert np.isfinite(loss) and loss > 0
    # EuclideanLoss = sum (y - t)^2 / (2 K)
    y, t = net.blobs["saliency"].data, net.blobs["label"].data
    assert loss == pytest.approx(((y - t) ** 2).sum() / 10, rel=1e-4)
    net.backward()
    for layer in ("conv1_1", "conv_g1", "conv_s1", "score_co", "upscore"):
        g = np.abs(net.params[layer][0].diff)
        assert g.max() > 0, f"no gradient reaches {layer}"


def _random_group(seed, h=128, w=256):
    rng = np.random.RandomState(seed)
    return rng.uniform(-100, 100, (5, 3, h, w)).astype(np.float32)


@pytest.mark.slow
@pytest.mark.parametrize("model,interacts", [("group", True), ("single", False)])
def test_group_interaction_only_in_group_model(model, interacts):
    net = load_net(f"{P}/{model}_deploy.prototxt")
    he_init(net, seed=1)
    x = _random_group(0)
    net.blobs["data"].data[...] = x
    a = net.forward()["saliency"].copy()
    x[3] = _random_group(5)[3]            # change image 3 only
    net.blobs["data"].data[...] = x
    b = net.forward()["saliency"].copy()
    assert np.abs(a[3] - b[3]).max() > 1e-3
    change_of_image0 = np.abs(a[0] - b[0]).max() / (np.abs(a[0]).max() + 1e-12)
    if interacts:
        assert change_of_image0 > 1e-3
    else:
        assert change_of_image0 == 0.0


@pytest.mark.slow
def test_deploy_runs_in_opencv_dnn_with_the_same_output(tmp_path):
    proto = f"{P}/group_deploy.prototxt"
    net = load_net(proto)
    he_init(net, seed=2)
    weights = str(tmp_path / "random.caffemodel")
    net.save(weights)
    x = _random_group(3)
    net.blobs["data"].data[...] = x
    ref = net.forward()["saliency"].copy()
    cvnet = cv2.dnn.readNetFromCaffe(proto, weights)
    cvnet.setInput(x)
    out = cvnet.forward()
    assert out.shape == ref.shape == (5, 1, 128, 256)
    scale = np.abs(ref).max()
    assert scale > 1e-2                    # a meaningful signal, not all zeros
    assert np.abs(out - ref).max() <= 1e-4 * max(1.0, scale)
