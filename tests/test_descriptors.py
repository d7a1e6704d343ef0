"""GIST + Lab descriptors: images with known structure, the mirror symmetry, the cache."""
import os

import cv2
import h5py
import numpy as np
import pytest

from data_prep import descriptors as D
from data_prep import synthetic as S


def _energy_by_orientation(img):
    g = D.gist(img).reshape(len(D.PEAKS), D.N_ORIENT, D.GRID, D.GRID)
    return g.sum(axis=(0, 2, 3))


def _stripes(fx, fy, period=16.0, n=256):
    """Square-wave stripes whose intensity changes along (fx, fy) (x right, y down)."""
    y, x = np.mgrid[0:n, 0:n].astype(np.float64)
    t = np.sin(2 * np.pi * (fx * x + fy * y) / period)
    return np.where(t >= 0, 200, 55).astype(np.uint8)


def _cos(a, b):
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def _scene(group=0, size=256):
    return S.generate_group(S.Config(height=size, width=size), "test", group, group % 6)[0].image


@pytest.mark.parametrize("direction, expected", [
    ((1, 0), 0),     # vertical stripes: intensity changes along x
    ((0, 1), 4),     # horizontal stripes
    ((1, 1), 2),     # "/" stripes: change along the down-right diagonal
    ((1, -1), 6),    # "\" stripes
])
def test_stripes_put_energy_in_the_orientation_of_their_frequency(direction, expected):
    e = _energy_by_orientation(_stripes(*direction))
    assert int(np.argmax(e)) == expected
    # the orthogonal orientation gets almost nothing
    assert e[(expected + 4) % 8] < 0.05 * e[expected]


def test_stripe_period_selects_the_scale():
    # 16-pixel period = 0.0625 cycles/pixel: closest to the peak of scale 2 (0.075)
    g = D.gist(_stripes(1, 0, period=16.0)).reshape(4, 8, 4, 4)
    assert int(np.argmax(g[:, 0].sum(axis=(1, 2)))) == 2
    # 4-pixel period = 0.25 cycles/pixel: scale 0 (0.3)
    g = D.gist(_stripes(1, 0, period=4.0)).reshape(4, 8, 4, 4)
    assert int(np.argmax(g[:, 0].sum(axis=(1, 2)))) == 0


def test_energy_is_localised_in_the_grid_cell_of_the_structure():
    img = np.full((256, 256), 128, np.uint8)
    img[64:128, 192:256] = _stripes(1, 0)[64:128, 192:256]   # grid row 1, column 3
    g = D.gist(img).reshape(4, 8, 4, 4)
    cells = g[:, 0].sum(axis=0)
    assert np.unravel_index(np.argmax(cells), cells.shape) == (1, 3)


def test_slightly_shifted_image_keeps_its_descriptor():
    img = _scene(0)
    d = D.describe(img)
    shifted = D.describe(np.roll(img, (2, 4), axis=(0, 1)))
    assert _cos(d[:D.GIST_DIM], shifted[:D.GIST_DIM]) > 0.95
    assert _cos(d, shifted) > 0.95
    # ... while another scene of the same kind is far: the test can fail
    other = D.describe(_scene(7))
    assert _cos(d, other) < 0.8


def test_horizontal_flip_mirrors_orientations_and_grid_columns():
    img = _scene(1)
    img[:128, :128] = _stripes(1, 1)[:128, :128, None]   # make it clearly asymmetric
    a = D.gist(img).reshape(4, 8, 4, 4)
    b = D.gist(img[:, ::-1].copy()).reshape(4, 8, 4, 4)
    mirror = [D.mirror_orientation(k) for k in range(8)]
    assert mirror == [0, 7, 6, 5, 4, 3, 2, 1]
    b_back = b[:, mirror][..., ::-1]
    assert np.abs(b_back - a).max() < 0.01 * a.max()
    # without the remapping the two differ a lot: the check has teeth
    assert np.abs(b - a).max() > 0.2 * a.max()


@pytest.mark.parametrize("bgr, index", [
    ((255, 255, 255), 7 * 64 + 4 * 8 + 4),   # L 255, a 128, b 128
    ((0, 0, 0), 0 * 64 + 4 * 8 + 4),         # L 0, a 128, b 128
    ((0, 0, 255), 4 * 64 + 6 * 8 + 6),       # red: L 136, a 208, b 195 (OpenCV 8-bit Lab)
    ((0, 255, 0), 7 * 64 + 1 * 8 + 6),       # green: L 224, a 42, b 211
])
def test_lab_histogram_of_a_uniform_colour_is_one_bin(bgr, index):
    h = D.lab_histogram(np.full((7, 9, 3), bgr, np.uint8))
    assert h.shape == (512,)
    assert np.nonzero(h)[0].tolist() == [index]
    assert h[index] == pytest.approx(1.0)


def test_lab_histogram_counts_fractions():
    img = np.zeros((4, 4, 3), np.uint8)
    img[:1] = 255                               # a quarter white, the rest black
    h = D.lab_histogram(img)
    assert h[484] == pytest.approx(0.25) and h[36] == pytest.approx(0.75)


def test_descriptor_layout_and_normalisation():
    d = D.describe(_scene(2, size=96))
    assert d.shape == (1024,) and d.dtype == np.float32
    assert np.linalg.norm(d[:512]) == pytest.approx(1.0, abs=1e-5)
    assert np.linalg.norm(d[512:]) == pytest.approx(1.0, abs=1e-5)
    # a grayscale image equals its BGR replica
    gray = cv2.cvtColor(_scene(2, size=96), cv2.COLOR_BGR2GRAY)
    np.testing.assert_allclose(D.describe(gray), D.describe(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)),
                               atol=1e-6)


def _write_images(tmp_path, n=4):
    paths = []
    for i in range(n):
        p = tmp_path / "imgs" / f"im {i}.png"
        p.parent.mkdir(exist_ok=True)
        cv2.imwrite(str(p), _scene(i, size=64))
        paths.append(p)
    return paths


def test_describe_files_matches_describe_and_is_independent_of_workers(tmp_path):
    paths = _write_images(tmp_path)
    one = D.describe_files(paths, workers=1, progress=False)
    two = D.describe_files(paths, workers=2, progress=False)
    assert np.array_equal(one, two)
    assert np.array_equal(one[2], D.describe(cv2.imread(str(paths[2]))))


def test_cache_is_used_and_invalidated_by_a_changed_file(tmp_path):
    paths = _write_images(tmp_path, 3)
    cache = tmp_path / "list.descriptors.h5"
    fresh = D.describe_files(paths, workers=1, cache_path=cache, progress=False)
    with h5py.File(cache, "a") as f:            # plant a marker value in the cache
        assert f["descriptor"].shape == (3, 1024)
        f["descriptor"][...] = 7.0
    again = D.describe_files(paths, workers=1, cache_path=cache, progress=False)
    assert np.all(again == 7.0)                  # read from the cache, not recomputed
    st = os.stat(paths[1])
    os.utime(paths[1], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    after = D.describe_files(paths, workers=1, cache_path=cache, progress=False)
    assert np.all(after[[0, 2]] == 7.0)
    assert np.array_equal(after[1], fresh[1])    # the touched file was recomputed


def test_cache_of_another_version_is_ignored(tmp_path):
    paths = _write_images(tmp_path, 2)
    cache = tmp_path / "c.h5"
    fresh = D.describe_files(paths, workers=1, cache_path=cache, progress=False)
    with h5py.File(cache, "a") as f:
        f["descriptor"][...] = 7.0
        f.attrs["version"] = "something else"
    assert np.array_equal(D.describe_files(paths, workers=1, cache_path=cache, progress=False), fresh)


def test_unreadable_image_is_a_user_error(tmp_path):
    from core.errors import UserError
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"<html>not an image</html>")
    with pytest.raises(UserError, match="bad.jpg"):
        D.describe_files([bad], workers=1, progress=False)


def test_descriptors_computed_before_an_error_are_kept_in_the_cache(tmp_path):
    from core.errors import UserError
    good = _write_images(tmp_path, 2)
    bad = tmp_path / "imgs" / "zz broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    cache = tmp_path / "c.h5"
    with pytest.raises(UserError, match="zz broken.png"):
        D.describe_files(good + [bad], workers=1, cache_path=cache, progress=False)
    assert len(D.load_cache(cache)) == 2
