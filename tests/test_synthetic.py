"""The synthetic co-saliency benchmark: determinism, ground truth, group structure, and the
statistics that make a single image ambiguous."""
import collections
import hashlib
import json

import cv2
import numpy as np
import pytest

from data_prep import synthetic as S
from data_prep.__main__ import main
from core.errors import UserError
from core.imageio import read_image, read_mask

SMALL = S.Config(height=48, width=96)


def _tree_digest(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn") / "bench"
    assert S.generate(root, SMALL, 4, 2, workers=1, progress=False)
    return root


def test_layout_and_manifest(bench):
    m = json.loads((bench / "manifest.json").read_text())
    assert m["seed"] == 0 and m["size"] == [48, 96] and m["group_size"] == 5
    assert m["groups"] == {"train": 4, "test": 2} and len(m["classes"]) == 6
    for split, n in (("train", 4), ("test", 2)):
        groups = sorted(p.name for p in (bench / split / "Image").iterdir())
        assert len(groups) == n
        for g in groups:
            names = sorted(p.name for p in (bench / split / "Image" / g).iterdir())
            assert names == [f"{j:02d}.png" for j in range(5)]
            assert sorted(p.name for p in (bench / split / "GroundTruth" / g).iterdir()) == names
        lines = (bench / split / "objects.jsonl").read_text().splitlines()
        assert len(lines) == 5 * n


def test_same_seed_same_bytes_whatever_the_worker_count(bench, tmp_path):
    again = tmp_path / "again"
    S.generate(again, SMALL, 4, 2, workers=2, progress=False)
    assert _tree_digest(again) == _tree_digest(bench)


def test_splits_and_seeds_differ(bench, tmp_path):
    a = read_image(next((bench / "train" / "Image").rglob("00.png")))
    b = read_image(next((bench / "test" / "Image").rglob("00.png")))
    assert not np.array_equal(a, b)
    other = tmp_path / "other"
    S.generate(other, S.Config(height=48, width=96, seed=1), 1, 0, workers=1, progress=False)
    c = read_image(next((other / "train" / "Image").rglob("00.png")))
    assert not np.array_equal(a, c)


def _composite_labels(objects, h, w):
    """Independent reference of the visible part of each object: an object is visible where
    its coverage times the transparency of everything in front is the largest weight."""
    alphas = [S.object_alpha(o, h, w) for o in objects]
    weights = []
    for j, o in enumerate(objects):
        front = np.ones((h, w), np.float32)
        for k, p in enumerate(objects):
            if p["depth"] > o["depth"]:
                front *= 1.0 - alphas[k]
        weights.append(alphas[j] * front)
    background = np.prod([1.0 - a for a in alphas], axis=0)
    return np.argmax(np.stack([background] + weights), axis=0), alphas


def test_masks_are_the_visible_common_object(bench):
    cfg = SMALL
    schedule = S.class_schedule(cfg, "train", 4)
    for index, common in enumerate(schedule):
        rendered = S.generate_group(cfg, "train", index, common)
        gdir = S.group_name(index, common)
        for j, r in enumerate(rendered):
            mask = read_mask(bench / "train" / "GroundTruth" / gdir / f"{j:02d}.png")
            image = read_image(bench / "train" / "Image" / gdir / f"{j:02d}.png")
            assert np.array_equal(image, r.image)
            assert set(np.unique(mask)) <= {0.0, 1.0}
            labels, alphas = _composite_labels(r.objects, cfg.height, cfg.width)
            ci = next(i for i, o in enumerate(r.objects) if o["common"])
            assert np.array_equal(mask > 0.5, labels == ci + 1)
            assert np.array_equal(labels, r.labels)
            assert mask.sum() >= S.MIN_VISIBLE * alphas[ci].sum() - 2
            # at least one distractor, visible, of another class
            distractors = [i for i, o in enumerate(r.objects) if not o["common"]]
            assert 1 <= len(distractors) <= 2
            assert all((labels == i + 1).sum() > 0 for i in distractors)
            assert all(r.objects[i]["class"] != common for i in distractors)
            # the masked pixels have the colour of the common class (hue within its family)
            hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV_FULL)[mask > 0.5].astype(float)
            bright = hsv[hsv[:, 2] > 100]       # skip the dark stripes/checks of the texture
            hue = np.angle(np.exp(1j * bright[:, 0] / 256 * 2 * np.pi).mean(), deg=True)
            diff = (hue - S.CLASSES[common].hue + 180) % 360 - 180
            assert abs(diff) < 20, (gdir, j, hue)


def test_group_structure():
    cfg = S.Config(height=32, width=64, classes=4)
    for index, common in enumerate(S.class_schedule(cfg, "train", 8)):
        rendered = S.generate_group(cfg, "train", index, common)
        per_image = [collections.Counter(o["class"] for o in r.objects) for r in rendered]
        assert all(c[common] == 1 for c in per_image)           # the common object everywhere
        uses = collections.Counter(k for c in per_image for k in c if k != common)
        assert all(1 <= n <= 2 for n in uses.values())          # distractors in 1 or 2 images
        assert all(max(c.values()) == 1 for c in per_image)     # one object per class


def _auc(pos, neg):
    """Probability that a common object's value exceeds a distractor's (Mann-Whitney)."""
    pos, neg = np.asarray(pos, float), np.asarray(neg, float)
    allv = np.concatenate([pos, neg])
    ranks = np.argsort(np.argsort(allv, kind="stable"), kind="stable").astype(float) + 1
    for v in np.unique(allv):                  # average ranks of ties
        ranks[allv == v] = ranks[allv == v].mean()
    return (ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg))


@pytest.mark.slow
@pytest.mark.parametrize("placement", S.PLACEMENTS)
def test_a_single_image_gives_no_cue_to_the_common_object(placement):
    """Over many groups, every per-object quantity a single image shows has the same
    distribution for the common object and the distractors (AUC near 0.5), and every class is
    the common one equally often."""
    cfg = S.Config(height=48, width=96, placement=placement)
    n_groups = 60
    schedule = S.class_schedule(cfg, "train", n_groups)
    assert collections.Counter(schedule) == {c: n_groups // 6 for c in range(6)}
    feats = {True: collections.defaultdict(list), False: collections.defaultdict(list)}
    distractor_classes = collections.Counter()
    n_objects = collections.Counter()
    ch = np.array([cfg.width / 2, cfg.height / 2])
    for index, common in enumerate(schedule):
        for r in S.generate_group(cfg, "train", index, common):
            lab = cv2.cvtColor(r.image, cv2.COLOR_BGR2Lab).astype(float)
            n_objects[len(r.objects)] += 1
            for j, o in enumerate(r.objects):
                f = feats[o["common"]]
                region = r.labels == j + 1
                ring = (cv2.dilate(region.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0) & (r.labels == 0)
                f["visible area"].append(region.sum())
                f["visible share"].append(region.sum() / o["area"])
                f["contrast"].append(np.linalg.norm(lab[region].mean(0) - lab[ring].mean(0)))
                f["centre distance"].append(np.linalg.norm(np.array([o["cx"], o["cy"]]) - ch))
                f["depth rank"].append(o["depth"] / (len(r.objects) - 1))
                f["list position"].append(j / (len(r.objects) - 1))
                f["class"].append(o["class"])
                if not o["common"]:
                    distractor_classes[o["class"]] += 1
    for name in feats[True]:
        if name == "class":
            continue
        auc = _auc(feats[True][name], feats[False][name])
        assert 0.42 < auc < 0.58, (name, auc)
        ratio = np.mean(feats[True][name]) / np.mean(feats[False][name])
        if name in ("visible area", "contrast", "centre distance"):
            assert 0.9 < ratio < 1.1, (name, ratio)
    # every class is a distractor about equally often, and common in 1/C of the groups
    shares = np.array([distractor_classes[c] for c in range(6)]) / sum(distractor_classes.values())
    assert np.all(np.abs(shares - 1 / 6) < 0.04), shares
    common_share = np.bincount(feats[True]["class"], minlength=6) / len(feats[True]["class"])
    assert np.allclose(common_share, 1 / 6)
    # images hold 2 or 3 objects, both often: the count says nothing either
    assert set(n_objects) == {2, 3} and min(n_objects.values()) > 0.3 * sum(n_objects.values())


def test_rerun_is_skipped_and_changed_parameters_regenerate(tmp_path):
    out = tmp_path / "b"
    assert S.generate(out, SMALL, 2, 0, workers=1, progress=False)
    before = _tree_digest(out)
    assert not S.generate(out, SMALL, 2, 0, workers=1, progress=False)
    assert _tree_digest(out) == before
    assert S.generate(out, SMALL, 1, 1, workers=1, progress=False)
    assert len(list((out / "train" / "Image").iterdir())) == 1
    assert len(list((out / "test" / "Image").iterdir())) == 1
    # a missing file makes the output incomplete: regenerated
    victim = next((out / "test" / "GroundTruth").rglob("*.png"))
    victim.unlink()
    assert S.generate(out, SMALL, 1, 1, workers=1, progress=False)
    assert victim.is_file()


def test_foreign_folder_is_refused(tmp_path):
    (tmp_path / "x" / "train").mkdir(parents=True)
    with pytest.raises(UserError, match="no manifest"):
        S.generate(tmp_path / "x", SMALL, 1, 0, workers=1, progress=False)


def test_cli(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["synthetic", "--out", str(out), "--train-groups", "2", "--test-groups", "1",
                 "--size", "32x64", "--seed", "5", "--classes", "4", "--workers", "1"]) == 0
    m = json.loads((out / "manifest.json").read_text())
    assert m["seed"] == 5 and m["size"] == [32, 64]
    assert m["classes"] == ["disk", "square", "triangle", "cross"]
    assert read_image(next((out / "train" / "Image").rglob("*.png"))).shape == (32, 64, 3)
    for bad, msg in ((["--size", "32by64"], "HxW"), (["--classes", "3", "--group-size", "6"], "too few"),
                     (["--classes", "9"], "between")):
        with pytest.raises(SystemExit) as e:
            main(["synthetic", "--out", str(tmp_path / "bad"), "--train-groups", "1"] + bad)
        assert e.value.code == 2
        assert msg in capsys.readouterr().err


def test_anchored_common_object_recurs_in_place_across_the_group():
    """anchored: the common object sits near one place in all K images (the group cue the
    paper's position-wise group block can use); a free placement has no such cue."""
    spread = {}
    for placement in S.PLACEMENTS:
        cfg = S.Config(height=64, width=128, placement=placement)
        sds = []
        for index, common in enumerate(S.class_schedule(cfg, "test", 30)):
            pts = [(o["cx"] / cfg.width, o["cy"] / cfg.height)
                   for r in S.generate_group(cfg, "test", index, common) for o in r.objects if o["common"]]
            sds.append(np.std(np.asarray(pts), axis=0).mean())
        spread[placement] = np.mean(sds)
    assert spread["anchored"] < 0.06 and spread["free"] > 0.15, spread
