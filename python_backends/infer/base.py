"""The interface every inference runtime implements, and the choice between them."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class RuntimeUnavailable(RuntimeError):
    """The requested runtime cannot run on this machine (missing package or device)."""


class InferenceRuntime(Protocol):
    """Runs a YOLOv8 detection model on a batch.

    ``run`` takes float32 (B, 3, H, W) and returns float32 (B, 4 + num_classes, num_anchors).
    ``device`` says where ``run`` wants its input: ``"cpu"`` takes and returns NumPy arrays;
    ``"gpu"`` also takes CuPy arrays and then returns one, so the batch never visits host memory.
    """

    name: str
    device: str
    max_batch_size: int

    def run(self, images: np.ndarray) -> np.ndarray: ...
