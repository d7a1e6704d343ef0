"""Saliency metrics, per image and averaged over a dataset.

Conventions (design.md section 4), chosen to match PySODMetrics (`py_sod_metrics`) exactly where
the two overlap, so that our numbers are comparable with every CoSOD paper since 2020:

- A predicted map S is min-max normalised to [0, 1] before every metric (a constant map stays as
  it is); an 8-bit map is first divided by 255 in float64, as PySODMetrics' `prepare_data` does.
  `normalize=False` gives the raw variant (S / 255 only).
- Ground truth G is binarised at half its range: foreground where its 8-bit value is > 128
  (PySODMetrics: `gt > 128`; so 128/255 = 0.502 is background), which for 1-bit, 0/255 and
  0/1 masks is simply "non-zero".
- The 256 thresholds t = 0..255 apply to the 8-bit map S8 = floor(255 * S) (PySODMetrics truncates
  with `astype(np.uint8)`); a pixel is predicted salient when S8 >= t. Curves here are indexed by
  t ascending (PySODMetrics stores them from t = 255 down to 0).
- Precision is 0 when nothing is predicted; recall (TPR) is 0 for an empty ground truth; FPR is 0
  for a ground truth without background; F is 0 where precision * recall is 0.
- Curves are computed per image and averaged over images; max F, mean F, max E and mean E are
  the maximum / mean over thresholds of the averaged curve (PySODMetrics' `get_results`).

Metrics (keys of `summarize`):
    mF     F-measure (beta^2 = 0.3) at the adaptive threshold T = min(2 mean(S), 1), S >= T
           (the paper's mF; PySODMetrics' Fmeasure "adp").
    AUC    area under the ROC curve of the image-averaged TPR / FPR over the 256 thresholds,
           closed by the point (0, 0) (trapezoidal rule; ties count one half).
    AUC_img   mean over images of each image's own ROC area (same curve and rule), over the
           images whose ground truth has both foreground and background (elsewhere the ROC
           area is undefined). The two AUC conventions differ by up to 0.015 on iCoseg; which
           one the paper used is discussed in the README ("Evaluation protocol").
    MAE    mean |S - G|.
    AP     area under the image-averaged PR curve: sum over thresholds from high to low of the
           recall gained times the precision there, starting at recall 0 (non-interpolated AP).
    maxF, meanF   max / mean over thresholds of the averaged F curve (PySODMetrics' Fmeasure).
    S      S-measure, alpha = 0.5 (PySODMetrics' Smeasure, NaN repaired: see `smeasure`).
    maxE, meanE   max / mean over thresholds of the averaged E-measure curve (PySODMetrics'
           Emeasure, reproduced from the shared histogram by `emeasure_curve` and tested equal;
           it divides by (N - 1), so a perfect map scores N / (N - 1)).
"""
import math
import warnings

import numpy as np
from py_sod_metrics import Smeasure

BETA2 = 0.3
N_THRESHOLDS = 256
CURVES = ("precision", "recall", "fmeasure", "tpr", "fpr", "emeasure")
SCALARS = ("MAE", "mF", "S")
METRICS = ("mF", "AUC", "AUC_img", "MAE", "AP", "maxF", "meanF", "S", "maxE", "meanE")
PAPER_METRICS = ("mF", "AUC", "MAE")

# Which definition each number follows; written into results.json next to the numbers.
DEFINITIONS = {
    "mF": "F-measure (beta^2=0.3) at the adaptive threshold min(2*mean(S),1), S>=T, per image, "
          "averaged (paper's mF; equals PySODMetrics Fmeasure adp)",
    "AUC": "area under the image-averaged ROC curve (TPR vs FPR, S8>=t for t=0..255, closed by "
           "(0,0)), trapezoidal",
    "AUC_img": "mean over images of each image's ROC area (same curve and rule); images whose "
               "ground truth lacks foreground or background are left out",
    "MAE": "mean |S-G| per image, averaged (equals PySODMetrics MAE)",
    "AP": "area under the image-averaged PR curve: sum over t=255..0 of (R(t)-R(t+1))*P(t), "
          "R(256)=0 (non-interpolated average precision)",
    "maxF": "max over t of the image-averaged F curve (equals PySODMetrics Fmeasure curve max)",
    "meanF": "mean over t of the image-averaged F curve (equals PySODMetrics Fmeasure curve mean)",
    "S": "S-measure, alpha=0.5 (PySODMetrics Smeasure; where it gives NaN because the "
         "foreground centroid lies on the last row/column, the empty quadrant counts 0)",
    "maxE": "max over t of the image-averaged E-measure curve (PySODMetrics Emeasure, "
            "divided by N-1; reproduced from the shared histogram)",
    "meanE": "mean over t of the image-averaged E-measure curve (PySODMetrics Emeasure)",
}


def binarize_gt(gt):
    """Ground truth as bool: foreground where the mask is above half its range.

    Parameters: gt -- bool array, uint8 array (0..255) or float array in [0, 1] (as
    core.imageio.read_mask returns). Float masks are mapped to 8 bits first, so that the rule
    is PySODMetrics' `gt > 128` whatever the encoding.
    """
    gt = np.asarray(gt)
    if gt.dtype == bool:
        return gt
    if gt.dtype == np.uint8:
        return gt > 128
    return gt > 128.5 / 255   # = round(255 gt) > 128, in one pass


def prepare(pred, gt, normalize=True):
    """The pair as every metric sees it: (S float64 in [0, 1], G bool).

    Parameters: pred -- uint8 map (0..255) or float map in [0, 1], same shape as gt;
    gt -- see `binarize_gt`; normalize -- min-max normalise S (a constant map is left as is).
    """
    pred = pred_in = np.asarray(pred)
    gt = binarize_gt(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in shape")
    if pred.dtype == np.uint8:
        pred = pred / 255   # float64, the same operation as PySODMetrics' prepare_data
    else:
        pred = pred.astype(np.float64, copy=False)
    if normalize:
        lo, hi = pred.min(), pred.max()
        if hi != lo:
            if not np.may_share_memory(pred, pred_in):
                pred -= lo   # in place: large temporaries cost page faults; same values
                pred /= hi - lo
            else:
                pred = (pred - lo) / (hi - lo)
    return pred, gt


def _fmeasure(p, r):
    num = (1 + BETA2) * p * r
    return num / np.where(num == 0, 1, BETA2 * p + r)


def adaptive_fmeasure(pred, gt):
    """F-measure at T = min(2 mean(S), 1) with S >= T; 0 when nothing true is predicted."""
    binary = pred >= min(2 * pred.mean(), 1)
    tp = np.count_nonzero(binary & gt)
    if tp == 0:
        return 0.0
    p = tp / np.count_nonzero(binary)
    r = tp / np.count_nonzero(gt)
    return float((1 + BETA2) * p * r / (BETA2 * p + r))


def threshold_counts(pred, gt):
    """True and false positives for every threshold t = 0..255 of S8 = floor(255 S): pixels with
    S8 >= t. One histogram of (S8, G) pairs, then cumulative sums from the top.

    Returns: tp, fp -- int64 arrays of 256, indexed by t.
    """
    s8 = (pred * 255).astype(np.uint8)   # truncation, as PySODMetrics
    idx = s8.ravel().astype(np.intp)
    idx[gt.ravel()] += N_THRESHOLDS
    hist = np.bincount(idx, minlength=2 * N_THRESHOLDS)
    fp = np.cumsum(hist[N_THRESHOLDS - 1::-1])[::-1]
    tp = np.cumsum(hist[:N_THRESHOLDS - 1:-1])[::-1]
    return tp, fp


_SM = Smeasure()
_EPS = np.spacing(1)   # PySODMetrics' EPS (MATLAB's eps)


def smeasure(pred, gt):
    """S-measure through PySODMetrics, repaired where it returns NaN.

    PySODMetrics (like the MATLAB original) splits the image at the rounded foreground centroid;
    when that lies on the last row or column one quadrant is empty and its SSIM is NaN, which
    times its weight 0 makes the whole score NaN. The quadrant's contribution is its weight, 0,
    so the score is recomputed skipping empty quadrants.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with np.errstate(invalid="ignore", divide="ignore"):
            sm = float(_SM.cal_sm(pred, gt))
    if not math.isnan(sm):
        return sm
    h, w = gt.shape
    cy, cx = np.argwhere(gt).mean(axis=0).round()
    cy, cx = int(cy) + 1, int(cx) + 1   # PySODMetrics' MATLAB-style split
    region = 0.0
    for rows, cols in ((slice(0, cy), slice(0, cx)), (slice(0, cy), slice(cx, w)),
                       (slice(cy, h), slice(0, cx)), (slice(cy, h), slice(cx, w))):
        p, g = pred[rows, cols], gt[rows, cols]
        if p.size:
            region += _SM.ssim(p, g) * (p.size / (h * w))
    a = _SM.alpha
    return float(max(0.0, a * _SM.object(pred, gt) + (1 - a) * region))


def emeasure_curve(tp, fp, n_fg, n):
    """E-measure for t = 0..255 from the threshold counts: PySODMetrics' Emeasure curve
    (`cal_em_with_cumsumhistogram`), term for term, without a second pass over the pixels.

    Parameters: tp, fp -- from `threshold_counts`; n_fg -- foreground pixels; n -- all pixels.
    Per threshold, the binary map B and G are centred by their means; over the four parts
    (B, G) in {1, 0}^2 the alignment 2ab / (a^2 + b^2) of the centred values a, b is enhanced to
    (1 + align)^2 / 4, summed with the parts' pixel counts and divided by (n - 1).
    """
    pred_fg = tp + fp
    pred_bg = n - pred_fg
    if n_fg == 0:
        total = pred_bg
    elif n_fg == n:
        total = pred_fg
    else:
        miss = n_fg - tp
        mean_pred = pred_fg / n
        mean_gt = n_fg / n
        total = np.zeros(N_THRESHOLDS)
        parts = ((tp, 1 - mean_pred, 1 - mean_gt), (fp, 1 - mean_pred, -mean_gt),
                 (miss, -mean_pred, 1 - mean_gt), (pred_bg - miss, -mean_pred, -mean_gt))
        for count, a, b in parts:
            align = 2 * (a * b) / (a ** 2 + b ** 2 + _EPS)
            total = total + (align + 1) ** 2 / 4 * count
    # PySODMetrics' n - 1 is 0 for a one-pixel map, which would make E about 1e15: divide by 1
    return np.asarray(total / (max(n - 1, 1) + _EPS), dtype=np.float64)


def image_metrics(pred, gt, normalize=True, modern=True):
    """Every per-image quantity the dataset metrics are averaged from.

    Parameters: pred, gt -- as for `prepare`; normalize -- min-max normalise the map;
    modern -- also compute S-measure and the E-measure curve (PySODMetrics).
    Returns: dict with scalars MAE, mF, AUC_img (NaN when the ground truth has no foreground
    or no background) (and S) and curves precision, recall, fmeasure, tpr, fpr (and emeasure),
    each 256 values indexed by threshold t = 0..255.
    """
    pred, gt = prepare(pred, gt, normalize)
    n_fg = np.count_nonzero(gt)
    n_bg = gt.size - n_fg
    tp, fp = threshold_counts(pred, gt)
    precision = tp / np.maximum(tp + fp, 1)
    recall = tp / max(n_fg, 1)
    # MAE = mean |S - G| = (sum over background of S + sum over foreground of (1 - S)) / N,
    # without an image-sized temporary
    sum_fg = float(np.sum(pred, where=gt))
    out = {
        "MAE": (float(pred.sum()) - 2 * sum_fg + int(n_fg)) / gt.size,
        "mF": adaptive_fmeasure(pred, gt),
        "precision": precision,
        "recall": recall,
        "fmeasure": _fmeasure(precision, recall),
        "tpr": recall,
        "fpr": fp / max(n_bg, 1),   # fp is 0 when there is no background
    }
    out["AUC_img"] = image_auc(out["tpr"], out["fpr"], n_fg, n_bg)
    if modern:
        out["S"] = smeasure(pred, gt)
        out["emeasure"] = emeasure_curve(tp, fp, n_fg, gt.size)
    return out


def area_under_roc(tpr, fpr):
    """Trapezoidal area under the ROC points of thresholds t = 0..255, closed by (0, 0)."""
    x = np.concatenate([[0.0], np.asarray(fpr, np.float64)[::-1]])
    y = np.concatenate([[0.0], np.asarray(tpr, np.float64)[::-1]])
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2))


def image_auc(tpr, fpr, n_fg, n_bg):
    """One image's ROC area (`area_under_roc` of its own curve), or NaN when its ground truth
    lacks foreground or background: its ROC is then a line along one axis, not a ranking."""
    if n_fg == 0 or n_bg == 0:
        return math.nan
    return area_under_roc(tpr, fpr)


def average_precision(precision, recall):
    """Non-interpolated area under the PR points of t = 0..255: sum of (R(t) - R(t+1)) P(t)
    from t = 255 down to 0, with R(256) = 0."""
    r = np.concatenate([np.asarray(recall, np.float64), [0.0]])
    return float(np.sum((r[:-1] - r[1:]) * np.asarray(precision, np.float64)))


class MetricAccumulator:
    """Sums per-image results in the order they are added (deterministic) and turns them into
    dataset metrics. Parameters: modern -- whether the images carry S and the E curve."""

    def __init__(self, modern=True):
        self.modern = modern
        self.n = 0
        self.n_auc = 0        # images with a defined ROC area
        self.auc_sum = 0.0
        self.scalars = {k: 0.0 for k in SCALARS if modern or k != "S"}
        self.curves = {k: np.zeros(N_THRESHOLDS) for k in CURVES if modern or k != "emeasure"}

    def add(self, img):
        self.n += 1
        for k in self.scalars:
            self.scalars[k] += img[k]
        if not math.isnan(img["AUC_img"]):
            self.n_auc += 1
            self.auc_sum += img["AUC_img"]
        for k, c in self.curves.items():
            c += img[k]

    def summarize(self):
        """Returns: (metrics, curves): metrics as floats keyed like METRICS (None where not
        computed), curves as lists of 256 image-averaged values indexed by t."""
        if self.n == 0:
            raise ValueError("no images to summarize")
        s = {k: float(v) / self.n for k, v in self.scalars.items()}
        c = {k: v / self.n for k, v in self.curves.items()}
        m = {
            "mF": s["mF"],
            "AUC": area_under_roc(c["tpr"], c["fpr"]),
            "AUC_img": self.auc_sum / self.n_auc if self.n_auc else None,
            "MAE": s["MAE"],
            "AP": average_precision(c["precision"], c["recall"]),
            "maxF": float(c["fmeasure"].max()),
            "meanF": float(c["fmeasure"].mean()),
            "S": s.get("S"),
            "maxE": float(c["emeasure"].max()) if "emeasure" in c else None,
            "meanE": float(c["emeasure"].mean()) if "emeasure" in c else None,
        }
        return m, {k: v.tolist() for k, v in c.items()}


def dataset_metrics(pairs, normalize=True, modern=True):
    """Metrics of a list of (pred, gt) arrays, sequentially (see eval.evaluate for files).
    Returns: (metrics, curves) as MetricAccumulator.summarize."""
    acc = MetricAccumulator(modern)
    for pred, gt in pairs:
        acc.add(image_metrics(pred, gt, normalize, modern))
    return acc.summarize()
