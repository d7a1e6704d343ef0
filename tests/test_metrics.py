"""eval.metrics: hand-computed cases for every metric, and equality with PySODMetrics where the
two overlap (MAE, adaptive F, PR / F curves, max F, mean F; S and E come from or reproduce it)."""
import math
import warnings

import cv2
import numpy as np
import py_sod_metrics as psm
import pytest

from eval import metrics as M
from eval.evaluate import load_prediction
from core.imageio import read_mask, write_png

EPS = np.spacing(1)


def F(p, r, b2=0.3):
    """F-measure as the definition: (1 + b2) P R / (b2 P + R)."""
    return (1 + b2) * p * r / (b2 * p + r) if p * r else 0.0


def by_threshold(pieces):
    """A 256-curve from [(value, number of thresholds)] listed from t = 0 upwards."""
    out = np.concatenate([[v] * n for v, n in pieces])
    assert out.size == 256
    return out


def enh(a, b):
    """E-measure's enhanced alignment of centred values a (map) and b (ground truth)."""
    return (2 * a * b / (a * a + b * b) + 1) ** 2 / 4 if a or b else 0.25


# ------------------------------------------------------------------ the 3x3 example
# Ground truth (3 foreground pixels of 9)      Map (8-bit value / 255)
#     0 1 0                                      0.2 1.0 0.0       ( 51 255   0)
#     1 1 0                                      0.8 0.6 0.6       (204 153 153)
#     0 0 0                                      0.0 0.0 0.0       (  0   0   0)
# min 0, max 1: min-max normalisation changes nothing. Foreground values {1.0, 0.8, 0.6},
# background values {0.2, 0, 0.6, 0, 0, 0}.
GT3 = np.array([[0, 1, 0], [1, 1, 0], [0, 0, 0]], bool)
MAP3 = np.array([[51, 255, 0], [204, 153, 153], [0, 0, 0]], np.uint8)


def test_3x3_every_metric_by_hand():
    img = M.image_metrics(MAP3, GT3)
    # MAE: foreground errors 0 + 0.2 + 0.4, background errors 0.2 + 0.6 -> 1.4 / 9
    assert img["MAE"] == pytest.approx(1.4 / 9, abs=1e-12)
    # mF: mean(S) = 3.2 / 9, T = 6.4 / 9 = 0.711; S >= T: 1.0 and 0.8, both foreground:
    # P = 1, R = 2/3, F = 1.3 * 2/3 / (0.3 + 2/3) = 26/29
    assert img["mF"] == pytest.approx(26 / 29, abs=1e-12)
    # Thresholds on S8 in {0, 51, 153, 204, 255}, S8 >= t:
    #   t = 0        TP 3 FP 6: P 1/3, R 1, FPR 1
    #   t = 1..51    TP 3 FP 2 (51, 153): P 3/5, R 1, FPR 1/3
    #   t = 52..153  TP 3 FP 1 (153, a tie kept by >=): P 3/4, R 1, FPR 1/6
    #   t = 154..204 TP 2 FP 0: P 1, R 2/3, FPR 0
    #   t = 205..255 TP 1 FP 0: P 1, R 1/3, FPR 0
    spans = (1, 51, 102, 51, 51)
    P = by_threshold(zip((1 / 3, 3 / 5, 3 / 4, 1, 1), spans))
    R = by_threshold(zip((1, 1, 1, 2 / 3, 1 / 3), spans))
    FPR = by_threshold(zip((1, 1 / 3, 1 / 6, 0, 0), spans))
    np.testing.assert_allclose(img["precision"], P, atol=1e-12)
    np.testing.assert_allclose(img["recall"], R, atol=1e-12)
    np.testing.assert_allclose(img["tpr"], R, atol=1e-12)
    np.testing.assert_allclose(img["fpr"], FPR, atol=1e-12)
    # F per span: 13/33, 39/59, 39/49, 26/29, 13/19
    Fc = by_threshold(zip((13 / 33, 39 / 59, 39 / 49, 26 / 29, 13 / 19), spans))
    np.testing.assert_allclose(img["fmeasure"], Fc, atol=1e-12)
    # E-measure: mean(G) = 1/3, centred G: 2/3 (fg), -1/3 (bg); with k pixels predicted,
    # centred B: 1 - k/9 (predicted), -k/9 (not). Sum of enhanced alignments / (9 - 1):
    #   t = 0 (k=9): B - mean = 0 everywhere -> 9 * 1/4
    #   k=5: TP 3 (4/9, 6/9), FP 2 (4/9, -3/9), TN 4 (-5/9, -3/9)
    #   k=4: TP 3 (5/9, 6/9), FP 1 (5/9, -3/9), TN 5 (-4/9, -3/9)
    #   k=2: TP 2 (7/9, 6/9), FN 1 (-2/9, 6/9), TN 6 (-2/9, -3/9)
    #   k=1: TP 1 (8/9, 6/9), FN 2 (-1/9, 6/9), TN 6 (-1/9, -3/9)
    E = [9 / 4,
         3 * 625 / 676 + 2 * 1 / 2500 + 4 * 256 / 289,            # xi = 12/13, -24/25, 15/17
         3 * 14641 / 14884 + 1 / 289 + 5 * 2401 / 2500,           # xi = 60/61, -15/17, 24/25
         2 * 28561 / 28900 + 1 / 25 + 6 * 625 / 676,             # xi = 84/85, -3/5, 12/13
         0.9604 + 2 * 625 / 5476 + 6 * 0.64]                     # xi = 24/25, -12/37, 3/5
    E = [e / 8 for e in E]
    assert E[2] == pytest.approx((3 * enh(5, 6) + enh(5, -3) + 5 * enh(-4, -3)) / 8)
    np.testing.assert_allclose(img["emeasure"], by_threshold(zip(E, spans)), atol=1e-12)

    # S-measure (alpha 0.5). Object: foreground S {1, .8, .6}: mean .8, std (ddof 1) .2 ->
    # 2*.8 / (.8^2 + 1 + .2) = 20/23; background 1 - S {.8, 1, .4, 1, 1, 1}: mean 13/15,
    # std sqrt(66/1125) -> 2m / (m^2 + 1 + std); object = 1/3 * fg + 2/3 * bg.
    m = 13 / 15
    s_bg = 2 * m / (m * m + 1 + math.sqrt(66 / 1125))
    obj = 20 / 23 / 3 + 2 / 3 * s_bg
    # Region: centroid (2/3, 2/3) rounds to (1, 1); split after row 2, column 2 (MATLAB 1-based):
    # LT 2x2 S [.2 1; .8 .6] G [0 1; 1 1]: x .65, y .75, var_x .35/3, var_y .75/3, cov .45/3,
    #   ssim = 4 x y cov / ((x^2 + y^2)(var_x + var_y)) = .2925 / (.985 * 1.1/3), weight 4/9
    # RT [0; .6] vs [0; 0]: y = 0 -> alpha 0, beta > 0 -> 0, weight 2/9
    # LB [0 0] vs [0 0] and RB [0] vs [0]: alpha = beta = 0 -> 1, weights 2/9 and 1/9
    region = 4 / 9 * (0.2925 / (0.985 * 1.1 / 3)) + 2 / 9 + 1 / 9
    assert img["S"] == pytest.approx(0.5 * obj + 0.5 * region, abs=1e-12)

    m3, c3 = M.dataset_metrics([(MAP3, GT3)])
    # AUC, ROC from high thresholds: (0,0) (0,1/3) (0,2/3) (1/6,1) (1/3,1) (1,1):
    # 1/6 * (2/3 + 1)/2 + 1/6 + 2/3 = 35/36 (= Mann-Whitney 17.5/18: the tie counts 1/2)
    assert m3["AUC"] == pytest.approx(35 / 36, abs=1e-12)
    # AP: recall steps 1/3 (P 1), 1/3 (P 1), 1/3 (P 3/4) -> 2/3 + 1/4 = 11/12
    assert m3["AP"] == pytest.approx(11 / 12, abs=1e-12)
    assert m3["maxF"] == pytest.approx(26 / 29, abs=1e-12)
    assert m3["meanF"] == pytest.approx(Fc.mean(), abs=1e-12)
    assert m3["maxE"] == pytest.approx(max(E), abs=1e-12)
    assert m3["meanE"] == pytest.approx(np.dot(E, spans) / 256, abs=1e-12)
    assert (m3["MAE"], m3["mF"], m3["S"]) == (img["MAE"], img["mF"], img["S"])


# ------------------------------------------------------------------ special maps
# 4 x 5 ground truth, a 2x2 object at rows 1-2, columns 1-2: 4 of 20 pixels (f = 0.2).
GT = np.zeros((4, 5), bool)
GT[1:3, 1:3] = True
F_ALL = F(0.2, 1)            # predicting every pixel: P = 0.2, R = 1 -> 0.26/1.06
E_FLAT = 5 / 19              # B constant: centred B = 0, every alignment 1/4 -> 20/4 / 19


def test_all_zero_map():
    m, _ = M.dataset_metrics([(np.zeros((4, 5), np.uint8), GT)])
    assert m["MAE"] == pytest.approx(0.2)              # the 4 object pixels miss by 1
    assert m["mF"] == pytest.approx(F_ALL)             # T = min(0, 1) = 0: S >= 0 everywhere
    assert m["maxF"] == pytest.approx(F_ALL)           # t >= 1: nothing predicted, P = R = 0
    assert m["meanF"] == pytest.approx(F_ALL / 256)
    assert m["AUC"] == pytest.approx(0.5)              # (0,0) -> (1,1): the diagonal
    assert m["AP"] == pytest.approx(0.2)               # one step to R = 1 at P = 0.2
    # S: object = 0.2 * 0 (mean 0) + 0.8 * 1 (1 - S = 1, std 0); centroid (1.5, 1.5) rounds
    # to (2, 2): LT 3x3 (weight 9/20) has y > 0 = x -> 0; the other quadrants are all 0 in
    # both -> 1 (weights 6/20, 3/20, 2/20); S = (0.8 + 0.55) / 2
    assert m["S"] == pytest.approx(0.675)
    assert m["maxE"] == pytest.approx(E_FLAT) and m["meanE"] == pytest.approx(E_FLAT)


def test_perfect_map():
    pred = np.where(GT, 255, 0).astype(np.uint8)
    m, c = M.dataset_metrics([(pred, GT)])
    assert m["MAE"] == 0
    assert m["mF"] == pytest.approx(1)                 # T = 0.4 selects the object exactly
    assert m["maxF"] == pytest.approx(1) and m["AUC"] == pytest.approx(1)
    assert m["AP"] == pytest.approx(1)
    assert m["S"] == pytest.approx(1)
    # E: t = 0 predicts everything (5/19); t >= 1 is exact: every alignment 1 -> 20 / 19
    # (PySODMetrics divides by N - 1, so a perfect map scores N / (N - 1))
    assert m["maxE"] == pytest.approx(20 / 19)
    assert m["meanE"] == pytest.approx((E_FLAT + 255 * 20 / 19) / 256)


def test_inverted_map():
    pred = np.where(GT, 0, 255).astype(np.uint8)
    m, _ = M.dataset_metrics([(pred, GT)])
    assert m["MAE"] == pytest.approx(1)
    assert m["mF"] == 0                                # T = min(1.6, 1): only background
    assert m["maxF"] == pytest.approx(F_ALL)           # only t = 0 finds the object
    assert m["AUC"] == pytest.approx(0)                # (0,0) -> (1,0) -> (1,1)
    assert m["AP"] == pytest.approx(0.2)
    # S: object 0 (S = 0 on the object, 1 - S = 0 on the background); region: LT S = 1 - G
    # with 4 object pixels of 9: ssim = -40/41 (cov = -var); the other quadrants 1 (pred 1
    # constant, G 0 constant: alpha = beta = 0) -> region = 9/20 * -40/41 + 11/20 = 91/820
    assert m["S"] == pytest.approx(0.5 * 91 / 820)
    # E: t >= 1 gives B = not G: every alignment -1 -> 0
    assert m["maxE"] == pytest.approx(E_FLAT)
    assert m["meanE"] == pytest.approx(E_FLAT / 256)


@pytest.mark.parametrize("normalize", [True, False])
def test_constant_map_is_left_as_is(normalize):
    pred = np.full((4, 5), 128, np.uint8)
    c = 128 / 255
    m, curves = M.dataset_metrics([(pred, GT)], normalize=normalize)
    assert m["MAE"] == pytest.approx((4 * (1 - c) + 16 * c) / 20)
    assert m["mF"] == 0                                # T = min(2c, 1) = 1 > c: nothing
    # S8 = 128: t <= 128 predicts everything, t > 128 nothing
    assert m["maxF"] == pytest.approx(F_ALL)
    assert m["meanF"] == pytest.approx(129 * F_ALL / 256)
    assert curves["precision"][128] == pytest.approx(0.2) and curves["precision"][129] == 0
    assert m["AUC"] == pytest.approx(0.5) and m["AP"] == pytest.approx(0.2)
    # S: object = 0.2 * 2c/(c^2+1) + 0.8 * 2(1-c)/((1-c)^2+1); region: LT (pred constant,
    # G not) 0, the rest 1 -> 11/20
    obj = 0.2 * 2 * c / (c * c + 1) + 0.8 * 2 * (1 - c) / ((1 - c) ** 2 + 1)
    assert m["S"] == pytest.approx(0.5 * obj + 0.5 * 0.55)
    assert m["maxE"] == pytest.approx(E_FLAT) and m["meanE"] == pytest.approx(E_FLAT)


def test_empty_ground_truth():
    pred = np.where(GT, 255, 0).astype(np.uint8)       # an object where there is none
    gt = np.zeros((4, 5), bool)
    m, c = M.dataset_metrics([(pred, gt)])
    assert m["MAE"] == pytest.approx(0.2)
    assert m["mF"] == 0 and m["maxF"] == 0 and m["AP"] == 0   # no true positive anywhere
    assert np.all(np.array(c["recall"]) == 0)          # recall (TPR) 0 without foreground
    assert c["fpr"][0] == 1 and c["fpr"][1] == pytest.approx(4 / 20)   # 20 background pixels
    assert m["AUC"] == 0                               # TPR 0 at every threshold
    assert m["S"] == pytest.approx(0.8)                # empty G: S = 1 - mean(S)
    # E for an empty G: (pixels not predicted) / (N - 1): t = 0 -> 0, t >= 1 -> 16/19
    assert m["maxE"] == pytest.approx(16 / 19)
    assert m["meanE"] == pytest.approx(255 * 16 / 19 / 256)


def test_minmax_normalisation_and_raw():
    pred = np.where(GT, 204, 51).astype(np.uint8)      # 0.8 on the object, 0.2 elsewhere
    norm, _ = M.dataset_metrics([(pred, GT)])
    raw, _ = M.dataset_metrics([(pred, GT)], normalize=False)
    assert norm["MAE"] == 0                             # stretched to exactly 1 / 0
    assert raw["MAE"] == pytest.approx((4 * 0.2 + 16 * 0.2) / 20)
    assert norm["maxF"] == pytest.approx(1) and raw["maxF"] == pytest.approx(1)
    # raw S8 204 / 51: t in 0..51 predicts everything, 52..204 separates (F 1), above nothing;
    # normalised 255 / 0: t = 0 everything, 1..255 separates
    assert raw["meanF"] == pytest.approx((52 * F_ALL + 153) / 256)
    assert norm["meanF"] == pytest.approx((F_ALL + 255) / 256)


def test_ground_truth_encodings_binarise_at_half():
    one = GT.astype(np.uint8)
    assert np.array_equal(M.binarize_gt(one * 255), GT)
    assert np.array_equal(M.binarize_gt(one.astype(np.float32)), GT)
    # 8-bit: > 128 is foreground (PySODMetrics' gt > 128); 128 itself is background
    assert M.binarize_gt(np.array([127, 128, 129], np.uint8)).tolist() == [False, False, True]
    assert M.binarize_gt(np.array([127, 128, 129]) / 255.0).tolist() == [False, False, True]


def test_mask_files_1bit_0_255_and_0_1_agree(tmp_path):
    m = GT.astype(np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), m * 255)
    cv2.imwrite(str(tmp_path / "b.png"), m)                       # 0/1 stored in 8 bits
    cv2.imwrite(str(tmp_path / "c.png"), m * 255, [cv2.IMWRITE_PNG_BILEVEL, 1])
    for name in "abc":
        assert np.array_equal(M.binarize_gt(read_mask(tmp_path / f"{name}.png")), GT), name


def test_threshold_is_inclusive_and_8bit_quantisation_truncates():
    # A map with 0, 28 and 204: normalised, 28 becomes 28/204*255 = 35 in exact arithmetic but
    # 34.999... in float64; PySODMetrics truncates (astype(uint8)), so the pixel is counted for
    # t <= 34 only. We follow it.
    pred = np.array([[0, 28, 204]], np.uint8)
    gt = np.array([[False, True, True]])
    p, g = M.prepare(pred, gt)
    assert p[0, 1] * 255 < 35
    tp, fp = M.threshold_counts(p, g)
    assert tp[34] == 2 and tp[35] == 1 and tp[255] == 1 and fp[1] == 0 and fp[0] == 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # Fmeasure's deprecation notice
        fm = psm.Fmeasure()
        fm.step(pred, gt.astype(np.uint8) * 255)
    r = fm.get_results()["pr"]
    np.testing.assert_array_equal(r["r"][::-1], tp / 2)


def test_curves_are_averaged_before_max():
    # max F of the dataset is the max of the image-averaged F curve, not the mean of the
    # images' maxima: perfect (F 1 for t >= 1) and inverted (F only at t = 0) maps give
    # (1 + 0)/2 = 0.5 for t >= 1 and F_ALL at t = 0 -> 0.5, where the mean of maxima is 0.62.
    pairs = [(np.where(GT, 255, 0).astype(np.uint8), GT),
             (np.where(GT, 0, 255).astype(np.uint8), GT)]
    m, _ = M.dataset_metrics(pairs)
    assert m["maxF"] == pytest.approx(0.5)
    assert m["mF"] == pytest.approx(0.5)
    # AUC of the averaged ROC: TPR 1/2 and FPR 1/2 for t >= 1 -> the diagonal
    assert m["AUC"] == pytest.approx(0.5)


def test_smeasure_repairs_pysod_nan_for_centroid_on_the_border():
    gt = np.zeros((20, 30), bool)
    gt[5:15, 29] = True                                # object in the last column only
    pred = np.where(gt, 255, 0).astype(np.uint8)
    sm = psm.Smeasure()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sm.step(pred, gt.astype(np.uint8) * 255)
    assert math.isnan(sm.get_results()["sm"])          # PySODMetrics: an empty quadrant
    assert M.image_metrics(pred, gt)["S"] == pytest.approx(1)
    noisy = np.clip(pred.astype(int) + np.random.default_rng(0).integers(0, 60, pred.shape),
                    0, 255).astype(np.uint8)
    s = M.image_metrics(noisy, gt)["S"]
    assert 0 < s < 1


# ------------------------------------------------------------------ equality with PySODMetrics
def pysod(pairs):
    """PySODMetrics' own numbers for uint8 (pred, gt) pairs."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # Fmeasure's deprecation notice, NaN S-measures
        mae, fm, sm, em = psm.MAE(), psm.Fmeasure(), psm.Smeasure(), psm.Emeasure()
        roc = psm.FmeasureV2({"tpr": psm.TPRHandler(with_dynamic=True, with_adaptive=False),
                              "fpr": psm.FPRHandler(with_dynamic=True, with_adaptive=False)})
        for p, g in pairs:
            for x in (mae, fm, sm, em, roc):
                x.step(p, g)
    f = fm.get_results()
    e = em.get_results()["em"]["curve"]
    return {"MAE": mae.get_results()["mae"], "mF": f["fm"]["adp"],
            "maxF": f["fm"]["curve"].max(), "meanF": f["fm"]["curve"].mean(),
            "S": sm.get_results()["sm"], "maxE": e.max(), "meanE": e.mean(),
            "precision": f["pr"]["p"][::-1], "recall": f["pr"]["r"][::-1],
            "fmeasure": f["fm"]["curve"][::-1], "emeasure": e[::-1],
            "tpr": roc.get_results()["tpr"]["dynamic"][::-1],
            "fpr": roc.get_results()["fpr"]["dynamic"][::-1]}


def assert_matches_pysod(ours, curves, ref):
    for k in ("MAE", "mF", "maxF", "meanF", "S", "maxE", "meanE"):
        assert ours[k] == pytest.approx(ref[k], abs=1e-6), k
    for k in ("precision", "recall", "fmeasure", "emeasure", "tpr", "fpr"):
        np.testing.assert_allclose(curves[k], ref[k], atol=1e-6, rtol=0, err_msg=k)


def test_equal_to_pysodmetrics_on_random_maps():
    rng = np.random.default_rng(7)
    pairs = []
    for i in range(12):
        h, w = rng.integers(20, 70, 2)
        gt = np.zeros((h, w), np.uint8)
        y, x = rng.integers(0, h // 2), rng.integers(0, w // 2)
        gt[y:y + rng.integers(2, h // 2 + 2), x:x + rng.integers(2, w // 2 + 2)] = 255
        if i == 0:
            gt[:] = 0                                   # empty ground truth
        if i == 1:
            gt[:] = 255                                 # all foreground
        kind = i % 3
        if kind == 0:
            pred = rng.integers(0, 256, (h, w))         # pure noise
        elif kind == 1:
            pred = rng.integers(30, 200, (h, w)) // 2 + gt // 3   # narrow range: normalisation
        else:
            pred = np.full((h, w), rng.integers(0, 256))         # constant
        pairs.append((pred.astype(np.uint8), gt))
    ours, curves = M.dataset_metrics(pairs)
    assert_matches_pysod(ours, curves, pysod(pairs))


@pytest.mark.slow
def test_equal_to_pysodmetrics_on_icoseg_dev_masks(icoseg_dev, tmp_path):
    rng = np.random.default_rng(3)
    masks = sorted((icoseg_dev / "ground_truth").glob("*/*.png"))[::3]
    ours_pairs, ref_pairs = [], []
    for i, path in enumerate(masks):
        gt = read_mask(path)                            # 1-bit PNG -> float 0/1
        g8 = (gt * 255).astype(np.uint8)
        soft = cv2.GaussianBlur(gt, (0, 0), 2 + i % 7) * rng.uniform(0.4, 1)
        pred = np.clip(soft + rng.normal(0.1, 0.08, gt.shape), 0, 1)
        write_png(tmp_path / f"{i}.png", pred)          # through a file, as the CLI reads maps
        p8 = load_prediction(tmp_path / f"{i}.png")
        assert p8.dtype == np.uint8
        ours_pairs.append((p8, gt))
        ref_pairs.append((cv2.imread(str(tmp_path / f"{i}.png"), cv2.IMREAD_GRAYSCALE), g8))
    ours, curves = M.dataset_metrics(ours_pairs)
    assert_matches_pysod(ours, curves, pysod(ref_pairs))


def test_load_prediction_keeps_8bit_values_exact(tmp_path):
    v = np.arange(256, dtype=np.uint8).reshape(16, 16)
    cv2.imwrite(str(tmp_path / "m.png"), v)
    assert np.array_equal(load_prediction(tmp_path / "m.png"), v)
    cv2.imwrite(str(tmp_path / "m16.png"), v.astype(np.uint16) * 257 + 3)   # 16-bit map
    m16 = load_prediction(tmp_path / "m16.png")
    assert m16.dtype == np.float64 and m16.max() <= 1


# ------------------------------------------------------------------ the two AUC conventions
def test_per_image_auc_by_hand():
    # one image: both conventions are the area of its own ROC, 35/36 (see the 3x3 example)
    assert M.image_metrics(MAP3, GT3)["AUC_img"] == pytest.approx(35 / 36, abs=1e-12)
    m, _ = M.dataset_metrics([(MAP3, GT3)])
    assert m["AUC_img"] == pytest.approx(35 / 36, abs=1e-12) == m["AUC"]


def test_per_image_auc_differs_from_the_averaged_curve():
    # Raw maps, each a perfect ranking of its own pixels, but on different value ranges:
    #   A: object 100, background 0  -> t 1..100: (FPR 0, TPR 1); t 101..255: (0, 0)
    #   B: object 255, background 200 -> t 1..200: (1, 1);         t 201..255: (0, 1)
    # Each image's ROC area is 1, so the mean over images is 1. The averaged curve is
    #   t 1..100 (1/2, 1), t 101..200 (1/2, 1/2), t 201..255 (0, 1/2), from high t:
    #   (0,0) (0,1/2) (1/2,1/2) (1/2,1) (1,1) -> 1/2 * 1/2 + 1/2 * 1 = 3/4.
    a = np.where(GT, 100, 0).astype(np.uint8)
    b = np.where(GT, 255, 200).astype(np.uint8)
    m, _ = M.dataset_metrics([(a, GT), (b, GT)], normalize=False)
    assert m["AUC_img"] == pytest.approx(1.0, abs=1e-12)
    assert m["AUC"] == pytest.approx(0.75, abs=1e-12)
    # min-max normalisation makes both maps 0/255: the two conventions agree again
    m, _ = M.dataset_metrics([(a, GT), (b, GT)])
    assert m["AUC_img"] == pytest.approx(1.0) and m["AUC"] == pytest.approx(1.0)


def test_per_image_auc_leaves_out_images_without_a_ranking():
    # A ground truth without foreground (or without background) has no ROC area: such
    # images are left out of the mean, not counted as 0.
    empty = np.zeros((4, 5), bool)
    full = np.ones((4, 5), bool)
    anymap = np.arange(20, dtype=np.uint8).reshape(4, 5) * 13
    assert math.isnan(M.image_metrics(anymap, empty)["AUC_img"])
    assert math.isnan(M.image_metrics(anymap, full)["AUC_img"])
    inverted = np.where(GT, 0, 255).astype(np.uint8)   # ROC area 0
    m, _ = M.dataset_metrics([(inverted, GT), (anymap, empty), (anymap, full)])
    assert m["AUC_img"] == 0.0
    m, _ = M.dataset_metrics([(anymap, empty)])
    assert m["AUC_img"] is None and m["AUC"] == 0      # nothing to average


def test_auc_conventions_on_icoseg_dev_masks(icoseg_dev):
    # Real masks with blurred versions of themselves as maps: every image's ROC area is high,
    # the per-image mean equals the mean of separately computed single-image AUCs.
    from data_prep.datasets import load_dataset
    ds = load_dataset("icoseg", icoseg_dev)
    items = [it for it in ds.items() if it.mask][:6]
    pairs = []
    for it in items:
        gt = M.binarize_gt(read_mask(icoseg_dev / it.mask))
        pairs.append((cv2.GaussianBlur(gt.astype(np.float32), (0, 0), 15).astype(np.float64),
                      gt))
    m, _ = M.dataset_metrics(pairs, modern=False)
    singles = [M.dataset_metrics([p], modern=False)[0]["AUC"] for p in pairs]
    assert m["AUC_img"] == pytest.approx(np.mean(singles), abs=1e-12)
    assert min(singles) > 0.9


def test_per_image_auc_from_pysodmetrics_curves():
    # PySODMetrics gives each image's TPR and FPR at the 256 thresholds (stored from t = 255
    # down to 0); the area of each, by the same trapezoidal rule, averaged over the images,
    # is our AUC_img, and the area of their mean curve our AUC.
    rng = np.random.default_rng(1)
    handlers = {"tpr": psm.TPRHandler(with_dynamic=True, with_adaptive=False),
                "fpr": psm.FPRHandler(with_dynamic=True, with_adaptive=False)}
    fm = psm.FmeasureV2(metric_handlers=handlers)
    pairs = []
    for i in range(5):
        gt = np.zeros((30, 40), np.uint8)
        gt[4 + i:20, 6:22 + 3 * i] = 255
        pred = (np.clip(gt / 255 * 0.4 + rng.random((30, 40)) * (0.5 + 0.1 * i), 0, 1)
                * 255).astype(np.uint8)
        pairs.append((pred, gt))
        fm.step(pred, gt)
    tprs = [np.asarray(c)[::-1] for c in handlers["tpr"].dynamic_results]
    fprs = [np.asarray(c)[::-1] for c in handlers["fpr"].dynamic_results]
    want_img = np.mean([M.area_under_roc(t, f) for t, f in zip(tprs, fprs)])
    want_avg = M.area_under_roc(np.mean(tprs, 0), np.mean(fprs, 0))
    m, _ = M.dataset_metrics(pairs, modern=False)
    assert m["AUC_img"] == pytest.approx(want_img, abs=1e-6)
    assert m["AUC"] == pytest.approx(want_avg, abs=1e-6)
    assert abs(m["AUC_img"] - m["AUC"]) > 1e-3     # the example tells the conventions apart
