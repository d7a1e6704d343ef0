"""The MATLAB behaviours that the CBCS reference code depends on, written with numpy.

The public CBCS code (Fu, Cao, Tu, TIP 2013) calls a handful of MATLAB built-ins whose exact
behaviour shapes its maps; they are reproduced here so that `baselines.cbcs` follows the reference
and not whatever OpenCV happens to do:

- `round_half_away`: MATLAB `round` (halves go away from zero; numpy rounds them to even).
- `imresize`: MATLAB `imresize(A, [rows cols])` with its defaults: Keys cubic kernel (a = -0.5),
  antialiasing when shrinking (kernel stretched by 1/scale), pixel-centre alignment, mirrored
  borders, dimensions resized in order of increasing scale, and for uint8 input a rounded and
  saturated uint8 result after each dimension.
- `srgb_to_lab`: the 'Lab<-RGB' conversion of Getreuer's `colorspace.m`, which the reference
  uses: sRGB (IEC 61966-2-1) decoding, D65 white (0.950456, 1, 1.088754), CIE 1976 L*a*b*.
- `gaussmf`: Fuzzy Logic Toolbox `gaussmf(x, [sigma c])`.
- `gaussian_kernel` / `filter_zero_padded`: `fspecial('gaussian', size, sigma)` and
  `imfilter(A, h)` (correlation, 'same' size, zero padding).
"""
import numpy as np


def round_half_away(x):
    """MATLAB `round`: to the nearest integer, halves away from zero (float result)."""
    x = np.asarray(x, dtype=np.float64)
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def _cubic(x):
    # Keys (1981) cubic convolution kernel with a = -0.5, as MATLAB's imresize 'bicubic'.
    ax = np.abs(x)
    ax2 = ax * ax
    ax3 = ax2 * ax
    return ((1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
            + (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2)))


def resize_weights(n_in, n_out):
    """Weights and 0-based source indices, (n_out, taps) each, of MATLAB's bicubic imresize along
    one dimension of length `n_in` resized to `n_out` (antialiased when shrinking)."""
    scale = n_out / n_in
    width = 4.0
    if scale < 1:
        def kernel(t):
            return scale * _cubic(scale * t)
        width /= scale
    else:
        kernel = _cubic
    x = np.arange(1, n_out + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)          # 1-based input coordinate of each output
    left = np.floor(u - width / 2.0)
    taps = int(np.ceil(width)) + 2
    idx = left[:, None] + np.arange(taps)[None, :]      # 1-based, may fall outside [1, n_in]
    w = kernel(u[:, None] - idx)
    w /= w.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(n_in), np.arange(n_in)[::-1]])
    src = mirror[np.mod(idx.astype(np.int64) - 1, 2 * n_in)]
    used = np.any(w != 0, axis=0)
    return w[:, used], src[:, used]


def _resize_axis(a, axis, n_out, as_uint8):
    w, src = resize_weights(a.shape[axis], n_out)
    a = np.asarray(a, dtype=np.float64)
    shape = [1] * a.ndim
    shape[axis] = n_out
    out = np.zeros(a.shape[:axis] + (n_out,) + a.shape[axis + 1:], dtype=np.float64)
    for p in range(w.shape[1]):
        out += w[:, p].reshape(shape) * np.take(a, src[:, p], axis=axis)
    if as_uint8:
        out = np.clip(round_half_away(out), 0, 255)
    return out


def imresize(a, size):
    """MATLAB `imresize(a, [rows cols])` ('bicubic', antialiased).

    Parameters: a: (H, W) or (H, W, C) array, uint8 or float; size: (rows, cols).
    Returns uint8 for uint8 input (rounded and saturated after each pass, as MATLAB does),
    float64 otherwise (no clamping: bicubic may overshoot)."""
    a = np.asarray(a)
    as_uint8 = a.dtype == np.uint8
    rows, cols = int(size[0]), int(size[1])
    scales = [rows / a.shape[0], cols / a.shape[1]]
    out = a
    # MATLAB resizes along the dimension with the smaller scale first (stable for ties).
    for axis in sorted(range(2), key=lambda d: scales[d]):
        n_out = (rows, cols)[axis]
        if out.shape[axis] != n_out:
            out = _resize_axis(out, axis, n_out, as_uint8)
    out = np.asarray(out, dtype=np.float64)
    return out.astype(np.uint8) if as_uint8 else out


# sRGB primaries -> XYZ: the inverse of the IEC 61966-2-1 XYZ -> linear-RGB matrix, the form
# colorspace.m uses (it inverts this matrix rather than using the rounded forward one).
_XYZ_TO_RGB = np.array([[3.2406, -1.5372, -0.4986],
                        [-0.9689, 1.8758, 0.0415],
                        [0.0557, -0.2040, 1.057]])
_RGB_TO_XYZ = np.linalg.inv(_XYZ_TO_RGB)
_WHITE_D65 = np.array([0.950456, 1.0, 1.088754])


def _srgb_decode(v):
    return np.where(v <= 0.0404482362771076, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def _lab_f(t):
    # CIE f(t) with the linear segment below (6/29)^3, slope (29/6)^2 / 3 = 841/108.
    return np.where(t < 0.008856, t * (841.0 / 108.0) + 4.0 / 29.0, np.cbrt(t))


def srgb_to_lab(rgb):
    """CIE L*a*b* (D65) of an RGB image: uint8 (divided by 255) or float in [0, 1].

    Parameters: rgb: (..., 3) array in R, G, B order. Returns float64 (..., 3): L in [0, 100]."""
    rgb = np.asarray(rgb)
    if rgb.dtype == np.uint8:
        lin = _srgb_decode(np.arange(256, dtype=np.float64) / 255.0)[rgb]
    else:
        lin = _srgb_decode(rgb.astype(np.float64))
    xyz = lin @ _RGB_TO_XYZ.T / _WHITE_D65
    f = _lab_f(xyz)
    lab = np.empty_like(f)
    lab[..., 0] = 116.0 * f[..., 1] - 16.0
    lab[..., 1] = 500.0 * (f[..., 0] - f[..., 1])
    lab[..., 2] = 200.0 * (f[..., 1] - f[..., 2])
    return lab


def gaussmf(x, sigma, c):
    """Fuzzy Logic Toolbox `gaussmf(x, [sigma c])` = exp(-(x - c)^2 / (2 sigma^2))."""
    x = np.asarray(x, dtype=np.float64)
    return np.exp(-((x - c) ** 2) / (2.0 * float(sigma) ** 2))


def gaussian_kernel(size, sigma):
    """`fspecial('gaussian', [size size], sigma)`: a normalised (size, size) Gaussian."""
    r = (size - 1) / 2.0
    y, x = np.mgrid[-r:r + 1, -r:r + 1]
    h = np.exp(-(x * x + y * y) / (2.0 * sigma * sigma))
    h[h < np.finfo(np.float64).eps * h.max()] = 0
    return h / h.sum()


def filter_zero_padded(a, h):
    """`imfilter(a, h)` for a 2-D `a` and an odd-sized `h`: correlation, output the size of
    `a`, zeros outside the image."""
    a = np.asarray(a, dtype=np.float64)
    ry, rx = h.shape[0] // 2, h.shape[1] // 2
    padded = np.pad(a, ((ry, ry), (rx, rx)))
    out = np.zeros_like(a)
    for dy in range(h.shape[0]):
        for dx in range(h.shape[1]):
            out += h[dy, dx] * padded[dy:dy + a.shape[0], dx:dx + a.shape[1]]
    return out
