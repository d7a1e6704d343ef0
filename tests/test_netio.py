"""Mistakes Caffe would answer with a CHECK abort are caught first, as one-line UserErrors."""
import os
import subprocess
import sys

import pytest

from core.errors import UserError
from core.netio import load_net
from core.surgery import he_init

from core.layout import PROJECT_ROOT as ROOT
from core.layout import PROTOTXT_DIR as P


@pytest.mark.parametrize("text,message", [
    ('layer { name: "a" type: "Input" top: "x" input_param { shape { dim: 1 } }', "not a valid prototxt"),
    ('layer { name: "a" type: "Bogus" top: "x" }', "unknown type 'Bogus'"),
    ('layer { name: "a" type: "ReLU" bottom: "nope" top: "x" }', "takes bottom 'nope'"),
    ('name: "empty"', "the net has no layers"),
])
def test_bad_prototxt(tmp_path, text, message):
    p = tmp_path / "net.prototxt"
    p.write_text(text)
    with pytest.raises(UserError, match=message):
        load_net(p)


def test_weights_for_another_net(tmp_path):
    single = load_net(f"{P}/tiny/single_deploy.prototxt")
    he_init(single)
    w = str(tmp_path / "single.caffemodel")
    single.save(w)
    # the group model shares most layer names, but its score layer is missing from these weights
    with pytest.raises(UserError, match="no weights for layer 'conv_g1'"):
        load_net(f"{P}/tiny/group_deploy.prototxt", w)
    # full-width net: same names, other shapes -> Caffe would abort in copy_from
    with pytest.raises(UserError, match=r"layer 'conv1_1' has blob shapes \[\(8, 3, 3, 3\), \(8,\)\]"):
        load_net(f"{P}/single_deploy.prototxt", w, require_all=False)
    net = load_net(f"{P}/tiny/single_deploy.prototxt", w)
    assert (net.params["conv1_1"][0].data == single.params["conv1_1"][0].data).all()


def test_caffe_would_abort_but_we_exit_cleanly(tmp_path):
    """The process survives: a subprocess that loads mismatched weights prints one line."""
    (tmp_path / "w.caffemodel").write_bytes(b"not protobuf at all \xff\xfe")
    code = ("from core.errors import cli\nfrom core.netio import load_net\n"
            f"cli(lambda: load_net({str(P / 'tiny/single_deploy.prototxt')!r}, {str(tmp_path / 'w.caffemodel')!r}))()")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       env=dict(os.environ))
    assert r.returncode == 2
    assert r.stderr.strip().startswith("error: ") and "w.caffemodel" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
