"""Weight surgery, in the spirit of FCN's surgery.py: start nets from other nets' weights.

- transplant_vgg16: the semantic block (conv1_1 .. conv5_3) from the VGG16 ImageNet caffemodel,
  matched by layer name, shapes checked (design.md section 2, stage 1).
- single_to_group: stage 1 (Ours-S) -> stage 2 (group model or Ours+): every shared layer copied,
  the collaborative conv's x_i channels copied from Ours-S's score conv and the rest (X, and
  Ours+'s x_i * g) set to zero, so the model starts as exactly the single model and can only add
  group evidence.
- bilinear_kernel / init_bilinear: the deconvolution's bilinear interpolation weights.
- he_init: random weights that keep activations O(1) (benchmarks and tests of untrained nets).
"""
import numpy as np

from .errors import UserError
from .netio import blob_shape, blob_values, check_finite, read_weights

# VGG16's 13 conv layers (Simonyan & Zisserman) and their (outputs, inputs); kernels are 3 x 3.
VGG16_SHAPES = {"conv1_1": (64, 3), "conv1_2": (64, 64), "conv2_1": (128, 64), "conv2_2": (128, 128),
                "conv3_1": (256, 128), "conv3_2": (256, 256), "conv3_3": (256, 256),
                "conv4_1": (512, 256), "conv4_2": (512, 512), "conv4_3": (512, 512),
                "conv5_1": (512, 512), "conv5_2": (512, 512), "conv5_3": (512, 512)}
VGG16_CONVS = tuple(VGG16_SHAPES)


def check_vgg16(weights_path):
    """The caffemodel holds conv1_1..conv5_3 with VGG16's shapes (what stage 1 transplants);
    else a UserError naming the file and the first layer that is missing or of another shape."""
    blobs = _blobs_by_layer(read_weights(weights_path))
    for name, (n_out, n_in) in VGG16_SHAPES.items():
        got = blobs.get(name, [])
        if len(got) < 2:
            raise UserError(f"{weights_path}: no weights and bias for layer '{name}' (not a VGG16 caffemodel?)")
        w = blob_shape(got[0])
        if int(np.prod(w)) != n_out * n_in * 9 or (len(w) == 4 and tuple(w) != (n_out, n_in, 3, 3)):
            raise UserError(f"{weights_path}: layer '{name}' has weights of shape {tuple(w)}, VGG16's are "
                            f"{(n_out, n_in, 3, 3)} (not a VGG16 caffemodel?)")
        for i, blob in enumerate(got[:2]):
            check_finite(blob_values(blob), weights_path, name, i)


def _blobs_by_layer(weights):
    """{layer name: [BlobProto]} of a parsed caffemodel, current or V1 format."""
    return {layer.name: list(layer.blobs) for layer in (list(weights.layer) or list(weights.layers))}


def bilinear_kernel(size):
    """(size, size) bilinear upsampling weights for stride size // 2 (Caffe's bilinear filler)."""
    factor = (size + 1) // 2
    centre = factor - 1 if size % 2 == 1 else factor - 0.5
    f = 1 - np.abs(np.arange(size) - centre) / factor
    return np.outer(f, f).astype(np.float32)


def init_bilinear(net, layer="upscore"):
    """Set a 1-channel Deconvolution layer to bilinear interpolation."""
    w = net.params[layer][0].data
    w[...] = 0
    k = bilinear_kernel(w.shape[-1])
    for c in range(min(w.shape[0], w.shape[1])):
        w[c, c] = k


def transplant_vgg16(net, weights_path, layers=VGG16_CONVS):
    """Copy the VGG16 conv layers into `net` by name. A missing layer or a shape that differs is a
    UserError naming the layer (Caffe would abort the process)."""
    blobs = _blobs_by_layer(read_weights(weights_path))
    for name in layers:
        if name not in net.params:
            raise UserError(f"the net has no layer '{name}' to receive VGG16 weights")
        if name not in blobs or len(blobs[name]) < 2:
            raise UserError(f"{weights_path}: no weights and bias for layer '{name}' (not a VGG16 caffemodel?)")
        for i, (dst, blob, what) in enumerate(zip(net.params[name], blobs[name], ("weights", "bias"))):
            arr = blob_values(blob)
            if arr.size != dst.data.size:
                raise UserError(f"{weights_path}: layer '{name}' {what} have shape {blob_shape(blob)}, "
                                f"the net expects {tuple(dst.data.shape)}")
            check_finite(arr, weights_path, name, i)
            dst.data[...] = arr.reshape(dst.data.shape)
    return list(layers)


def single_to_group(single, group, single_score="score", group_score="score_co"):
    """Stage 1 -> stage 2. Layers present in both nets with equal shapes are copied; the group
    block keeps its own (gaussian) initialisation; the collaborative conv gets Ours-S's score
    weights on the x_i channels (the first of its input) and zeros on the others: X, and for
    Ours+ also x_i * g. Returns the copied layer names."""
    copied = []
    for name, params in single.params.items():
        if name == single_score:
            continue
        if name not in group.params:
            raise UserError(f"the group model has no layer '{name}' of the single model (another net?)")
        for s, g in zip(params, group.params[name]):
            if s.data.shape != g.data.shape:
                raise UserError(f"layer '{name}': single model {s.data.shape} vs group model {g.data.shape}")
            g.data[...] = s.data
        copied.append(name)
    w_s, b_s = single.params[single_score]
    w_g, b_g = group.params[group_score]
    n = w_s.data.shape[1]
    c = w_g.data.shape[1]
    if c <= n or c % n:
        raise UserError(f"'{group_score}' takes {c} channels, expected a multiple of {n} "
                        "(x_i, X[, x_i * g])")
    w_g.data[...] = 0
    w_g.data[:, :n] = w_s.data      # Concat(x_i, X, ...): x_i comes first
    b_g.data[...] = b_s.data
    copied.append(group_score)
    return copied


def he_init(net, seed=0):
    """Random weights that keep activations O(1) through the deep stack (He normal), so that
    output comparisons are meaningful rather than comparisons of near-zero numbers."""
    rng = np.random.RandomState(seed)
    for name, params in net.params.items():
        w = params[0].data
        fan_in = np.prod(w.shape[1:])
        w[...] = rng.randn(*w.shape) * np.sqrt(2.0 / fan_in)
        if len(params) > 1:
            params[1].data[...] = rng.randn(*params[1].data.shape) * 0.1
