"""Decode encoded images exactly as Ultralytics reads files (``cv2.imdecode`` with IMREAD_COLOR)."""

from __future__ import annotations

import cv2
import numpy as np


class ImageDecodeError(ValueError):
    """The bytes are not an image that OpenCV can decode."""


def decode_image(data: bytes | np.ndarray) -> np.ndarray:
    """Decode JPEG/PNG/BMP/WebP/... bytes into a BGR image.

    Grayscale, RGBA, palette and 16-bit images come out as 3-channel 8-bit BGR,
    the way ``cv2.imread`` (and so Ultralytics' ``predict``) reads them, EXIF
    orientation included.

    Args:
        data: encoded bytes, or a 1-D uint8 array of them.

    Returns:
        uint8 array (H, W, 3), BGR.
    """
    buf = np.frombuffer(data, dtype=np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else data
    if buf.size == 0:
        raise ImageDecodeError("empty image: the request carried 0 bytes")
    image = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if image is None:
        raise ImageDecodeError(f"cannot decode image ({buf.size} bytes): not a supported or complete image")
    return image
