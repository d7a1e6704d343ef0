"""The merge ablation: Ours+ trained by apps.train from Ours-S, and apps.ablation's table."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from apps.ablation import COLUMNS, ORDER, summarise, table_markdown
from core.layout import MODELS, PROJECT_ROOT, TABLE1_MODELS, model_files
from core.netio import load_net
from core.surgery import he_init

ENV = dict(os.environ, GLOG_minloglevel="2")


def run(module, *args):
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True,
                          cwd=PROJECT_ROOT, env=ENV)


def test_ours_plus_is_registered_but_not_in_table1():
    assert MODELS["group_plus"] == "Ours+"
    assert TABLE1_MODELS == ("group", "single")
    assert all(p.exists() for p in model_files("group_plus")) and all(p.exists() for p in model_files("group_plus", True))


def _results(values):
    """A results.json with one run whose methods have the given metric values (curves constant)."""
    methods = [{"name": MODELS[m], "metrics": dict(v),
                "curves": {"precision": [v["mF"]] * 256, "recall": [v["maxF"]] * 256}} for m, v in values.items()]
    return {"runs": [{"dataset": "synthetic", "methods": methods}]}


def test_table_gives_mean_and_range_over_seeds():
    seeds = [{m: {k: 0.1 * (i + 1) + 0.01 * s for k in COLUMNS} for i, m in enumerate(ORDER)} for s in (0, 4, 2)]
    table, curves = summarise({"free": [_results(v) for v in seeds]})
    mean, lo, hi = table["free"]["group_plus"]["MAE"]
    assert (mean, lo, hi) == pytest.approx((0.32, 0.30, 0.34))
    np.testing.assert_allclose(np.mean(curves["free"]["single"]["precision"], 0), 0.12)
    md = table_markdown(table, [0, 4, 2])
    assert "seeds 0, 4, 2" in md
    assert "| free | Ours+ | 0.3200 (0.3000-0.3400) |" in md
    assert md.count("| free |") == 3


@pytest.mark.slow
def test_train_ours_plus_from_single_starts_as_exactly_ours_s(tmp_path):
    from core.toydata import write_toy_groups
    lst = write_toy_groups(str(tmp_path), n_groups=1, size=(64, 128))
    single = load_net(model_files("single", tiny=True).deploy)
    he_init(single, seed=3)
    s_weights = tmp_path / "single.caffemodel"
    single.save(str(s_weights))
    # one step at a learning rate of 1e-30: the saved weights are the initialisation (to float precision)
    base = ["--tiny", "--train-list", lst, "--data-root", tmp_path, "--iters", 1, "--base-lr", 1e-30]
    r = run("apps.train", "--model", "group_plus", *base, "--out", tmp_path / "plus", "--from-single", s_weights)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "from Ours-S" in r.stderr
    plus = load_net(model_files("group_plus", tiny=True).deploy, tmp_path / "plus" / "weights.caffemodel")
    x = np.random.RandomState(1).uniform(-100, 100, single.blobs["data"].data.shape).astype(np.float32)
    single.blobs["data"].data[...] = x
    plus.blobs["data"].data[...] = x
    a, b = single.forward()["saliency"], plus.forward()["saliency"]
    assert np.abs(a).max() > 1e-2
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5 * np.abs(a).max())
    r = run("apps.train", "--model", "single", *base, "--out", tmp_path / "s", "--from-single", s_weights)
    assert r.returncode == 2 and "--from-single starts a group model" in r.stderr


@pytest.mark.slow
def test_ablation_at_toy_scale_then_rerun_skips_every_step(tmp_path):
    runs = tmp_path / "abl"
    args = ("--runs", runs, "--iters", 2, "--seeds", 0, 1, "--train-groups", 6, "--test-groups", 2,
            "--placements", "free")
    r = run("apps.ablation", *args)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.load(open(runs / "ablation.json"))
    per_seed = [json.load(open(runs / f"free/seed{s}/eval/synthetic/results.json")) for s in (0, 1)]
    for model in ORDER:
        name = MODELS[model]
        v = [next(m for m in res["runs"][0]["methods"] if m["name"] == name)["metrics"]["mF"] for res in per_seed]
        assert summary["table"]["free"][name]["mF"] == pytest.approx([np.mean(v), min(v), max(v)])
    # stage 1: Ours-S for N; stage 2: N more for each model, started from it
    assert json.load(open(runs / "free/seed1/stage1/single/latest.json"))["iter"] == 2
    for model in ORDER:
        assert json.load(open(runs / f"free/seed1/{model}/latest.json"))["iter"] == 2
    stamps = {m: json.load(open(runs / f"free/seed0/.steps/train/{m}.json"))["argv"] for m in ORDER}
    start = "<runs>/stage1/single/weights.caffemodel"
    assert stamps["single"][-2:] == ["--init", start]
    assert stamps["group"][-2:] == stamps["group_plus"][-2:] == ["--from-single", start]
    assert (runs / "pr_curves.png").stat().st_size > 0
    assert "| free | Ours+ |" in r.stdout and open(runs / "ablation.md").read() in r.stdout
    again = run("apps.ablation", *args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "train group_plus: done already" in again.stderr
    assert "predict synthetic with Ours+: done already" in again.stderr
    assert "evaluate synthetic: done already" in again.stderr
