"""CSHS: co-saliency detection based on hierarchical segmentation (Liu, Zou, Li, Shen, Le Meur,
IEEE Signal Processing Letters 21(1), 88-92, 2014), rebuilt from its description; no code of it
is public.

    python -m baselines.cshs --dataset icoseg --root DIR --out DIR [--workers N]
                             [--group NAME ...] [--force | --resume]

What the paper states (its abstract; the body of the letter and of the same group's SPL 2015
paper could not be read here, so everything below the level of the abstract is a guess, listed
further down): a hierarchical segmentation of each image; on the fine segmentation, regional
histograms measure the similarity between region pairs across the whole image set, and regional
contrast within each image gives each region's intra-saliency; on the coarse segmentation, an
object prior for each region from its connectivity with the image borders; each region's global
similarity derived from the regional similarities; and the global similarity integrated with the
intra-saliency map and the object prior map into each image's co-saliency map.

Steps, and the function that implements each:
- `working_image`: the image at the working resolution, in CIE Lab (`matlab_ops.srgb_to_lab`).
- `edge_weights` + `hierarchy` (the hierarchical segmentation; the authors' group builds its
  hierarchies with gPb-owt-ucm, by its public Saliency Tree code: globalPb on the image at half
  size, then contours2ucm at double size; the letter's own thresholds are not known): an
  edge map (the Lab distance between 4-neighbour pixels of the smoothed image) and the watershed
  hierarchy by area over it (`higra`), the saliency of its contours playing the part of the UCM.
- `cut`: a horizontal cut of the hierarchy with a given number of regions; the fine and the
  coarse segmentations are two cuts of the same hierarchy, so every fine region lies inside one
  coarse region.
- `region_histograms` (regional histograms, fine level): each region's normalised histogram of
  quantised Lab colours.
- `similarity` (regional similarity between region pairs): the Bhattacharyya coefficient of two
  histograms.
- `intra_saliency` (regional contrast within an image, fine level): each region's colour
  distance to the other regions of its image, weighted by their areas and by their spatial
  proximity.
- `object_prior` (coarse level, connectivity with the image borders): each coarse region's
  border contact relative to its size; every fine region takes its coarse region's prior.
- `global_similarity` (across images): for each region, its best similarity to a region of each
  other image of the group, averaged over those images.
- `cshs_maps` (integration): per fine region, intra-saliency x object prior x global similarity,
  painted on the region's pixels, resized to the image's size, normalised to [0, 1].

Guesses (the letter's own settings were not available; none was tuned on any benchmark):
- Working resolution: the image resized (OpenCV area interpolation) so that its longer side is
  200 pixels (`WORK_SIDE`), aspect kept; the segmentation and every cue are computed there.
- Edge map: Lab smoothed by a Gaussian of sigma 1 pixel (`SMOOTHING_SIGMA`), edge weight = the
  Euclidean Lab distance between 4-neighbours. The hierarchy: `higra.watershed_hierarchy_by_area`
  (area ranks the merges, so small noisy basins disappear first).
- Cut levels: the fine segmentation is the cut with the number of regions nearest to 100
  (`FINE_REGIONS`), the coarse segmentation the one nearest to 12 (`COARSE_REGIONS`); on the
  iCoseg development subset the cuts have 98-103 and 12-13 regions.
- Histograms: L, a and b each quantised into 8 uniform bins (`BINS`) over the range that sRGB
  colours take in Lab (L 0..100, a -87..99, b -108..95): 512 bins.
- Regional similarity: Bhattacharyya coefficient sum_k sqrt(h_i(k) h_j(k)) in [0, 1]; the colour
  distance of the intra-saliency is the matching Hellinger distance sqrt(1 - coefficient).
- Intra-saliency: regional contrast in the form of Cheng et al.'s RC (CVPR 2011):
  sum_{j != i} area_j x distance(i, j) x exp(-||centroid_i - centroid_j|| / 0.4), centroids in
  coordinates scaled to [0, 1] by the image's height and width (`SPATIAL_SIGMA2` = 0.4, RC's value);
  area_j is region j's share of the image. Then min-max normalised within the image.
- Object prior: exp(-c^2 / 2) with c = (pixels of the coarse region on the image border) /
  sqrt(pixels of the region), the boundary-connectivity form of Zhu et al. (CVPR 2014) with its
  sigma of 1 (`BORDER_SIGMA`); a region that does not touch the border gets 1.
- Global similarity: mean over the other images of the group of the largest similarity between
  the region and any fine region of that image; in a one-image group it is 1 for every region.
- Integration: the product of the three cues (intra-saliency normalised to [0, 1], object prior
  and global similarity in [0, 1] as they are); each image's map resized to the image's size
  (bilinear) and min-max normalised to [0, 1] (a constant map stays 0), then stored as 8-bit.
"""
import pathlib
import sys

import cv2
import numpy as np

from core.errors import cli
from core.imageio import read_image, write_png

from .matlab_ops import srgb_to_lab
from .runner import (argument_parser, output_folder, parse_arguments, prepare_out, run_groups,
                     to_uint8)

WORK_SIDE = 200
SMOOTHING_SIGMA = 1.0
FINE_REGIONS = 100
COARSE_REGIONS = 12
BINS = 8
LAB_RANGE = ((0.0, 100.0), (-87.0, 99.0), (-108.0, 95.0))
SPATIAL_SIGMA2 = 0.4
BORDER_SIGMA = 1.0
RUN_FILE = "cshs_run.json"


# ---------------------------------------------------------------- segmentation

def working_image(bgr, side=WORK_SIDE):
    """The image resized so its longer side is `side` (never enlarged), as float64 Lab (h, w, 3).

    Parameters: bgr: uint8 (H, W, 3) in OpenCV's B, G, R order."""
    h, w = bgr.shape[:2]
    scale = min(1.0, side / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = bgr if size == (w, h) else cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
    return srgb_to_lab(np.ascontiguousarray(small[:, :, ::-1]))


def edge_weights(lab, sigma=SMOOTHING_SIGMA):
    """The 4-adjacency graph of the image and its edge map: the Lab distance between
    neighbouring pixels of the Gaussian-smoothed image. Returns (higra graph, (E,) weights)."""
    import higra as hg

    if sigma > 0:
        lab = cv2.GaussianBlur(lab, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    graph = hg.get_4_adjacency_graph(lab.shape[:2])
    return graph, hg.weight_graph(graph, lab.reshape(-1, 3), hg.WeightFunction.L2)


def hierarchy(lab):
    """Watershed hierarchy by area of the image's edge map. Returns (tree, altitudes)."""
    import higra as hg

    graph, weights = edge_weights(lab)
    return hg.watershed_hierarchy_by_area(graph, weights)


def cut(tree, altitudes, regions, shape):
    """The horizontal cut whose number of regions is nearest to `regions`: the coarsest cut with
    at least that many, unless the finest with at most that many is nearer (merges at equal
    altitudes can make the count jump). Returns (h, w) labels 0..k-1 in raster order."""
    import higra as hg

    explorer = hg.HorizontalCutExplorer(tree, altitudes)
    above = explorer.horizontal_cut_from_num_regions(int(regions), at_least=True)
    below = explorer.horizontal_cut_from_num_regions(int(regions), at_least=False)
    if abs(len(below.nodes()) - regions) < abs(len(above.nodes()) - regions):
        above = below
    return relabel(np.asarray(above.labelisation_leaves(tree)).reshape(shape))


def relabel(labels):
    """Labels renumbered 0..k-1 in raster order of first appearance (deterministic names)."""
    flat = np.ravel(labels)
    _, first, inverse = np.unique(flat, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))
    return order[inverse].reshape(np.shape(labels))


def segmentations(lab, fine=FINE_REGIONS, coarse=COARSE_REGIONS):
    """(fine labels, coarse labels, parent): the two cuts of one hierarchy, and for each fine
    region the coarse region that contains it."""
    shape = lab.shape[:2]
    if shape[0] * shape[1] < 2:
        # a one-pixel image has a graph without edges, on which higra crashes the process
        return np.zeros(shape, np.int64), np.zeros(shape, np.int64), np.zeros(1, np.int64)
    tree, altitudes = hierarchy(lab)
    f = cut(tree, altitudes, fine, shape)
    c = cut(tree, altitudes, coarse, shape)
    return f, c, parent_regions(f, c)


def parent_regions(fine, coarse):
    """For each fine region, the coarse region holding most of its pixels (all of them when the
    fine segmentation refines the coarse one)."""
    k, m = fine.max() + 1, coarse.max() + 1
    counts = np.bincount(fine.ravel() * m + coarse.ravel(), minlength=k * m).reshape(k, m)
    return counts.argmax(axis=1)


# ---------------------------------------------------------------- fine level

def quantise(lab, bins=BINS):
    """Each pixel's histogram bin: L, a, b each cut into `bins` uniform steps over LAB_RANGE."""
    idx = np.zeros(lab.shape[:2], dtype=np.int64)
    for c, (lo, hi) in enumerate(LAB_RANGE):
        q = np.floor((lab[..., c] - lo) / (hi - lo) * bins).astype(np.int64)
        idx = idx * bins + np.clip(q, 0, bins - 1)
    return idx


def region_histograms(labels, bins_map, n_bins=BINS ** 3):
    """(k, n_bins) normalised colour histogram of each region of `labels`."""
    k = int(labels.max()) + 1
    h = np.bincount(labels.ravel() * n_bins + bins_map.ravel(),
                    minlength=k * n_bins).reshape(k, n_bins).astype(np.float64)
    return h / h.sum(axis=1, keepdims=True)


def similarity(hist_a, hist_b):
    """Bhattacharyya coefficients between the rows of two histogram arrays: (ka, kb) in [0, 1]."""
    from scipy import sparse

    a = sparse.csr_matrix(np.sqrt(hist_a))
    b = sparse.csr_matrix(np.sqrt(hist_b))
    return np.clip((a @ b.T).toarray(), 0.0, 1.0)


def region_geometry(labels):
    """(areas as shares of the image, centroids (k, 2) as (y / h, x / w))."""
    h, w = labels.shape
    k = int(labels.max()) + 1
    flat = labels.ravel()
    n = np.bincount(flat, minlength=k).astype(np.float64)
    y, x = np.divmod(np.arange(flat.size), w)
    cy = np.bincount(flat, weights=(y + 0.5) / h, minlength=k) / n
    cx = np.bincount(flat, weights=(x + 0.5) / w, minlength=k) / n
    return n / flat.size, np.stack([cy, cx], axis=1)


def minmax(v):
    """Min-max normalised to [0, 1]; a constant input gives zeros."""
    v = np.asarray(v, dtype=np.float64)
    span = v.max() - v.min()
    return (v - v.min()) / span if span > 0 else np.zeros_like(v)


def intra_saliency(hist, areas, centroids, sigma2=SPATIAL_SIGMA2):
    """Regional contrast of each region within its image, min-max normalised.

    Parameters: hist: (k, bins) region histograms; areas: (k,) shares of the image; centroids:
    (k, 2) in [0, 1] coordinates. Returns (k,) in [0, 1]."""
    distance = np.sqrt(np.clip(1.0 - similarity(hist, hist), 0.0, 1.0))
    gap = np.sqrt(np.sum((centroids[:, None, :] - centroids[None, :, :]) ** 2, axis=2))
    weight = np.exp(-gap / sigma2) * areas[None, :]
    np.fill_diagonal(weight, 0.0)
    return minmax(np.sum(weight * distance, axis=1))


def global_similarity(hists):
    """Each region's mean, over the other images, of its best similarity to a region there.

    Parameters: hists: list of M (k_m, bins) arrays, one per image of the group.
    Returns a list of M (k_m,) arrays in [0, 1] (all ones for a one-image group)."""
    if len(hists) == 1:
        return [np.ones(len(hists[0]))]
    starts = np.concatenate([[0], np.cumsum([len(h) for h in hists])[:-1]])
    every = np.concatenate(hists)
    out = []
    for i, h in enumerate(hists):          # one image at a time: memory linear in the group
        best = np.maximum.reduceat(similarity(h, every), starts, axis=1)     # (k_i, M)
        out.append(np.delete(best, i, axis=1).mean(axis=1))
    return out


# ---------------------------------------------------------------- coarse level

def object_prior(labels, sigma=BORDER_SIGMA):
    """Object prior of each region of `labels` from its connectivity with the image border:
    exp(-c^2 / (2 sigma^2)), c = the region's border pixels / sqrt(its pixels). Returns (k,)."""
    k = int(labels.max()) + 1
    border = np.concatenate([labels[0], labels[-1], labels[1:-1, 0], labels[1:-1, -1]])
    on_border = np.bincount(border, minlength=k).astype(np.float64)
    size = np.bincount(labels.ravel(), minlength=k).astype(np.float64)
    c = on_border / np.sqrt(size)
    return np.exp(-c * c / (2.0 * sigma * sigma))


# ---------------------------------------------------------------- integration

class ImageCues:
    """The fine segmentation of one image and its per-region cues."""

    def __init__(self, lab):
        self.fine, self.coarse, parent = segmentations(lab)
        self.hist = region_histograms(self.fine, quantise(lab))
        areas, centroids = region_geometry(self.fine)
        self.intra = intra_saliency(self.hist, areas, centroids)
        self.prior = object_prior(self.coarse)[parent]


def cshs_maps(images):
    """CSHS co-saliency maps of one group of images, each at its image's own size.

    Parameters: images: list of uint8 BGR (H, W, 3) arrays, the whole group.
    Returns a list of float64 (H, W) maps in [0, 1]."""
    cues = [ImageCues(working_image(im)) for im in images]
    sims = global_similarity([c.hist for c in cues])
    maps = []
    for im, c, gs in zip(images, cues, sims):
        small = (c.intra * c.prior * gs)[c.fine].astype(np.float32)
        h, w = im.shape[:2]
        full = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
        maps.append(minmax(full))
    return maps


# ---------------------------------------------------------------- command line

def _process_group(task):
    """Compute and write the maps of one group (runs in a worker process). Returns its size."""
    group, entries, out = task
    maps = cshs_maps([read_image(path) for _, path in entries])
    for (name, _), sal in zip(entries, maps):
        write_png(pathlib.Path(out) / group / f"{name}.png", to_uint8(sal))
    return len(entries)


def run(dataset, out, workers=None, groups=None, skip_done=False, progress=True):
    """Write CSHS maps of `dataset` to <out>/<group>/<name>.png.

    Parameters: dataset: a data_prep.datasets.Dataset; out: output folder; workers: processes,
    one group each at a time (default: all CPU cores); groups: names of the groups to run
    (default all); skip_done: leave groups whose maps all exist; progress: show a progress bar.
    Returns the number of images written."""
    return run_groups(dataset, out, _process_group, (), "CSHS", workers, groups, skip_done,
                      progress)


def _settings(args):
    return {"method": "CSHS", "dataset": args.dataset.lower(), "side": WORK_SIDE,
            "fine": FINE_REGIONS, "coarse": COARSE_REGIONS, "bins": BINS}


@cli
def main(argv=None):
    from data_prep.datasets import load_dataset

    args = parse_arguments(argument_parser(
        "python -m baselines.cshs",
        "CSHS co-saliency maps of a dataset, written to <out>/<group>/<image name>.png at each "
        "image's own size."), argv)
    dataset = load_dataset(args.dataset, args.root)
    out = output_folder(args)
    prepare_out(out, _settings(args), RUN_FILE, args.force, args.resume)
    n = run(dataset, out, workers=args.workers, groups=args.groups, skip_done=args.resume)
    print(f"CSHS: {n} maps written to {out} ({dataset.summary()})", file=sys.stderr)


if __name__ == "__main__":
    main()
