"""Weight surgery: VGG16 transplant by name with shape checks, stage 1 -> stage 2."""

import numpy as np
import pytest

from core.errors import UserError
from core.netio import load_net
from core.surgery import VGG16_CONVS, bilinear_kernel, he_init, single_to_group, transplant_vgg16
from core.toydata import write_vgg16_like

from core.layout import PROTOTXT_DIR as P
@pytest.mark.slow
@pytest.mark.parametrize("legacy", [True, False])
def test_vgg16_transplant_by_name(tmp_path, legacy):
    path = str(tmp_path / "vgg.caffemodel")
    expected = write_vgg16_like(path, legacy=legacy)
    net = load_net(f"{P}/single_deploy.prototxt")
    before = net.params["conv_s1"][0].data.copy()
    assert transplant_vgg16(net, path) == list(VGG16_CONVS)
    for name in VGG16_CONVS:
        np.testing.assert_array_equal(net.params[name][0].data, expected[name][0])
        np.testing.assert_array_equal(net.params[name][1].data, expected[name][1])
    np.testing.assert_array_equal(net.params["conv_s1"][0].data, before)   # not VGG16's: untouched


@pytest.mark.slow
def test_vgg16_shape_mismatch_names_the_layer(tmp_path):
    path = str(tmp_path / "vgg.caffemodel")
    write_vgg16_like(path, break_layer="conv3_2")
    net = load_net(f"{P}/single_deploy.prototxt")
    with pytest.raises(UserError, match=r"layer 'conv3_2' weights have shape \(256, 257, 3, 3\)"):
        transplant_vgg16(net, path)


def test_not_a_caffemodel(tmp_path):
    bad = tmp_path / "vgg.caffemodel"
    bad.write_bytes(b"\x00\x01garbage" * 10)
    net = load_net(f"{P}/tiny/single_deploy.prototxt")
    with pytest.raises(UserError, match="vgg.caffemodel"):
        transplant_vgg16(net, str(bad))


def test_bilinear_kernel_matches_caffe_filler():
    net = load_net(f"{P}/group_deploy.prototxt")
    np.testing.assert_allclose(net.params["upscore"][0].data[0, 0], bilinear_kernel(32), atol=1e-7)
    k4 = bilinear_kernel(4)
    np.testing.assert_allclose(k4[0], [0.0625, 0.1875, 0.1875, 0.0625])


@pytest.mark.slow
@pytest.mark.parametrize("tiny", ["", "tiny/"])
def test_stage2_starts_as_exactly_the_single_model(tiny):
    single = load_net(f"{P}/{tiny}single_deploy.prototxt")
    he_init(single, seed=4)
    group = load_net(f"{P}/{tiny}group_deploy.prototxt")
    he_init(group, seed=5)                     # the group block keeps these (random) weights
    g_block = group.params["conv_g1"][0].data.copy()
    copied = single_to_group(single, group)
    assert "score_co" in copied and "conv1_1" in copied and "conv_g1" not in copied
    np.testing.assert_array_equal(group.params["conv_g1"][0].data, g_block)
    n = single.params["score"][0].data.shape[1]
    assert np.all(group.params["score_co"][0].data[:, n:] == 0)
    shape = single.blobs["data"].data.shape
    x = np.random.RandomState(0).uniform(-100, 100, shape).astype(np.float32)
    single.blobs["data"].data[...] = x
    group.blobs["data"].data[...] = x
    a = single.forward()["saliency"]
    b = group.forward()["saliency"]
    assert np.abs(a).max() > 1e-2
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5 * np.abs(a).max())
    # and the group block is live: with a non-zero X half the outputs part ways
    group.params["score_co"][0].data[:, n:] = 0.01
    assert np.abs(group.forward()["saliency"] - a).max() > 1e-4


def test_single_to_group_rejects_another_net():
    single = load_net(f"{P}/tiny/single_deploy.prototxt")
    group = load_net(f"{P}/group_deploy.prototxt")          # full-width: shapes differ
    with pytest.raises(UserError, match="layer 'conv1_1'"):
        single_to_group(single, group)
