"""Training groups: exact nearest neighbours, near-duplicates, same-class restriction, CLI."""
import cv2
import numpy as np
import pytest

from data_prep import synthetic as S
from data_prep import train_groups as T
from data_prep.__main__ import main
from data_prep.datasets import Item
from data_prep.descriptors import describe_files
from core.grouplist import read_group_list


def _reference(x, k):
    """Brute force in float64 with ties broken by index."""
    x = x.astype(np.float64)
    d = ((x[:, None, :] - x[None, :, :]) ** 2).sum(axis=2)
    np.fill_diagonal(d, np.inf)
    return np.array([np.lexsort((np.arange(len(x)), row))[:k] for row in d])


@pytest.mark.parametrize("chunk_rows", [None, 7])
def test_nearest_neighbours_equal_brute_force(chunk_rows):
    rng = np.random.default_rng(1)
    x = rng.random((300, 40)).astype(np.float32)
    x[50] = x[10]                      # exact duplicates: ties broken by index
    x[90] = x[10]
    nn = T.nearest_neighbours(x, 4, chunk_rows=chunk_rows)
    assert nn.shape == (300, 4)
    assert np.array_equal(nn, _reference(x, 4))
    assert nn[10][:2].tolist() == [50, 90] and nn[50][:2].tolist() == [10, 90]
    part = T.nearest_neighbours(x, 4, chunk_rows=chunk_rows, rows=(45, 101))
    assert np.array_equal(part, nn[45:101])


def test_hand_computed_neighbours_on_a_line():
    x = np.array([[0.0], [1.0], [3.0], [7.0], [7.5]], np.float32)
    assert T.nearest_neighbours(x, 2).tolist() == [[1, 2], [0, 2], [1, 0], [4, 2], [3, 2]]


def test_too_few_images_keep_what_exists():
    x = np.zeros((3, 2), np.float32)
    assert T.nearest_neighbours(x, 4).shape == (3, 2)
    lists, short = T.neighbour_lists(x, 4)
    assert short == 3 and lists[0] == [1, 2, 1, 2]


@pytest.mark.slow
def test_near_duplicates_find_each_other(tmp_path):
    """Five scenes, each in five slightly altered copies: every image's 4 nearest neighbours
    are the other copies of its own scene (real descriptors of real files)."""
    paths, family = [], []
    cfg = S.Config(height=96, width=96)
    for f in range(5):
        base = S.generate_group(cfg, "train", f, f % 6)[0].image.astype(np.int16)
        variants = [base, base + 6, base - 5, np.roll(base, 2, axis=1),
                    cv2.GaussianBlur(base.astype(np.uint8), (3, 3), 0).astype(np.int16)]
        for v, img in enumerate(variants):
            p = tmp_path / f"s{f}_{v}.png"
            cv2.imwrite(str(p), np.clip(img, 0, 255).astype(np.uint8))
            paths.append(p)
            family.append(f)
    desc = describe_files(paths, workers=2, progress=False)
    nn = T.nearest_neighbours(desc, 4)
    family = np.array(family)
    for i, row in enumerate(nn):
        assert sorted(row.tolist()) == sorted(set(np.nonzero(family == family[i])[0]) - {i})


def _items(n_per_class, classes):
    return [Item(c, f"{c}_{i}", f"Image/{c}/{c}_{i}.png", f"GroundTruth/{c}/{c}_{i}.png")
            for c in classes for i in range(n_per_class)]


def test_same_class_restriction_and_group_layout():
    rng = np.random.default_rng(2)
    items = _items(6, ["a", "b", "c"])
    # classes interleaved in descriptor space, so unrestricted neighbours cross classes
    desc = rng.random((len(items), 8)).astype(np.float32)
    free, _ = T.build_train_groups(items, desc, k=4)
    assert any(len({m.split("/")[1] for m in g["images"]}) > 1 for g in free)
    groups, short = T.build_train_groups(items, desc, k=4, same_class=True)
    assert short == 0 and len(groups) == len(items)
    for it, g in zip(items, groups):
        assert g["group"] == f"{it.group}/{it.name}"
        assert len(g["images"]) == 5 and len(set(g["images"])) == 5
        assert g["images"][0] == it.image                 # the query image comes first
        assert {p.split("/")[1] for p in g["images"]} == {it.group}
        assert [m.replace("GroundTruth", "Image") for m in g["masks"]] == g["images"]
    # within a class the neighbours are the exact nearest ones of that class
    a = [i for i, it in enumerate(items) if it.group == "a"]
    ref = _reference(desc[a], 4)
    for local, i in enumerate(a):
        assert groups[i]["images"][1:] == [items[a[j]].image for j in ref[local]]


def test_small_class_repeats_its_images():
    items = _items(3, ["a"]) + _items(6, ["b"])
    desc = np.arange(len(items) * 2, dtype=np.float32).reshape(-1, 2)
    groups, short = T.build_train_groups(items, desc, k=4, same_class=True)
    assert short == 3
    g = groups[0]
    assert len(g["images"]) == 5 and set(g["images"]) == {it.image for it in items[:3]}


def test_deterministic(tmp_path):
    rng = np.random.default_rng(3)
    items = _items(20, ["x", "y"])
    desc = rng.random((len(items), 16)).astype(np.float32)
    from core.grouplist import write_group_list
    for name in ("one.jsonl", "two.jsonl"):
        write_group_list(tmp_path / name, T.build_train_groups(items, desc, 4)[0])
    assert (tmp_path / "one.jsonl").read_bytes() == (tmp_path / "two.jsonl").read_bytes()


def test_cli_on_the_synthetic_layout(tmp_path):
    S.generate(tmp_path / "syn", S.Config(height=32, width=64), 3, 0, workers=1, progress=False)
    out = tmp_path / "lists" / "train.jsonl"
    assert main(["train-groups", "--dataset", "synthetic", "--root", str(tmp_path / "syn" / "train"),
                 "--out", str(out), "--same-class", "--workers", "2"]) == 0
    groups = read_group_list(out)
    assert len(groups) == 15
    for g in groups:
        assert len(g["images"]) == 5 and len(set(g["images"])) == 5
        assert {p.split("/")[1] for p in g["images"]} == {g["group"].split("/")[0]}
        assert all((tmp_path / "syn" / "train" / m).is_file() for m in g["masks"])
    assert (tmp_path / "lists" / "train.descriptors.h5").is_file()
    assert T.default_cache_path(out) == tmp_path / "lists" / "train.descriptors.h5"


def test_cli_rejects_bad_arguments(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["train-groups", "--dataset", "synthetic", "--root", str(tmp_path),
              "--out", str(tmp_path / "x.jsonl"), "--neighbours", "0"])
    assert e.value.code == 2
    assert "--neighbours" in capsys.readouterr().err
