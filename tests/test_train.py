"""apps.train end to end on the tiny nets: the loss goes down, snapshots, resume, interruption."""
import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from core.netio import load_net

from core.layout import PROJECT_ROOT as ROOT
ENV = dict(os.environ, GLOG_minloglevel="2")


def train(*args, check=True):
    r = subprocess.run([sys.executable, "-m", "apps.train", *map(str, args)], capture_output=True,
                       text=True, cwd=ROOT, env=ENV)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def losses(run):
    with open(os.path.join(run, "loss.csv")) as f:
        return [(int(r["iter"]), float(r["loss"])) for r in csv.DictReader(f)]


@pytest.fixture
def toy(tmp_path):
    """Four groups of the synthetic co-saliency benchmark at the tiny nets' input size."""
    from data_prep.datasets import load_dataset
    from data_prep.synthetic import Config, generate
    from data_prep.test_groups import make_test_groups
    from core.grouplist import write_group_list
    generate(tmp_path / "syn", Config(height=64, width=128, seed=1), 4, 0, workers=1, progress=False)
    root = str(tmp_path / "syn" / "train")
    lst = str(tmp_path / "train.jsonl")
    write_group_list(lst, make_test_groups(load_dataset("synthetic", root), 5, 0))
    return lst, root


@pytest.mark.slow
def test_a_few_iterations_lower_the_loss(tmp_path, toy):
    lst, root = toy
    run = str(tmp_path / "run")
    train("--model", "single", "--tiny", "--train-list", lst, "--data-root", root, "--out", run,
          "--iters", 60, "--base-lr", 0.003, "--snapshot-every", 30, "--log-every", 10,
          "--val-list", lst, "--val-every", 30, "--val-groups", 2)
    rows = losses(run)
    assert [i for i, _ in rows] == list(range(1, 61))
    first, last = np.mean([v for _, v in rows[:10]]), np.mean([v for _, v in rows[-10:]])
    assert last < 0.7 * first, (first, last)
    latest = json.load(open(os.path.join(run, "latest.json")))
    assert latest["iter"] == 60
    for f in ("weights.caffemodel", "loss.png", "val.csv", latest["solverstate"], latest["caffemodel"]):
        assert os.path.isfile(os.path.join(run, f)), f
    with open(os.path.join(run, "val.csv")) as f:
        val = list(csv.DictReader(f))
    assert [int(r["iter"]) for r in val] == [30, 60] and 0 <= float(val[1]["MAE"]) <= 1
    # the published weights are exactly the last snapshot's
    final, snap = weights(run), load_net(os.path.join(ROOT, "prototxt/tiny/single_deploy.prototxt"),
                                         os.path.join(run, latest["caffemodel"]))
    for k, blobs in final.items():
        np.testing.assert_array_equal(blobs[0], snap.params[k][0].data)


def weights(run):
    net = load_net(os.path.join(ROOT, "prototxt/tiny/single_deploy.prototxt"), os.path.join(run, "weights.caffemodel"))
    return {k: [p.data.copy() for p in v] for k, v in net.params.items()}


@pytest.mark.slow
def test_resume_continues_exactly_where_it_stopped(tmp_path, toy):
    lst, root = toy
    common = ("--model", "single", "--tiny", "--train-list", lst, "--data-root", root, "--base-lr", 0.003,
              "--snapshot-every", 5)
    straight, split = str(tmp_path / "straight"), str(tmp_path / "split")
    train(*common, "--out", straight, "--iters", 10)
    train(*common, "--out", split, "--iters", 5)
    assert json.load(open(os.path.join(split, "latest.json")))["iter"] == 5
    r = train(*common, "--out", split, "--iters", 10, "--resume")
    assert "resumed from iteration 5" in r.stderr
    assert [i for i, _ in losses(split)] == list(range(1, 11))
    # same data order (the data layer skips the groups already seen) and same solver state:
    # the resumed run equals the uninterrupted one
    np.testing.assert_allclose([v for _, v in losses(split)], [v for _, v in losses(straight)], rtol=1e-4)
    a, b = weights(straight), weights(split)
    for k in a:
        for x, y in zip(a[k], b[k]):
            np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_sigint_writes_a_snapshot_and_resume_picks_it_up(tmp_path, toy):
    lst, root = toy
    run = str(tmp_path / "run")
    args = ["--model", "single", "--tiny", "--train-list", lst, "--data-root", root, "--out", run,
            "--iters", 100000, "--snapshot-every", 100000, "--log-every", 1]
    p = subprocess.Popen([sys.executable, "-m", "apps.train", *map(str, args)], cwd=ROOT, env=ENV,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        if os.path.exists(os.path.join(run, "loss.csv")) and len(losses(run)) >= 3:
            break
        time.sleep(0.2)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 128 + signal.SIGINT, err
    assert "continue with --resume" in err and "Traceback" not in err
    stopped = json.load(open(os.path.join(run, "latest.json")))["iter"]
    assert stopped == losses(run)[-1][0] >= 3
    r = train(*args[:-6], "--iters", stopped + 2, "--resume")
    assert f"resumed from iteration {stopped}" in r.stderr
    assert losses(run)[-1][0] == stopped + 2


@pytest.mark.slow
def test_user_mistakes_exit_2(tmp_path, toy):
    lst, root = toy
    base = ["--model", "group", "--tiny", "--train-list", lst, "--data-root", root]
    r = train(*base, "--out", tmp_path / "r", "--resume", check=False)
    assert r.returncode == 2 and "nothing to resume" in r.stderr
    r = train(*base, "--out", tmp_path / "r", "--from-single", tmp_path / "missing.caffemodel", check=False)
    assert r.returncode == 2 and "missing.caffemodel: weights file not found" in r.stderr
    r = train("--model", "group", "--tiny", "--train-list", tmp_path / "nope.jsonl", "--data-root", root,
              "--out", tmp_path / "r2", check=False)
    assert r.returncode == 2 and "nope.jsonl: train list not found" in r.stderr
    # a run whose solverstate went missing
    run = tmp_path / "r3"
    train("--model", "single", "--tiny", "--train-list", lst, "--data-root", root, "--out", run, "--iters", 2)
    state = json.load(open(run / "latest.json"))["solverstate"]
    os.remove(run / state)
    r = train("--model", "single", "--tiny", "--train-list", lst, "--data-root", root, "--out", run,
              "--iters", 4, "--resume", check=False)
    assert r.returncode == 2 and f"names {run / state}, which is missing" in r.stderr
    # an existing run is never overwritten silently
    r = train("--model", "single", "--tiny", "--train-list", lst, "--data-root", root, "--out", run,
              "--iters", 4, check=False)
    assert r.returncode == 2 and "already holds a run; pass --resume" in r.stderr
    assert "Traceback" not in r.stderr
