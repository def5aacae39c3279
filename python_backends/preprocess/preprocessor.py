"""CPU preprocessing: encoded bytes → letterboxed NCHW uint8 RGB pixels (OpenCV)."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from python_backends.preprocess.image_decode import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, decode_image
from python_backends.preprocess.letterbox import PAD_VALUE, box_mapping, letterbox


class Preprocessor:
    """Do what Ultralytics' predict does before the model, one image at a time.

    Decode (cv2.imdecode, IMREAD_COLOR), letterbox to the network size (pad 114),
    BGR→RGB, HWC→CHW. The division by 255 is the served model's first operation
    (``prepare.onnx_model.with_pixel_input``): the pixels leave as uint8, a quarter of float32's
    bytes. Images over ``max_pixels`` pixels or ``max_bytes`` encoded bytes are refused before
    decoding (see ``decode_image``).
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
            tensor: uint8 (3, input_height, input_width), RGB pixels.
            mapping: float32 (5,) gain, pad_x, pad_y, width, height (see ``letterbox.box_mapping``).
        """
        height, width = image.shape[:2]
        boxed = letterbox(image, self.input_height, self.input_width, self.pad_value)
        tensor = np.empty((3, self.input_height, self.input_width), dtype=np.uint8)
        cv2.split(boxed, [tensor[2], tensor[1], tensor[0]])  # B, G, R planes straight into their RGB slots
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
        """uint8 (B, 3, H, W) from a request's (3, H, W) tensors; a single tensor is not copied."""
        return tensors[0][None] if len(tensors) == 1 else np.stack(tensors)
