"""Image and mask decoding: every encoding users' datasets really have."""
import zlib
import struct

import cv2
import numpy as np
import pytest

from core.errors import UserError
from core.imageio import read_image, read_mask, write_png


def palette_png(path, index, palette):
    """An 8-bit palette PNG written by hand (OpenCV cannot write one)."""
    h, w = index.shape
    raw = b"".join(b"\x00" + bytes(row) for row in index.astype(np.uint8))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 3, 0, 0, 0))
           + chunk(b"PLTE", bytes(np.asarray(palette, np.uint8).ravel())) + chunk(b"IDAT", zlib.compress(raw))
           + chunk(b"IEND", b""))
    path.write_bytes(png)


def test_mask_encodings(tmp_path):
    want = np.zeros((6, 8), np.float32)
    want[2:4, 3:6] = 1
    cv2.imwrite(str(tmp_path / "bw.png"), (want * 255).astype(np.uint8))
    cv2.imwrite(str(tmp_path / "bit.png"), (want * 255).astype(np.uint8), [cv2.IMWRITE_PNG_BILEVEL, 1])
    cv2.imwrite(str(tmp_path / "01.png"), want.astype(np.uint8))
    cv2.imwrite(str(tmp_path / "16.png"), (want * 65535).astype(np.uint16))
    palette_png(tmp_path / "voc.png", want.astype(np.uint8), [(0, 0, 0), (128, 0, 0)])
    for name in ("bw", "bit", "01", "16", "voc"):
        np.testing.assert_array_equal(read_mask(tmp_path / f"{name}.png"), want, err_msg=name)


def test_images_come_back_as_bgr_uint8(tmp_path):
    gray = np.full((4, 5), 9, np.uint8)
    cv2.imwrite(str(tmp_path / "g.png"), gray)
    img = read_image(tmp_path / "g.png")
    assert img.shape == (4, 5, 3) and img.dtype == np.uint8 and (img == 9).all()
    cv2.imwrite(str(tmp_path / "a.png"), np.dstack([np.full((4, 5), c, np.uint8) for c in (1, 2, 3, 4)]))
    assert read_image(tmp_path / "a.png")[0, 0].tolist() == [1, 2, 3]


def test_bad_files_name_the_file(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "junk.jpg").write_bytes(b"<html>")
    with pytest.raises(UserError, match="empty.jpg: empty file"):
        read_image(tmp_path / "empty.jpg")
    with pytest.raises(UserError, match="junk.jpg: not a readable image"):
        read_mask(tmp_path / "junk.jpg")
    with pytest.raises(UserError, match="missing.png: cannot read"):
        read_image(tmp_path / "missing.png")


def test_write_png_is_atomic_and_scales_floats(tmp_path):
    write_png(tmp_path / "d/x.png", np.array([[0.0, 0.5, 1.0]], np.float32))
    assert cv2.imread(str(tmp_path / "d/x.png"), cv2.IMREAD_UNCHANGED).tolist() == [[0, 128, 255]]
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["x.png"]


def test_atomic_writes_get_the_usual_permissions(tmp_path):
    from core import outputs
    write_png(tmp_path / "p.png", np.zeros((2, 2), np.uint8))
    assert (tmp_path / "p.png").stat().st_mode & 0o777 == 0o666 & ~outputs._UMASK


def damaged_png(path):
    """A PNG whose header and end are whole and whose pixel data is damaged (a CRC error)."""
    png = bytearray(cv2.imencode(".png", np.random.RandomState(0).randint(0, 255, (60, 80, 3), np.uint8))[1])
    png[100:400] = bytes(300)
    path.write_bytes(bytes(png))


def test_a_damaged_png_is_one_error_without_libpng_lines(tmp_path, capfd):
    """libpng printed "libpng error: IDAT: CRC error" on stderr besides our one line."""
    damaged_png(tmp_path / "bad.png")
    with pytest.raises(UserError, match="bad.png: not a readable image .damaged PNG: CRC error in chunk IDAT"):
        read_image(tmp_path / "bad.png")
    assert capfd.readouterr().err == ""


def test_png_damage_names_the_chunk():
    from core.imageio import png_damage
    png = bytearray(cv2.imencode(".png", np.zeros((6, 8), np.uint8))[1])
    assert png_damage(bytes(png)) is None
    assert png_damage(bytes(png[:-12])) == "no IEND chunk"
    assert png_damage(bytes(png[:-14])) == "chunk IDAT runs past the end of the file"
    idat = png.index(b"IDAT")
    png[idat + 6] ^= 0xFF
    assert png_damage(bytes(png)) == "CRC error in chunk IDAT"
