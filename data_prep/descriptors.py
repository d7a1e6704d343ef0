"""GIST + Lab colour histogram image descriptors (the similarity that forms training groups).

The paper groups each COCO9213 image with its 4 nearest neighbours under "Gist and Lab color
histogram features" (following Siva et al., 2013). Both parts are ours (no maintained GIST
library exists), written from the description of Oliva & Torralba (2001):

GIST (512 numbers)
    1. grayscale (OpenCV luma of the BGR image), resized to 256 x 256;
    2. prefiltering as Oliva & Torralba: log(1 + I), whitening by removing a Gaussian low-pass
       (cut-off 4 cycles per image), then local contrast normalisation (divide by
       0.2 + the low-passed local standard deviation). It makes the descriptor insensitive to
       global illumination and contrast, which is what "similar scene" should mean;
    3. the image is extended by 32 pixels of mirror padding on each side (320 x 320) so that
       the FFT's circular wrap does not invent edges at the image border;
    4. a bank of 4 scales x 8 orientations of Gabor filters defined in the frequency domain:
       G(f, phi) = exp(-(f / f_s - 1)^2 / (2 * 0.4^2)) * exp(-wrap(phi - theta_k)^2 / (2 * 0.28^2))
       with peak frequencies f_s = 0.3, 0.15, 0.075, 0.0375 cycles per pixel (s = 0 is the
       finest) and theta_k = k * pi / 8. A filter covers one half-plane of frequencies, so its
       output is complex (analytic) and its magnitude is the local energy;
    5. the magnitude is averaged on a 4 x 4 grid of 64 x 64 cells of the 256 x 256 image.

    Orientation convention: phi = atan2(f_y, f_x) with x to the right (columns) and y downwards
    (rows). Orientation k = 0 is tuned to horizontal frequency, i.e. intensity changing along
    x: vertical stripes and vertical edges. k = 4 is tuned to horizontal stripes/edges; k = 2 to
    stripes running from the top right to the bottom left ("/"), k = 6 to "\\" stripes.
    Mirroring the image left-right maps orientation k to (8 - k) % 8 and grid column c to 3 - c.

    Layout: index = ((s * 8 + k) * 4 + row) * 4 + col (scale, orientation, grid row, grid col).

    Speed: the coarse scales are band-limited far below the Nyquist frequency, so scales 2 and 3
    are evaluated on the spectrum cropped to 1/2 and 1/4 of the size (the filters are below
    3e-4 outside the cropped band); the cell averages are unchanged up to that tail.

Lab colour histogram (512 numbers)
    OpenCV's 8-bit Lab conversion of the (resized) BGR image, each channel cut into 8 equal bins
    of 32 levels: index = (L // 32) * 64 + (a // 32) * 8 + (b // 32); fraction of pixels per bin.

Descriptor (1024 numbers, float32) = [GIST / ||GIST||, hist / ||hist||].

Descriptors of files are cached in an HDF5 file keyed by path + modification time + size, so a
rerun is instant and an edited image is recomputed.
"""
import concurrent.futures
import functools
import os
import pathlib

import cv2
import numpy as np
import scipy.fft

from core.args import positive_int
from core.errors import UserError
from core.imageio import read_image
from core.outputs import atomic_path, prepare_out_file, utf8_text
from core.progress import progress as progress_bar
from core.workers import available_cpus

SIZE = 256             # GIST works on SIZE x SIZE grayscale
PAD = 32               # mirror padding against the FFT's circular wrap
GRID = 4               # energy averaged on GRID x GRID cells
N_ORIENT = 8
PEAKS = (0.3, 0.15, 0.075, 0.0375)   # cycles per pixel, scale 0 (fine) .. 3 (coarse)
RADIAL_SIGMA = 0.4     # relative to the peak frequency
ANGULAR_SIGMA = 0.28   # radians; orientations are pi / 8 = 0.39 apart
PREFILTER_FC = 4.0     # whitening cut-off, cycles per image
LAB_BINS = 8
GIST_DIM = len(PEAKS) * N_ORIENT * GRID * GRID   # 512
LAB_DIM = LAB_BINS ** 3                          # 512
DIM = GIST_DIM + LAB_DIM                         # 1024
# Bump when anything above changes: cached descriptors of another version are recomputed.
VERSION = (f"gist-lab-1 size={SIZE} pad={PAD} grid={GRID} orient={N_ORIENT} peaks={PEAKS} "
           f"sr={RADIAL_SIGMA} sa={ANGULAR_SIGMA} fc={PREFILTER_FC} lab={LAB_BINS}")


def mirror_orientation(k):
    """The orientation index that orientation k becomes when the image is flipped left-right."""
    return (N_ORIENT - k) % N_ORIENT


def _freq_grid(n):
    """Radial frequency (cycles/pixel) and angle phi = atan2(fy, fx) of an n x n FFT."""
    f = scipy.fft.fftfreq(n).astype(np.float64)
    fy, fx = np.meshgrid(f, f, indexing="ij")   # rows are y (down), columns x (right)
    return np.hypot(fx, fy), np.arctan2(fy, fx)


def _downsample_factor(peak, n):
    # Largest power-of-two crop whose Nyquist band still holds the filter out to 4 sigma.
    reach = peak * (1.0 + 4.0 * RADIAL_SIGMA)
    d = 1
    while reach <= 0.5 / (2 * d) and (n // (2 * d)) % 2 == 0 and (SIZE // GRID) % (2 * d) == 0:
        d *= 2
    return d


@functools.lru_cache(maxsize=None)
def filter_bank():
    """Per scale: (downsample factor d, array (8, n/d, n/d)) of transfer functions laid out in
    the (cropped) unshifted FFT order; complex for d > 1, where they include the half-block
    sampling shift. Computed once per process."""
    n = SIZE + 2 * PAD
    bank = []
    for peak in PEAKS:
        d = _downsample_factor(peak, n)
        m = n // d
        fr, phi = _freq_grid(m)
        fr = fr / d    # frequency in cycles per *original* pixel
        radial = np.exp(-((fr / peak - 1.0) ** 2) / (2 * RADIAL_SIGMA ** 2))
        gs = []
        for k in range(N_ORIENT):
            theta = k * np.pi / N_ORIENT
            dphi = np.angle(np.exp(1j * (phi - theta)))     # wrapped to (-pi, pi]
            gs.append(radial * np.exp(-(dphi ** 2) / (2 * ANGULAR_SIGMA ** 2)))
        g = np.stack(gs).astype(np.float32)
        if d > 1:
            # Sample the centre of each d x d block, (d - 1) / 2 pixels in, not its corner: the
            # sampling grid is then symmetric, so a mirrored image gives mirrored cell averages.
            f = scipy.fft.fftfreq(m) / d
            shift = (d - 1) / 2.0
            ramp = np.exp(2j * np.pi * shift * (f[:, None] + f[None, :]))
            g = (g * ramp[None]).astype(np.complex64)
        bank.append((d, g))
    return tuple(bank)


@functools.lru_cache(maxsize=None)
def _prefilter_lowpass():
    n = SIZE + 2 * PAD
    fr, _ = _freq_grid(n)
    s1 = PREFILTER_FC / np.sqrt(np.log(2.0))
    return np.exp(-((fr * n) ** 2) / s1 ** 2).astype(np.float32)[:, : n // 2 + 1]


def _crop_spectrum(spec, d):
    """The low-frequency (n/d x n/d) part of an unshifted n x n spectrum, rescaled so that
    ifft2 of the crop samples the same band-limited signal on every d-th pixel."""
    if d == 1:
        return spec
    n = spec.shape[-1]
    h = n // (2 * d)
    rows = np.concatenate([spec[:h], spec[n - h:]], axis=0)
    return np.concatenate([rows[:, :h], rows[:, n - h:]], axis=1) / np.float32(d * d)


@functools.lru_cache(maxsize=None)
def _cell_average_matrix(d):
    """(GRID, (SIZE + 2 PAD) / d): row r averages the samples of grid cell r, padding excluded."""
    n, c, p = (SIZE + 2 * PAD) // d, SIZE // GRID // d, PAD // d
    a = np.zeros((GRID, n), np.float32)
    for r in range(GRID):
        a[r, p + r * c:p + (r + 1) * c] = 1.0 / c
    return a


def prefilter(gray):
    """Oliva & Torralba prefiltering of a padded float32 image (log, whitening, local contrast
    normalisation), done with real FFTs on the padded size."""
    n = gray.shape[0]
    lp = _prefilter_lowpass()
    img = np.log1p(gray)
    spec = scipy.fft.rfft2(img)
    white = img - scipy.fft.irfft2(spec * lp, s=(n, n))
    local = np.sqrt(np.abs(scipy.fft.irfft2(scipy.fft.rfft2(white * white) * lp, s=(n, n))))
    return (white / (0.2 + local)).astype(np.float32)


def _gray256(bgr):
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY) if bgr.ndim == 3 else bgr
    return _resize(gray)


def _resize(img):
    h, w = img.shape[:2]
    interp = cv2.INTER_AREA if h >= SIZE and w >= SIZE else cv2.INTER_LINEAR
    return cv2.resize(img, (SIZE, SIZE), interpolation=interp)


def gist(image):
    """Raw (not normalised) GIST energies of a uint8 BGR or grayscale image: float32 (512,),
    laid out as (scale, orientation, grid row, grid col); see the module docstring."""
    img = np.asarray(image)
    gray = _gray256(img).astype(np.float32)
    padded = cv2.copyMakeBorder(gray, PAD, PAD, PAD, PAD, cv2.BORDER_REFLECT)
    spec = scipy.fft.fft2(prefilter(padded)).astype(np.complex64)
    out = []
    for d, bank in filter_bank():
        resp = scipy.fft.ifft2(_crop_spectrum(spec, d)[None] * bank, axes=(-2, -1))
        avg = _cell_average_matrix(d)
        # crop + 4 x 4 cell means as two small matrix products: no copy of the big array
        out.append(avg @ np.abs(resp) @ avg.T)
    return np.stack(out).reshape(-1).astype(np.float32)


def lab_histogram(image):
    """Fraction of pixels in each of the 8 x 8 x 8 bins of OpenCV's 8-bit Lab (uint8 BGR input):
    float32 (512,), index (L // 32) * 64 + (a // 32) * 8 + (b // 32)."""
    bgr = np.asarray(image)
    if bgr.ndim != 3 or bgr.shape[2] != 3 or bgr.dtype != np.uint8:
        raise ValueError("lab_histogram needs a uint8 BGR image (H, W, 3)")
    lab = cv2.cvtColor(bgr, cv2.COLOR_BGR2Lab)
    q = (lab >> 5).astype(np.int32)   # 256 / 8 = 32 levels per bin
    idx = (q[..., 0] * LAB_BINS + q[..., 1]) * LAB_BINS + q[..., 2]
    hist = np.bincount(idx.ravel(), minlength=LAB_DIM).astype(np.float32)
    return hist / np.float32(idx.size)


def _l2(v):
    n = float(np.linalg.norm(v))
    return v / np.float32(n) if n > 0 else v


def describe(image):
    """The 1024-number descriptor of a uint8 BGR image: [GIST / ||GIST||, hist / ||hist||]."""
    bgr = np.asarray(image)
    if bgr.ndim == 2:
        bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
    small = _resize(bgr)   # both parts only need 256 x 256; resizing once is cheaper
    return np.concatenate([_l2(gist(small)), _l2(lab_histogram(small))]).astype(np.float32)


def describe_file(path):
    return describe(read_image(path))


# ---------------------------------------------------------------- cache
def file_key(path):
    """Cache key of an image file: absolute path (as UTF-8 text, which HDF5 strings are: a
    dataset may lie under a Latin-1 folder name), modification time (ns) and size."""
    p = os.path.abspath(os.fspath(path))
    try:
        st = os.stat(p)
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror or e})") from None
    return f"{utf8_text(p)}|{st.st_mtime_ns}|{st.st_size}"


def load_cache(cache_path):
    """{key: descriptor} from an HDF5 cache; empty when absent, of another version, or unreadable
    (a cache is never worth failing for: it is recomputed)."""
    import h5py
    if cache_path is None or not os.path.exists(cache_path):
        return {}
    try:
        with h5py.File(cache_path, "r") as f:
            if f.attrs.get("version") != VERSION:
                return {}
            keys = [k.decode("utf-8") if isinstance(k, bytes) else k for k in f["key"][:]]
            desc = f["descriptor"][:]
    except (OSError, KeyError, ValueError):
        return {}
    if desc.ndim != 2 or desc.shape != (len(keys), DIM):
        return {}
    return {k: d for k, d in zip(keys, desc) if np.isfinite(d).all()}   # a damaged entry: recomputed


def save_cache(cache_path, entries):
    """Write {key: descriptor} atomically, with the permissions of any other output."""
    import h5py
    keys = list(entries)
    with atomic_path(cache_path, suffix=".h5") as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["version"] = VERSION
            f.create_dataset("key", data=np.array(keys, dtype=object), dtype=h5py.string_dtype())
            arr = np.stack([entries[k] for k in keys]) if keys else np.zeros((0, DIM), np.float32)
            f.create_dataset("descriptor", data=arr.astype(np.float32))


HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def check_cache_path(path):
    """Before the work: the cache can be written, and what is there already is a cache (HDF5)
    to refresh, not another file that a mistyped path would have overwritten."""
    path = prepare_out_file(path)
    try:
        with open(path, "rb") as f:
            start = f.read(len(HDF5_SIGNATURE))
    except FileNotFoundError:
        return path
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror or e})") from None
    if start and start != HDF5_SIGNATURE:
        raise UserError(f"{path}: exists and is not a descriptor cache (HDF5); refusing to "
                        "overwrite it: give another cache path or remove the file")
    return path


def describe_files(paths, workers=2, cache_path=None, progress=True):
    """Descriptors of image files as float32 (N, 1024), in the order of `paths`.

    Parameters
        paths: image files (any format read_image reads).
        workers: threads computing descriptors in parallel (the FFTs, OpenCV and numpy's large
            array operations release the GIL, so threads use the cores without pickling).
        cache_path: HDF5 file of cached descriptors (read, then rewritten with the union), or None.
        progress: a progress bar on stderr (core.progress).
    """
    paths = [os.fspath(p) for p in paths]
    keys = [file_key(p) for p in paths]
    cached = load_cache(cache_path)
    todo = sorted({k: p for k, p in zip(keys, paths) if k not in cached}.items())
    if todo:
        filter_bank()          # build the shared tables once, before the threads start
        _prefilter_lowpass()
        bar = progress_bar(total=len(todo), desc="descriptors", unit="img", enabled=progress)
        n_new = 0
        pool = concurrent.futures.ThreadPoolExecutor(max(1, int(workers)))
        try:
            for (k, _), d in zip(todo, pool.map(describe_file, [p for _, p in todo])):
                cached[k] = d
                n_new += 1
                bar.update()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)   # on an error, stop at once
            bar.close()
            # also after an error or Ctrl-C: a rerun resumes where this one stopped
            if cache_path is not None and n_new:
                save_cache(cache_path, cached)
    if not keys:
        return np.zeros((0, DIM), np.float32)
    return np.stack([cached[k] for k in keys]).astype(np.float32)


# ---------------------------------------------------------------- command line
def register(subparsers):
    """Add `python -m data_prep descriptors` (compute and cache the descriptors of a dataset)."""
    p = subparsers.add_parser(
        "descriptors", help="GIST + Lab descriptors of a dataset's images, cached in HDF5",
        description="Compute the 1024-number GIST + Lab colour histogram descriptor of every "
                    "image of a dataset and store them in an HDF5 cache (rerun: instant).")
    p.add_argument("--dataset", required=True, help="dataset name (see data_prep.datasets)")
    p.add_argument("--root", required=True, help="dataset folder")
    p.add_argument("--out", required=True, help="HDF5 cache file to write")
    p.add_argument("--workers", type=positive_int, default=available_cpus(),
                   help="parallel threads (default: every CPU this process may use)")
    p.set_defaults(func=_cmd)
    return p


def _cmd(args):
    from data_prep.datasets import load_dataset
    check_cache_path(args.out)
    ds = load_dataset(args.dataset, args.root)
    paths = [pathlib.Path(ds.root) / it.image for it in ds.items()]
    desc = describe_files(paths, workers=args.workers, cache_path=args.out)
    print(f"{ds.summary()}; {len(desc)} descriptors in {args.out}")
    return 0

