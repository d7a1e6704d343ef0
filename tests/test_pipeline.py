"""The pipelines behind make demo / eval / baselines / table, end to end at toy scale."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from core.layout import PROJECT_ROOT as ROOT
ENV = dict(os.environ, GLOG_minloglevel="2")


def pipeline(*args):
    return subprocess.run([sys.executable, "-m", "apps.pipeline", *map(str, args)], capture_output=True,
                          text=True, cwd=ROOT, env=ENV)


@pytest.mark.slow
def test_demo_at_toy_scale_then_rerun_skips_every_step(tmp_path):
    runs = tmp_path / "demo"
    args = ("demo", "--runs", runs, "--train-groups", 6, "--test-groups", 2,
            "--iters-single", 20, "--iters-group", 20)
    r = pipeline(*args)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.load(open(runs / "eval/synthetic/results.json"))
    names = {m["name"] for run in res["runs"] for m in run["methods"]}
    assert names == {"Ours", "Ours-S"}
    assert "group model vs Ours-S: mF" in r.stderr
    assert "| synthetic | mF |" in r.stdout
    for f in ("single/weights.caffemodel", "group/weights.caffemodel", "group/loss.png", "group/val.csv",
              ".steps/maps/synthetic/Ours.json", "eval/synthetic/pr_curves.png"):
        assert (runs / f).exists(), f
    n_maps = sum(len(fs) for _, _, fs in os.walk(runs / "maps/synthetic/Ours"))
    assert n_maps == 10          # 2 test groups of 5, each image once, at its own size
    again = pipeline(*args)
    assert again.returncode == 0
    for s in ("train single: done already", "train group: done already", "predict synthetic with Ours: done already"):
        assert s in again.stderr


@pytest.mark.slow
def test_train_two_stages_from_vgg16_then_eval(tmp_path):
    """make train at toy scale: COCO9213-layout data, a VGG16-like caffemodel, the full nets for
    one iteration per stage; then make eval on a benchmark with the two trained models."""
    from data_prep.synthetic import Config, generate
    from core.netio import load_net
    from core.toydata import write_vgg16_like
    generate(tmp_path / "syn", Config(height=64, width=128, seed=3), 2, 1, workers=1, progress=False)
    data = tmp_path / "data"
    data.mkdir()
    os.symlink(tmp_path / "syn" / "train", data / "COCO9213")         # Image/, GroundTruth/ per class
    os.makedirs(data / "synthetic")
    os.symlink(tmp_path / "syn" / "test", data / "synthetic" / "test")
    vgg = tmp_path / "vgg16.caffemodel"
    expected = write_vgg16_like(str(vgg))
    runs = tmp_path / "runs"
    r = pipeline("train", "--data-root", data, "--vgg16", vgg, "--runs", runs, "--iters", 1)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "semantic block from VGG16" in r.stderr and "layers from Ours-S" in r.stderr
    assert len(open(runs / "train_groups.jsonl").read().splitlines()) == 10   # one group per image
    single = load_net(os.path.join(ROOT, "prototxt/single_deploy.prototxt"), runs / "single/weights.caffemodel")
    # one SGD step at lr 1e-10 leaves the VGG16 weights where the transplant put them
    np.testing.assert_allclose(single.params["conv3_1"][0].data, expected["conv3_1"][0], atol=1e-4)
    group = load_net(os.path.join(ROOT, "prototxt/group_deploy.prototxt"), runs / "group/weights.caffemodel")
    np.testing.assert_allclose(group.params["conv3_1"][0].data, expected["conv3_1"][0], atol=1e-4)
    again = pipeline("train", "--data-root", data, "--vgg16", vgg, "--runs", runs, "--iters", 1)
    assert again.returncode == 0 and "train group: done already" in again.stderr
    r = pipeline("eval", "--dataset", "synthetic", "--data-root", data, "--runs", runs, "--engine", "opencv")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "| synthetic | mF |" in r.stdout
    r = pipeline("table", "--runs", runs)
    assert r.returncode == 0 and (runs / "table" / "table.md").exists()


@pytest.mark.slow
def test_user_mistakes(tmp_path):
    r = pipeline("eval", "--dataset", "icoseg", "--data-root", tmp_path)
    assert r.returncode == 2 and "iCoseg: dataset icoseg not found" in r.stderr
    os.makedirs(tmp_path / "iCoseg")
    r = pipeline("eval", "--dataset", "icoseg", "--data-root", tmp_path, "--runs", tmp_path / "runs")
    assert r.returncode == 2 and "group/weights.caffemodel: trained Ours weights not found; run `make train`" in r.stderr
    r = pipeline("table", "--runs", tmp_path / "runs")
    assert r.returncode == 2 and "no results yet" in r.stderr
    r = pipeline("eval", "--dataset", "coco9213", "--data-root", tmp_path)
    assert r.returncode == 2 and "unknown benchmark 'coco9213'" in r.stderr
    assert "Traceback" not in r.stderr
