"""CBCS and CBCS-S: cluster-based co-saliency (Fu, Cao, Tu, IEEE TIP 2013), as its authors'
public MATLAB code computes it; the GWD paper ran that code for Table 1, so its behaviour, not the
TIP paper's fuller description, is the reference.

    python -m baselines.cbcs --dataset icoseg --root DIR --out DIR [--single] [--workers N]
                             [--seed S] [--group NAME ...] [--force | --resume]

Steps of the reference, and the function that implements each:
- `image_features` (GetImVector, texture off as both callers use it): each image resized to
  200 x 200 by MATLAB's bicubic imresize, converted to CIE Lab (colorspace 'Lab<-RGB'), and every
  channel rounded to an integer; `center_distance`: each pixel's rounded distance to (100, 100)
  in 1-based pixel coordinates.
- `kmeans_pp` (kmeansPP): k-means++ seeding with the first centre a uniformly drawn pixel and each
  next one drawn with probability proportional to the distance (not its square) to the nearest
  centre; Lloyd iterations until no label changes; a restart whenever a cluster ends up empty; if
  every remaining pixel coincides with a centre, the remaining centres copy the first pixel and
  the current labels are returned without Lloyd iterations.
- `contrast_cue` (GetSalWeight): for cluster j, sum over clusters i of (share of all pixels in i)
  x ||centre_i - centre_j||.
- `spatial_cue` (GetPositionW): gaussmf(mean centre distance of the cluster's pixels, [200 0]).
- `corresponding_cue` (GetCoWeight, group layer only): per image, the share of the cluster's
  pixels that lie in it; mean / (sample std + 1) over the images.
- `gauss_normal` (Gauss_normal): gaussmf(cue, [(max - min) / 2, max]).
- `cluster_map` (Cluster2img): every pixel gets its cluster's saliency (the product of the
  normalised cues), then a 3 x 3 Gaussian of sigma 3 with zero padding (imfilter). The group
  layer filters the M cluster maps side by side, as the reference does, so neighbouring images
  touch at their seams.
- `single_layer_map` (Single_saliency_main): 6 clusters per image, contrast x spatial.
- `group_layer_maps` (Cosaliency_main): min(max(2M, 10), 30) clusters over all M images of the
  group, contrast x spatial x corresponding.
- `cbcs_maps` (Demo_Cosaliency + Save_result): CBCS = single-layer map x group-layer map,
  CBCS-S = the single-layer map; each resized back to its image's size by imresize and stored as
  8-bit (clamped to [0, 1], x 255, rounded), without any further normalisation.

Where the reference could not be followed exactly (guesses and deviations):
- Random numbers: MATLAB's `rand` stream cannot be reproduced; the seeding uses numpy's PCG64
  seeded from (--seed, group name) for the group layer and (--seed, group, image name) for the
  single layer, so CBCS-S maps equal the single-layer factor of CBCS and nothing depends on
  worker count or order. Different seeds give slightly different maps, as MATLAB runs do.
- k-means runs on the distinct rounded Lab colours weighted by their pixel counts (the same
  seeding distribution, centres and labels as over all pixels), and its Lloyd steps skip points
  that provably keep their label (Hamerly's bounds); both only save time.
- Safety limits the reference lacks: at most 1000 Lloyd iterations per run and 100 restarts;
  after the last restart the clustering is kept even with an empty cluster (its cues are left
  out of every normalisation; MATLAB would loop forever).
- A cue that is equal for every cluster (for instance the corresponding cue of a one-image
  group) normalises to 1; MATLAB's gaussmf with sigma 0 gives NaN there, i.e. a black map.
- Grayscale images are treated as RGB with equal channels (the reference's colour conversion
  rejects 2-D images).
- Lab: computed as colorspace.m does, in float64 (scikit-image's rgb2lab agrees to 0.03,
  OpenCV's float conversion only to 0.4); MATLAB's own makecform / rgb2lab are not what the
  reference calls.
- imresize: reimplemented (`baselines.matlab_ops`); tested for its documented behaviour, not
  against MATLAB output, which is not available here.
"""
import hashlib
import json
import pathlib
import sys

import numpy as np

from core.errors import cli
from core.imageio import read_image, write_png

from .matlab_ops import (filter_zero_padded, gaussian_kernel, gaussmf, imresize,
                         round_half_away, srgb_to_lab)
from .runner import (argument_parser, output_folder, parse_arguments, prepare_out, run_groups,
                     to_uint8)

SCALE = 200                 # para.Scale
SINGLE_CLUSTERS = 6         # para.Bin_num_single
SMOOTHING = gaussian_kernel(3, 3.0)
MAX_LLOYD_ITERATIONS = 1000
MAX_RESTARTS = 100
RUN_FILE = "cbcs_run.json"


def group_clusters(m):
    """Clusters of the group layer for a group of `m` images (para.Bin_num)."""
    return min(max(2 * m, 10), 30)


def derive_seed(seed, *parts):
    """A 64-bit seed from the user's seed and names (stable across runs, unlike hash())."""
    text = json.dumps([int(seed), *[str(p) for p in parts]], ensure_ascii=False)
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")


# ---------------------------------------------------------------- features

def image_features(bgr, scale=SCALE):
    """Rounded Lab colour of every pixel of the image resized to (scale, scale).

    Parameters: bgr: uint8 (H, W, 3) image in OpenCV's B, G, R order; scale: side length.
    Returns int16 (scale, scale, 3): L, a, b rounded half away from zero."""
    rgb = np.ascontiguousarray(np.asarray(bgr)[:, :, ::-1])
    small = imresize(rgb, (scale, scale))
    return round_half_away(srgb_to_lab(small)).astype(np.int16)


def center_distance(scale=SCALE):
    """(scale, scale) rounded distance of each pixel to the image centre, in the reference's
    1-based coordinates (so the centre is pixel (scale/2, scale/2))."""
    j, i = np.mgrid[1:scale + 1, 1:scale + 1].astype(np.float64)
    return round_half_away(np.sqrt((i - scale / 2.0) ** 2 + (j - scale / 2.0) ** 2))


# ---------------------------------------------------------------- k-means++

def _scores(points, centres):
    # 2 c.x - |c|^2 per point and centre: the reference's nearest-centre score (larger is
    # nearer). Written out for 3-D features so no multithreaded BLAS runs inside a worker.
    return 2.0 * (points[:, 0:1] * centres[:, 0] + points[:, 1:2] * centres[:, 1]
                  + points[:, 2:3] * centres[:, 2]) - np.sum(centres * centres, axis=1)


def _weighted_means(weighted, weights, labels, k):
    # weighted: the points times their weights, so a centre is a weighted sum / its count
    counts = np.bincount(labels, weights=weights, minlength=k)
    sums = np.stack([np.bincount(labels, weights=weighted[:, c], minlength=k)
                     for c in range(weighted.shape[1])], axis=1)
    return counts, sums


def _seed(points, weights, first, k, rng):
    """k-means++ seeding from centre `first`. Returns (labels, centres, complete): complete is
    False when every point coincided with a centre before k were drawn."""
    centres = points[[first]]
    labels = np.zeros(len(points), dtype=np.int64)
    best = _scores(points, centres)[:, 0]
    for i in range(1, k):
        d = np.sqrt(np.sum((points - centres[labels]) ** 2, axis=1))
        cum = np.cumsum(weights * d)
        if cum[-1] == 0:
            return labels, centres, False
        pick = int(np.searchsorted(cum, rng.random() * cum[-1], side="right"))
        centres = np.concatenate([centres, points[[pick]]])
        # The new centre takes a point only when strictly nearer: the same labels as an argmax
        # over all centres so far (first maximum wins), at the cost of one column.
        score = _scores(points, centres[i:i + 1])[:, 0]
        better = score > best
        labels[better] = i
        best[better] = score[better]
    return labels, centres, True


# Bounds closer than this (in Lab units) are recomputed: it covers the rounding of distances
# obtained from the 2 c.x - |c|^2 form.
_BOUND_MARGIN = 1e-3


def _lloyd(points, weights, labels, centres, prune=True):
    """Lloyd iterations from `labels` until no label changes (kmeansPP's inner loop).

    With `prune`, a point whose distance to its centre stays provably below its distance to
    every other centre (Hamerly's bounds: an upper and a lower bound moved by the centre shifts)
    is not re-examined; the labels and centres are those of the plain iteration.
    Parameters: points, weights: distinct features and their pixel counts; labels, centres:
    the seeding's. Returns (labels, centres, complete); complete is False when a cluster became
    empty (its centre then keeps its last position)."""
    k = len(centres)
    sq = np.sum(points * points, axis=1)
    weighted = points * weights[:, None]
    upper = lower = None
    for _ in range(MAX_LLOYD_ITERATIONS):
        cnt, sums = _weighted_means(weighted, weights, labels, k)
        if np.any(cnt == 0):
            centres = centres.copy()
            centres[cnt > 0] = sums[cnt > 0] / cnt[cnt > 0, None]
            return labels, centres, False
        new_centres = sums / cnt[:, None]
        if prune and upper is not None:
            shift = np.sqrt(np.sum((new_centres - centres) ** 2, axis=1))
            top = np.argsort(shift)[::-1]
            upper += shift[labels]
            lower -= np.where(labels == top[0], shift[top[1]] if k > 1 else 0.0, shift[top[0]])
            todo = np.flatnonzero(upper >= lower - _BOUND_MARGIN)
        else:
            todo = np.arange(len(points))
            upper, lower = np.empty(len(points)), np.empty(len(points))
        centres = new_centres
        score = _scores(points[todo], centres)
        new_labels = labels.copy()
        new_labels[todo] = np.argmax(score, axis=1)
        if prune:
            d2 = np.maximum(sq[todo, None] - score, 0.0)
            two = np.partition(d2, 1, axis=1)[:, :2] if k > 1 else np.repeat(d2, 2, axis=1)
            upper[todo] = np.sqrt(two[:, 0])
            lower[todo] = np.sqrt(two[:, 1]) if k > 1 else np.inf
        if np.array_equal(new_labels, labels):
            return labels, centres, True
        labels = new_labels
    return labels, centres, True


def kmeans_pp(features, k, rng, prune=True):
    """k-means++ clustering of pixel features as the reference's kmeansPP does it.

    Parameters: features: (N, 3) integer features, one row per pixel (row 0 is the first pixel);
    k: clusters; rng: numpy Generator; prune: skip provably unchanged points in Lloyd steps
    (same result, faster).
    Returns (labels (N,) int64 in [0, k), centres (k, 3) float64)."""
    features = np.asarray(features)
    n = len(features)
    # Distinct colours with their pixel counts; keys pack the three small integers into one.
    f = features.astype(np.int64) + 1024
    keys = (f[:, 0] << 22) | (f[:, 1] << 11) | f[:, 2]
    _, first, inverse, counts = np.unique(keys, return_index=True, return_inverse=True,
                                          return_counts=True)
    points = features[first].astype(np.float64)
    weights = counts.astype(np.float64)
    labels = centres = None
    for _ in range(MAX_RESTARTS):
        # First centre: a uniformly drawn pixel (1 + round(rand * (N - 1)) in MATLAB).
        pixel = int(round_half_away(rng.random() * (n - 1)))
        labels, centres, complete = _seed(points, weights, inverse[pixel], k, rng)
        if not complete:
            # Every pixel sits on a centre: the rest copy the first pixel, no Lloyd steps.
            fill = np.repeat(points[[inverse[0]]], k - len(centres), axis=0)
            return labels[inverse], np.concatenate([centres, fill])
        labels, centres, complete = _lloyd(points, weights, labels, centres, prune)
        if complete:               # MATLAB restarts when a cluster has emptied
            break
    # Out of restarts, the last clustering is kept, empty clusters and all.
    return labels[inverse], centres


# ---------------------------------------------------------------- cues

def contrast_cue(centres, labels):
    """Contrast cue per cluster (GetSalWeight).

    Parameters: centres: (k, d); labels: pixel labels (any shape) in [0, k).
    Returns (k,): sum_i share_i * ||centre_i - centre_j|| for each cluster j."""
    k = len(centres)
    share = np.bincount(np.ravel(labels), minlength=k) / np.size(labels)
    centres = np.asarray(centres, dtype=np.float64)
    dist = np.sqrt(np.sum((centres[:, None, :] - centres[None, :, :]) ** 2, axis=2))
    return np.sum(share[:, None] * dist, axis=0)


def spatial_cue(labels, distance, k, sigma=SCALE):
    """Spatial (centre-bias) cue per cluster (GetPositionW).

    Parameters: labels: pixel labels in [0, k); distance: same shape, each pixel's distance to
    its image's centre; k: clusters; sigma: the Gaussian's width (the image scale).
    Returns (k,): gaussmf(mean distance of the cluster's pixels, [sigma 0]); NaN if empty."""
    labels = np.ravel(labels)
    cnt = np.bincount(labels, minlength=k).astype(np.float64)
    tot = np.bincount(labels, weights=np.ravel(distance).astype(np.float64), minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = tot / cnt
    return gaussmf(mean, sigma, 0.0)


def corresponding_cue(labels, k):
    """Corresponding cue per cluster (GetCoWeight): how evenly it spreads over the images.

    Parameters: labels: (M, ...) pixel labels of the M images; k: clusters.
    Returns (k,): mean / (std + 1) over images of the share of the cluster's pixels in each
    image (sample std, N - 1; 0 for one image); NaN for an empty cluster."""
    labels = np.asarray(labels).reshape(len(labels), -1)
    per_image = np.stack([np.bincount(l, minlength=k) for l in labels], axis=1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = per_image / per_image.sum(axis=1, keepdims=True)
        share = share / share.sum(axis=1, keepdims=True)
    std = share.std(axis=1, ddof=1) if share.shape[1] > 1 else np.zeros(k)
    return share.mean(axis=1) / (std + 1.0)


def gauss_normal(cue):
    """Gauss_normal: gaussmf(cue, [(max - min) / 2, max]), so the largest cue maps to 1.
    NaN entries (empty clusters) are ignored and stay NaN; a constant cue gives all ones."""
    cue = np.asarray(cue, dtype=np.float64)
    hi, lo = np.nanmax(cue), np.nanmin(cue)
    if hi == lo:
        return np.where(np.isnan(cue), np.nan, 1.0)
    return gaussmf(cue, (hi - lo) / 2.0, hi)


def cluster_map(label_map, saliency):
    """Cluster2img: each pixel takes its cluster's saliency; then the 3 x 3 Gaussian (sigma 3)
    with zero padding.

    Parameters: label_map: (H, W) labels; saliency: (k,) per cluster. Returns float64 (H, W)."""
    return filter_zero_padded(np.asarray(saliency, dtype=np.float64)[label_map], SMOOTHING)


# ---------------------------------------------------------------- layers

def single_layer_map(features, rng, k=SINGLE_CLUSTERS):
    """Single-image saliency (contrast x spatial over k clusters of one image).

    Parameters: features: (S, S, 3) from `image_features`; rng: numpy Generator; k: clusters.
    Returns float64 (S, S) in [0, 1]."""
    s = features.shape[0]
    labels, centres = kmeans_pp(features.reshape(-1, 3), k, rng)
    labels = labels.reshape(s, s)
    weight = (gauss_normal(contrast_cue(centres, labels))
              * gauss_normal(spatial_cue(labels, center_distance(s), k, sigma=s)))
    return cluster_map(labels, weight)


def group_layer_maps(features, rng, k=None):
    """Group (co-saliency) layer over the M images of a group.

    Parameters: features: list of M (S, S, 3) arrays; rng: numpy Generator; k: clusters
    (default min(max(2M, 10), 30)). Returns a list of M float64 (S, S) maps."""
    m = len(features)
    s = features[0].shape[0]
    k = group_clusters(m) if k is None else k
    labels, centres = kmeans_pp(np.concatenate([f.reshape(-1, 3) for f in features]), k, rng)
    labels = labels.reshape(m, s, s)
    dist = np.broadcast_to(center_distance(s), labels.shape)
    weight = (gauss_normal(contrast_cue(centres, labels))
              * gauss_normal(spatial_cue(labels, dist, k, sigma=s))
              * gauss_normal(corresponding_cue(labels, k)))
    side_by_side = cluster_map(np.concatenate(list(labels), axis=1), weight)
    return [side_by_side[:, i * s:(i + 1) * s] for i in range(m)]


def cbcs_maps(images, names, group="", seed=0, single=False, scale=SCALE):
    """CBCS (or CBCS-S) maps of one group of images, each at its image's own size.

    Parameters: images: list of uint8 BGR (H, W, 3) arrays, the whole group; names: one unique
    name per image (seeds the single layer); group: the group's name (seeds the group layer);
    seed: the user's seed; single: CBCS-S instead of CBCS; scale: working resolution.
    Returns a list of float64 (H, W) maps in [0, 1]."""
    if len(images) != len(names):
        raise ValueError("one name per image is needed")
    feats = [image_features(im, scale) for im in images]
    maps = [single_layer_map(f, np.random.default_rng(derive_seed(seed, "single", group, n)))
            for f, n in zip(feats, names)]
    if not single:
        co = group_layer_maps(feats, np.random.default_rng(derive_seed(seed, "group", group)))
        maps = [a * b for a, b in zip(maps, co)]
    return [np.clip(imresize(m, im.shape[:2]), 0.0, 1.0) for m, im in zip(maps, images)]


# ---------------------------------------------------------------- command line

def _process_group(task):
    """Compute and write the maps of one group (runs in a worker process). Returns its size."""
    group, entries, out, seed, single = task
    images = [read_image(path) for _, path in entries]
    maps = cbcs_maps(images, [name for name, _ in entries], group=group, seed=seed, single=single)
    for (name, _), sal in zip(entries, maps):
        write_png(pathlib.Path(out) / group / f"{name}.png", to_uint8(sal))
    return len(entries)


def run(dataset, out, single=False, workers=None, seed=0, groups=None, skip_done=False,
        progress=True):
    """Write CBCS (or CBCS-S) maps of `dataset` to <out>/<group>/<name>.png.

    Parameters: dataset: a data_prep.datasets.Dataset; out: output folder; single: CBCS-S;
    workers: processes, one group each at a time (default: all CPU cores); seed: k-means seed;
    groups: names of the groups to run (default all); skip_done: leave groups whose maps all
    exist; progress: show a progress bar. Returns the number of images written."""
    return run_groups(dataset, out, _process_group, (int(seed), bool(single)),
                      "CBCS-S" if single else "CBCS", workers, groups, skip_done, progress)


def _settings(args):
    return {"method": "CBCS-S" if args.single else "CBCS", "seed": args.seed, "scale": SCALE,
            "dataset": args.dataset.lower()}


def _parse(argv):
    p = argument_parser(
        "python -m baselines.cbcs",
        "CBCS co-saliency maps (or CBCS-S single-image maps) of a dataset, written to "
        "<out>/<group>/<image name>.png at each image's own size.")
    p.add_argument("--single", action="store_true", help="CBCS-S: the single-image layer only")
    p.add_argument("--seed", type=int, default=0, help="k-means++ seed (default 0)")
    return parse_arguments(p, argv)


@cli
def main(argv=None):
    from data_prep.datasets import load_dataset

    args = _parse(argv)
    dataset = load_dataset(args.dataset, args.root)
    out = output_folder(args)
    prepare_out(out, _settings(args), RUN_FILE, args.force, args.resume)
    n = run(dataset, out, single=args.single, workers=args.workers, seed=args.seed,
            groups=args.groups, skip_done=args.resume)
    print(f"{_settings(args)['method']}: {n} maps written to {out} ({dataset.summary()})",
          file=sys.stderr)


if __name__ == "__main__":
    main()
