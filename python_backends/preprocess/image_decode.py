"""Decode encoded images exactly as Ultralytics reads files (``cv2.imdecode`` with IMREAD_COLOR)."""

from __future__ import annotations

import io
import re
import struct
import tempfile
import warnings

import cv2
import numpy as np
from PIL import Image

from python_backends.preprocess.jpeg import JPEG_SIGNATURE, JpegHeaderError, jpeg_is_truncated

DEFAULT_MAX_PIXELS = 40_000_000  # about 40 MP, e.g. 7300x5475; the config's max_image_pixels overrides it
DEFAULT_MAX_BYTES = 32 * 1024 * 1024  # encoded input; the config's max_image_bytes overrides it
# Formats whose OpenCV decoder reads only from a file: cv2.imdecode writes the bytes to a temporary file of its own
# and leaves it behind when the decoder raises (a header over OPENCV_IO_MAX_IMAGE_PIXELS, broken data).
# Radiance HDR, Sun raster, PFM (OpenCV's signature tests).
FILE_ONLY_FORMAT = re.compile(rb"#\?(RADIANCE|RGBE)|\x59\xa6\x6a\x95|P[Ff]\s")


class ImageDecodeError(ValueError):
    """The bytes are not an image that OpenCV can decode."""


def decode_image(
    data: bytes | np.ndarray, max_pixels: int = DEFAULT_MAX_PIXELS, max_bytes: int = DEFAULT_MAX_BYTES
) -> np.ndarray:
    """Decode JPEG/PNG/BMP/WebP/... bytes into a BGR image.

    Grayscale, RGBA, palette and 16-bit images come out as 3-channel 8-bit BGR,
    the way ``cv2.imread`` (and so Ultralytics' ``predict``) reads them, EXIF
    orientation included.

    Input that is too large is refused before decoding: more than ``max_bytes`` encoded
    bytes, or a header that declares more than ``max_pixels`` pixels, in every format whose
    header Pillow reads (PNG, JPEG, BMP, WebP, GIF, TIFF, PNM, ...). Other input goes to
    OpenCV, whose own limit is OPENCV_IO_MAX_IMAGE_PIXELS.

    Args:
        data: encoded bytes, or a 1-D uint8 array of them.
        max_pixels: largest width * height accepted.
        max_bytes: largest encoded size accepted.

    Returns:
        uint8 array (H, W, 3), BGR.
    """
    buf = check_encoded(data, max_pixels, max_bytes)
    through_file = FILE_ONLY_FORMAT.match(buf[:10].tobytes())
    try:
        image = decode_through_file(buf) if through_file else cv2.imdecode(buf, cv2.IMREAD_COLOR)
    except cv2.error as exc:
        raise ImageDecodeError(f"cannot decode image ({buf.size} bytes): {exc.err}") from None
    if image is None:
        raise ImageDecodeError(f"cannot decode image ({buf.size} bytes): not a supported or complete image")
    return image


def decode_through_file(buf: np.ndarray) -> np.ndarray | None:
    """``cv2.imread`` of the bytes written to a temporary file that is removed whatever the decoder does: what
    ``cv2.imdecode`` does for ``FILE_ONLY_FORMAT``, without the file it leaves when the decoder raises."""
    with tempfile.NamedTemporaryFile(prefix="yolov8-decode-") as file:
        file.write(buf.tobytes())
        file.flush()
        return cv2.imread(file.name, cv2.IMREAD_COLOR)


def check_encoded(data: bytes | np.ndarray, max_pixels: int, max_bytes: int) -> np.ndarray:
    """Refuse empty or oversized input before any decoder sees it; returns the bytes as a uint8 array."""
    buf = np.frombuffer(data, dtype=np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else data
    if buf.size == 0:
        raise ImageDecodeError("empty image: the request carried 0 bytes")
    if buf.size > max_bytes:
        raise ImageDecodeError(f"image too large: {buf.size} bytes encoded, the limit is {max_bytes}")
    check_header(data if isinstance(data, bytes) else buf.tobytes(), max_pixels)
    return buf


def check_header(data: bytes, max_pixels: int) -> None:
    """Refuse a truncated JPEG or header, or a declared size of 0 or more than ``max_pixels`` pixels."""
    try:
        if data.startswith(JPEG_SIGNATURE) and jpeg_is_truncated(data):
            raise ImageDecodeError(
                f"cannot decode image ({len(data)} bytes): truncated JPEG: no end-of-image marker after its image data"
            )
    except JpegHeaderError as exc:
        raise ImageDecodeError(f"cannot decode image ({len(data)} bytes): {exc}") from None
    size = declared_size(data, max_pixels)
    if size is None:
        return
    width, height = size
    if width * height == 0:
        raise ImageDecodeError(f"cannot decode image: its header declares an empty {width}x{height} image")
    if width * height > max_pixels:
        raise ImageDecodeError(
            f"image too large: its header declares {width}x{height} = {width * height} pixels, "
            f"the limit is {max_pixels} (refused before decoding)"
        )


def declared_size(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int] | None:
    """(width, height) that the header declares, read by Pillow without decoding the pixels.

    None when Pillow knows no format with this signature, or cannot read this header for another
    reason than its end: OpenCV then decides, under its own limit.

    Raises:
        ImageDecodeError: the header of a format that Pillow knows ends too soon.
    """
    kind = pillow_format(data)
    if kind is None:
        return None
    Image.MAX_IMAGE_PIXELS = max_pixels  # Pillow's own guard, at our limit
    try:
        with warnings.catch_warnings():  # a bomb is refused by the caller, with its size; broken metadata is not ours
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data), formats=[kind]) as image:
                return image.size
    except Image.DecompressionBombError:  # over twice the limit: Pillow does not say the size, its plugin does
        with Image.OPEN[kind][0](io.BytesIO(data)) as image:
            return image.size
    except (OSError, EOFError, struct.error) as exc:  # Pillow's "Truncated File Read", or an end of file
        if not isinstance(exc, OSError) or "truncated" in str(exc).lower():
            raise ImageDecodeError(f"cannot decode image ({len(data)} bytes): truncated {kind} header") from None
    except (SyntaxError, ValueError, TypeError, IndexError):  # what Pillow's plugins raise for headers they reject
        pass
    return None


def pillow_format(data: bytes) -> str | None:
    """The Pillow format ("PNG", "JPEG", "TIFF", ...) whose signature ``data`` starts with, or None."""
    Image.init()
    prefix = data[:16]
    for kind in Image.ID:
        accept = Image.OPEN[kind][1]
        try:
            matched = accept is not None and accept(prefix)  # formats without a signature test (TGA, ...) never match
        except (struct.error, IndexError, TypeError):  # a test that needs more bytes than there are (as Image.open)
            continue
        if matched and not isinstance(matched, str):  # a string is Pillow's warning, not a match
            return kind
    return None
