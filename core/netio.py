"""Loading prototxts and weights into pycaffe safely.

Caffe reports a bad prototxt or mismatched weights with a glog CHECK failure, which kills the
process. Everything that can go wrong for a user mistake is checked here first, in Python, and
reported as a one-line UserError naming the file.
"""
import importlib
import os
import sys

os.environ.setdefault("GLOG_minloglevel", "2")   # before caffe loads glog: keep its INFO spam off

import caffe  # noqa: E402
import numpy as np  # noqa: E402
from caffe.proto import caffe_pb2  # noqa: E402
from google.protobuf import text_format  # noqa: E402

from .errors import UserError  # noqa: E402
from .inputs import check_input_file, parse_json, read_input_bytes, read_input_text  # noqa: E402
from .netcheck import check_graph, check_shapes, check_solver, check_solverstate, learnable_shapes, solver_type  # noqa: E402

PHASES = {"train": caffe.TRAIN, "test": caffe.TEST}


def read_prototxt(path, kind=caffe_pb2.NetParameter):
    """Parse a text prototxt (a NetParameter by default) or raise UserError naming the file."""
    path = os.fspath(path)
    what = "solver" if kind is caffe_pb2.SolverParameter else "prototxt"
    text = read_input_text(path, what, caffe_reads_it=True)
    msg = kind()
    try:
        text_format.Merge(text, msg)
    except text_format.ParseError as e:
        raise UserError(f"{path}: not a valid prototxt ({e})") from None
    return msg


def check_net(param, path, phase="test"):
    """The checks Caffe would otherwise make with a CHECK abort: known layer types, how the
    layers of `phase` connect, their settings and blob shapes (core.netcheck)."""
    known = set(caffe.layer_type_list())
    if not param.layer:
        raise UserError(f"{path}: the net has no layers" + (" (old V1 'layers' format is not supported)"
                                                             if param.layers else ""))
    names = set()
    for layer in param.layer:
        if layer.type not in known:
            raise UserError(f"{path}: layer '{layer.name}' has unknown type '{layer.type}'")
        if layer.name in names:     # weights are copied by name: one of the two would get none
            raise UserError(f"{path}: two layers are named '{layer.name}'; layer names must be unique")
        names.add(layer.name)
        if layer.type == "Python":
            _check_python_layer(layer, path, phase)
    check_graph(param, path, PHASES[phase])
    check_shapes(param, path, PHASES[phase])


def _check_python_layer(layer, path, phase):
    """A Python layer's module and class import (Caffe would end in a SystemError), and the
    project's data layer's param_str is a JSON object it accepts (its own messages name no file)."""
    module, name = layer.python_param.module, layer.python_param.layer
    where = f"{path}: layer '{layer.name}' (Python)"
    try:
        mod = importlib.import_module(module)
    except Exception as e:      # ImportError, or an error while the module runs
        raise UserError(f"{where}: cannot import module '{module}' ({type(e).__name__}: {e})") from None
    if getattr(mod, name, None) is None:
        raise UserError(f"{where}: module '{module}' has no layer class '{name}'")
    if name != "GroupDataLayer":
        return
    if layer.bottom:
        raise UserError(f"{where}: GroupDataLayer takes no bottoms")
    p = parse_json(layer.python_param.param_str or "{}", f"{where}: param_str")
    if not isinstance(p, dict):
        raise UserError(f"{where}: param_str must be a JSON object")
    if phase != "train":        # a train net's list and root are filled in by apps.train
        try:
            mod.parse_params(layer.python_param.param_str)
        except UserError as e:
            raise UserError(f"{where}: {e}") from None


def read_solver(path):
    """A solver prototxt, parsed and checked (core.netcheck.check_solver)."""
    s = read_prototxt(path, caffe_pb2.SolverParameter)
    check_solver(s, os.fspath(path))
    return s


def read_solverstate(path):
    """Parse a binary .solverstate, or raise UserError naming the file."""
    path = os.fspath(path)
    state = caffe_pb2.SolverState()
    data = read_input_bytes(path, "solver state")
    try:
        state.ParseFromString(data)
    except Exception as e:  # protobuf's DecodeError and friends
        raise UserError(f"{path}: not a Caffe solver state, corrupt or cut short ({type(e).__name__})") from None
    if state.iter < 1 or not state.history:
        raise UserError(f"{path}: not a Caffe solver state (no iteration or history), corrupt or cut short")
    return state


def solverstate_iteration(path):
    """The iteration a .solverstate was taken at, from its first bytes: protobuf writes fields in
    number order and `iter` is field 1 (tag 0x08, a varint), so the history need not be parsed.
    A file that does not start so is parsed whole (read_solverstate and its errors)."""
    path = check_input_file(os.fspath(path), "solver state")
    try:
        with open(path, "rb") as f:
            head = f.read(11)
    except OSError as e:
        raise UserError(f"{path}: cannot read the solver state ({e.strerror or e})") from None
    if head[:1] == b"\x08":
        value, shift = 0, 0
        for byte in head[1:]:
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value
    return read_solverstate(path).iter


def restore(solver, solver_param, state_path, weights_path, scratch_dir):
    """solver.restore() from a solverstate and the caffemodel beside it, checked first.

    A solverstate stores the absolute path of its caffemodel (learned_net): a run folder that was
    moved or copied would abort in Caffe, or quietly load the old folder's weights. A copy of
    the state naming `weights_path` is restored instead (written in scratch_dir, then removed).
    Returns the restored iteration."""
    state_path, weights_path = os.fspath(state_path), os.fspath(weights_path)
    state = read_solverstate(state_path)
    shapes = [p.data.shape for params in solver.net.params.values() for p in params]
    check_solverstate(state, state_path, solver_type(solver_param), shapes)
    check_weights_fit(net_learnable_shapes(solver.net), read_weights(weights_path), weights_path,
                      require=list(solver.net.params))
    state.learned_net = os.path.abspath(weights_path)
    local = os.path.join(scratch_dir, ".restore.solverstate")
    try:
        with open(local, "wb") as f:
            f.write(state.SerializeToString())
        solver.restore(local)
    finally:
        if os.path.exists(local):
            os.unlink(local)
    return state.iter


def check_weights_path(path):
    """A weights file is there: one line naming the path otherwise (a folder or a FIFO given by
    mistake is said to be one, not 'not found')."""
    check_input_file(path, "weights file")


def read_weights(path):
    """Parse a binary .caffemodel into a NetParameter, or raise UserError naming the file."""
    path = os.fspath(path)
    data = read_input_bytes(path, "weights file")
    msg = caffe_pb2.NetParameter()
    try:
        msg.ParseFromString(data)
    except Exception as e:  # protobuf raises DecodeError and friends
        raise UserError(f"{path}: not a Caffe weights file ({type(e).__name__})") from None
    if not msg.layer and not msg.layers:
        raise UserError(f"{path}: weights file holds no layers")
    return msg


def blob_shape(blob):
    if blob.HasField("shape"):
        return tuple(blob.shape.dim)
    dims = (blob.num, blob.channels, blob.height, blob.width)   # legacy 4-D fields
    return tuple(d for d in dims)


def net_learnable_shapes(net):
    """{layer: [shapes of its learnable blobs]} of a caffe.Net."""
    return {name: [tuple(p.data.shape) for p in params] for name, params in net.params.items()}


def check_weights_fit(shapes, weights, weights_path, require=(), net_path="the net"):
    """Every layer the weights share by name with a net must have the same blob shapes, as many
    values as those shapes hold (Caffe aborts otherwise) and only finite ones (NaN would
    predict or train nothing but NaN); layers in `require` must be present in the weights.
    shapes: the net's {layer: [blob shapes]}, of a caffe.Net (net_learnable_shapes) or of its
    prototxt (core.netcheck.learnable_shapes); net_path: the net's file, named in the messages."""
    layers = {layer.name: list(layer.blobs) for layer in (list(weights.layer) or list(weights.layers))
              if layer.blobs}
    for name in require:
        if name not in layers:
            raise UserError(f"{weights_path}: has no weights for layer '{name}' of {net_path} "
                            "(weights for another net?)")
    shared = 0
    for name, want in shapes.items():
        if name not in layers:
            continue
        shared += 1
        blobs = layers[name]
        if len(blobs) != len(want) or not all(_same_shape(b, w) for b, w in zip(blobs, want)):
            raise UserError(f"{weights_path}: layer '{name}' has blob shapes {[blob_shape(b) for b in blobs]}, "
                            f"{net_path} expects {want} (weights for another net?)")
        for i, (b, w) in enumerate(zip(blobs, want)):
            for what, n in (("values", len(b.double_data) or len(b.data)),
                            ("gradient values", len(b.double_diff) or len(b.diff))):
                if n != _numel(w) and (what == "values" or n):
                    raise UserError(f"{weights_path}: layer '{name}' blob {i} of shape {blob_shape(b)} holds "
                                    f"{n} {what}, not {_numel(w)} (a damaged weights file)")
            check_finite(blob_values(b), weights_path, name, i)
    if shared == 0:
        raise UserError(f"{weights_path}: shares no layer name with {net_path} (weights for another net?)")


def blob_values(blob):
    """A weights blob's values as a flat array (double_data where the file holds doubles)."""
    return np.asarray(blob.double_data, np.float64) if len(blob.double_data) else np.asarray(blob.data, np.float32)


def check_finite(values, weights_path, layer, blob):
    """UserError naming the file and the layer when a weights blob's values (an array) hold NaN
    or infinities."""
    bad = np.count_nonzero(~np.isfinite(values))
    if bad:
        raise UserError(f"{weights_path}: layer '{layer}' blob {blob} holds {bad} NaN or infinite value(s) "
                        "(weights of a training that diverged, or a damaged file); use other weights")


def check_weights_file(prototxt, weights_path):
    """Weights against a deploy prototxt, both files checked before Caffe reads either: every
    layer whose learnable blobs core.netcheck can shape must be in the weights and fit. Layer
    types it cannot shape are left to load_net's check against the built net."""
    prototxt, weights_path = os.fspath(prototxt), os.fspath(weights_path)
    param = read_prototxt(prototxt)
    check_net(param, prototxt)
    shapes = learnable_shapes(param, prototxt)
    if shapes:
        check_weights_fit(shapes, read_weights(weights_path), weights_path, require=list(shapes), net_path=prototxt)


def _same_shape(blob, want):
    """Caffe's Blob::ShapeEquals: the legacy 4-D fields, where set, against `want` padded with
    leading 1s to 4 axes; else the shape exactly."""
    if any(blob.HasField(f) for f in ("num", "channels", "height", "width")):
        return len(want) <= 4 and (1,) * (4 - len(want)) + tuple(want) == \
            (blob.num, blob.channels, blob.height, blob.width)
    return tuple(blob.shape.dim) == tuple(want)


def _numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def caffe_path(path, what):
    """`path` as Caffe and OpenCV's DNN module take it: UTF-8 text. pycaffe cannot pass on a
    name that is not (a Latin-1 folder name: a UnicodeEncodeError) and OpenCV crashes on it."""
    path = os.fspath(path)
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise UserError(_not_utf8_line(path, what)) from None
    return path


def _not_utf8_line(path, what):
    """The error for a path that is not UTF-8 text to Python: the cause is the name, or, when
    its bytes are UTF-8, the locale, whose encoding is not (LC_ALL=C with PYTHONUTF8=0)."""
    try:
        os.fsencode(path).decode("utf-8")
    except UnicodeDecodeError:
        return (f"{path}: the {what}'s path is not UTF-8 text, which Caffe and OpenCV need; "
                "rename it, or copy it to a path that is")
    return (f"{path}: the {what}'s path is UTF-8, but this locale's encoding is {sys.getfilesystemencoding()} "
            "and Caffe and OpenCV need it as text; set a UTF-8 locale (LC_ALL=C.UTF-8) or PYTHONUTF8=1")


def load_net(prototxt, weights=None, phase="test", require_all=True):
    """A caffe.Net from `prototxt` (and `weights`), checked first so that a mistake is a
    UserError and not a Caffe abort. With require_all, every layer that has parameters must be
    in the weights (a deploy net with half its weights missing would predict garbage)."""
    prototxt = caffe_path(prototxt, "prototxt")
    if weights is not None:
        caffe_path(weights, "weights file")
    check_net(read_prototxt(prototxt), prototxt, phase)
    net = caffe.Net(prototxt, PHASES[phase])
    if weights is not None:
        w = read_weights(weights)
        check_weights_fit(net_learnable_shapes(net), w, weights, require=list(net.params) if require_all else (),
                          net_path=prototxt)
        net.copy_from(os.fspath(weights))
    return net
