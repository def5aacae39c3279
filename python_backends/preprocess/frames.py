"""Raw decoded frames (``yolov8_raw``'s input): validation, and the choice between frames and encoded bytes."""

from __future__ import annotations

from typing import Any

import numpy as np


class FrameError(ValueError):
    """A request whose image input is missing, doubled, or not a uint8 BGR frame batch."""


def check_frames(frames: np.ndarray) -> np.ndarray:
    """Return ``frames`` if it is uint8 (B, H, W, 3) with H, W > 0, else raise FrameError naming the problem."""
    if frames.dtype != np.uint8:
        raise FrameError(f"FRAME must be UINT8 BGR pixels, got {frames.dtype}")
    if frames.ndim != 4:
        raise FrameError(f"FRAME must be (height, width, 3) per batch element, got shape {frames.shape[1:]}")
    _, height, width, channels = frames.shape
    if height == 0 or width == 0:
        raise FrameError(f"FRAME is empty: {height}x{width} pixels")
    if channels != 3:
        raise FrameError(f"FRAME must have 3 channels (BGR), got {channels}")
    return frames


def preprocess_inputs(preprocessor: Any, encoded: np.ndarray | None, frames: np.ndarray | None) -> list[tuple]:
    """Preprocess one request: its encoded images (object array of bytes) or its frames (uint8 (B, H, W, 3)).

    Returns one (tensor, mapping) pair per batch element; exactly one of the inputs must be given.
    """
    if (encoded is None) == (frames is None):
        raise FrameError("send exactly one of IMAGE (encoded bytes, model yolov8) or FRAME (BGR pixels, yolov8_raw)")
    if encoded is not None:
        return preprocessor.from_bytes_batch(encoded.reshape(-1))
    return preprocessor.from_bgr_batch(check_frames(frames))
