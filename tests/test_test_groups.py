"""Test-time groups: full coverage, exact size, determinism, small groups, and the CLI."""
import collections
import json
import os
import pathlib
import subprocess
import sys

import cv2
import numpy as np
import pytest

from data_prep.datasets import Dataset, Item, load_dataset
from data_prep.test_groups import group_seed, make_test_groups, sample_subgroups
from core.grouplist import read_group_list



@pytest.mark.parametrize("n", [1, 2, 4, 5, 6, 10, 11, 17])
def test_cover_every_image_with_groups_of_exactly_k(n):
    names = [f"img{i:02d}" for i in range(n)]
    subs = sample_subgroups(names, 5, seed=3, group="g")
    assert len(subs) == -(-n // 5)                      # ceil(n / 5) groups, no more
    assert all(len(s) == 5 for s in subs)
    assert set().union(*subs) == set(names)             # every image covered
    if n >= 5:
        assert all(len(set(s)) == 5 for s in subs)      # no repeat within a group
        # each group but the last is drawn from images not covered before it
        seen = set()
        for s in subs[:-1]:
            assert not seen & set(s)
            seen |= set(s)
        new = set(subs[-1]) - seen
        assert len(new) == n - 5 * (len(subs) - 1)      # the last brings the rest ...
        assert set(subs[-1]) - new <= seen              # ... filled up with covered ones
    else:
        counts = collections.Counter(subs[0])           # repeats spread evenly
        assert set(counts.values()) <= {5 // n, -(-5 // n)}


def test_specific_small_groups():
    assert sample_subgroups(["a"], 5) == [["a"] * 5]
    two = sample_subgroups(["a", "b"], 5, seed=1, group="x")[0]
    assert sorted(collections.Counter(two).values()) == [2, 3]
    five = sample_subgroups(list("abcde"), 5, seed=1, group="x")
    assert len(five) == 1 and sorted(five[0]) == list("abcde")
    six = sample_subgroups(list("abcdef"), 5, seed=1, group="x")
    assert len(six) == 2 and len(set(six[0]) | set(six[1])) == 6
    eleven = sample_subgroups(list("abcdefghijk"), 5, seed=1, group="x")
    assert len(eleven) == 3 and len(set(eleven[0] + eleven[1])) == 10
    ones = sample_subgroups(list("abc"), 1)
    assert all(len(x) == 1 for x in ones) and sorted(x[0] for x in ones) == list("abc")
    with pytest.raises(ValueError):
        sample_subgroups([], 5)
    with pytest.raises(ValueError):
        sample_subgroups(["a"], 0)


def test_draws_are_seeded_per_group_and_reproducible():
    names = [f"{i}" for i in range(23)]
    a = sample_subgroups(names, 5, seed=0, group="cats")
    assert a == sample_subgroups(list(names), 5, seed=0, group="cats")
    assert a != sample_subgroups(names, 5, seed=1, group="cats")
    assert a != sample_subgroups(names, 5, seed=0, group="dogs")
    # the seed is SHA-256 based, so it is the same in every process (hash() is salted)
    assert group_seed(0, "cats") == int.from_bytes(
        __import__("hashlib").sha256(b"0\0cats").digest()[:8], "big")
    code = ("from data_prep.test_groups import sample_subgroups;"
            "print(sample_subgroups([str(i) for i in range(23)], 5, 0, 'cats'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONHASHSEED="123"))
    assert out.stdout.strip() == repr(a)
    # a draw is a random choice: over many seeds each image opens the first group about
    # equally often (23 images, 2300 draws: 100 expected each)
    first = collections.Counter(sample_subgroups(names, 5, seed=s, group="g")[0][0]
                                for s in range(2300))
    assert len(first) == 23 and max(first.values()) < 150 and min(first.values()) > 55


def _dataset(sizes, masks=True):
    groups = {}
    for g, n in sizes.items():
        groups[g] = [Item(g, f"{i}", f"Image/{g}/{i}.jpg",
                          (f"GroundTruth/{g}/{i}.png" if masks and i % 3 else None))
                     for i in range(n)]
    return Dataset("t", pathlib.Path("."), groups)


def test_make_test_groups_keeps_dataset_groups_and_masks():
    ds = _dataset({"a": 7, "b": 2})
    gl = make_test_groups(ds, 5, seed=0)
    assert [g["group"] for g in gl] == ["a", "a", "b"]
    for g in gl:
        assert len(g["images"]) == len(g["masks"]) == 5
        for img, m in zip(g["images"], g["masks"]):
            i = int(img.rsplit("/", 1)[1][:-4])
            assert m == (f"GroundTruth/{g['group']}/{i}.png" if i % 3 else None)
    covered = {img for g in gl for img in g["images"]}
    assert covered == {it.image for it in ds.items()}
    nomask = make_test_groups(_dataset({"a": 3}, masks=False), 5)
    assert nomask[0]["masks"] is None


@pytest.mark.slow
def test_cli_groups(tmp_path, icoseg_dev):
    out = tmp_path / "lists" / "icoseg.jsonl"
    env = dict(os.environ)
    cmd = [sys.executable, "-m", "data_prep", "groups", "--dataset", "icoseg", "--root",
           str(icoseg_dev), "--out", str(out), "--seed", "7"]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr
    assert "icoseg: 8 groups, 100 images, 95 masks" in p.stderr
    groups = read_group_list(out)
    ds = load_dataset("icoseg", icoseg_dev)
    # ceil(n / 5) groups per dataset group of 5 11 15 25 10 11 18 5 images: 1+3+3+5+2+3+4+1
    assert len(groups) == 22
    assert {p for g in groups for p in g["images"]} == {it.image for it in ds.items()}
    assert sum(m is None for g in groups for m in g["masks"]) >= 5
    for g in groups:
        assert len(g["images"]) == 5 and all((icoseg_dev / p).is_file() for p in g["images"])
    first = out.read_text()
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    assert out.read_text() == first                      # same seed, same file
    bad = subprocess.run(cmd[:-2] + ["--group-size", "0"], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and bad.stderr.startswith("error: --group-size")


def test_cli_groups_on_a_users_folder(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(3):
        (tmp_path / "pics").mkdir(exist_ok=True)
        cv2.imwrite(str(tmp_path / "pics" / f"{i}.jpg"), rng.integers(0, 255, (8, 8, 3), np.uint8))
    out = tmp_path / "g.jsonl"
    p = subprocess.run([sys.executable, "-m", "data_prep", "groups", "--dataset", "folder",
                        "--root", str(tmp_path / "pics"), "--out", str(out)],
                       capture_output=True, text=True, env=dict(os.environ))
    assert p.returncode == 0, p.stderr
    (line,) = out.read_text().splitlines()
    g = json.loads(line)
    assert g["group"] == "pics" and "masks" not in g and len(g["images"]) == 5
    assert set(g["images"]) == {"0.jpg", "1.jpg", "2.jpg"}
