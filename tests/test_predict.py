"""Prediction on folders and datasets (apps.predict) with both engines, on real Caffe nets."""
import collections
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from data_prep.datasets import Dataset, load_dataset
from core.imageio import read_gray, read_image
from core.netio import load_net
from apps.predict import (CaffeEngine, OpenCVEngine, RunningMean, main, plan_groups, predict_maps,
                         to_image_size)
from core.preprocess import image_to_blob
from core.surgery import he_init

from core.layout import PROJECT_ROOT as ROOT
from core.layout import PROTOTXT_DIR as P
TINY_GROUP = P / "tiny" / "group_deploy.prototxt"
TINY_SINGLE = P / "tiny" / "single_deploy.prototxt"


def random_weights(prototxt, path, seed=0):
    """He-initialised weights saved with net.save. conv1_1 is scaled by 1/100 because the input
    is in pixel units: the outputs then straddle [0, 1], where the maps are clipped, so the
    clipping, the averaging and a 1e-4 tolerance all act on meaningful numbers."""
    net = load_net(prototxt)
    he_init(net, seed=seed)
    net.params["conv1_1"][0].data[...] *= 0.01
    net.save(str(path))
    return str(path)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    d = tmp_path_factory.mktemp("weights")
    return {"group": random_weights(TINY_GROUP, d / "tiny_group.caffemodel", seed=1),
            "single": random_weights(TINY_SINGLE, d / "tiny_single.caffemodel", seed=2)}


def write_images(folder, sizes, seed=0):
    """Random-texture JPEGs of the given (h, w) sizes, named 00.jpg, 01.jpg, ..."""
    rng = np.random.RandomState(seed)
    os.makedirs(folder, exist_ok=True)
    paths = []
    for i, (h, w) in enumerate(sizes):
        img = cv2.GaussianBlur(rng.randint(0, 255, (h, w, 3), dtype=np.uint8), (5, 5), 0)
        p = os.path.join(folder, f"{i:02d}.jpg")
        cv2.imwrite(p, img)
        paths.append(p)
    return paths


# ---------------------------------------------------------------- pieces, with hand values
def test_running_mean_hand_values():
    mean = RunningMean({"a": 2, "b": 1, "c": 3})
    assert mean.add("a", [[1.0, 2.0]]) is None
    np.testing.assert_array_equal(mean.add("b", [[5.0, -1.0]]), [[5.0, -1.0]])
    assert mean.add("c", [[0.0, 3.0]]) is None
    np.testing.assert_allclose(mean.add("a", [[3.0, 6.0]]), [[2.0, 4.0]])
    assert mean.add("c", [[1.0, 3.0]]) is None
    out = mean.add("c", [[5.0, 0.0]])
    np.testing.assert_allclose(out, [[2.0, 2.0]])
    assert out.dtype == np.float32
    assert mean.sum == {}                       # nothing kept once every image is out
    with pytest.raises(KeyError):
        mean.add("a", [[0.0, 0.0]])             # more maps than announced


def test_to_image_size_is_bilinear_then_clipped():
    # OpenCV's bilinear with pixel centres: 2 -> 4 columns samples at -0.25, 0.25, 0.75, 1.25
    np.testing.assert_allclose(to_image_size([[0.2, 0.6]], 1, 4), [[0.2, 0.3, 0.5, 0.6]], atol=1e-6)
    np.testing.assert_allclose(to_image_size([[-1.0, 1.0]], 1, 4), [[0, 0, 0.5, 1]], atol=1e-6)
    np.testing.assert_allclose(to_image_size([[-3.0, 0.25], [2.0, 0.5]], 2, 2), [[0, 0.25], [1, 0.5]])


def test_plan_covers_every_image_in_groups_of_k(tmp_path):
    write_images(tmp_path / "seven", [(20, 30)] * 7)
    write_images(tmp_path / "one", [(20, 30)])
    write_images(tmp_path / "three", [(20, 30)] * 3)
    ds = load_dataset("folder", tmp_path)
    plan = plan_groups(ds, 5, seed=0)
    assert [g for g, _ in plan] == ["one", "seven", "seven", "three"]
    assert all(len(sub) == 5 and all(it.group == g for it in sub) for g, sub in plan)
    assert set(it for _, sub in plan for it in sub) == set(ds.items())
    seven = collections.Counter(it for g, sub in plan if g == "seven" for it in sub)
    assert sorted(seven.values()) == [1, 1, 1, 1, 2, 2, 2]     # 10 slots for 7 images
    assert plan == plan_groups(ds, 5, seed=0) != plan_groups(ds, 5, seed=1)


# ---------------------------------------------------------------- predictions
def test_image_in_two_groups_gets_the_mean_of_its_maps(tmp_path, weights):
    sizes = [(40, 60), (50, 30), (64, 128), (33, 47), (80, 70), (45, 90), (60, 60)]
    write_images(tmp_path / "imgs" / "g", sizes, seed=3)
    ds = load_dataset("folder", tmp_path / "imgs")
    engine = CaffeEngine(TINY_GROUP, weights["group"])
    got = dict(predict_maps(engine, ds, seed=0, progress=False))
    # the reference: forward each planned group, collect every map of an image, average
    raw = collections.defaultdict(list)
    for _, sub in plan_groups(ds, 5, seed=0):
        blob = np.stack([image_to_blob(read_image(ds.root / it.image), 64, 128) for it in sub])
        for it, m in zip(sub, engine.forward(blob)):
            raw[it].append(m)
    assert set(got) == set(ds.items()) == set(raw)
    twice = [it for it in raw if len(raw[it]) == 2]
    assert len(twice) == 3
    # the group model sees the other images: the two maps of one image differ
    assert max(np.abs(raw[it][0] - raw[it][1]).max() for it in twice) > 1e-3
    for it, maps in raw.items():
        h, w = read_image(ds.root / it.image).shape[:2]
        want = np.clip(cv2.resize((maps[0] + maps[-1]) / 2 if len(maps) == 2 else maps[0], (w, h),
                                  interpolation=cv2.INTER_LINEAR), 0, 1)
        assert got[it].shape == (h, w)
        np.testing.assert_allclose(got[it], want, atol=1e-6)
    values = np.concatenate([m.ravel() for m in got.values()])
    assert 0 < (values == 0).mean() < 1 and ((values > 0) & (values < 1)).mean() > 0.05


@pytest.mark.slow
def test_cli_layout_sizes_and_skipped_files(tmp_path, weights):
    src = tmp_path / "photos"
    sizes = {"g 1": [(40, 60), (50, 30), (37, 41)], "cars, red!": [(64, 128)] * 2 + [(30, 90)] * 4}
    for g, s in sizes.items():
        write_images(src / g, s, seed=len(g))
    write_images(src, [(45, 45), (20, 80)], seed=9)           # loose images: one more group
    (src / "g 1" / "Thumbs.db").write_bytes(b"\0" * 64)
    (src / "notes.txt").write_text("not an image")
    out = tmp_path / "maps"
    r = run_cli("--weights", weights["group"], "--prototxt", TINY_GROUP, "--images", src, "--out", out,
                "--engine", "opencv")
    assert r.returncode == 0, r.stderr
    assert "non-image files skipped: 2" in r.stderr
    assert "wrote 11 maps for 3 group(s)" in r.stdout
    ds = load_dataset("folder", src)
    want = {f"{it.group}/{it.name}.png" for it in ds.items()}
    assert {p.relative_to(out).as_posix() for p in out.rglob("*.png")} == want
    assert "photos/00.png" in want and "cars, red!/05.png" in want
    ref = dict(predict_maps(OpenCVEngine(TINY_GROUP, weights["group"]), ds, progress=False))
    for it, m in ref.items():
        png = cv2.imread(str(out / it.group / f"{it.name}.png"), cv2.IMREAD_UNCHANGED)
        assert png.dtype == np.uint8 and png.shape == read_image(ds.root / it.image).shape[:2]
        np.testing.assert_array_equal(png, np.rint(m * 255).astype(np.uint8))


def test_one_image_folder_repeats_it_in_its_group(tmp_path, weights):
    write_images(tmp_path / "solo", [(70, 50)], seed=4)
    main(["--weights", weights["group"], "--prototxt", str(TINY_GROUP), "--images",
          str(tmp_path / "solo"), "--out", str(tmp_path / "out"), "--quiet"])
    engine = CaffeEngine(TINY_GROUP, weights["group"])
    img = read_image(tmp_path / "solo" / "00.jpg")
    maps = engine.forward(np.stack([image_to_blob(img, 64, 128)] * 5))
    np.testing.assert_allclose(maps, maps[:1].repeat(5, 0), atol=1e-6)   # 5 equal copies
    got = read_gray(tmp_path / "out" / "solo" / "00.png")
    assert got.shape == (70, 50)
    np.testing.assert_array_equal(np.rint(got * 255), np.rint(to_image_size(maps[0], 70, 50) * 255))


@pytest.mark.slow
def test_single_model_and_dataset_mode_on_real_images(tmp_path, weights, icoseg_dev):
    out = tmp_path / "icoseg"
    main(["--weights", weights["single"], "--model", "single", "--prototxt", str(TINY_SINGLE),
          "--dataset", "icoseg", "--root", str(icoseg_dev), "--out", str(out), "--engine", "opencv",
          "--quiet"])
    ds = load_dataset("icoseg", icoseg_dev)
    assert len(ds) == 100
    for it in ds.items():
        png = cv2.imread(str(out / it.group / f"{it.name}.png"), cv2.IMREAD_UNCHANGED)
        assert png is not None and png.shape == read_image(ds.root / it.image).shape[:2]
    assert len(list(out.rglob("*.png"))) == 100


@pytest.mark.slow
def test_opencv_matches_caffe_on_real_images_full_group_model(tmp_path, icoseg_dev):
    proto = P / "group_deploy.prototxt"
    w = random_weights(proto, tmp_path / "group.caffemodel", seed=5)
    full = load_dataset("icoseg", icoseg_dev)
    g = next(iter(full.groups))
    ds = Dataset(full.name, full.root, {g: full.groups[g][:5]})
    ((_, sub),) = plan_groups(ds, 5)
    blob = np.stack([image_to_blob(read_image(ds.root / it.image), 128, 256) for it in sub])
    cf, cv = CaffeEngine(proto, w), OpenCVEngine(proto, w)
    a, b = cf.forward(blob), cv.forward(blob)
    assert a.shape == b.shape == (5, 128, 256)
    assert a.std() > 0.05 and ((a > 0) & (a < 1)).mean() > 0.05   # a real signal across [0, 1]
    assert np.abs(a - b).max() <= 1e-4
    # and the float maps at the images' own sizes, before 8-bit quantisation
    ma = dict(predict_maps(cf, ds, progress=False))
    mb = dict(predict_maps(cv, ds, progress=False))
    assert set(ma) == set(mb) == set(sub)
    assert max(np.abs(ma[it] - mb[it]).max() for it in sub) <= 1e-4


# ---------------------------------------------------------------- bad input: one line, exit 2
def run_cli(*args):
    env = dict(os.environ)
    return subprocess.run([sys.executable, "-m", "apps.predict", "--quiet", *map(str, args)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def assert_one_line_error(r, *phrases):
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert "Traceback" not in r.stderr
    for p in phrases:
        assert p in lines[0], lines[0]


@pytest.fixture
def photos(tmp_path):
    write_images(tmp_path / "photos", [(30, 40)] * 2)
    return tmp_path / "photos"


def test_missing_weights(tmp_path, photos):
    r = run_cli("--weights", tmp_path / "nope.caffemodel", "--images", photos, "--out", tmp_path / "o")
    assert_one_line_error(r, "nope.caffemodel", "weights file not found")


@pytest.mark.parametrize("engine", ["caffe", "opencv"])
def test_weights_of_another_net(tmp_path, photos, weights, engine):
    # Ours-S weights have no group block: the group model cannot run on them
    r = run_cli("--weights", weights["single"], "--prototxt", TINY_GROUP, "--images", photos,
                "--out", tmp_path / "o", "--engine", engine)
    assert_one_line_error(r, "tiny_single.caffemodel", "no weights for layer", "another net")
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_weights_with_other_blob_shapes_for_opencv(tmp_path, photos, weights):
    # the tiny net's weights on the full-size Ours-S: same layer names, other shapes
    r = run_cli("--weights", weights["single"], "--model", "single", "--images", photos,
                "--out", tmp_path / "o", "--engine", "opencv")
    assert_one_line_error(r, "tiny_single.caffemodel", "conv1_1", "blob shapes")


@pytest.mark.slow
def test_empty_folder_and_only_non_image_files(tmp_path, weights):
    (tmp_path / "empty").mkdir()
    r = run_cli("--weights", weights["group"], "--prototxt", TINY_GROUP, "--images", tmp_path / "empty",
                "--out", tmp_path / "o")
    assert_one_line_error(r, "empty", "no usable images")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "Thumbs.db").write_bytes(b"\0" * 10)
    (tmp_path / "junk" / "a.txt").write_text("x")
    r = run_cli("--weights", weights["group"], "--prototxt", TINY_GROUP, "--images", tmp_path / "junk",
                "--out", tmp_path / "o")
    assert_one_line_error(r, "junk", "no usable images", "non-image files skipped: 2")


@pytest.mark.slow
def test_existing_output_needs_force(tmp_path, photos, weights):
    out = tmp_path / "o"
    out.mkdir()
    (out / "old.txt").write_text("keep me")
    args = ("--weights", weights["group"], "--prototxt", TINY_GROUP, "--images", photos, "--out", out,
            "--engine", "opencv")
    assert_one_line_error(run_cli(*args), "not empty", "--force")
    r = run_cli(*args, "--force")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (out / "photos").iterdir()) == ["00.png", "01.png"]
    assert (out / "old.txt").read_text() == "keep me"


def test_group_size_must_match_the_net(tmp_path, photos, weights):
    r = run_cli("--weights", weights["group"], "--prototxt", TINY_GROUP, "--images", photos,
                "--out", tmp_path / "o", "--group-size", "4")
    assert_one_line_error(r, "--group-size 4", "batch of 5")


@pytest.mark.slow
@pytest.mark.parametrize("engine,phrase", [("caffe", "GPU 0"), ("opencv", "--engine caffe")])
def test_gpu_request_without_a_usable_gpu(tmp_path, photos, weights, engine, phrase):
    from core.device import caffe_build
    if engine == "caffe" and caffe_build().cuda:
        pytest.skip("a CUDA build of Caffe: GPU mode may work here")
    # a CPU-only Caffe would abort the process in GPU mode: checked first, one line instead
    r = run_cli("--weights", weights["group"], "--prototxt", TINY_GROUP, "--images", photos,
                "--out", tmp_path / "o", "--engine", engine, "--gpu", "0")
    assert_one_line_error(r, phrase)
