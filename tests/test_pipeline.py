"""The pipelines behind make demo / eval / baselines / table, end to end at toy scale."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, PYTHONPATH=ROOT, GLOG_minloglevel="2")


def pipeline(*args):
    return subprocess.run([sys.executable, "-m", "gwd.pipeline", *map(str, args)], capture_output=True,
                          text=True, cwd=ROOT, env=ENV)


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
    for f in ("single/weights.caffemodel", "gwd/weights.caffemodel", "gwd/loss.png", "gwd/val.csv",
              "maps/synthetic/Ours/.complete", "eval/synthetic/pr_curves.png"):
        assert (runs / f).exists(), f
    n_maps = sum(len(fs) for _, _, fs in os.walk(runs / "maps/synthetic/Ours")) - 1
    assert n_maps == 10          # 2 test groups of 5, each image once, at its own size
    again = pipeline(*args)
    assert again.returncode == 0
    for s in ("train single: done already", "train gwd: done already", "predict synthetic with Ours: done already"):
        assert s in again.stderr


def test_user_mistakes(tmp_path):
    r = pipeline("eval", "--dataset", "icoseg", "--data-root", tmp_path)
    assert r.returncode == 2 and "iCoseg: dataset icoseg not found" in r.stderr
    os.makedirs(tmp_path / "iCoseg")
    r = pipeline("eval", "--dataset", "icoseg", "--data-root", tmp_path, "--runs", tmp_path / "runs")
    assert r.returncode == 2 and "gwd/weights.caffemodel: trained Ours weights not found; run `make train`" in r.stderr
    r = pipeline("table", "--runs", tmp_path / "runs")
    assert r.returncode == 2 and "no results yet" in r.stderr
    r = pipeline("eval", "--dataset", "coco9213", "--data-root", tmp_path)
    assert r.returncode == 2 and "unknown benchmark 'coco9213'" in r.stderr
    assert "Traceback" not in r.stderr
