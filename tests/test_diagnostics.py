"""core.diagnostics: update-to-weight ratios of a real solver step, the stall warning, ratios.csv."""
import csv
import os

import numpy as np
import pytest

from apps.train import main as train_main
from core import diagnostics as D
from core.layout import model_files
from core.netgen import run_solver, with_data_params
from core.netio import caffe, caffe_pb2, read_prototxt
from core.toydata import write_toy_groups


def _tiny_solver(tmp_path, model="single"):
    lst = write_toy_groups(str(tmp_path / "toy"), n_groups=2, size=(64, 128))
    files = model_files(model, tiny=True)
    net = with_data_params(read_prototxt(files.train), {"group_list": lst, "data_root": str(tmp_path / "toy")})
    (tmp_path / "net.prototxt").write_text(str(net))
    s = run_solver(read_prototxt(files.solver, caffe_pb2.SolverParameter), tmp_path / "net.prototxt", 100)
    (tmp_path / "solver.prototxt").write_text(str(s))
    caffe.set_mode_cpu()
    caffe.set_random_seed(0)
    return caffe.get_solver(str(tmp_path / "solver.prototxt")), net


def test_learnable_layers_of_the_prototxts():
    net = read_prototxt(model_files("group").train)
    names = D.learnable_layers(net)
    assert names[:2] == ["conv1_1", "conv1_2"] and "conv_g3" in names and "score_co" in names
    assert len(names) == 13 + 3 + 3 + 1 + 1          # VGG, group block, single block, score_co, upscore
    frozen = caffe_pb2.NetParameter()
    from google.protobuf import text_format
    text_format.Merge('layer { name: "a" type: "Convolution" param { lr_mult: 0 } param { lr_mult: 0 } }'
                      'layer { name: "b" type: "Convolution" }'
                      'layer { name: "r" type: "ReLU" }', frozen)
    assert D.learnable_layers(frozen) == ["b"]


@pytest.mark.parametrize("model", ["single", "group"])
def test_ratios_equal_the_weight_change_of_the_step(tmp_path, model):
    solver, net_param = _tiny_solver(tmp_path, model)
    layers = D.learnable_layers(net_param)
    solver.step(3)                                   # momentum history is non-zero from here on
    before = {n: solver.net.params[n][0].data.copy() for n in layers}
    solver.step(1)
    ratios = D.update_ratios(solver.net, layers)
    for n in layers:
        w0 = before[n]
        expected = np.linalg.norm(solver.net.params[n][0].data - w0) / np.linalg.norm(w0)
        assert ratios[n] == pytest.approx(expected, rel=1e-3), n
        assert ratios[n] > 0


def test_stall_watch_warns_once_after_the_window():
    w = D.StallWatch(floor=1e-6, window=100)
    low, high = {"a": 1e-8, "b": 5e-7}, {"a": 1e-8, "b": 2e-6}
    assert w.update(0, low) is None
    assert w.update(60, high) is None                # one layer above the floor: the stretch restarts
    assert w.update(80, low) is None
    assert w.update(179, low) is None                # 99 iterations below
    msg = w.update(180, low)
    assert msg and "since iteration 80" in msg and "b 5e-07" in msg
    assert w.update(400, low) is None                # once


def test_ratio_log_rows_plot_and_resume(tmp_path):
    solver, net_param = _tiny_solver(tmp_path)
    layers = D.learnable_layers(net_param)
    log = D.RatioLog(str(tmp_path), layers, floor=1.0, window=2)   # every real ratio is below 1
    warnings = []
    for it in (1, 2, 3, 4):
        solver.step(1)
        warnings.append(log.record(solver.net, it, float(solver.net.blobs["loss"].data)))
    assert warnings[:2] == [None, None] and warnings[2] and warnings[3] is None
    rows = D.read_ratio_csv(log.csv_path)
    assert [r["iter"] for r in rows] == ["1", "2", "3", "4"] and list(rows[0]) == ["iter", "loss"] + layers
    log.plot()
    assert os.path.getsize(log.png_path) > 1000
    D.RatioLog(str(tmp_path), layers, start=2)       # resuming at 2 drops the rows written after it
    assert [r["iter"] for r in D.read_ratio_csv(log.csv_path)] == ["1", "2"]


@pytest.mark.slow
def test_train_writes_ratios_every_log_interval(tmp_path):
    lst = write_toy_groups(str(tmp_path / "toy"), n_groups=2, size=(64, 128))
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as e:
        train_main(["--model", "single", "--tiny", "--train-list", lst, "--data-root", str(tmp_path / "toy"),
                    "--out", str(out), "--iters", "30", "--log-every", "10"])
    assert e.value.code == 0
    with open(out / "ratios.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["iter"] for r in rows] == ["10", "20", "30"]
    assert all(0 < float(r["conv1_1"]) < 1 for r in rows)
    assert (out / "ratios.png").is_file()
