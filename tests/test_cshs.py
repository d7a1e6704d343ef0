"""CSHS: every cue on hand-made segmentations with hand-computed answers, the hierarchy's cuts,
synthetic groups whose answer is known (the common object above a unique one; a border band
suppressed by the object prior), the command line, and a run on the real iCoseg subset."""
import json
import math

import numpy as np
import pytest

from baselines import cshs
from baselines.matlab_ops import srgb_to_lab
from core.imageio import write_png
from core.layout import prediction_path


# ---------------------------------------------------------------- segmentation

def test_two_cuts_of_one_hierarchy_on_flat_blocks():
    lab = np.zeros((30, 45, 3))
    lab[:, :15] = [20, 0, 0]
    lab[:, 15:30] = [50, 40, 0]
    lab[:, 30:] = [55, 45, 5]           # close to the middle block: they merge first
    fine, coarse, parent = cshs.segmentations(lab, fine=3, coarse=2)
    for block, label in ((np.s_[:, :15], 0), (np.s_[:, 15:30], 1), (np.s_[:, 30:], 2)):
        assert np.all(fine[block] == label)
    assert np.all(coarse[:, :15] == 0) and np.all(coarse[:, 15:] == 1)
    assert parent.tolist() == [0, 1, 1]


def test_cut_never_jumps_far_from_the_number_asked_for():
    # a uniform image is one basin: one region, whatever number is asked for
    fine, coarse, parent = cshs.segmentations(np.full((20, 30, 3), 50.0), fine=100, coarse=12)
    assert fine.max() == 0 and coarse.max() == 0 and parent.tolist() == [0]


def test_relabel_parent_and_quantise_by_hand():
    np.testing.assert_array_equal(cshs.relabel(np.array([[5, 5, 2], [9, 2, 2]])),
                                  [[0, 0, 1], [2, 1, 1]])
    fine = np.array([[0, 0, 1, 2], [0, 0, 1, 2]])
    coarse = np.array([[3, 3, 1, 1], [3, 3, 1, 1]])
    assert cshs.parent_regions(fine, coarse).tolist() == [3, 1, 1]
    lab = np.array([[[0.0, -87, -108], [100, 99, 95], [50, 6, -6.5], [-5, 200, 0]]])
    # (0,0,0) -> 0; every channel at its top -> 511; (4,4,4) -> 292; clipped (0,7,4) -> 60
    assert cshs.quantise(lab).tolist() == [[0, 511, 292, 60]]


# ---------------------------------------------------------------- fine-level cues

def test_region_histograms_by_hand():
    labels = np.array([[0, 0, 1], [1, 1, 1]])
    bins = np.array([[3, 3, 0], [1, 1, 0]])
    np.testing.assert_allclose(cshs.region_histograms(labels, bins, n_bins=4),
                               [[0, 0, 0, 1], [0.5, 0.5, 0, 0]])


def test_similarity_is_the_bhattacharyya_coefficient():
    a = np.array([[0.5, 0.5, 0, 0], [0, 0, 0, 1.0]])
    b = np.array([[0.5, 0, 0.5, 0], [0.25, 0.25, 0.25, 0.25], [0.5, 0.5, 0, 0]])
    np.testing.assert_allclose(cshs.similarity(a, b),
                               [[0.5, math.sqrt(0.5), 1.0], [0.0, 0.5, 0.0]], atol=1e-12)


def test_region_geometry_by_hand():
    areas, centroids = cshs.region_geometry(np.array([[0, 0, 1, 1], [0, 0, 1, 1]]))
    np.testing.assert_allclose(areas, [0.5, 0.5])
    np.testing.assert_allclose(centroids, [[0.5, 0.25], [0.5, 0.75]])


def test_intra_saliency_by_hand():
    hist = np.array([[1.0, 0, 0], [0, 1.0, 0], [0.5, 0.5, 0]])
    areas = np.array([0.5, 0.3, 0.2])
    centroids = np.array([[0.5, 0.2], [0.5, 0.6], [0.5, 0.9]])
    d = math.sqrt(1 - math.sqrt(0.5))          # Hellinger distance of the mixed region
    s2 = 0.4

    def w(gap):
        return math.exp(-gap / s2)
    raw = [0.3 * 1 * w(0.4) + 0.2 * d * w(0.7),
           0.5 * 1 * w(0.4) + 0.2 * d * w(0.3),
           0.5 * d * w(0.7) + 0.3 * d * w(0.3)]
    expected = (np.array(raw) - min(raw)) / (max(raw) - min(raw))
    np.testing.assert_allclose(cshs.intra_saliency(hist, areas, centroids), expected, atol=1e-12)


def test_global_similarity_by_hand():
    a = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    b = np.array([[1.0, 0, 0]])
    c = np.array([[0, 0, 1.0], [0.5, 0.5, 0]])
    r = math.sqrt(0.5)
    ga, gb, gc = cshs.global_similarity([a, b, c])
    np.testing.assert_allclose(ga, [(1 + r) / 2, (0 + r) / 2], atol=1e-12)
    np.testing.assert_allclose(gb, [(1 + r) / 2], atol=1e-12)
    np.testing.assert_allclose(gc, [0.0, r], atol=1e-12)
    (alone,) = cshs.global_similarity([a])
    np.testing.assert_array_equal(alone, [1.0, 1.0])


# ---------------------------------------------------------------- coarse-level cue

def test_object_prior_by_hand():
    labels = np.full((6, 6), 2)
    labels[0] = 0                    # a band along the top border: 6 pixels, all on the border
    labels[2:4, 2:4] = 1             # an inner square: no border contact
    prior = cshs.object_prior(labels)
    # region 2: 26 pixels, 14 on the border (bottom row 6, both sides 4 + 4)
    np.testing.assert_allclose(prior, [math.exp(-3.0), 1.0, math.exp(-(14 ** 2 / 26) / 2)])


# ---------------------------------------------------------------- synthetic groups

# sRGB (B, G, R) of Lab (60, 35, 0), (60, -35, 0), (60, 0, 0) and (60, 0, 40): every colour
# lies equally far from the grey background.
COMMON, UNIQUE, GREY, BAND = (146, 120, 202), (144, 161, 50), (145, 145, 145), (73, 143, 166)


def test_synthetic_colours_are_what_the_tests_assume():
    lab = srgb_to_lab(np.array([COMMON, UNIQUE, GREY, BAND], np.uint8)[:, ::-1])
    np.testing.assert_allclose(lab, [[60, 35, 0], [60, -35, 0], [60, 0, 0], [60, 0, 40]],
                               atol=0.6)


def _disc(cy, cx, r=12, size=100):
    y, x = np.mgrid[:size, :size]
    return (y - cy) ** 2 + (x - cx) ** 2 <= r * r


def _group(seed, unique=False, band=False):
    rng = np.random.default_rng(seed)
    images = []
    for i, centre in enumerate([(50, 30), (45, 45), (55, 60), (50, 50)]):
        im = np.empty((100, 100, 3))
        im[:] = GREY
        im[_disc(*centre)] = COMMON
        if unique and i == 0:
            im[_disc(50, 70)] = UNIQUE
        if band:
            im[:15] = BAND
        images.append(np.clip(im + rng.normal(0, 4, im.shape), 0, 255).astype(np.uint8))
    return images


@pytest.mark.parametrize("seed", [0, 1])
def test_the_common_object_ranks_above_a_unique_one(seed):
    maps = cshs.cshs_maps(_group(seed, unique=True))
    common, unique = _disc(50, 30), _disc(50, 70)
    c, u = maps[0][common].mean(), maps[0][unique].mean()
    assert c > 0.6 and u < 0.3 * c
    background = ~(common | unique)
    assert maps[0][background].mean() < 0.1 * c
    # without the other images, both objects stand out alike: the group makes the difference
    (alone,) = cshs.cshs_maps(_group(seed, unique=True)[:1])
    assert alone[unique].mean() > 0.6 * alone[common].mean()


@pytest.mark.parametrize("seed", [0, 1])
def test_a_border_band_is_suppressed_by_the_object_prior(seed):
    images = _group(seed, band=True)
    maps = cshs.cshs_maps(images)
    band, disc = np.zeros((100, 100), bool), _disc(45, 45)
    band[:15] = True
    for m in maps:
        assert m.shape == (100, 100)
    c, b = maps[1][disc].mean(), maps[1][band].mean()
    assert c > 0.6 and b < 0.05 * c
    # the band is as contrasted and as common as the disc: only the object prior tells them apart
    cues = cshs.ImageCues(cshs.working_image(images[1]))
    size = np.bincount(cues.fine.ravel())
    on_band = np.bincount(cues.fine[band], minlength=len(size)) > 0.5 * size   # mostly band
    on_disc = np.bincount(cues.fine[disc], minlength=len(size)) > 0.5 * size
    assert cues.intra[on_band].max() > 0.5 * cues.intra[on_disc].max()
    assert cues.prior[on_band].max() < 0.15 and cues.prior[on_disc].min() > 0.9


def test_maps_at_each_image_size_and_deterministic():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, s + (3,), dtype=np.uint8) for s in [(37, 91), (450, 260)]]
    images.append(np.full((64, 48, 3), 90, np.uint8))           # flat: a single region
    a, b = cshs.cshs_maps(images), cshs.cshs_maps(images)
    assert [m.shape for m in a] == [(37, 91), (450, 260), (64, 48)]
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
        assert 0 <= x.min() and x.max() <= 1
    assert a[0].max() == 1 and a[2].max() == 0


# ---------------------------------------------------------------- command line

def _folder_dataset(root):
    """Two groups of the synthetic images in the layout the 'folder' dataset reads."""
    for g, images in (("first group", _group(0, unique=True)), ("second, group!", _group(1))):
        for i, im in enumerate(images[:3]):
            write_png(root / g / f"{i}.png", im[: 70 + 10 * i])      # sizes differ
    from data_prep.datasets import load_dataset
    return load_dataset("folder", root)


def _fails(capsys, argv, words):
    """main(argv) ends with status 2 and one line, `error: ...` holding every one of `words`."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        cshs.main(argv)
    # one line besides the progress bar's
    err = [x for x in capsys.readouterr().err.strip().splitlines() if "img/s" not in x]
    assert e.value.code == 2 and len(err) == 1 and err[0].startswith("error:")
    assert all(w in err[0] for w in words), err[0]


def test_cli_resume_force_and_refusals(tmp_path, capsys):
    ds = _folder_dataset(tmp_path / "data")
    out = tmp_path / "maps"
    argv = ["--dataset", "folder", "--root", str(ds.root), "--out", str(out), "--workers", "1"]
    cshs.main(argv)
    from core.imageio import read_gray
    for it in ds.items():
        assert read_gray(prediction_path(out, it)).shape == (70 + 10 * int(it.name), 100)
    assert json.loads((out / cshs.RUN_FILE).read_text())["method"] == "CSHS"

    _fails(capsys, argv, ["not empty", "--force"])      # refuses a non-empty folder

    first = prediction_path(out, next(ds.items()))
    other = prediction_path(out, list(ds.items())[-1])
    before, other_time = first.read_bytes(), other.stat().st_mtime_ns
    first.unlink()
    cshs.main(argv + ["--resume"])                       # redoes only the incomplete group
    assert first.read_bytes() == before                  # deterministic
    assert other.stat().st_mtime_ns == other_time
    settings = json.loads((out / cshs.RUN_FILE).read_text())
    (out / cshs.RUN_FILE).write_text(json.dumps(dict(settings, fine=7)))
    _fails(capsys, argv + ["--resume"], ["fine", "--force"])   # a resume must not mix settings
    cshs.main(argv + ["--force"])
    assert first.read_bytes() == before


def test_cli_bad_input_is_one_line_and_status_2(tmp_path, capsys):
    ds = _folder_dataset(tmp_path / "data")
    root = ["--root", str(ds.root)]
    out = ["--out", str(tmp_path / "o")]
    _fails(capsys, ["--dataset", "nope", *root, *out], ["unknown dataset"])
    _fails(capsys, ["--dataset", "folder", *root, *out, "--workers", "0"], ["--workers"])
    _fails(capsys, ["--dataset", "folder", *root, *out, "--group", "none"], ["none"])
    # a PNG whose header is fine but whose data is cut short: named in the one line
    bad = ds.root / "first group" / "1.png"
    bad.write_bytes(bad.read_bytes()[:200])
    _fails(capsys, ["--dataset", "folder", *root, "--out", str(tmp_path / "o2"), "--workers", "1"],
           ["1.png"])


@pytest.mark.slow
def test_bad_image_in_a_worker_process_is_one_line(tmp_path, capsys):
    ds = _folder_dataset(tmp_path / "data")
    bad = ds.root / "second, group!" / "2.png"
    bad.write_bytes(bad.read_bytes()[:200])
    _fails(capsys, ["--dataset", "folder", "--root", str(ds.root), "--out", str(tmp_path / "o"),
                    "--workers", "2"], ["2.png", "not a readable image"])


@pytest.mark.slow
def test_run_gives_the_same_maps_with_one_or_two_workers(tmp_path):
    ds = _folder_dataset(tmp_path / "data")
    assert cshs.run(ds, tmp_path / "one", workers=1, progress=False) == 6
    assert cshs.run(ds, tmp_path / "two", workers=2, progress=False) == 6
    for it in ds.items():
        a = prediction_path(tmp_path / "one", it).read_bytes()
        assert a == prediction_path(tmp_path / "two", it).read_bytes()
    assert cshs.run(ds, tmp_path / "two", workers=2, skip_done=True, progress=False) == 0


# ---------------------------------------------------------------- real data

@pytest.mark.slow
def test_real_icoseg_subset_maps_and_metrics(icoseg_dev, tmp_path):
    from core.imageio import read_gray, read_image
    from data_prep.datasets import load_dataset
    from eval.evaluate import evaluate
    from eval.report import table_markdown
    from eval.results import make_results

    ds = load_dataset("icoseg", icoseg_dev)
    out = tmp_path / "cshs"
    cshs.main(["--dataset", "icoseg", "--root", str(icoseg_dev), "--out", str(out)])
    for it in ds.items():
        sal = read_gray(prediction_path(out, it))
        assert sal.shape == read_image(ds.root / it.image).shape[:2]
        assert sal.max() == 1.0
    run = evaluate(ds, [("CSHS", str(out))], workers=1, progress=False)
    m = run["methods"][0]["metrics"]
    assert m["AUC"] > 0.8 and 0.35 < m["mF"] < 1 and 0 < m["MAE"] < 0.35
    assert run["methods"][0]["resized"] == 0
    # Table 1 puts the paper's CSHS column beside ours
    table = table_markdown(make_results([run]))
    assert "| CSHS | CSHS (paper) |" in table and "| 0.5288 |" in table
