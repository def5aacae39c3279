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


def bmp_bomb(width: int = 60000, height: int = 60000) -> bytes:
    data = bytearray(encode(np.zeros((2, 2, 3), np.uint8), ".bmp"))
    struct.pack_into("<ii", data, 18, width, -height)  # negative height: top-down rows
    return bytes(data)


def webp_bomb() -> bytes:
    """An extended (VP8X) WebP header declaring 16384 x 16384."""
    vp8x = struct.pack("<I", 0) + (16383).to_bytes(3, "little") * 2
    body = b"WEBP" + b"VP8X" + struct.pack("<I", len(vp8x)) + vp8x
    return b"RIFF" + struct.pack("<I", len(body)) + body


def gif_bomb() -> bytes:
    return b"GIF89a" + struct.pack("<HH", 65535, 65535) + b"\x00\x00\x00" + b"\x3b"


def pillow_bytes(image: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt)
    return out.getvalue()


def cmyk_jpeg(photo: bytes) -> bytes:
    """A real photo re-encoded as a 4-channel (CMYK, Adobe) JPEG."""
    return pillow_bytes(Image.open(io.BytesIO(photo)).convert("CMYK"), "JPEG")


def palette_png(photo: bytes) -> bytes:
    """A real photo quantized to a 256-colour palette PNG."""
    return pillow_bytes(Image.open(io.BytesIO(photo)).convert("RGB").quantize(256), "PNG")
