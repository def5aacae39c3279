"""Read an encoded image's declared width and height from its header, without decoding it.

Used to refuse decompression bombs (a small file that declares a huge image) before
OpenCV allocates the pixels. Covers PNG, JPEG, BMP, WebP and GIF; for other formats
``declared_size`` returns None and OpenCV's own limit (OPENCV_IO_MAX_IMAGE_PIXELS) applies.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers carry the size; C4 (DHT), C8 (JPG) and CC (DAC) share the range but are not frames.
JPEG_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
JPEG_STANDALONE_MARKERS = frozenset([0x01, *range(0xD0, 0xD8)])  # TEM, RSTn: no length field


class ImageHeaderError(ValueError):
    """The header of a known format is cut short or inconsistent."""


def declared_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) that the header declares, or None for a format not parsed here.

    Args:
        data: the encoded image.

    Raises:
        ImageHeaderError: the data starts like PNG/JPEG/BMP/WebP/GIF but its header is cut short or broken.
    """
    if data.startswith(PNG_SIGNATURE):
        return _png(data)
    if data.startswith(b"\xff\xd8"):
        return _jpeg(data)
    if data.startswith(b"BM"):
        return _bmp(data)
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return _webp(data)
    if data.startswith((b"GIF87a", b"GIF89a")):
        return _unpack("<HH", data, 6, "GIF")
    return None


def jpeg_is_truncated(data: bytes) -> bool:
    """True for a JPEG whose image data has no end-of-image marker (libjpeg would pad it with gray)."""
    for marker, offset in _jpeg_segments(data):
        if marker == 0xDA:  # start of scan: entropy-coded data follows, ending in FF D9
            return data.find(b"\xff\xd9", offset) < 0
    return True


def _unpack(fmt: str, data: bytes, offset: int, kind: str) -> tuple:
    try:
        return struct.unpack_from(fmt, data, offset)
    except struct.error:
        raise ImageHeaderError(f"truncated {kind} header ({len(data)} bytes)") from None


def _png(data: bytes) -> tuple[int, int]:
    _, chunk, width, height = _unpack(">I4sII", data, 8, "PNG")
    if chunk != b"IHDR":
        raise ImageHeaderError("PNG header does not start with an IHDR chunk")
    return width, height


def _jpeg(data: bytes) -> tuple[int, int] | None:
    """The size in the first start-of-frame (SOFn) segment."""
    for marker, offset in _jpeg_segments(data):
        if marker in JPEG_SOF_MARKERS:
            height, width = _unpack(">HH", data, offset + 5, "JPEG")
            return (width, height) if height else None  # height 0: set later by a DNL marker
        if marker == 0xDA:
            break
    raise ImageHeaderError("JPEG has no frame header (SOF) before its image data")


def _jpeg_segments(data: bytes) -> Iterator[tuple[int, int]]:
    """(marker, offset of its FF byte) for each segment from SOI up to and including SOS or EOI."""
    offset = 2
    while True:
        prefix, marker = _unpack("BB", data, offset, "JPEG")
        if prefix != 0xFF:
            raise ImageHeaderError(f"JPEG marker expected at byte {offset}")
        if marker == 0xFF:  # fill byte before a marker
            offset += 1
            continue
        yield marker, offset
        if marker in (0xD9, 0xDA):
            return
        if marker in JPEG_STANDALONE_MARKERS:
            offset += 2
            continue
        (length,) = _unpack(">H", data, offset + 2, "JPEG")
        if length < 2:
            raise ImageHeaderError(f"JPEG segment at byte {offset} has length {length}")
        offset += 2 + length


def _bmp(data: bytes) -> tuple[int, int]:
    (header_size,) = _unpack("<I", data, 14, "BMP")
    if header_size == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
        width, height = _unpack("<HH", data, 18, "BMP")
    else:
        width, height = _unpack("<ii", data, 18, "BMP")
    return abs(width), abs(height)  # negative height means top-down rows


def _webp(data: bytes) -> tuple[int, int]:
    (chunk,) = _unpack("4s", data, 12, "WebP")
    if chunk == b"VP8X":  # extended: 24-bit canvas width-1, height-1
        raw = _unpack("6s", data, 24, "WebP")[0]
        return int.from_bytes(raw[:3], "little") + 1, int.from_bytes(raw[3:], "little") + 1
    if chunk == b"VP8L":  # lossless: 14-bit width-1, height-1 after the 0x2F signature
        (bits,) = _unpack("<I", data, 21, "WebP")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 ":  # lossy: 14-bit width, height after the 3-byte tag and start code
        width, height = _unpack("<HH", data, 26, "WebP")
        return width & 0x3FFF, height & 0x3FFF
    raise ImageHeaderError(f"unknown WebP chunk {chunk!r}")
