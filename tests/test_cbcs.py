"""CBCS / CBCS-S: the MATLAB behaviours, every cue on hand-computed inputs, a synthetic group
whose answer is known, and a run of the command line on one real iCoseg group."""
import json
import math

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from skimage.color import rgb2lab

from baselines import cbcs
from baselines.matlab_ops import (filter_zero_padded, gaussian_kernel, gaussmf, imresize,
                                  round_half_away, srgb_to_lab)


# ---------------------------------------------------------------- MATLAB behaviours

def test_round_half_away_from_zero():
    x = [-2.5, -1.5, -0.5, 0.4, 0.5, 1.5, 2.5]
    assert round_half_away(x).tolist() == [-3, -2, -1, 0, 1, 2, 3]


def test_lab_matches_scikit_image_and_known_values():
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    assert np.abs(srgb_to_lab(rgb) - rgb2lab(rgb)).max() < 0.05
    # sRGB red and white under D65 (CIE L*a*b* 53.24, 80.09, 67.20 and 100, 0, 0)
    lab = srgb_to_lab(np.array([[255, 0, 0], [255, 255, 255], [0, 0, 0]], np.uint8))
    np.testing.assert_allclose(lab[0], [53.24, 80.09, 67.20], atol=0.05)
    np.testing.assert_allclose(lab[1], [100, 0, 0], atol=0.02)
    np.testing.assert_allclose(lab[2], [0, 0, 0], atol=1e-9)


def test_imresize_upscale_by_hand_with_mirrored_border():
    # [0 1] -> 4 samples at u = 0.75, 1.25, 1.75, 2.25 with the Keys kernel and mirrored ends:
    # cubic(0.25) = 0.8671875, cubic(0.75) = 0.2265625, cubic(1.25) = -0.0703125,
    # cubic(1.75) = -0.0234375; out[0] = cubic(1.75) + cubic(1.25) (both taps mirror onto 1).
    out = imresize(np.array([[0.0, 1.0]]), (1, 4))
    np.testing.assert_allclose(out, [[-0.09375, 0.203125, 0.796875, 1.09375]], atol=1e-12)


@pytest.mark.parametrize("shape", [(24, 30), (150, 170), (60, 33)])
def test_imresize_interior_matches_pillow_bicubic(shape):
    # Pillow's BICUBIC is the same antialiased Keys kernel; only its border rule differs.
    a = np.random.default_rng(0).random((60, 80)).astype(np.float32)
    ours = imresize(a.astype(np.float64), shape)
    ref = np.asarray(Image.fromarray(a, mode="F").resize(shape[::-1], Image.BICUBIC))
    np.testing.assert_allclose(ours[10:-10, 10:-10], ref[10:-10, 10:-10], atol=1e-5)


def test_imresize_uint8_constant_and_range():
    a = np.full((37, 53, 3), 77, np.uint8)
    out = imresize(a, (200, 200))
    assert out.dtype == np.uint8 and out.shape == (200, 200, 3) and np.all(out == 77)
    edge = np.zeros((20, 20), np.uint8)
    edge[:, 10:] = 255                                  # overshoot is saturated, not wrapped
    out = imresize(edge, (50, 50))
    assert out.min() == 0 and out.max() == 255


def test_gaussian_kernel_and_zero_padded_filter():
    e1, e2 = math.exp(-1 / 18), math.exp(-2 / 18)       # sigma 3: exp(-d^2 / 18)
    z = 1 + 4 * e1 + 4 * e2
    h = gaussian_kernel(3, 3.0)
    np.testing.assert_allclose(h, np.array([[e2, e1, e2], [e1, 1, e1], [e2, e1, e2]]) / z)
    rng = np.random.default_rng(2)
    a, skew = rng.random((9, 12)), rng.random((3, 5))   # correlation, not convolution
    np.testing.assert_allclose(filter_zero_padded(a, skew),
                               ndimage.correlate(a, skew, mode="constant"), atol=1e-12)
    out = filter_zero_padded(np.ones((4, 5)), h)
    assert out[0, 0] == pytest.approx((1 + 2 * e1 + e2) / z)      # corner: a 2 x 2 window
    assert out[0, 2] == pytest.approx((1 + 3 * e1 + 2 * e2) / z)  # edge: a 2 x 3 window
    assert out[2, 2] == pytest.approx(1.0)


# ---------------------------------------------------------------- cues

def test_contrast_cue_by_hand():
    centres = np.array([[0.0, 0, 0], [3, 4, 0], [0, 0, 10]])
    labels = np.array([[0, 0], [1, 2]])                 # shares 0.5, 0.25, 0.25
    d12 = math.sqrt(125)
    np.testing.assert_allclose(cbcs.contrast_cue(centres, labels),
                               [0.25 * 5 + 0.25 * 10, 0.5 * 5 + 0.25 * d12, 0.5 * 10 + 0.25 * d12])


def test_spatial_cue_by_hand():
    labels = np.array([[0, 0, 1], [1, 1, 1]])
    dist = np.array([[0, 2, 10], [20, 30, 40]])
    w = cbcs.spatial_cue(labels, dist, 3, sigma=200)
    assert w[0] == pytest.approx(math.exp(-1 / (2 * 200 ** 2)))    # mean distance 1
    assert w[1] == pytest.approx(math.exp(-25 ** 2 / (2 * 200 ** 2)))
    assert math.isnan(w[2])                              # empty cluster


def test_corresponding_cue_by_hand():
    a = np.array([0, 0, 0, 1, 1, 2])
    b = np.array([0, 1, 1, 1, 2, 2])
    w = cbcs.corresponding_cue(np.stack([a, b]), 4)
    # cluster 0: shares 3/4, 1/4 -> mean 1/2, sample std sqrt(2) / 4
    assert w[0] == pytest.approx(0.5 / (math.sqrt(2) / 4 + 1))
    # cluster 1: 2/5, 3/5 -> std sqrt(2) / 10; cluster 2: 1/3, 2/3 -> std sqrt(2) / 6
    assert w[1] == pytest.approx(0.5 / (math.sqrt(2) / 10 + 1))
    assert w[2] == pytest.approx(0.5 / (math.sqrt(2) / 6 + 1))
    assert math.isnan(w[3])
    # a cluster wholly inside one of 4 images: mean 1/4, std 1/2
    one = cbcs.corresponding_cue(np.array([[0, 1], [1, 1], [1, 1], [1, 1]]), 2)
    assert one[0] == pytest.approx(0.25 / 1.5)


def test_gauss_normal_by_hand():
    np.testing.assert_allclose(cbcs.gauss_normal([1.0, 2.0, 3.0]),
                               [math.exp(-2), math.exp(-0.5), 1.0])
    out = cbcs.gauss_normal([1.0, np.nan, 3.0])
    assert math.isnan(out[1]) and out[0] == pytest.approx(math.exp(-2)) and out[2] == 1.0
    np.testing.assert_array_equal(cbcs.gauss_normal([0.4, 0.4]), [1.0, 1.0])
    assert gaussmf(3.0, 2.0, 1.0) == pytest.approx(math.exp(-0.5))


def test_cluster_map_paints_and_smooths():
    labels = np.zeros((5, 5), np.int64)
    labels[2, 2] = 1
    out = cbcs.cluster_map(labels, np.array([0.0, 1.0]))
    np.testing.assert_allclose(out[1:4, 1:4], gaussian_kernel(3, 3.0))
    assert out[0].max() == 0


def test_cluster_counts_and_centre_distance():
    assert [cbcs.group_clusters(m) for m in (1, 5, 8, 15, 40)] == [10, 10, 16, 30, 30]
    d = cbcs.center_distance(200)
    assert d[99, 99] == 0 and d[0, 0] == round(math.hypot(99, 99)) and d[199, 199] == 141


# ---------------------------------------------------------------- k-means++

def test_kmeans_is_a_lloyd_fixed_point():
    rng = np.random.default_rng(0)
    feats = np.concatenate([rng.normal(c, 3, (300, 3)) for c in ([10, 0, 0], [60, 40, 0],
                                                                 [40, -30, 30], [80, 0, -40])])
    feats = round_half_away(feats).astype(np.int16)
    labels, centres = cbcs.kmeans_pp(feats, 4, np.random.default_rng(5))
    for j in range(4):
        np.testing.assert_allclose(centres[j], feats[labels == j].mean(axis=0))
    d = ((feats[:, None, :] - centres[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(labels, d.argmin(axis=1))
    # the four blobs are recovered
    assert sorted(np.bincount(labels).tolist()) == [300, 300, 300, 300]


def test_kmeans_pruned_lloyd_equals_plain_lloyd():
    rng = np.random.default_rng(4)
    smooth = np.cumsum(rng.normal(0, 1.5, (3, 60, 60)), axis=2)      # photo-like gradients
    feats = round_half_away(np.stack([50 + smooth[0], smooth[1], smooth[2]], -1).reshape(-1, 3))
    feats = feats.astype(np.int16)
    for seed in range(3):
        fast = cbcs.kmeans_pp(feats, 12, np.random.default_rng(seed))
        plain = cbcs.kmeans_pp(feats, 12, np.random.default_rng(seed), prune=False)
        np.testing.assert_array_equal(fast[0], plain[0])
        np.testing.assert_array_equal(fast[1], plain[1])


def test_kmeans_with_fewer_colours_than_clusters():
    feats = np.array([[5, 1, 1]] * 10 + [[50, 0, 0]] * 5 + [[90, 9, 9]] * 3, np.int16)
    labels, centres = cbcs.kmeans_pp(feats, 6, np.random.default_rng(0))
    assert len(np.unique(labels)) == 3 and centres.shape == (6, 3)
    np.testing.assert_array_equal(centres[labels], feats)
    np.testing.assert_array_equal(centres[3:], [[5, 1, 1]] * 3)   # the first pixel's colour


# ---------------------------------------------------------------- synthetic group

# sRGB encodings (B, G, R) of Lab (60, 35, 0), (60, -35, 0) and (60, 0, 0): both object colours
# lie equally far from the grey background.
COMMON, UNIQUE, GREY = (146, 120, 202), (144, 161, 50), (145, 145, 145)


def _disc(cy, cx, r=12, size=100):
    y, x = np.mgrid[:size, :size]
    return (y - cy) ** 2 + (x - cx) ** 2 <= r * r


def _synthetic_group(seed):
    rng = np.random.default_rng(seed)
    images = []
    for i, centre in enumerate([(50, 30), (40, 45), (55, 60), (45, 50)]):
        im = np.empty((100, 100, 3))
        im[:] = GREY
        im[_disc(*centre)] = COMMON
        if i == 0:
            im[_disc(50, 70)] = UNIQUE       # as far from the centre as the common object
        images.append(np.clip(im + rng.normal(0, 4, im.shape), 0, 255).astype(np.uint8))
    return images


def test_synthetic_colours_are_what_the_test_assumes():
    lab = srgb_to_lab(np.array([COMMON, UNIQUE, GREY], np.uint8)[:, ::-1])
    np.testing.assert_allclose(lab, [[60, 35, 0], [60, -35, 0], [60, 0, 0]], atol=0.6)


@pytest.mark.parametrize("seed", [0, 1])
def test_cbcs_prefers_the_common_object_and_cbcs_s_does_not(seed):
    images = _synthetic_group(seed)
    names = [f"im{i}" for i in range(len(images))]
    common, unique = _disc(50, 30), _disc(50, 70)
    co = cbcs.cbcs_maps(images, names, group="g", seed=seed)
    single = cbcs.cbcs_maps(images, names, group="g", seed=seed, single=True)
    assert all(m.shape == (100, 100) for m in co + single)
    c, u = co[0][common].mean(), co[0][unique].mean()
    assert c > 0.8 and u < 0.3 * c
    sc, su = single[0][common].mean(), single[0][unique].mean()
    assert sc > 0.8 and abs(sc - su) < 0.1 * sc
    background = ~(common | unique)
    assert single[0][background].mean() < 0.1 and co[0][background].mean() < 0.1


def test_cbcs_s_is_the_single_factor_and_runs_are_deterministic():
    images = _synthetic_group(3)[:2]
    names = ["a", "b"]
    s1 = cbcs.cbcs_maps(images, names, group="g", seed=7, single=True)
    s2 = cbcs.cbcs_maps(images, names, group="g", seed=7, single=True)
    c = cbcs.cbcs_maps(images, names, group="g", seed=7)
    for a, b, m in zip(s1, s2, c):
        np.testing.assert_array_equal(a, b)
        assert np.all(m <= a + 1e-6)   # CBCS = single x group (both <= 1); resizing is linear
    assert cbcs.derive_seed(7, "group", "g") == cbcs.derive_seed(7, "group", "g")
    assert cbcs.derive_seed(7, "group", "g") != cbcs.derive_seed(8, "group", "g")


def test_maps_come_back_at_each_image_size():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, s + (3,), dtype=np.uint8) for s in [(37, 91), (250, 120)]]
    maps = cbcs.cbcs_maps(images, ["x", "y"], group="g")
    assert [m.shape for m in maps] == [(37, 91), (250, 120)]
    assert all(0 <= m.min() and m.max() <= 1 for m in maps)
    assert cbcs.to_uint8(np.array([0.5 / 255, 1.5 / 255, 2.0, -1.0])).tolist() == [1, 2, 255, 0]


# ---------------------------------------------------------------- command line, real data

@pytest.mark.slow
def test_cli_one_real_group(icoseg_dev, tmp_path, capsys):
    from core.layout import prediction_path
    from data_prep.datasets import load_dataset
    from core.imageio import read_gray, read_image, read_mask

    ds = load_dataset("icoseg", icoseg_dev)
    group = min(ds.groups, key=lambda g: (len(ds.groups[g]), g))
    out = tmp_path / "cbcs"
    argv = ["--dataset", "icoseg", "--root", str(icoseg_dev), "--out", str(out),
            "--group", group, "--workers", "1"]
    cbcs.main(argv)
    fg, bg = np.zeros(256), np.zeros(256)
    for it in ds.groups[group]:
        sal = read_gray(prediction_path(out, it))
        assert sal.shape == read_image(ds.root / it.image).shape[:2]
        if it.mask is not None:
            gt = read_mask(ds.root / it.mask) > 0.5
            levels = np.rint(sal * 255).astype(np.int64)
            fg += np.bincount(levels[gt], minlength=256)
            bg += np.bincount(levels[~gt], minlength=256)
    # pooled ROC AUC = P(object pixel > background pixel), ties half: a working saliency method
    auc = np.sum(fg * (np.cumsum(bg) - bg / 2)) / (fg.sum() * bg.sum())
    assert auc > 0.65
    assert json.loads((out / cbcs.RUN_FILE).read_text())["method"] == "CBCS"

    capsys.readouterr()
    with pytest.raises(SystemExit) as e:                # refuses a non-empty folder
        cbcs.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not empty" in err[0] and "--force" in err[0]

    first = prediction_path(out, ds.groups[group][0])
    before = first.read_bytes()
    first.unlink()
    cbcs.main(argv + ["--resume"])                      # redoes only the incomplete group
    assert first.read_bytes() == before                 # deterministic
    with pytest.raises(SystemExit) as e:                # a resume must not mix methods
        cbcs.main(argv + ["--resume", "--single"])
    assert e.value.code == 2
    cbcs.main(argv + ["--force", "--single"])
    assert first.read_bytes() != before


def test_cli_rejects_bad_arguments(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cbcs.main(["--dataset", "nope", "--root", str(tmp_path), "--out", str(tmp_path / "o")])
    assert e.value.code == 2 and "unknown dataset" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        cbcs.main(["--dataset", "icoseg", "--root", str(tmp_path), "--out", str(tmp_path / "o"),
                   "--workers", "0"])
    assert e.value.code == 2 and "--workers" in capsys.readouterr().err


def test_run_gives_the_same_maps_with_one_or_two_workers(tmp_path):
    from core.layout import prediction_path
    from data_prep.datasets import Dataset, Item
    from core.imageio import write_png

    groups = {}
    for g in ("first group", "second, group!"):
        items = []
        for i, im in enumerate(_synthetic_group(len(groups))[:2]):
            rel = f"images/{g}/{i}.png"
            write_png(tmp_path / rel, im[: 60 + 10 * i])            # sizes differ
            items.append(Item(g, str(i), rel, None))
        groups[g] = items
    ds = Dataset("synthetic", tmp_path, groups)
    assert cbcs.run(ds, tmp_path / "one", workers=1, progress=False) == 4
    assert cbcs.run(ds, tmp_path / "two", workers=2, progress=False) == 4
    for it in ds.items():
        a = prediction_path(tmp_path / "one", it).read_bytes()
        assert a == prediction_path(tmp_path / "two", it).read_bytes()
    # skip_done leaves complete groups alone
    assert cbcs.run(ds, tmp_path / "two", workers=2, skip_done=True, progress=False) == 0
