"""The paper's network as handwritten prototxts, run by the real pycaffe."""
import json

import cv2
import numpy as np
import pytest

from core.netio import load_net, read_prototxt
from core.surgery import he_init
from core.toydata import write_toy_groups

from core.layout import PROTOTXT_DIR as P
MODELS = ["group", "single", "group_plus", "tiny/group", "tiny/single", "tiny/group_plus"]


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


# The handwritten prototxts form a cube: {full, tiny} x {train, deploy} x {group, single, group_plus}.
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


@pytest.mark.parametrize("kind", ["group", "single", "group_plus"])
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


# Ours+ (not the paper's) is the group model plus a global group summary g and the gates x_i * g,
# which the collaborative concatenations take as a third input; nothing else may differ.
PLUS_ONLY = {"pool_s", "conv_gp", "relu_gp", "flat_gp", "gate_x1", "gate_x2", "gate_x3", "gate_x4", "gate_x5"}


@pytest.mark.parametrize("variant", ["", "tiny/"])
@pytest.mark.parametrize("phase", ["train", "deploy"])
def test_group_plus_and_group_differ_only_in_the_group_summary(variant, phase):
    plus = read_prototxt(f"{P}/{variant}group_plus_{phase}.prototxt")
    group = read_prototxt(f"{P}/{variant}group_{phase}.prototxt")
    assert {x.name for x in plus.layer} - {x.name for x in group.layer} == PLUS_ONLY
    kept = [layer for layer in plus.layer if layer.name not in PLUS_ONLY]
    assert len(kept) == len(group.layer)
    for p, g in zip(kept, group.layer):
        p = type(p).FromString(p.SerializeToString())
        if p.name.startswith("concat_x") and p.name != "concat_x":
            assert list(p.bottom) == [f"x{p.name[-1]}", "conv_g3", f"xg{p.name[-1]}"]
            del p.bottom[2]
        assert p == g, f"{variant}{phase}: layer '{g.name}' differs between group_plus and group"
    gates = [x for x in plus.layer if x.name.startswith("gate_x")]
    assert [(list(x.bottom), x.type, x.scale_param.axis) for x in gates] == \
        [([f"x{i}", "g"], "Scale", 0) for i in range(1, 6)]


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


@pytest.mark.slow
def test_group_plus_blob_shapes():
    net = load_net(f"{P}/group_plus_deploy.prototxt")
    shapes = {k: tuple(v.data.shape) for k, v in net.blobs.items()}
    assert shapes["pool_s"] == (1, 2560, 1, 1)            # each image's per-channel maximum
    assert shapes["g"] == (1, 512)                        # the group summary
    assert shapes["xg1"] == (1, 512, 8, 16)               # x_1 * g
    assert shapes["c"] == (5, 1536, 8, 16)                # (x_i, X, x_i * g)
    assert shapes["saliency"] == (5, 1, 128, 256)
    assert net.params["conv_gp"][0].data.shape == (512, 2560, 1, 1)
    assert net.params["score_co"][0].data.shape == (1, 1536, 3, 3)


def test_group_plus_gate_is_x_times_the_global_maximum_summary():
    """g = ReLU(conv_gp(max over positions of each image's conv5_3)); x_i * g channel-wise."""
    net = load_net(f"{P}/tiny/group_plus_deploy.prototxt")
    he_init(net, seed=3)
    net.blobs["data"].data[...] = _random_group(4, 64, 128)
    net.forward()
    s = net.blobs["conv5_3"].data                          # 5 x C x h x w
    m = s.max(axis=(2, 3)).reshape(-1)                     # image-major, as Concat on channels
    w, b = net.params["conv_gp"][0].data[:, :, 0, 0], net.params["conv_gp"][1].data
    g = np.maximum(w @ m + b, 0)
    np.testing.assert_allclose(net.blobs["g"].data[0], g, rtol=1e-4, atol=1e-4 * np.abs(g).max())
    x = net.blobs["conv_s3"].data
    for i in range(5):
        np.testing.assert_allclose(net.blobs[f"xg{i + 1}"].data[0], x[i] * g[:, None, None],
                                   rtol=1e-4, atol=1e-4 * np.abs(x[i]).max() * np.abs(g).max())


@pytest.mark.parametrize("model,shared", [("group", True), ("group_plus", False)])
def test_the_papers_merge_adds_one_group_map_to_every_image(model, shared):
    """README "What the group block can and cannot learn": score_co is linear in Concat(x_i, X),
    so what X adds to image i's score is the same map for all 5 images; Ours+'s x_i * g is not."""
    net = load_net(f"{P}/tiny/{model}_deploy.prototxt")
    he_init(net, seed=6)
    net.blobs["data"].data[...] = _random_group(7, 64, 128)
    net.forward()
    full = net.blobs["score_co"].data.copy()
    n = net.blobs["conv_s3"].data.shape[1]
    net.params["score_co"][0].data[:, n:] = 0              # x_i alone
    net.forward(start="score_co", end="score_co")
    added = full - net.blobs["score_co"].data              # 5 x 1 x h x w: the group's share
    assert np.abs(added).max() > 1e-2
    spread = np.abs(added - added[:1]).max() / np.abs(added).max()
    if shared:
        assert spread < 1e-5
    else:
        assert spread > 1e-2


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
@pytest.mark.parametrize("model,interacts", [("group", True), ("single", False), ("group_plus", True)])
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
@pytest.mark.parametrize("model", ["group", "group_plus", "tiny/group_plus"])
def test_deploy_runs_in_opencv_dnn_with_the_same_output(tmp_path, model):
    proto = f"{P}/{model}_deploy.prototxt"
    net = load_net(proto)
    he_init(net, seed=2)
    weights = str(tmp_path / "random.caffemodel")
    net.save(weights)
    x = _random_group(3, *net.blobs["data"].data.shape[2:])
    net.blobs["data"].data[...] = x
    ref = net.forward()["saliency"].copy()
    cvnet = cv2.dnn.readNetFromCaffe(proto, weights)
    cvnet.setInput(x)
    out = cvnet.forward()
    assert out.shape == ref.shape == x.shape[:1] + (1,) + x.shape[2:]
    scale = np.abs(ref).max()
    assert scale > 1e-2                    # a meaningful signal, not all zeros
    assert np.abs(out - ref).max() <= 1e-4 * max(1.0, scale)
