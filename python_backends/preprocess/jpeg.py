"""Tell a truncated JPEG from a whole one, without decoding it.

libjpeg decodes a JPEG whose scan data is cut short without an error: it fills the missing rows
with gray. Ultralytics would then detect on a half-gray picture; we refuse it instead.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

JPEG_SIGNATURE = b"\xff\xd8"  # start of image (SOI)
JPEG_STANDALONE_MARKERS = frozenset([0x01, *range(0xD0, 0xD8)])  # TEM, RSTn: no length field


class JpegHeaderError(ValueError):
    """The JPEG's marker segments are cut short or inconsistent."""


def jpeg_is_truncated(data: bytes) -> bool:
    """True for a JPEG whose image data has no end-of-image marker (libjpeg would pad it with gray).

    Raises:
        JpegHeaderError: the segments before the image data are cut short or broken.
    """
    for marker, offset in _jpeg_segments(data):
        if marker == 0xDA:  # start of scan: entropy-coded data follows, ending in FF D9
            return data.find(b"\xff\xd9", offset) < 0
    return True


def _unpack(fmt: str, data: bytes, offset: int) -> tuple:
    try:
        return struct.unpack_from(fmt, data, offset)
    except struct.error:
        raise JpegHeaderError(f"truncated JPEG header ({len(data)} bytes)") from None


def _jpeg_segments(data: bytes) -> Iterator[tuple[int, int]]:
    """(marker, offset of its FF byte) for each segment from SOI up to and including SOS or EOI."""
    offset = 2
    while True:
        prefix, marker = _unpack("BB", data, offset)
        if prefix != 0xFF:
            raise JpegHeaderError(f"JPEG marker expected at byte {offset}")
        if marker == 0xFF:  # fill byte before a marker
            offset += 1
            continue
        yield marker, offset
        if marker in (0xD9, 0xDA):
            return
        if marker in JPEG_STANDALONE_MARKERS:
            offset += 2
            continue
        (length,) = _unpack(">H", data, offset + 2)
        if length < 2:
            raise JpegHeaderError(f"JPEG segment at byte {offset} has length {length}")
        offset += 2 + length
