"""apps.gpu_check: the pre-flight table in CPU mode, its refusals, and the nets it derives."""
import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

from apps import gpu_check as G
from core import device
from core.errors import UserError
from core.layout import PROJECT_ROOT, model_files
from core.netgen import hdf5_layer, input_layer, with_data_layer
from core.netio import caffe, read_prototxt


def _run(*args):
    return subprocess.run([sys.executable, "-m", "apps.gpu_check", *args], capture_output=True, text=True,
                          cwd=PROJECT_ROOT)


def test_input_net_is_the_train_net_after_its_data_layer(tmp_path):
    src = read_prototxt(model_files("group", tiny=True).train)
    net = with_data_layer(src, input_layer({"data": (5, 3, 64, 128), "label": (5, 1, 64, 128)}))
    assert net.layer[0].type == "Input" and src.layer[0].type == "Python"
    assert [str(a) for a in net.layer[1:]] == [str(b) for b in src.layer[1:]]
    path = tmp_path / "n.prototxt"
    path.write_text(str(net))
    n = caffe.Net(str(path), caffe.TRAIN)
    assert n.blobs["saliency"].data.shape == (5, 1, 64, 128)
    with pytest.raises(UserError, match="no Python data layer"):
        with_data_layer(net, hdf5_layer("x.txt", 5))


def test_rel_err_and_table_status():
    a = np.ones(100, np.float32)
    assert G.rel_err(a, a) == 0
    assert G.rel_err(a * 1.001, a) == pytest.approx(1e-3, rel=1e-3)
    t = G.Table()
    t.add("a", "x", "PASS")
    t.add("b", "y", "no GPU")
    assert t.ok()
    t.add("c", "z", "FAIL")
    assert not t.ok() and t.markdown().count("\n") == 5


def test_gpu_request_on_this_machine_is_one_line_and_status_2():
    r = _run("--gpu", "0")
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: ")
    assert r.stdout == ""


def test_no_gpu_given_is_refused():
    r = _run("--gpu", "")
    assert r.returncode == 2 and "no GPU given" in r.stderr and r.stderr.count("\n") == 1


def test_too_little_gpu_memory_is_refused_before_caffe(monkeypatch):
    small = device.GpuInfo(0, "Small GPU", (9, 0), 2 * 2**30, (13, 0))
    monkeypatch.setattr(device, "check_gpu", lambda g: small)
    with pytest.raises(UserError, match="2.0 GiB.*at least 4 GiB"):
        G.preflight(0)


def test_bundle_inputs_load_in_caffe(tmp_path, icoseg_dev):
    desc = G.write_bundle_inputs(str(tmp_path), str(icoseg_dev), n_groups=2)
    assert "iCoseg" in desc
    with h5py.File(tmp_path / "data" / "full.h5") as f:
        assert f["data"].shape == (10, 3, 128, 256) and f["label"].shape == (10, 1, 128, 256)
        assert 0 <= f["label"][...].min() and f["label"][...].max() <= 1 and f["label"][...].max() > 0.5
    meta = json.loads((tmp_path / "nets" / "group.params.json").read_text())
    cwd = os.getcwd()
    os.chdir(tmp_path)                         # the bundle's paths are relative to its folder
    try:
        net = caffe.Net("nets/single_tiny.prototxt", caffe.TRAIN)
        net.forward()
        assert net.blobs["data"].data.shape == (5, 3, 64, 128)
        with h5py.File("data/tiny.h5") as f:
            np.testing.assert_array_equal(net.blobs["label"].data, f["label"][:5])
        group = caffe.Net("nets/group.prototxt", caffe.TRAIN)
    finally:
        os.chdir(cwd)
    order = [(name, i) for name, blobs in group.params.items() for i in range(len(blobs))]
    assert [tuple(x) for x in meta["order"]] == order


@pytest.mark.slow
def test_cpu_table(tmp_path, icoseg_dev):
    r = _run("--cpu", "--data", str(icoseg_dev), "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr[-2000:]
    table = (tmp_path / "gpu_check.md").read_text()
    assert table == r.stdout.strip() + "\n"
    rows = [line.split(" | ") for line in table.splitlines()[2:]]
    status = {row[0].strip("| "): row[2].strip("| ") for row in rows}
    assert status["driver and device"] == "no GPU" and status["peak GPU memory"] == "no GPU"
    assert "FAIL" not in status.values()
    assert sum(1 for k in status if "CPU vs CPU" in k) == 6
    assert "0.0e+00" in table                  # two CPU runs of Caffe agree to the bit
