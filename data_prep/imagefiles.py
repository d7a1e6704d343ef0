"""Cheap image-file probe: the format and size from a file's first few hundred bytes.

The dataset readers open every file once through `probe_image`: that catches empty files, files
that are not images at all (an HTML error page saved as .jpg) and headers cut short, and gives
every JPEG/PNG/BMP size for the mask-size check, without decoding pixels. It also reads the
file's last few kilobytes: a JPEG or PNG whose data stops early (an interrupted download or
copy) is found here, by every command that reads a dataset, and not in the middle of its work."""
import dataclasses
import os
import struct
from typing import Optional

from core.imageio import MAX_IMAGE_PIXELS, TAIL, encoded_data_complete
from core.inputs import not_a_regular_file

# The probe's verdicts on a file it cannot use (also issue names of data_prep.datasets).
EMPTY_FILE = "empty files"
UNREADABLE = "unreadable files"
TRUNCATED = "truncated files"
TOO_LARGE = "images larger than OpenCV decodes"

@dataclasses.dataclass(frozen=True)
class FileInfo:
    """What a file's header says. width/height are None where the format is not parsed."""
    kind: str                    # jpeg, png, bmp, tiff, webp, pnm
    width: Optional[int] = None
    height: Optional[int] = None
    bits: Optional[int] = None   # PNG bit depth per sample, BMP bits per pixel
    palette: bool = False        # PNG colour type 3


EXT_KIND = {".jpg": "jpeg", ".jpeg": "jpeg", ".png": "png", ".bmp": "bmp", ".tif": "tiff",
             ".tiff": "tiff", ".webp": "webp", ".ppm": "pnm", ".pgm": "pnm"}
# JPEG start-of-frame markers (C4 DHT, C8 JPG, CC DAC are not frames)
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_frame(f):
    """(width, height) from the first SOF segment, walking the marker segments; None if the
    header ends or breaks before one."""
    f.seek(2)
    while True:
        b = f.read(1)
        if b != b"\xff":
            return None
        m = f.read(1)
        while m == b"\xff":          # fill bytes
            m = f.read(1)
        if not m:
            return None
        m = m[0]
        if m == 0x01 or 0xD0 <= m <= 0xD8:   # markers without a length
            continue
        if m in (0xD9, 0xDA):                # image data or end before any frame header
            return None
        seg = f.read(2)
        if len(seg) < 2:
            return None
        n = struct.unpack(">H", seg)[0]
        if m in _SOF:
            d = f.read(5)
            if len(d) < 5:
                return None
            _, h, w = struct.unpack(">BHH", d)
            return w, h
        if n < 2:
            return None
        f.seek(n - 2, 1)


def probe_image(path):
    """Check a file's header and end without decoding its pixels.

    path: the file. Returns (FileInfo, None) for an image, or (None, issue) where issue is
    EMPTY_FILE, UNREADABLE (not a regular file, not an image, a header cut short or declaring
    no pixels), TRUNCATED (a JPEG or PNG whose data stops early) or TOO_LARGE (a header
    declaring more pixels than OpenCV decodes: a damaged file, mostly)."""
    if not_a_regular_file(path):      # a FIFO named .jpg would block open() for ever
        return None, UNREADABLE
    try:
        with open(path, "rb") as f:
            head = f.read(32)
            if not head:
                return None, EMPTY_FILE
            info = _header_info(f, head)
            if info is None or 0 in (info.width, info.height):
                return None, UNREADABLE
            if info.width and info.width * info.height > MAX_IMAGE_PIXELS:
                return None, TOO_LARGE
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - TAIL))
            if not encoded_data_complete(head, f.read()):
                return None, TRUNCATED
            return info, None
    except OSError:
        return None, UNREADABLE


def _header_info(f, head):
    """FileInfo from the first bytes (and, for JPEG, the marker segments of the open file f),
    or None."""
    if head[:3] == b"\xff\xd8\xff":
        wh = _jpeg_frame(f)
        if wh is None:
            return None
        w, h = wh
        return FileInfo("jpeg", w or None, h or None)
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        if len(head) < 26 or head[12:16] != b"IHDR":
            return None
        w, h = struct.unpack(">II", head[16:24])
        return FileInfo("png", w, h, bits=head[24], palette=head[25] == 3)
    if head[:2] == b"BM":
        if len(head) < 30:
            return None
        dib = struct.unpack("<I", head[14:18])[0]
        if dib == 12:   # OS/2 BITMAPCOREHEADER
            w, h, _, bpp = struct.unpack("<HHHH", head[18:26])
        else:
            w, h = struct.unpack("<ii", head[18:26])
            bpp = struct.unpack("<H", head[28:30])[0]
        return FileInfo("bmp", abs(w), abs(h), bits=bpp)
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return FileInfo("tiff")
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return FileInfo("webp")
    if head[:1] == b"P" and head[1:2] in b"1234567" and len(head) > 2:
        return FileInfo("pnm")
    return None
