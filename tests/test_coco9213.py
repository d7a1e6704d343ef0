"""COCO9213 builder on a tiny COCO instances file read by the real pycocotools."""
import hashlib
import json
import os
import pathlib
import subprocess
import sys

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from data_prep.coco9213 import allocate, build_coco9213
from data_prep.datasets import load_dataset
from core.errors import UserError
from core.imageio import read_mask

H, W = 30, 40          # image area 1200 px: min_fraction 0.10 means a 120 px instance


def box(y0, y1, x0, x1):
    m = np.zeros((H, W), np.uint8)
    m[y0:y1, x0:x1] = 1
    return m


def rle(m):
    r = mask_utils.encode(np.asfortranarray(m))
    return {"size": r["size"], "counts": r["counts"].decode("ascii")}


# image id -> [(category, mask, iscrowd)]; category 1 person, 2 dog, 3 traffic light
SCENES = {
    1: [(2, box(0, 10, 0, 20), 0), (1, box(20, 30, 0, 10), 0)],    # dog 200 px: candidate
    2: [(2, box(0, 10, 0, 10), 0), (2, box(0, 10, 20, 30), 0),
        (1, box(20, 30, 0, 15), 0)],                                # dog 2x100 < 120: no
    3: [(1, box(0, 15, 0, 20), 1)],                                 # person crowd: no
    4: "polygon",                                                   # person polygon 400 px
    5: [(3, box(0, 15, 0, 10), 0)],                                 # traffic light 150 px
    6: [(2, box(0, 10, 0, 13), 0), (2, box(15, 25, 20, 33), 0),
        (1, box(26, 30, 0, 10), 0)],                                # dog 130 + 130: candidate
    7: [(1, box(0, 20, 0, 10), 0)],                                 # person, file missing: no
    8: [],                                                          # no annotations
    9: [(1, box(5, 30, 0, 10), 0)],                                 # person 250 px
    10: [(2, box(0, 30, 0, 10), 0), (1, box(0, 5, 20, 40), 0)],     # dog 300 px
}


def write_coco(tmp_path):
    images, anns = [], []
    rng = np.random.default_rng(0)
    img_dir = tmp_path / "coco" / "train2017"
    img_dir.mkdir(parents=True)
    for img_id, objs in SCENES.items():
        name = f"{img_id:012d}.jpg"
        images.append({"id": img_id, "file_name": name, "height": H, "width": W})
        if img_id != 7:
            cv2.imwrite(str(img_dir / name), rng.integers(0, 255, (H, W, 3), np.uint8))
        if objs == "polygon":
            anns.append({"id": len(anns) + 1, "image_id": img_id, "category_id": 1, "iscrowd": 0,
                         "segmentation": [[5, 5, 25, 5, 25, 25, 5, 25]], "area": 400.0,
                         "bbox": [5, 5, 20, 20]})
            continue
        for cat, m, crowd in objs:
            anns.append({"id": len(anns) + 1, "image_id": img_id, "category_id": cat,
                         "iscrowd": crowd, "segmentation": rle(m), "area": float(m.sum()),
                         "bbox": [0, 0, 1, 1]})
    cats = [{"id": 1, "name": "person", "supercategory": "person"},
            {"id": 2, "name": "dog", "supercategory": "animal"},
            {"id": 3, "name": "traffic light", "supercategory": "outdoor"}]
    ann_file = tmp_path / "coco" / "annotations" / "instances_train2017.json"
    ann_file.parent.mkdir()
    ann_file.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return tmp_path / "coco", ann_file


def test_allocate_shares_as_evenly_as_counts_allow():
    assert allocate({"a": 10, "b": 3, "c": 7}, 15) == {"a": 6, "b": 3, "c": 6}
    assert allocate({"a": 10, "b": 3, "c": 7}, 16) == {"a": 7, "b": 3, "c": 6}
    assert allocate({"a": 2, "b": 1}, 10) == {"a": 2, "b": 1}
    assert allocate({"a": 5, "b": 5}, 1) == {"a": 1, "b": 0}


def test_build_selects_by_the_rule_and_writes_union_masks(tmp_path):
    coco_root, ann = write_coco(tmp_path)
    out = tmp_path / "coco9213"
    sel = build_coco9213(coco_root, ann, out, n_groups=2, n_images=4, progress=False)
    # candidates: dog {1, 6, 10}, person {4, 9}, traffic light {5}: the two largest groups,
    # 2 images each; the dogs are the two with the smallest SHA-256 of their id
    dogs = sorted(["1", "6", "10"], key=lambda s: hashlib.sha256(s.encode()).digest())[:2]
    assert sel["groups"] == {"dog": {"category_id": 2, "image_ids": sorted(int(d) for d in dogs)},
                             "person": {"category_id": 1, "image_ids": [4, 9]}}
    ds = load_dataset("coco9213", out)
    assert ds.summary() == "coco9213: 2 groups, 4 images, 4 masks"
    assert [it.name for it in ds.groups["person"]] == ["000000000004", "000000000009"]
    for it in ds.items():     # images copied byte for byte
        src = coco_root / "train2017" / pathlib.Path(it.image).name
        assert (out / it.image).read_bytes() == src.read_bytes()
    np.testing.assert_array_equal(read_mask(out / "gt/person/000000000009.png"), box(5, 30, 0, 10))
    poly = read_mask(out / "gt/person/000000000004.png")
    assert set(np.unique(poly)) == {0.0, 1.0}
    assert abs(poly.sum() - 400) <= 45 and poly[:4].sum() == 0 and poly[27:].sum() == 0
    assert dogs == ["10", "1"]                   # so image 6 is left out here
    np.testing.assert_array_equal(read_mask(out / "gt/dog/000000000010.png"),  # person left out
                                  box(0, 30, 0, 10))
    # a third group and all images: the lone traffic light joins, everything is taken
    sel = build_coco9213(coco_root, ann, tmp_path / "all", n_groups=3, n_images=100,
                         progress=False)
    assert {g: v["image_ids"] for g, v in sel["groups"].items()} == {
        "person": [4, 9], "dog": [1, 6, 10], "traffic light": [5]}
    assert load_dataset("coco9213", tmp_path / "all").summary() == \
        "coco9213: 3 groups, 6 images, 6 masks"
    np.testing.assert_array_equal(    # the union of two dog instances, not the person
        read_mask(tmp_path / "all/gt/dog/000000000006.png"),
        box(0, 10, 0, 13) | box(15, 25, 20, 33))


def test_build_refuses_a_folder_of_another_selection(tmp_path):
    coco_root, ann = write_coco(tmp_path)
    out = tmp_path / "o"
    build_coco9213(coco_root, ann, out, n_groups=2, n_images=4, progress=False)
    build_coco9213(coco_root, ann, out, n_groups=2, n_images=4, progress=False)   # resume: fine
    with pytest.raises(UserError, match="other parameters"):
        build_coco9213(coco_root, ann, out, n_groups=2, n_images=3, progress=False)
    with pytest.raises(UserError, match="annotation file not found"):
        build_coco9213(coco_root, tmp_path / "none.json", tmp_path / "x", progress=False)
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(UserError, match="not a COCO instances file"):
        build_coco9213(coco_root, tmp_path / "bad.json", tmp_path / "x", progress=False)


def test_cli(tmp_path):
    coco_root, ann = write_coco(tmp_path)
    env = dict(os.environ)
    cmd = [sys.executable, "-m", "data_prep", "coco9213", "--coco-root", str(coco_root),
           "--annotations", str(ann), "--out", str(tmp_path / "out"), "--groups", "2",
           "--images", "4"]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[-1] == "coco9213: 2 groups, 4 images, 4 masks"
    p = subprocess.run(cmd[:5] + [str(tmp_path / "nope")] + cmd[6:], capture_output=True,
                       text=True, env=env)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "not found" in p.stderr
