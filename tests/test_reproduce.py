"""`make reproduce` (apps.pipeline reproduce): every input checked by the readers before any step
runs, and the steps' stamps (skip what is done, redo what changed, survive a moved runs folder)."""
import json
import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from apps.pipeline import Steps
from core import device
from core.layout import DATASET_FOLDERS, PROJECT_ROOT
from core.toydata import write_vgg16_like


def reproduce(tmp_path, *args, data=None, vgg16=None):
    data = data or tmp_path / "data"
    vgg16 = vgg16 or data / "weights" / "VGG_ILSVRC_16_layers.caffemodel"
    return subprocess.run([sys.executable, "-m", "apps.pipeline", "reproduce", "--data-root", data,
                           "--vgg16", vgg16, "--runs", tmp_path / "out", *args],
                          capture_output=True, text=True, cwd=PROJECT_ROOT)


def folder(name):
    return DATASET_FOLDERS[name]


LAYOUT = {"icoseg": ("images/g1/a.jpg", "ground_truth/g1/a.png"),
          "msrc": ("images/01_cow/a.bmp", "ground_truth/01_cow/a.png"),
          "cosal2015": ("Image/apple/a.jpg", "GroundTruth/apple/a.png"),
          "coco9213": ("img/cat/a.jpg", "gt/cat/a.png")}


def make_inputs(root, skip=()):
    """Every input in its expected layout, one real image and mask per dataset; `skip` leaves
    datasets out. Returns the VGG16-shaped caffemodel's path."""
    img, mask = np.full((24, 32, 3), 90, np.uint8), np.zeros((24, 32), np.uint8)
    mask[4:12, 8:20] = 255
    for name, (image, gt) in LAYOUT.items():
        if name in skip:
            continue
        for rel, arr in ((image, img), (gt, mask)):
            p = root / folder(name) / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(p), arr)
    w = root / "weights" / "VGG_ILSVRC_16_layers.caffemodel"
    w.parent.mkdir(parents=True, exist_ok=True)
    write_vgg16_like(str(w))
    return w


def test_lists_every_missing_input_with_its_source(tmp_path):
    r = reproduce(tmp_path)          # the data root does not even exist
    assert r.returncode == 2
    assert "cannot start, 5 problem(s)" in r.stderr
    for missing, source in [(folder("coco9213"), "COCO dataset page"), (folder("icoseg"), "iCoseg dataset page"),
                            (folder("msrc"), "MSRC object class recognition database v2 page"),
                            (folder("cosal2015"), "Cosal2015 dataset page"),
                            ("weights/VGG_ILSVRC_16_layers.caffemodel", "Caffe Model Zoo page")]:
        assert f"{tmp_path / 'data' / missing}" in r.stderr and "not found" in r.stderr
        assert source in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_names_only_what_is_missing(tmp_path):
    data = tmp_path / "data"
    w = make_inputs(data, skip=("cosal2015",))
    wrong_case = data / folder("cosal2015").swapcase()
    wrong_case.mkdir()
    shutil.rmtree(data / folder("msrc") / "ground_truth")      # no masks
    w.write_bytes(b"")                                          # a failed download
    r = reproduce(tmp_path)
    assert r.returncode == 2, r.stderr
    assert "cannot start, 3 problem(s)" in r.stderr
    assert f"found {wrong_case}, but the folder must be named {data / folder('cosal2015')}" in r.stderr
    assert f"MSRC-v2: {data / folder('msrc')}" in r.stderr and "mask folder missing" in r.stderr
    assert f"VGG16 weights: {w}" in r.stderr
    assert "iCoseg" not in r.stderr and "COCO9213" not in r.stderr


@pytest.mark.slow
def test_weights_of_another_net_are_refused_before_training(tmp_path):
    data = tmp_path / "data"
    w = make_inputs(data)
    write_vgg16_like(str(w), break_layer="conv4_2")
    r = reproduce(tmp_path)
    assert r.returncode == 2 and "1 problem(s)" in r.stderr
    assert f"{w}: layer 'conv4_2' has weights of shape (512, 513, 3, 3), VGG16's are (512, 512, 3, 3)" in r.stderr


@pytest.mark.slow
def test_raw_msrc_release_is_explained(tmp_path):
    data = tmp_path / "data"
    make_inputs(data, skip=("msrc",))
    for rel in ("Images/1_1_s.bmp", "GroundTruth/1_1_s_GT.bmp"):
        p = data / folder("msrc") / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(p), np.zeros((8, 8, 3), np.uint8))
    r = reproduce(tmp_path)
    assert r.returncode == 2 and "1 problem(s)" in r.stderr
    assert "images are not in group sub-folders" in r.stderr and "python -m data_prep msrc-convert" in r.stderr


@pytest.mark.slow
def test_dry_run_plans_without_running(tmp_path):
    make_inputs(tmp_path / "data")
    r = reproduce(tmp_path, "--dry-run")
    assert r.returncode == 0, r.stderr
    planned = [line.split(":")[0][3:] for line in r.stderr.splitlines() if "would run" in line]
    sets = ["icoseg5", "icoseg", "msrc", "cosal2015"]
    expected = []
    for d in sets:
        expected += [f"CBCS on {d}", f"CBCS-S on {d}", f"CSHS on {d}", f"evaluate {d}"]
    expected += ["training groups (GIST + Lab nearest neighbours)", "train single", "train group"]
    assert planned == expected
    assert not (tmp_path / "out" / ".steps").exists()


@pytest.mark.slow
@pytest.mark.skipif(device.has_driver(), reason="an NVIDIA driver is installed here")
def test_checks_the_gpu_before_starting(tmp_path):
    make_inputs(tmp_path / "data")
    r = reproduce(tmp_path, "--dry-run", "--gpu", "0")
    assert r.returncode == 2 and "1 problem(s)" in r.stderr
    assert "CPU-only build" in r.stderr or "libcuda.so.1" in r.stderr


# ---------------------------------------------------------------- stamps
def _copy_step(steps, src, dst, title="copy"):
    """A real step: `python -m json.tool SRC DST` copies (and checks) a JSON file."""
    return steps.run("copy", title, ["json.tool", src, dst], inputs=[src])


def test_a_finished_step_is_skipped_and_a_changed_input_redoes_it(tmp_path, capsys):
    runs = tmp_path / "runs"
    src, dst = tmp_path / "in.json", runs / "out.json"
    src.write_text('{"a": 1}')
    runs.mkdir()
    assert _copy_step(Steps(runs), src, dst) is True
    assert json.loads(dst.read_text()) == {"a": 1}
    assert _copy_step(Steps(runs), src, dst) is False
    assert "copy: done already" in capsys.readouterr().err
    src.write_text('{"a": 2}')                       # the input changed: the step runs again
    assert _copy_step(Steps(runs), src, dst) is True
    assert json.loads(dst.read_text()) == {"a": 2}
    stamp = json.loads((runs / ".steps" / "copy.json").read_text())
    assert stamp["argv"] == ["json.tool", str(src), "<runs>/out.json"]


def test_a_moved_runs_folder_keeps_its_finished_steps(tmp_path):
    src = tmp_path / "in.json"
    src.write_text("[1, 2]")
    old, new = tmp_path / "old", tmp_path / "moved"
    old.mkdir()
    assert _copy_step(Steps(old), src, old / "out.json") is True
    os.rename(old, new)
    assert _copy_step(Steps(new), src, new / "out.json") is False


def test_a_failed_step_stops_the_pipeline_with_its_status_and_no_stamp(tmp_path):
    runs = tmp_path / "runs"
    src = tmp_path / "broken.json"
    src.write_text("{not json")
    with pytest.raises(SystemExit) as e:
        _copy_step(Steps(runs), src, runs / "out.json")
    assert e.value.code == 1
    assert not (runs / ".steps" / "copy.json").exists()
