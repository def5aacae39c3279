"""Decode encoded images exactly as Ultralytics reads files (``cv2.imdecode`` with IMREAD_COLOR)."""

from __future__ import annotations

import cv2
import numpy as np

from python_backends.preprocess.image_header import ImageHeaderError, declared_size, jpeg_is_truncated

DEFAULT_MAX_PIXELS = 40_000_000  # about 40 MP, e.g. 7300x5475; the config's max_image_pixels overrides it
DEFAULT_MAX_BYTES = 32 * 1024 * 1024  # encoded input; the config's max_image_bytes overrides it


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
    bytes, or a header (PNG, JPEG, BMP, WebP, GIF) that declares more than ``max_pixels``
    pixels. Other formats go to OpenCV, whose own limit is OPENCV_IO_MAX_IMAGE_PIXELS.

    Args:
        data: encoded bytes, or a 1-D uint8 array of them.
        max_pixels: largest width * height accepted.
        max_bytes: largest encoded size accepted.

    Returns:
        uint8 array (H, W, 3), BGR.
    """
    buf = check_encoded(data, max_pixels, max_bytes)
    try:
        image = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    except cv2.error as exc:
        raise ImageDecodeError(f"cannot decode image ({buf.size} bytes): {exc.err}") from None
    if image is None:
        raise ImageDecodeError(f"cannot decode image ({buf.size} bytes): not a supported or complete image")
    return image


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
    """Refuse a broken header, a truncated JPEG, or a declared size of 0 or more than ``max_pixels`` pixels."""
    try:
        size = declared_size(data)
        if size is not None and data.startswith(b"\xff\xd8") and jpeg_is_truncated(data):
            raise ImageHeaderError("truncated JPEG: no end-of-image marker after its image data")
    except ImageHeaderError as exc:
        raise ImageDecodeError(f"cannot decode image ({len(data)} bytes): {exc}") from None
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
