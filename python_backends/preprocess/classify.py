"""Ultralytics' classify transform (``classify_transforms``, as its classify predict runs it), and its mapping.

Resize the shorter side to the network size with Pillow's bilinear filter (antialiased: torchvision's
``Resize`` on a PIL image), the longer side to ``int(size * long / short)``, then crop the centre
(torchvision's ``CenterCrop``); a non-square network size is resized to exactly, with nothing to crop.
Then BGR→RGB, as uint8 pixels: the served model divides by 255 (``prepare.onnx_model.with_pixel_input``);
Ultralytics' normalisation (mean 0, std 1) changes nothing. Pillow resizes each
channel alone, so resizing the BGR image, as Ultralytics' predict does, equals resizing its RGB one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from python_backends.preprocess.preprocessor import Preprocessor


@dataclass(frozen=True)
class CropGeometry:
    """Where an (h, w) image lands: resized to (``resized_h``, ``resized_w``), then cropped at ``top``, ``left``."""

    resized_h: int
    resized_w: int
    top: int
    left: int


def crop_geometry(height: int, width: int, new_height: int, new_width: int) -> CropGeometry:
    """torchvision's ``Resize(size)`` then ``CenterCrop(size)`` sizes, as Ultralytics' classify_transforms sets them."""
    if new_height != new_width:  # Ultralytics resizes to exactly (h, w)
        return CropGeometry(new_height, new_width, 0, 0)
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = new_height, int(new_height * long / short)
    resized_w, resized_h = (new_short, new_long) if width <= height else (new_long, new_short)
    top = int(round((resized_h - new_height) / 2.0))
    left = int(round((resized_w - new_width) / 2.0))
    return CropGeometry(resized_h, resized_w, top, left)


def resize_and_crop(image: np.ndarray, new_height: int, new_width: int) -> np.ndarray:
    """uint8 (new_height, new_width, 3) of uint8 (H, W, 3) ``image`` (channel order kept): resized, centre-cropped."""
    height, width = image.shape[:2]
    geo = crop_geometry(height, width, new_height, new_width)
    if (geo.resized_h, geo.resized_w) != (height, width):
        resized = Image.fromarray(image).resize((geo.resized_w, geo.resized_h), Image.BILINEAR)
        image = np.asarray(resized)
    return image[geo.top : geo.top + new_height, geo.left : geo.left + new_width]


def crop_mapping(height: int, width: int, new_height: int, new_width: int) -> np.ndarray:
    """The LETTERBOX tensor of a crop: float32 (5,) gain (of the shorter side), pad_x and pad_y (the crop's
    offsets, negative), original width and height; (x - pad_x) / gain maps a network x back, as for a letterbox."""
    geo = crop_geometry(height, width, new_height, new_width)
    gain = min(geo.resized_h / height, geo.resized_w / width)
    return np.array([gain, -geo.left, -geo.top, width, height], dtype=np.float32)


class ClassifyPreprocessor(Preprocessor):
    """``Preprocessor`` with Ultralytics' classify transform in place of the letterbox (same decode and limits)."""

    def from_bgr(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Preprocess a decoded image.

        Args:
            image: uint8 (H, W, 3) BGR.

        Returns:
            tensor: uint8 (3, input_height, input_width), RGB pixels.
            mapping: float32 (5,) gain, pad_x, pad_y, width, height (``crop_mapping``).
        """
        height, width = image.shape[:2]
        cropped = resize_and_crop(image, self.input_height, self.input_width)
        tensor = np.ascontiguousarray(cropped[..., ::-1].transpose(2, 0, 1))  # BGR → RGB, HWC → CHW
        return tensor, crop_mapping(height, width, self.input_height, self.input_width)
