"""CPU preprocessing: encoded bytes → letterboxed, normalized NCHW float32 (OpenCV)."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from python_backends.preprocess.image_decode import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, decode_image
from python_backends.preprocess.letterbox import PAD_VALUE, box_mapping, letterbox


class Preprocessor:
    """Do what Ultralytics' predict does before the model, one image at a time.

    Decode (cv2.imdecode, IMREAD_COLOR), letterbox to the network size (pad 114),
    BGR→RGB, HWC→CHW, divide by 255. Images over ``max_pixels`` pixels or ``max_bytes``
    encoded bytes are refused before decoding (see ``decode_image``).
    """

    def __init__(
        self,
        input_height: int = 640,
        input_width: int = 640,
        pad_value: int = PAD_VALUE,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ):
        self.input_height = input_height
        self.input_width = input_width
        self.pad_value = pad_value
        self.max_pixels = max_pixels
        self.max_bytes = max_bytes

    def from_bgr(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Preprocess a decoded image.

        Args:
            image: uint8 (H, W, 3) BGR.

        Returns:
            tensor: float32 (3, input_height, input_width), RGB in [0, 1].
            mapping: float32 (5,) gain, pad_x, pad_y, width, height (see ``letterbox.box_mapping``).
        """
        height, width = image.shape[:2]
        boxed = letterbox(image, self.input_height, self.input_width, self.pad_value)
        tensor = np.empty((3, self.input_height, self.input_width), dtype=np.float32)
        # One contiguous plane per channel, each divided straight into its slot: the same IEEE
        # float32 division as Ultralytics' ``/ 255``, without strided temporaries.
        for channel, plane in zip(tensor, cv2.split(cv2.cvtColor(boxed, cv2.COLOR_BGR2RGB))):
            np.divide(plane, np.float32(255.0), out=channel, dtype=np.float32)
        return tensor, box_mapping(height, width, self.input_height, self.input_width)

    def from_bytes(self, data: bytes) -> tuple[np.ndarray, np.ndarray]:
        """Decode, then preprocess; raises ``ImageDecodeError`` for bytes that are not an image or too large."""
        return self.from_bgr(decode_image(data, self.max_pixels, self.max_bytes))

    def from_bytes_batch(self, items: Any) -> list[tuple[np.ndarray, np.ndarray]]:
        """``from_bytes`` for each of a request's encoded images."""
        return [self.from_bytes(item) for item in items]

    def from_bgr_batch(self, frames: Any) -> list[tuple[np.ndarray, np.ndarray]]:
        """``from_bgr`` for each of a request's uint8 (H, W, 3) BGR frames."""
        return [self.from_bgr(frame) for frame in frames]

    @staticmethod
    def stack(tensors: list[np.ndarray]) -> np.ndarray:
        """float32 (B, 3, H, W) from a request's (3, H, W) tensors; a single tensor is not copied."""
        return tensors[0][None] if len(tensors) == 1 else np.stack(tensors)
