"""Dataset readers on small layouts written here, every quirk counted; the real iCoseg subset."""
import collections
import os
import pathlib
import struct
import subprocess
import sys
import zlib

import cv2
import numpy as np
import pytest

from data_prep import datasets as D
from data_prep import msrc
from core.errors import UserError
from core.imageio import read_mask

from core.layout import PROJECT_ROOT as ROOT
RNG = np.random.default_rng(0)


# ---------------------------------------------------------------- writing fixtures
def put(path, data):
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def encode(ext, img, params=()):
    ok, buf = cv2.imencode(ext, img, list(params))
    assert ok
    return buf.tobytes()


def photo(h=20, w=30):
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


def binary(h=20, w=30):
    m = np.zeros((h, w), np.uint8)
    m[h // 4: 3 * h // 4, w // 3: 2 * w // 3] = 255
    return m


def palette_png(idx, palette):
    """A colour-type-3 PNG (cv2 cannot write one): idx (H, W) uint8 indices, palette RGB tuples."""
    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))
    h, w = idx.shape
    raw = b"".join(b"\x00" + row.tobytes() for row in idx)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 3, 0, 0, 0))
            + chunk(b"PLTE", bytes(c for rgb in palette for c in rgb))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def paired(root, groups, img_dir="Image", mask_dir="GroundTruth", img_ext=".jpg"):
    """groups: {group: [stems]}; every image gets a same-size PNG mask."""
    for g, stems in groups.items():
        for s in stems:
            put(root / img_dir / g / f"{s}{img_ext}", encode(img_ext, photo()))
            put(root / mask_dir / g / f"{s}.png", encode(".png", binary()))
    return root


def names(ds):
    return {g: [it.name for it in items] for g, items in ds.groups.items()}


# ---------------------------------------------------------------- the header probe
def test_probe_reads_sizes_and_mask_encodings(tmp_path):
    img = photo(37, 53)
    cases = {
        "a.jpg": encode(".jpg", img),
        "p.jpg": encode(".jpg", img, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
        "a.png": encode(".png", img),
        "a.bmp": encode(".bmp", img),
        "g.bmp": encode(".bmp", img[:, :, 0]),
    }
    for name, data in cases.items():
        info, problem = D.probe_image(put(tmp_path / name, data))
        assert problem is None and (info.width, info.height) == (53, 37), name
    assert D.probe_image(tmp_path / "p.jpg")[0].kind == "jpeg"
    assert D.probe_image(tmp_path / "g.bmp")[0].bits == 8
    bilevel = put(tmp_path / "b.png", encode(".png", binary(37, 53), [cv2.IMWRITE_PNG_BILEVEL, 1]))
    info, _ = D.probe_image(bilevel)
    assert (info.bits, info.palette, info.width) == (1, False, 53)
    pal = put(tmp_path / "pal.png", palette_png(np.zeros((5, 7), np.uint8), [(0, 0, 0)]))
    assert D.probe_image(pal)[0] == D.FileInfo("png", 7, 5, bits=8, palette=True)
    assert D.probe_image(put(tmp_path / "e.jpg", b"")) == (None, D.EMPTY_FILE)
    assert D.probe_image(put(tmp_path / "h.jpg", b"<html>404</html>")) == (None, D.UNREADABLE)
    # the first 100 bytes hold the JFIF and DQT segments but not the frame header
    cut = cases["a.jpg"][:100]
    assert cut.find(b"\xff\xc0") < 0
    assert D.probe_image(put(tmp_path / "c.jpg", cut)) == (None, D.UNREADABLE)


# ---------------------------------------------------------------- every quirk in one layout
def test_icoseg_layout_counts_every_quirk(tmp_path):
    r = tmp_path / "iCoseg"
    # group "g 1, x!": clean pair, 1-bit mask, JPEG mask, mask of another size, palette mask
    g1 = "g 1, x!"
    for s in ("a", "b", "c", "d", "e"):
        put(r / "images" / g1 / f"{s}.jpg", encode(".jpg", photo()))
    put(r / "ground_truth" / g1 / "a.png", encode(".png", binary()))
    put(r / "ground_truth" / g1 / "b.png", encode(".png", binary(), [cv2.IMWRITE_PNG_BILEVEL, 1]))
    put(r / "ground_truth" / g1 / "c.jpg", encode(".jpg", binary()))
    put(r / "ground_truth" / g1 / "d.png", encode(".png", binary(10, 15)))
    put(r / "ground_truth" / g1 / "e.png", palette_png((binary() > 0).astype(np.uint8),
                                                        [(0, 0, 0), (255, 255, 255)]))
    put(r / "ground_truth" / g1 / "orphan.png", encode(".png", binary()))      # no image
    put(r / "images" / g1 / "Thumbs.db", b"\xd0\xcf\x11\xe0" + bytes(60))
    put(r / "images" / g1 / ".DS_Store", b"\0\0\0\1Bud1")
    put(r / "images" / g1 / "._a.jpg", b"\0\5\26\7")                            # AppleDouble
    put(r / "images" / g1 / "old" / "z.jpg", encode(".jpg", photo()))           # nested folder
    # group g2: bad files, an image without mask, a PNG named .jpg, a duplicate stem
    put(r / "images" / "g2" / "empty.jpg", b"")
    put(r / "images" / "g2" / "html.jpg", b"<html><body>not found</body></html>")
    put(r / "images" / "g2" / "cut.jpg", encode(".jpg", photo())[:100])
    put(r / "images" / "g2" / "png.jpg", encode(".png", photo()))
    put(r / "images" / "g2" / "png.png", encode(".png", photo()))
    put(r / "images" / "g2" / "nomask.jpg", encode(".jpg", photo()))
    put(r / "ground_truth" / "g2" / "png.png", encode(".png", binary()))
    put(r / "ground_truth" / "g2" / "png.jpg", encode(".jpg", binary()))        # lossless wins
    # group g3: nothing usable; a mask folder without image folder; a loose image
    put(r / "images" / "g3" / "Thumbs.db", bytes(10))
    put(r / "ground_truth" / "g4" / "m.png", encode(".png", binary()))
    put(r / "images" / "loose.jpg", encode(".jpg", photo()))

    ds = D.load_dataset("icoseg", r)
    assert names(ds) == {g1: ["a", "b", "c", "d", "e"], "g2": ["nomask", "png"]}
    assert ds.issues == collections.Counter({
        D.NON_IMAGE: 4, D.NESTED: 1, D.EMPTY_FILE: 1, D.UNREADABLE: 2, D.WRONG_EXT: 1,
        D.DUPLICATE: 2, D.NO_MASK: 1, D.NO_IMAGE: 2, D.JPEG_MASK: 1, D.ONE_BIT: 1,
        D.PALETTE: 1, D.SIZE_DIFF: 1, D.EMPTY_GROUP: 1, D.OUTSIDE: 1})
    by = {(it.group, it.name): it for it in ds.items()}
    assert by[(g1, "c")].mask == f"ground_truth/{g1}/c.jpg"
    assert by[("g2", "png")].image == "images/g2/png.jpg"       # first name in order
    assert by[("g2", "png")].mask == "ground_truth/g2/png.png"  # PNG preferred over JPEG
    assert by[("g2", "nomask")].mask is None
    for it in ds.items():   # every kept path exists and every mask decodes to 0/1
        assert (ds.root / it.image).is_file()
        if it.mask:
            m = read_mask(ds.root / it.mask)
            assert m.max() > 0.9 and m.min() < 0.1
    s = ds.summary()
    assert s.startswith("icoseg: 2 groups, 7 images, 6 masks (")
    assert "images without mask: 1" in s and "1-bit masks: 1" in s and "\n" not in s
    assert names(D.load_dataset("icoseg", r)) == names(ds)      # deterministic


def test_verify_drops_cut_data_the_header_check_cannot_see(tmp_path):
    r = tmp_path / "d"
    paired(r, {"g": ["ok", "cutimg", "cutmask"]}, "images", "ground_truth")
    full = (r / "images/g/cutimg.jpg").read_bytes()
    (r / "images/g/cutimg.jpg").write_bytes(full[: len(full) * 2 // 3])
    png = (r / "ground_truth/g/cutmask.png").read_bytes()
    (r / "ground_truth/g/cutmask.png").write_bytes(png[: len(png) // 2])
    ds = D.load_dataset("icoseg", r)
    assert len(ds) == 3 and not ds.issues                  # headers are intact
    v = D.verify_dataset(ds, progress=False)
    assert names(v) == {"g": ["cutmask", "ok"]}
    assert [it.mask for it in v.groups["g"]] == [None, "ground_truth/g/ok.png"]
    assert v.issues == collections.Counter({D.TRUNCATED: 2, D.NO_MASK: 1})


def test_verify_counts_size_difference_for_formats_without_parsed_header(tmp_path):
    r = tmp_path / "d"
    put(r / "images/g/a.tif", encode(".tif", photo(20, 30)))
    put(r / "ground_truth/g/a.png", encode(".png", binary(10, 30)))
    ds = D.load_dataset("msrc", r)
    assert D.SIZE_DIFF not in ds.issues
    assert D.verify_dataset(ds, progress=False).issues[D.SIZE_DIFF] == 1


# ---------------------------------------------------------------- each reader's layout
@pytest.mark.parametrize("name,img_dir,mask_dir", [
    ("cosal2015", "Image", "GroundTruth"), ("coca", "image", "binary"),
    ("cosod3k", "Image", "GroundTruth"), ("coco9213", "img", "gt"),
    ("coco9213", "Image", "GroundTruth"), ("msrc", "images", "ground_truth"),
    ("msrc", "Image", "GroundTruth"), ("synthetic", "Image", "GroundTruth"),
    ("icoseg", "images", "ground_truth")])
def test_paired_layouts(tmp_path, name, img_dir, mask_dir):
    r = paired(tmp_path / name, {"b grp": ["2", "1"], "a grp": ["x"]}, img_dir, mask_dir,
               ".bmp" if name == "msrc" else ".jpg")
    ds = D.load_dataset(name.upper(), r)
    assert ds.name == name and list(ds.groups) == ["a grp", "b grp"]
    assert names(ds) == {"a grp": ["x"], "b grp": ["1", "2"]}
    assert all(it.mask == f"{mask_dir}/{it.group}/{it.name}.png" for it in ds.items())
    assert ds.summary() == f"{name}: 2 groups, 3 images, 3 masks"


def test_masks_named_with_gt_suffix_and_missing_mask_folder(tmp_path):
    r = tmp_path / "msrc"
    put(r / "images/cow/1_1_s.bmp", encode(".bmp", photo()))
    put(r / "ground_truth/cow/1_1_s_GT.png", encode(".png", binary()))
    assert D.load_dataset("msrc", r).groups["cow"][0].mask == "ground_truth/cow/1_1_s_GT.png"
    put(r / "images/cow/2.bmp", encode(".bmp", photo()))
    put(r / "ground_truth/cow/2_gt.png", encode(".png", binary()))
    put(r / "ground_truth/cow/2.png", encode(".png", binary()))
    ds = D.load_dataset("msrc", r)
    assert [it.mask for it in ds.items()] == ["ground_truth/cow/1_1_s_GT.png",
                                              "ground_truth/cow/2.png"]
    assert ds.issues == {D.DUPLICATE: 1}
    put(tmp_path / "nomasks/Image/g/a.jpg", encode(".jpg", photo()))
    ds = D.load_dataset("cosal2015", tmp_path / "nomasks")
    assert ds.issues == collections.Counter({D.NO_MASK_DIR: 1, D.NO_MASK: 1})


def test_synthetic_is_read_per_split(tmp_path):
    for split in ("train", "test"):
        paired(tmp_path / split, {"shape": ["0", "1"]})
    with pytest.raises(UserError, match="pass .*test"):
        D.load_dataset("synthetic", tmp_path)
    assert len(D.load_dataset("synthetic", tmp_path / "test")) == 2


def test_folder_reader(tmp_path):
    flat = tmp_path / "my photos"
    for s in ("b", "a"):
        put(flat / f"{s}.jpg", encode(".jpg", photo()))
    put(flat / "Thumbs.db", bytes(8))
    ds = D.load_dataset("folder", flat)
    assert names(ds) == {"my photos": ["a", "b"]}
    assert all(it.mask is None for it in ds.items()) and ds.issues == {D.NON_IMAGE: 1}
    put(flat / "trip" / "c.png", encode(".png", photo()))
    put(flat / "empty" / "notes.txt", b"x")
    ds = D.load_dataset("folder", flat)
    assert names(ds) == {"my photos": ["a", "b"], "trip": ["c"]}
    assert ds.groups["trip"][0].image == "trip/c.png"
    assert ds.issues == {D.NON_IMAGE: 2, D.EMPTY_GROUP: 1}


def test_loader_errors(tmp_path):
    with pytest.raises(UserError, match="unknown dataset 'nope'"):
        D.load_dataset("nope", tmp_path)
    with pytest.raises(UserError, match="dataset folder not found"):
        D.load_dataset("icoseg", tmp_path / "missing")
    with pytest.raises(UserError, match="no image folder"):
        D.load_dataset("icoseg", tmp_path)
    put(tmp_path / "images/g/Thumbs.db", bytes(8))
    with pytest.raises(UserError, match=r"no usable images .*empty groups: 1"):
        D.load_dataset("icoseg", tmp_path)


# ---------------------------------------------------------------- MSRC-v2 raw release
def _msrc_gt(h, w, regions):
    """regions: [(class name, (y0, y1, x0, x1))] painted on grass, in order (BGR image)."""
    colour = {n: rgb for rgb, n in msrc.MSRC_CLASSES.items()}
    gt = np.zeros((h, w, 3), np.uint8)
    gt[:] = colour["grass"][::-1]
    for name, (y0, y1, x0, x1) in regions:
        gt[y0:y1, x0:x1] = colour[name][::-1] if name in colour else (1, 2, 3)
    return gt


def test_msrc_raw_conversion(tmp_path):
    raw = tmp_path / "MSRC_ObjCategImageDatabase_v2"
    gts = {   # group 1: cow 8x5=40 + 3x5=15 px beats sheep 4x5=20 px; group 2: stuff only
        "1_1_s": [("cow", (2, 10, 3, 8)), ("void", (0, 2, 0, 30)), ("horse", (12, 14, 0, 2))],
        "1_2_s": [("sheep", (0, 4, 10, 15)), ("cow", (5, 8, 20, 25)), ("unknown", (19, 20, 0, 1))],
        "1_3_s": [("sheep", (0, 1, 0, 1)), ("sky", (0, 10, 0, 30))],
        "2_1_s": [("sky", (0, 10, 0, 30))],
        "10_1_s": [("road", (0, 5, 0, 30)), ("car", (8, 12, 4, 9))],
    }
    for stem, regions in gts.items():
        put(raw / "Images" / f"{stem}.bmp", encode(".bmp", photo()))
        put(raw / "GroundTruth" / f"{stem}_GT.bmp", encode(".bmp", _msrc_gt(20, 30, regions)))
    put(raw / "Images" / "1_4_s.bmp", encode(".bmp", photo()))     # no ground truth
    put(raw / "Images" / "Thumbs.db", bytes(8))

    with pytest.raises(UserError, match="msrc-convert --root"):
        D.load_dataset("msrc-raw", raw)
    with pytest.raises(UserError, match="not in group sub-folders.*msrc-convert"):
        D.load_dataset("msrc", raw)

    conv, classes = msrc.convert_msrc_raw(raw, progress=False)
    assert classes == {"01_cow": "cow", "10_car": "car"}
    ds = D.load_dataset("msrc-raw", raw)
    assert ds.root == raw
    assert names(ds) == {"01_cow": ["1_1_s", "1_2_s"], "10_car": ["10_1_s"]}
    assert ds.groups["01_cow"][0].image == "cosal/images/01_cow/1_1_s.bmp"
    m = read_mask(raw / ds.groups["01_cow"][1].mask)
    want = np.zeros((20, 30), np.float32)
    want[5:8, 20:25] = 1
    np.testing.assert_array_equal(m, want)                         # the cow only, not the sheep
    assert (raw / ds.groups["01_cow"][0].image).read_bytes() == \
        (raw / "Images/1_1_s.bmp").read_bytes()
    assert conv.issues["images without the group's object"] == 1   # 1_3_s
    assert conv.issues["groups without an object class"] == 1      # group 2
    assert conv.issues["ground truths with unknown colours"] == 1
    assert conv.issues[D.NO_MASK] == 1 and conv.issues[D.NON_IMAGE] == 1

    # the command line writes the same layout
    p = run_cli("msrc-convert", "--root", raw, "--out", tmp_path / "cli")
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[:2] == ["01_cow: 2 images", "10_car: 1 images"]
    assert names(D.load_dataset("msrc", tmp_path / "cli")) == names(ds)


def test_msrc7_keeps_the_subset_classes_of_the_msrc_folder(tmp_path):
    # a converted MSRC folder (msrc-convert names groups "<number>_<class>") with two groups of
    # the 7-class list, two outside it and one whose name has no class part
    r = paired(tmp_path / "MSRC", {"01_cow": ["1_1_s", "1_2_s"], "05_aeroplane": ["5_1_s"],
                                   "03_sheep": ["3_1_s"], "13_flower": ["13_1_s", "13_2_s"],
                                   "misc": ["x"]},
               img_dir="images", mask_dir="ground_truth", img_ext=".bmp")
    full = D.load_dataset("msrc", r)
    sub = D.load_dataset("msrc7", r)
    assert len(full.groups) == 5 and len(full) == 7
    assert sub.name == "msrc7" and sub.root == r
    assert names(sub) == {"01_cow": ["1_1_s", "1_2_s"], "05_aeroplane": ["5_1_s"]}
    assert sub.groups["01_cow"][0].mask == "ground_truth/01_cow/1_1_s.png"
    assert sub.issues == {D.OUTSIDE_SUBSET: 3}
    assert "groups outside the subset: 3" in sub.summary()
    assert [D.msrc_group_class(g) for g in ("01_cow", "10_car", "misc", "x_car")] == \
        ["cow", "car", "misc", "x_car"]
    # the class list is a parameter; the layout and the shared folder are MSRC's
    assert names(D.read_msrc7(r, classes=("sheep",))) == {"03_sheep": ["3_1_s"]}
    from core.layout import DATASET_FOLDERS
    assert DATASET_FOLDERS["msrc7"] == DATASET_FOLDERS["msrc"]
    with pytest.raises(UserError, match="no usable images.*msrc7"):
        D.load_dataset("msrc7", paired(tmp_path / "other", {"03_sheep": ["a"]},
                                       img_dir="images", mask_dir="ground_truth"))


# ---------------------------------------------------------------- the real iCoseg subset
def test_icoseg_dev(icoseg_dev):
    ds = D.load_dataset("icoseg", icoseg_dev)
    assert len(ds.groups) == 8 and len(ds) == 100
    assert sum(it.mask is not None for it in ds.items()) == 95
    assert ds.issues == collections.Counter({D.ONE_BIT: 95, D.NO_MASK: 5, D.NON_IMAGE: 6})
    christ = next(g for g in ds.groups if g.startswith("043"))
    assert [it.mask is None for it in ds.groups[christ]].count(True) == 5
    assert list(ds.groups) == sorted(ds.groups)
    assert "015 Ferrari 599 GTB Fiorano-599-auTomoTiVe FreAk !" in ds.groups
    for it in ds.items():
        assert (icoseg_dev / it.image).is_file()

    five = D.load_dataset("icoseg5", icoseg_dev)
    assert len(five.groups) == 8 and len(five) == 40
    assert all(len(v) == 5 and all(it.mask for it in v) for v in five.groups.values())
    assert set(five.items()) <= set(ds.items())
    assert five.summary() == D.load_dataset("icoseg5", icoseg_dev).summary()
    assert five.issues[D.ONE_BIT] == 40
    # the rule, recomputed: the 5 masked images with the smallest SHA-256 of "<group>/<stem>"
    import hashlib
    masked = [it.name for it in ds.groups[christ] if it.mask]
    ranked = sorted(masked, key=lambda s: hashlib.sha256(f"{christ}/{s}".encode()).digest())
    want = sorted(ranked[:5])
    assert [it.name for it in five.groups[christ]] == want


# ---------------------------------------------------------------- command line
def run_cli(*args):
    env = dict(os.environ)
    return subprocess.run([sys.executable, "-m", "data_prep", *map(str, args)],
                          capture_output=True, text=True, env=env, cwd=ROOT)


@pytest.mark.slow
def test_cli_summary_and_errors(tmp_path):
    r = paired(tmp_path / "c", {"g": ["a", "b"]})
    p = run_cli("summary", "--dataset", "cosal2015", "--root", r, "--verify")
    assert p.returncode == 0 and p.stdout == "cosal2015: 1 groups, 2 images, 2 masks\n"
    put(tmp_path / "e/Image/g/Thumbs.db", bytes(4))
    for args, msg in [(("--dataset", "icoseg", "--root", tmp_path / "missing"), "not found"),
                      (("--dataset", "nope", "--root", r), "unknown dataset"),
                      (("--dataset", "cosal2015", "--root", tmp_path / "e"), "no usable images")]:
        p = run_cli("summary", *args)
        assert p.returncode == 2 and p.stdout == ""
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and msg in lines[0]
