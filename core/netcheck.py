"""Checks of parsed prototxts and solver files that Caffe would make with a CHECK abort.

Blob shapes are propagated through the parsed net in Python, layer by layer, with Caffe's own
formulas, so that an edited prototxt (an Input batch that no longer matches the Slice after it,
`stride: 0`, a kernel larger than its input) is a one-line error that says what to change,
for pycaffe and for OpenCV's DNN engine alike. Layer types without a rule here leave their tops
unknown, and the layers after them unchecked (Caffe still checks those).
"""
import math

from .errors import UserError
from .inputs import parse_json

SOLVER_TYPES = ("SGD", "Nesterov", "AdaGrad", "RMSProp", "AdaDelta", "Adam")
LR_POLICIES = ("fixed", "step", "exp", "inv", "multistep", "poly", "sigmoid")
# Solvers that keep two history blobs per parameter (Caffe's AdaDelta and Adam).
TWO_HISTORIES = ("AdaDelta", "Adam")
INT_MAX = 2 ** 31 - 1      # the most values one Caffe blob holds
ELEMENTWISE = {"ReLU", "Dropout", "Sigmoid", "TanH", "Power", "AbsVal", "BNLL", "ELU", "Exp",
               "Log", "PReLU", "Scale", "Bias", "BatchNorm", "Threshold", "Softmax", "LRN", "MVN"}


class _Bad(Exception):
    """A problem of the layer being propagated (the caller adds the file and the layer)."""


def _spatial(values, n, default, what):
    """Caffe's repeated kernel/stride/pad/dilation fields as n numbers."""
    values = list(values)
    if not values:
        return [default] * n
    if len(values) == 1:
        return values * n
    if len(values) != n:
        raise _Bad(f"{what} has {len(values)} values for {n} spatial axes")
    return values


def _hw(p, name, n, default):
    """kernel/stride/pad as n numbers, by Caffe's rules (base_conv_layer.cpp and
    pooling_layer.cpp LayerSetUp): the *_h/*_w fields, both of them, for 2-D only and never
    together with the plain field; else the plain field (repeated in a convolution)."""
    field = {"kernel": "kernel_size"}.get(name, name)
    h, w = p.HasField(f"{name}_h"), p.HasField(f"{name}_w")
    value = getattr(p, field)
    pooling = isinstance(value, int)     # PoolingParameter: one optional number, not a list
    if h or w:
        if (p.HasField(field) if pooling else len(value)):
            raise _Bad(f"sets both {field} and {name}_h/{name}_w; keep one of them")
        if n != 2:
            raise _Bad(f"{name}_h/{name}_w are for 2-D inputs only; use {field}")
        if pooling and not (h and w):
            raise _Bad(f"sets only one of {name}_h and {name}_w; give both, or {field}")
        return [getattr(p, f"{name}_h"), getattr(p, f"{name}_w")]
    if pooling:
        return [value if p.HasField(field) else default] * n
    return _spatial(value, n, default, field)


def _conv(layer, bottom, deconv):
    p = layer.convolution_param
    n = len(bottom) - 2
    if n < 1:
        raise _Bad(f"needs an input with spatial axes, got shape {list(bottom)}")
    k, s = _hw(p, "kernel", n, None), _hw(p, "stride", n, 1)
    pad, dil = _hw(p, "pad", n, 0), _spatial(p.dilation, n, 1, "dilation")
    if None in k or min(k) < 1:
        raise _Bad("kernel_size must be >= 1")
    if min(s) < 1:
        raise _Bad(f"stride {min(s)} must be >= 1")
    if min(dil) < 1:
        raise _Bad("dilation must be >= 1")
    if p.num_output < 1:
        raise _Bad("num_output must be >= 1")
    c = bottom[1]
    if p.group < 1 or c % p.group or p.num_output % p.group:
        raise _Bad(f"group {p.group} must divide the input channels ({c}) and num_output ({p.num_output})")
    out = []
    for size, kk, ss, pp, dd in zip(bottom[2:], k, s, pad, dil):
        extent = dd * (kk - 1) + 1
        if deconv:
            o = ss * (size - 1) + extent - 2 * pp
        else:
            if size + 2 * pp < extent:
                raise _Bad(f"kernel {kk} (extent {extent}) is larger than its input of {size} "
                           f"(+ 2 x pad {pp}): use a smaller kernel or a larger input")
            o = (size + 2 * pp - extent) // ss + 1
        if o < 1:
            raise _Bad(f"output size {o} < 1 on a spatial axis of size {size}")
        out.append(o)
    return [(bottom[0], p.num_output, *out)]


def _pool(layer, bottom):
    p = layer.pooling_param
    if len(bottom) != 4:
        raise _Bad(f"needs a 4-D input, got shape {list(bottom)}")
    k, s, pad = _hw(p, "kernel", 2, None), _hw(p, "stride", 2, 1), _hw(p, "pad", 2, 0)
    if p.global_pooling:
        if k != [None, None] or s != [1, 1] or pad != [0, 0]:
            raise _Bad("global_pooling takes no kernel_size, stride or pad")
        return [(bottom[0], bottom[1], 1, 1)]
    if max(pad) and p.pool not in (p.MAX, p.AVE):
        raise _Bad("pad works with pool MAX or AVE only")
    if None in k or min(k) < 1:
        raise _Bad("kernel_size must be >= 1")
    if min(s) < 1:
        raise _Bad(f"stride {min(s)} must be >= 1")
    out = []
    for size, kk, ss, pp in zip(bottom[2:], k, s, pad):
        if pp >= kk:
            raise _Bad(f"pad {pp} must be smaller than the kernel {kk}")
        if size + 2 * pp < kk:
            raise _Bad(f"kernel {kk} is larger than its input of {size} (+ 2 x pad {pp}): "
                       "use a smaller kernel or a larger input")
        o = (math.floor if p.round_mode == p.FLOOR else math.ceil)((size + 2 * pp - kk) / ss) + 1
        if pp and (o - 1) * ss >= size + pp:
            o -= 1
        out.append(o)
    return [(bottom[0], bottom[1], *out)]


def _axis(axis, shape):
    a = axis + len(shape) if axis < 0 else axis
    if not 0 <= a < len(shape):
        raise _Bad(f"axis {axis} does not exist in shape {list(shape)}")
    return a


def _slice(layer, bottom):
    p = layer.slice_param
    a = _axis(p.slice_dim if p.HasField("slice_dim") else p.axis, bottom)
    n, size = len(layer.top), bottom[a]
    if p.slice_point:
        pts = list(p.slice_point)
        if len(pts) != n - 1 or pts != sorted(set(pts)) or pts[0] < 1 or pts[-1] >= size:
            raise _Bad(f"slice_point {pts} does not cut axis {a} of size {size} into {n} parts")
        sizes = [b - a_ for a_, b in zip([0] + pts, pts + [size])]
    elif a == 0 and size != n:
        # the group block cuts a group into its images: one top per image
        raise _Bad(f"cuts a batch of {size} into {n} tops; the group size (the Input's first "
                   f"dim, or the data layer's group_size) must equal the number of tops ({n})")
    else:
        if size % n:
            raise _Bad(f"cannot cut axis {a} of size {size} into {n} equal tops")
        sizes = [size // n] * n
    return [tuple(d if i != a else sz for i, d in enumerate(bottom)) for sz in sizes]


def _concat(layer, bottoms):
    a = _axis(layer.concat_param.axis, bottoms[0])
    ref = bottoms[0]
    for b in bottoms[1:]:
        if len(b) != len(ref) or any(x != y for i, (x, y) in enumerate(zip(b, ref)) if i != a):
            raise _Bad(f"inputs {[list(x) for x in bottoms]} differ outside axis {a}")
    return [tuple(sum(b[a] for b in bottoms) if i == a else d for i, d in enumerate(ref))]


def _crop(layer, bottoms):
    p = layer.crop_param
    src, ref = bottoms
    a = _axis(p.axis, src)
    offs = _spatial(p.offset, len(src) - a, 0, "offset")
    out = list(src)
    for i in range(a, len(src)):
        o = offs[i - a]
        if o + ref[i] > src[i]:
            raise _Bad(f"crop of {ref[i]} at offset {o} does not fit in axis {i} of size {src[i]}")
        out[i] = ref[i]
    return [tuple(out)]


def _python(layer):
    """The project's GroupDataLayer: data (K, 3, H, W) and label (K, 1, H, W) from param_str."""
    if layer.python_param.layer != "GroupDataLayer":
        return None
    try:
        p = parse_json(layer.python_param.param_str or "{}", "param_str")
        k, h, w = int(p.get("group_size", 5)), int(p["height"]), int(p["width"])
    except (UserError, ValueError, KeyError, TypeError, AttributeError):
        return None    # the layer's own parser gives the message
    return [(k, 3, h, w), (k, 1, h, w)][:len(layer.top)]


def _top_shapes(layer, bottoms):
    t = layer.type
    if t == "Input":
        shapes = [tuple(s.dim) for s in layer.input_param.shape]
        if len(shapes) not in (1, len(layer.top)):
            raise _Bad(f"{len(shapes)} shapes for {len(layer.top)} top(s); give shape once, or once per top")
        if any(d < 1 for s in shapes for d in s):
            raise _Bad(f"Input shape {[list(s) for s in shapes]} has a dim < 1")
        return shapes * len(layer.top) if len(shapes) == 1 else shapes
    if t == "Python":
        return _python(layer)
    if any(b is None for b in bottoms):
        return None
    if t in ("Convolution", "Deconvolution"):
        return _conv(layer, bottoms[0], t == "Deconvolution")
    if t == "Pooling":
        return _pool(layer, bottoms[0])
    if t == "LRN" and layer.lrn_param.local_size % 2 == 0:
        raise _Bad(f"local_size {layer.lrn_param.local_size} must be odd")
    if t == "Softmax":
        _axis(layer.softmax_param.axis, bottoms[0])
    if t in ELEMENTWISE or t == "Split":
        return [bottoms[0]] * len(layer.top)
    if t == "Slice":
        return _slice(layer, bottoms[0])
    if t == "Flatten":
        b, p = bottoms[0], layer.flatten_param
        a, e = _axis(p.axis, b), _axis(p.end_axis, b)
        return [(*b[:a], math.prod(b[a:e + 1]), *b[e + 1:])]
    if t == "Concat":
        return _concat(layer, bottoms)
    if t == "Crop" and len(bottoms) == 2:
        return _crop(layer, bottoms)
    if t == "Eltwise":
        if len(set(bottoms)) > 1:
            raise _Bad(f"inputs of different shapes {[list(b) for b in bottoms]}")
        return [bottoms[0]]
    if t in ("EuclideanLoss",) and len(bottoms) == 2:
        if math.prod(bottoms[0][1:]) != math.prod(bottoms[1][1:]) or bottoms[0][0] != bottoms[1][0]:
            raise _Bad(f"compares shapes {list(bottoms[0])} and {list(bottoms[1])} of different size")
        return [()]
    return None


def _meets(rule, state):
    """Caffe's Net::StateMeetsRule: state is (phase, level, stages)."""
    phase, level, stages = state
    return not ((rule.HasField("phase") and rule.phase != phase) or
                (rule.HasField("min_level") and level < rule.min_level) or
                (rule.HasField("max_level") and level > rule.max_level) or
                any(s not in stages for s in rule.stage) or any(s in stages for s in rule.not_stage))


def active_layers(param, path, phase):
    """The layers Caffe builds of a net in `phase` (0 TRAIN, 1 TEST), by their include and
    exclude rules against the net's state (Net::FilterNet)."""
    state = (phase, param.state.level, set(param.state.stage))
    layers = []
    for layer in param.layer:
        if layer.include and layer.exclude:
            raise UserError(f"{path}: layer '{layer.name}' has both include and exclude rules; "
                            "give one kind")
        if (any(_meets(r, state) for r in layer.include) if layer.include
                else not any(_meets(r, state) for r in layer.exclude)):
            layers.append(layer)
    return layers


def check_graph(param, path, phase=1):
    """How the layers of `phase` connect, by Caffe's rules: every bottom produced by an earlier
    layer (insert_splits.cpp), a top name produced once, except by a layer computing in place
    (top j = bottom j) on a blob no other layer takes (Caffe puts a Split before the layers
    sharing one, and the in-place one becomes a second producer: Net::AppendTop), and no
    Split in place (split_layer.cpp)."""
    layers = active_layers(param, path, phase)
    readers = {}        # (producing layer, top index) -> how many layers take it
    for source, layer, _ in _wiring(param, layers, path):
        for b in source:
            readers[b] = readers.get(b, 0) + 1
        for j, weight in enumerate(layer.loss_weight[:len(layer.top)]):
            if weight:      # a loss output counts as one more reader (insert_splits.cpp)
                readers[(id(layer), j)] = readers.get((id(layer), j), 0) + 1
    for source, layer, produced in _wiring(param, layers, path):
        for j, top in enumerate(layer.top):
            in_place = j < len(layer.bottom) and top == layer.bottom[j]
            if in_place and layer.type == "Split":
                raise UserError(f"{path}: layer '{layer.name}' (Split) cannot compute in place; "
                                "give its tops names of their own")
            if top in produced and not (in_place and readers.get(source[j], 0) <= 1):
                why = (f"in place on '{top}', which other layers take too" if in_place
                       else f"'{top}', which an earlier layer produces")
                raise UserError(f"{path}: layer '{layer.name}' ({layer.type}) writes top {why}; "
                                "give the top a name of its own")


def _wiring(param, layers, path):
    """(the producers of its bottoms, layer, the blob names produced before it) for each layer,
    a producer being (id of the producing layer, top index); UserError for a bottom no
    earlier layer produces."""
    last = {name: ("input", i) for i, name in enumerate(param.input)}
    for layer in layers:
        missing = [b for b in layer.bottom if b not in last]
        if missing:
            raise UserError(f"{path}: layer '{layer.name}' takes bottom '{missing[0]}', which no "
                            "earlier layer produces")
        yield [last[b] for b in layer.bottom], layer, set(last)
        for j, top in enumerate(layer.top):
            last[top] = (id(layer), j)


def _fields(message):
    """(field, value) of every field set in a message and the messages inside it."""
    for field, value in message.ListFields():
        if field.name == "blobs":       # weights written into the prototxt: not settings
            continue
        if field.message_type is None:
            yield field, value
            continue
        for sub in (value if field.is_repeated else [value]):
            yield from _fields(sub)


def _check_settings(layer):
    """Settings Caffe aborts on, or computes NaN with, whatever the layer type: a cuDNN engine
    (the project's Caffe is built without cuDNN, README "Deviations"), a number that is not
    finite (a ReLU's negative_slope: nan made every map NaN)."""
    for field, value in _fields(layer):
        values = value if field.is_repeated else [value]
        if field.name == "engine" and field.enum_type.values_by_name["CUDNN"].number in values:
            raise _Bad("engine: CUDNN, but this Caffe is built without cuDNN; use engine: CAFFE or leave it out")
        if field.type in (field.TYPE_FLOAT, field.TYPE_DOUBLE) and not all(map(math.isfinite, values)):
            raise _Bad(f"{field.name} is {values[0] if len(values) == 1 else values}, not a finite number")


def check_shapes(param, path, phase=1, visit=None):
    """Propagate blob shapes through a parsed NetParameter; UserError naming the file, the layer
    and what to change at the first layer Caffe would abort on. Returns {blob: shape or None}.
    visit(layer, bottom shapes) is called for each layer of `phase` that passed."""
    shapes = {name: tuple(s.dim) for name, s in zip(param.input, param.input_shape)}
    for layer in active_layers(param, path, phase):
        bottoms = [shapes.get(b) for b in layer.bottom]
        try:
            _check_settings(layer)
            tops = _top_shapes(layer, bottoms)
        except _Bad as e:
            raise UserError(f"{path}: layer '{layer.name}' ({layer.type}): {e}") from None
        if visit is not None:
            visit(layer, bottoms)
        for i, top in enumerate(layer.top):
            shapes[top] = tops[i] if tops is not None and i < len(tops) else None
            if shapes[top] is not None and math.prod(shapes[top]) > INT_MAX:
                raise UserError(f"{path}: layer '{layer.name}' ({layer.type}): top '{top}' of shape "
                                f"{list(shapes[top])} holds more than {INT_MAX} values, Caffe's limit "
                                "for one blob; make the input smaller")
    return shapes


def _learnable_shapes(layer, bottoms):
    """The shapes of a layer's learnable blobs, as Caffe makes them, for the layer types whose
    rule is here (None for the others, or where an input shape is unknown)."""
    if not bottoms or any(b is None for b in bottoms):
        return None
    t = layer.type
    if t in ("Convolution", "Deconvolution"):
        p, c = layer.convolution_param, bottoms[0][1]
        k = _hw(p, "kernel", len(bottoms[0]) - 2, None)
        w = (p.num_output, c // p.group, *k) if t == "Convolution" else (c, p.num_output // p.group, *k)
        return [w] + [(p.num_output,)] * p.bias_term
    if t == "InnerProduct":
        p = layer.inner_product_param
        n = math.prod(bottoms[0][_axis(p.axis, bottoms[0]):])
        return [(n, p.num_output) if p.transpose else (p.num_output, n)] + [(p.num_output,)] * p.bias_term
    return None


def learnable_shapes(param, path, phase=1):
    """{layer: [shapes of its learnable blobs]} of a parsed net, found without Caffe, for the
    layers whose type has a rule here (convolutions, deconvolutions, inner products): what
    weights must fit before Caffe copies them (core.netio.check_weights_fit)."""
    out = {}

    def visit(layer, bottoms):
        shapes = _learnable_shapes(layer, bottoms)
        if shapes is not None:
            out[layer.name] = shapes
    check_shapes(param, path, phase, visit)
    return out


# ---------------------------------------------------------------- solvers
def solver_type(s):
    if s.HasField("type"):
        return s.type
    names = {0: "SGD", 1: "Nesterov", 2: "AdaGrad", 3: "RMSProp", 4: "AdaDelta", 5: "Adam"}
    return names.get(s.solver_type, "SGD")


def _need(ok, path, field, value, valid):
    if not ok:
        raise UserError(f"{path}: {field} {value} makes no sense; valid: {valid}")


def _check_test_nets(s, path, generic):
    """Caffe's rules for test nets: one test_iter per test net (a solver with `net` may add
    test instances of it, one per extra test_iter), test_interval > 0 when there is any,
    test_state once per test net or not at all. generic: the train net is `net` or
    `net_param` (a run fills in `net`), whose TEST phase the extra instances are."""
    tests = len(s.test_net) + len(s.test_net_param)
    iters = len(s.test_iter)
    if iters < tests or (not generic and iters != tests):
        raise UserError(f"{path}: {tests} test net(s) but {iters} test_iter value(s); "
                        "give test_iter once per test net")
    if iters:
        _need(s.test_interval > 0, path, "test_interval", s.test_interval,
              "> 0 (test_iter asks for tests)")
    if s.test_state and len(s.test_state) != iters:
        raise UserError(f"{path}: {len(s.test_state)} test_state value(s) for {iters} test net(s); "
                        "give test_state once per test net or not at all")


def check_solver(s, path):
    """The fields of a parsed SolverParameter that Caffe would abort on, or train nonsense with
    (a negative learning rate ends in a diverging loss with the wrong advice)."""
    if s.HasField("type") and s.HasField("solver_type"):
        raise UserError(f"{path}: sets both type and the old solver_type; keep type only")
    trains = [f for f in ("net", "net_param", "train_net", "train_net_param") if s.HasField(f)]
    if len(trains) > 1:
        raise UserError(f"{path}: sets {' and '.join(trains)}; a solver names one train net")
    _check_test_nets(s, path, generic=not trains or trains[0] in ("net", "net_param"))
    t = solver_type(s)
    if t not in SOLVER_TYPES:
        raise UserError(f'{path}: unknown solver type "{t}"; one of {", ".join(SOLVER_TYPES)}')
    if s.lr_policy not in LR_POLICIES:
        raise UserError(f'{path}: lr_policy "{s.lr_policy}" is unknown; one of {", ".join(LR_POLICIES)}')
    _need(math.isfinite(s.base_lr) and s.base_lr > 0, path, "base_lr", s.base_lr, "> 0")
    _need(s.max_iter >= 0, path, "max_iter", s.max_iter, ">= 0")
    _need(0 <= s.momentum < 1, path, "momentum", s.momentum, "[0, 1)")
    _need(math.isfinite(s.weight_decay) and s.weight_decay >= 0, path, "weight_decay", s.weight_decay, ">= 0")
    _need(s.iter_size >= 1, path, "iter_size", s.iter_size, ">= 1")
    _need(s.average_loss >= 1, path, "average_loss", s.average_loss, ">= 1")
    _need(s.regularization_type in ("L1", "L2"), path, "regularization_type",
          f'"{s.regularization_type}"', '"L1" or "L2"')
    if s.HasField("clip_gradients"):
        _need(s.clip_gradients > 0 or s.clip_gradients == -1, path, "clip_gradients",
              s.clip_gradients, "> 0, or -1 for none")
    policy = s.lr_policy
    if policy in ("step", "sigmoid"):
        _need(s.stepsize > 0, path, "stepsize", s.stepsize if s.HasField("stepsize") else "(unset)",
              f'> 0 (lr_policy "{policy}" needs it)')
    if policy == "multistep":
        v = list(s.stepvalue)
        _need(v and v == sorted(set(v)) and v[0] > 0, path, "stepvalue", v,
              'increasing positive iterations (lr_policy "multistep" needs them)')
    if policy in ("step", "exp", "multistep"):
        _need(s.HasField("gamma") and 0 < s.gamma <= 1, path, "gamma",
              s.gamma if s.HasField("gamma") else "(unset)", f'(0, 1] for lr_policy "{policy}"')
    if policy == "inv":
        _need(s.HasField("gamma") and s.gamma >= 0, path, "gamma", s.gamma, '>= 0 for lr_policy "inv"')
    if policy == "sigmoid":     # Caffe checks gamma >= 0 at the first step
        _need(s.gamma >= 0, path, "gamma", s.gamma, '>= 0 for lr_policy "sigmoid"')
    if policy in ("poly", "inv"):
        _need(s.HasField("power") and s.power >= 0, path, "power",
              s.power if s.HasField("power") else "(unset)", f'>= 0 for lr_policy "{policy}"')
    _check_solver_type_fields(s, path, t)


def _check_solver_type_fields(s, path, t):
    """The fields of one solver type: Caffe's AdaGrad and RMSProp constructors abort on any
    momentum (they keep no momentum history) and RMSProp on rms_decay outside [0, 1); Adam's
    momentum2 and the adaptive solvers' delta (the guard against dividing by zero) get the ranges
    their update formulas need."""
    if t in ("AdaGrad", "RMSProp"):
        _need(s.momentum == 0, path, "momentum", s.momentum, f"0 for {t} (remove it from the solver)")
    if t == "Adam":
        _need(0 <= s.momentum2 < 1, path, "momentum2", s.momentum2, "[0, 1)")
    if t in ("Adam", "AdaGrad", "AdaDelta", "RMSProp"):
        _need(math.isfinite(s.delta) and s.delta > 0, path, "delta", s.delta, "> 0")
    if t == "RMSProp":
        _need(0 <= s.rms_decay < 1, path, "rms_decay", s.rms_decay, "[0, 1)")


def check_solverstate(state, path, solver_kind, param_shapes):
    """A parsed SolverState against the solver and the net it will be restored into: Caffe
    aborts when the number of history blobs differs (another solver type, another model), or
    when a blob holds another number of values than its shape."""
    per = 2 if solver_kind in TWO_HISTORIES else 1
    want = [tuple(s) for s in param_shapes] * per
    got = [tuple(h.shape.dim) if h.HasField("shape") else
           tuple(d for d in (h.num, h.channels, h.height, h.width)) for h in state.history]
    if len(got) != len(want):
        raise UserError(f"{path}: holds {len(got)} history blobs, the {solver_kind} solver of this "
                        f"net needs {len(want)} (a snapshot of another model, variant or solver "
                        "type: resume with the run's own --model, --tiny and solver)")
    for i, (g, w) in enumerate(zip(got, want)):
        if math.prod(g) != math.prod(w):
            raise UserError(f"{path}: history blob {i} has shape {list(g)}, the net's parameter "
                            f"has {list(w)} (a snapshot of another model or variant)")
    for i, (h, g) in enumerate(zip(state.history, got)):
        n = len(h.double_data) or len(h.data)
        if n != math.prod(g):
            raise UserError(f"{path}: history blob {i} of shape {list(g)} holds {n} values, not "
                            f"{math.prod(g)} (a damaged solver state)")
