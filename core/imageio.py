"""Reading images and masks the way every part of the project needs them, and writing PNGs.

Images come back as uint8 BGR (H, W, 3) whatever is on disk (grayscale, alpha, palette, 16-bit);
masks as float32 (H, W) in [0, 1] whatever their encoding (1-bit, 0/255, 0/1, palette, JPEG).
"""
import zlib

import cv2
import numpy as np

from .errors import UserError
from .inputs import not_a_regular_file
from .outputs import atomic_write_bytes

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def is_image_file(path):
    return str(path).lower().endswith(IMAGE_EXTENSIONS)


TAIL = 4096   # the end of a file that encoded_data_complete needs
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def encoded_data_complete(head, tail):
    """False when a JPEG or PNG visibly stops early, judged from its first bytes and its last
    TAIL bytes: a JPEG needs its end marker after the last scan start in the tail (entropy-coded
    data cannot hold one), a PNG ends with its IEND chunk. Other formats: True."""
    if head[:3] == b"\xff\xd8\xff":
        eoi = tail.rfind(b"\xff\xd9")
        return eoi >= 0 and tail.rfind(b"\xff\xda") < eoi
    if head[:8] == PNG_SIGNATURE:
        return b"IEND" in tail[-16:]
    return True


# OpenCV decodes no image of more pixels than this (its OPENCV_IO_MAX_IMAGE_PIXELS, default
# 2^30) and raises instead; a header may declare any size, a damaged one often a huge one.
MAX_IMAGE_PIXELS = 1 << 30


def decode_file(path, flags=cv2.IMREAD_UNCHANGED):
    """The decoded image of a file (cv2.imdecode's array), or a UserError naming the file and
    why it cannot be had: unreadable, empty, cut short, too large or not an image."""
    kind = not_a_regular_file(path)    # np.fromfile would wait on a FIFO for ever
    if kind:
        raise UserError(f"{path}: cannot read (it is {kind}, not a regular file)")
    # np.fromfile + imdecode: cv2.imread cannot say *why* it failed and mishandles some names.
    try:
        buf = np.fromfile(str(path), dtype=np.uint8)
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror or e})") from None
    if buf.size == 0:
        raise UserError(f"{path}: empty file")
    if not encoded_data_complete(buf[:16].tobytes(), buf[-TAIL:].tobytes()):
        raise UserError(f"{path}: truncated file (its data stops before the end of the image)")
    if buf[:8].tobytes() == PNG_SIGNATURE:
        damage = png_damage(buf)
        if damage:
            raise UserError(f"{path}: not a readable image (damaged PNG: {damage})")
    try:
        img = cv2.imdecode(buf, flags)
    except cv2.error as e:
        raise UserError(f"{path}: not a readable image ({_decoder_refusal(e)})") from None
    if img is None:
        raise UserError(f"{path}: not a readable image (corrupt or unsupported format)")
    return img


def png_damage(data):
    """Where a PNG's critical chunks (IHDR, PLTE, IDAT, IEND) are damaged, in words, or None.
    libpng prints its own "libpng error: IDAT: CRC error" line on stderr besides the failure it
    returns to OpenCV: such a file is refused before it is decoded, so the user gets one line,
    ours. A damaged ancillary chunk is left to libpng, which drops it (with a warning).
    data: the file's bytes (bytes or a uint8 array)."""
    data = memoryview(data).cast("B")
    pos = len(PNG_SIGNATURE)
    while pos + 12 <= len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind = bytes(data[pos + 4:pos + 8])
        end = pos + 12 + length
        name = kind.decode("latin-1")
        if end > len(data):
            return f"chunk {name} runs past the end of the file"
        critical = kind[:1].isupper()
        if critical and zlib.crc32(data[pos + 4:end - 4]) != int.from_bytes(data[end - 4:end], "big"):
            return f"CRC error in chunk {name}"
        if kind == b"IEND":
            return None
        pos = end
    return "no IEND chunk"


def _decoder_refusal(err):
    text = str(err)
    if "CV_IO_MAX_IMAGE_PIXELS" in text:
        return ("its header declares more pixels than OpenCV decodes, OPENCV_IO_MAX_IMAGE_PIXELS "
                "(default 2^30); a damaged file, or one to shrink first")
    lines = [x for x in text.strip().splitlines() if x.strip()]
    return f"OpenCV: {lines[-1].strip()}" if lines else "OpenCV refused it"


def read_image(path):
    """uint8 BGR (H, W, 3). Grayscale is replicated, alpha dropped, 16-bit scaled down."""
    img = decode_file(path)
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        img = cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    elif img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    elif img.shape[2] == 1:
        img = cv2.cvtColor(img[:, :, 0], cv2.COLOR_GRAY2BGR)
    return img


def read_gray(path):
    """A saliency map or mask as float32 (H, W) scaled by its dtype's range, in [0, 1].
    Colour files are converted to gray; 1-bit PNGs decode to 0/255 and so give 0/1."""
    img = decode_file(path)
    if img.ndim == 3:
        img = cv2.cvtColor(img[:, :, :3], cv2.COLOR_BGR2GRAY) if img.shape[2] >= 3 else img[:, :, 0]
    if img.dtype == np.uint8:
        return img.astype(np.float32) / 255.0
    if img.dtype == np.uint16:
        return img.astype(np.float32) / 65535.0
    img = img.astype(np.float32)
    hi = float(img.max()) if img.size else 0.0
    return img / hi if hi > 1.0 else img


def read_mask(path):
    """Ground truth in [0, 1] (float32). A mask stored as 0/1 in uint8 is stretched to 0/1, not
    left at 0..1/255; JPEG masks keep their soft edges (binarise at 0.5 where a metric needs it).
    A colour mask (a palette PNG whose object entry is, say, VOC's dark red (128, 0, 0)) takes its
    brightest channel scaled so that the object colour is 1: a gray conversion would weigh that
    red at 0.15 and lose the object."""
    img = decode_file(path)
    if img.ndim == 3 and img.shape[2] >= 3 and img.dtype == np.uint8:
        bgr = img[:, :, :3]
        if not (np.array_equal(bgr[:, :, 0], bgr[:, :, 1]) and np.array_equal(bgr[:, :, 1], bgr[:, :, 2])):
            m = bgr.max(axis=2).astype(np.float32)
            return m / m.max()     # the object's colour is the brightest thing in a label map
    m = read_gray(path)
    if m.size and m.max() <= 1.0 / 255.0 + 1e-9 and m.max() > 0:
        m = m / m.max()
    return m


def write_png(path, img):
    """Atomically write a uint8 image as PNG; float input in [0, 1] is scaled to 0..255."""
    img = np.asarray(img)
    if img.dtype != np.uint8:
        img = np.clip(np.rint(img.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise RuntimeError(f"cannot encode PNG for {path}")
    atomic_write_bytes(path, buf.tobytes())
