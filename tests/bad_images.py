"""Hostile and unusual encoded images for the bad-input tests, made in memory.

Bombs are small files whose headers declare a huge image; they carry no pixel data,
so any decoder that trusts them would allocate gigabytes before failing.
"""

from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
from PIL import Image


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_bomb(width: int = 60000, height: int = 60000) -> bytes:
    """A PNG that declares ``width`` x ``height`` 8-bit RGB pixels and holds one compressed row."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (1 + 3 * min(width, 4096)))
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def encode(image: np.ndarray, ext: str = ".png") -> bytes:
    ok, buf = cv2.imencode(ext, image)
    assert ok, ext
    return buf.tobytes()


def jpeg_with_size(width: int, height: int) -> bytes:
    """A real 16x16 JPEG whose SOF0 header is rewritten to declare ``width`` x ``height``."""
    data = bytearray(encode(np.full((16, 16, 3), 128, np.uint8), ".jpg"))
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def pasted(photo: np.ndarray, width: int, height: int, x: int, y: int) -> np.ndarray:
    """``photo`` (H, W, 3) uint8 pasted at (x, y) into a ``width`` x ``height`` canvas of gray 114 (letterbox pad)."""
    canvas = np.full((height, width, 3), 114, np.uint8)
    canvas[y : y + photo.shape[0], x : x + photo.shape[1]] = photo
    return canvas


def bmp_bomb(width: int = 60000, height: int = 60000) -> bytes:
    data = bytearray(encode(np.zeros((2, 2, 3), np.uint8), ".bmp"))
    struct.pack_into("<ii", data, 18, width, -height)  # negative height: top-down rows
    return bytes(data)


def webp_bomb() -> bytes:
    """A real animated 16x16 WebP whose extended (VP8X) header declares a 16384 x 16384 canvas."""
    frames = [Image.new("RGB", (16, 16), colour) for colour in ((0, 0, 0), (1, 2, 3))]
    data = bytearray(pillow_bytes(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True))
    assert data[12:16] == b"VP8X"
    data[24:30] = (16383).to_bytes(3, "little") * 2  # canvas width - 1, height - 1
    return bytes(data)


def gif_bomb() -> bytes:
    """A real 2x2 GIF whose logical screen is declared 65535 x 65535."""
    data = bytearray(pillow_bytes(Image.new("RGB", (2, 2), (10, 20, 30)), "GIF"))
    struct.pack_into("<HH", data, 6, 65535, 65535)
    return bytes(data)


def tiff_bomb() -> bytes:
    """A real 2x2 little-endian TIFF whose ImageWidth and ImageLength tags are rewritten to 60000."""
    data = bytearray(pillow_bytes(Image.new("RGB", (2, 2)), "TIFF"))
    (ifd,) = struct.unpack_from("<I", data, 4)
    (count,) = struct.unpack_from("<H", data, ifd)
    for entry in range(ifd + 2, ifd + 2 + 12 * count, 12):
        tag, kind = struct.unpack_from("<HH", data, entry)
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT (3) or LONG (4), the value inline
            struct.pack_into("<H" if kind == 3 else "<I", data, entry + 8, 60000)
    return bytes(data)


def pnm_bomb() -> bytes:
    """A binary PPM header declaring 60000 x 60000 pixels, followed by one row."""
    return b"P6\n60000 60000\n255\n" + b"\x00" * 3 * 60000


def hdr_bomb(width: int = 10000, height: int = 10000) -> bytes:
    """A Radiance HDR header declaring ``width`` x ``height`` pixels, then a few bytes of pixel data.

    Pillow has no Radiance reader, so only OpenCV's own limit (OPENCV_IO_MAX_IMAGE_PIXELS) stands in its way;
    10000 x 10000 is over the project's 40 MP but under OpenCV's default limit of 2^30 pixels.
    """
    return b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y %d +X %d\n" % (height, width) + b"\x80\x80\x80\x81" * 64


def pillow_bytes(image: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def cmyk_jpeg(photo: bytes) -> bytes:
    """A real photo re-encoded as a 4-channel (CMYK, Adobe) JPEG."""
    return pillow_bytes(Image.open(io.BytesIO(photo)).convert("CMYK"), "JPEG")


def palette_png(photo: bytes) -> bytes:
    """A real photo quantized to a 256-colour palette PNG."""
    return pillow_bytes(Image.open(io.BytesIO(photo)).convert("RGB").quantize(256), "PNG")
