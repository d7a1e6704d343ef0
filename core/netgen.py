"""Nets and solvers derived from the handwritten prototxts, never copied by hand.

The train prototxts feed data through the Python GroupDataLayer. Checks that need other inputs
swap that one layer for another programmatically: an Input layer (data set from Python, the same
group on CPU and GPU) or an HDF5Data layer (the C++ `caffe` tool on a machine whose Python cannot
load pycaffe). Everything after the data layer stays exactly as written.
"""
import copy
import json

from .errors import UserError
from .inputs import parse_json
from .netio import caffe_pb2


def with_data_layer(net_param, new_layer, path="<net>"):
    """A copy of `net_param` whose Python data layer is replaced by `new_layer` (a LayerParameter
    with the same tops, data and label)."""
    out = copy.deepcopy(net_param)
    idx = next((i for i, x in enumerate(out.layer) if x.type == "Python"), None)
    if idx is None:
        raise UserError(f"{path}: no Python data layer to replace")
    if list(out.layer[idx].top) != list(new_layer.top):
        raise UserError(f"{path}: data layer tops {list(out.layer[idx].top)}, replacement has {list(new_layer.top)}")
    out.layer[idx].CopyFrom(new_layer)
    return out


def with_data_params(net_param, params, path="<net>"):
    """A copy of `net_param` whose Python data layer's JSON param_str is updated with `params`."""
    out = copy.deepcopy(net_param)
    layer = next((x for x in out.layer if x.type == "Python"), None)
    if layer is None:
        raise UserError(f"{path}: no Python data layer to configure")
    p = parse_json(layer.python_param.param_str or "{}", f"{path}: param_str")
    if not isinstance(p, dict):
        raise UserError(f"{path}: param_str must be a JSON object")
    p.update(params)
    layer.python_param.param_str = json.dumps(p)
    return out


def input_layer(shapes):
    """An Input layer with tops data and label of the given shapes {top: (n, c, h, w)}."""
    layer = caffe_pb2.LayerParameter(name="data", type="Input")
    for top in ("data", "label"):
        layer.top.append(top)
        layer.input_param.shape.add().dim.extend(shapes[top])
    return layer


def hdf5_layer(source, batch_size):
    """An HDF5Data layer reading datasets `data` and `label` from the .h5 files listed in the text
    file `source` (one path per line, relative to the working directory of the `caffe` tool)."""
    layer = caffe_pb2.LayerParameter(name="data", type="HDF5Data")
    layer.top.extend(["data", "label"])
    layer.hdf5_data_param.source = source
    layer.hdf5_data_param.batch_size = batch_size
    return layer


# Solver fields that belong to a run rather than to a solver file.
RUN_FIELDS = ("net", "net_param", "train_net", "train_net_param", "snapshot", "snapshot_prefix",
              "snapshot_format", "display", "solver_mode", "device_id")


def run_solver(solver_param, net_path, max_iter, gpu=None, **fields):
    """A copy of a solver file's SolverParameter made into one run's: its net, iterations, mode,
    no snapshots or display unless `fields` set them (any other SolverParameter field too)."""
    s = copy.deepcopy(solver_param)
    s.net = str(net_path)
    s.max_iter = max_iter
    s.snapshot = 0
    s.display = 0
    s.solver_mode = caffe_pb2.SolverParameter.GPU if gpu is not None else caffe_pb2.SolverParameter.CPU
    if gpu is not None:
        s.device_id = gpu
    for k, v in fields.items():
        setattr(s, k, v)
    return s
