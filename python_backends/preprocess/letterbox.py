"""Ultralytics-compatible letterbox (``LetterBox(auto=False, center=True, scaleup=True)``), and the mapping back.

The mapping travels to postprocess as the LETTERBOX tensor, where ``scale_boxes`` inverts it."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

PAD_VALUE = 114


@dataclass(frozen=True)
class LetterboxGeometry:
    """Where an (h, w) image lands inside the (new_h, new_w) network input.

    ``resized_w``/``resized_h`` is the size after the aspect-preserving resize;
    ``top``/``bottom``/``left``/``right`` are the pad widths, rounded like Ultralytics.
    """

    resized_w: int
    resized_h: int
    top: int
    bottom: int
    left: int
    right: int


def letterbox_geometry(height: int, width: int, new_height: int, new_width: int) -> LetterboxGeometry:
    """Compute Ultralytics' LetterBox resize and padding for one image (scaleup on, centred)."""
    ratio = min(new_height / height, new_width / width)
    resized_w, resized_h = int(round(width * ratio)), int(round(height * ratio))
    dw, dh = (new_width - resized_w) / 2, (new_height - resized_h) / 2
    return LetterboxGeometry(
        resized_w=resized_w,
        resized_h=resized_h,
        top=int(round(dh - 0.1)),
        bottom=int(round(dh + 0.1)),
        left=int(round(dw - 0.1)),
        right=int(round(dw + 0.1)),
    )


def letterbox(image: np.ndarray, new_height: int, new_width: int, pad_value: int = PAD_VALUE) -> np.ndarray:
    """Resize with cv2 INTER_LINEAR keeping the aspect ratio, then pad to the network size.

    Args:
        image: uint8 (H, W, 3).
        new_height, new_width: the network input size.

    Returns:
        uint8 (new_height, new_width, 3), same channel order as ``image``.
    """
    height, width = image.shape[:2]
    geo = letterbox_geometry(height, width, new_height, new_width)
    if (width, height) != (geo.resized_w, geo.resized_h):
        image = cv2.resize(image, (geo.resized_w, geo.resized_h), interpolation=cv2.INTER_LINEAR)
    return cv2.copyMakeBorder(
        image, geo.top, geo.bottom, geo.left, geo.right, cv2.BORDER_CONSTANT, value=(pad_value,) * 3
    )


def box_mapping(height: int, width: int, new_height: int, new_width: int) -> np.ndarray:
    """The (gain, pad_x, pad_y, width, height) that map network boxes back to the original image.

    Computed the way Ultralytics' ``scale_boxes`` does (from the shapes alone), so that
    rescaled boxes match its ``predict`` exactly.

    Returns:
        float32 (5,): gain, pad_x, pad_y, original width, original height.
    """
    gain = min(new_height / height, new_width / width)
    pad_x = round((new_width - width * gain) / 2 - 0.1)
    pad_y = round((new_height - height * gain) / 2 - 0.1)
    return np.array([gain, pad_x, pad_y, width, height], dtype=np.float32)
