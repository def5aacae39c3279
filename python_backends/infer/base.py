"""The interface every inference runtime implements, and the choice between them."""

from __future__ import annotations

from typing import Callable, Protocol

import numpy as np


class RuntimeUnavailable(RuntimeError):
    """The requested runtime cannot run on this machine (missing package or device)."""


class InferenceRuntime(Protocol):
    """Runs a YOLOv8 detection model on a batch.

    ``run`` takes float32 (B, 3, H, W) and returns the head, float32 (B, *head): (4 + num_classes,
    num_anchors) for a raw head, (max_det, 6) for an end-to-end one.
    ``device`` says where ``run`` wants its input: ``"cpu"`` takes and returns NumPy arrays;
    ``"gpu"`` also takes CuPy arrays and then returns one, so the batch never visits host memory.
    """

    name: str
    device: str
    max_batch_size: int

    def run(self, images: np.ndarray) -> np.ndarray: ...


def side_by_side_count(batch: int, streams: int) -> int:
    """How many of a batch's images a CPU runtime's ``run`` puts side by side, one per stream: the first
    ``batch - batch % streams``; none for a single image or a single stream (those get every thread)."""
    return batch - batch % streams if streams > 1 and batch > 1 else 0


def run_in_chunks(run_batch: Callable[[np.ndarray], np.ndarray], images: np.ndarray, max_batch: int, heads: list):
    """``heads`` followed by the heads of ``images`` run ``max_batch`` at a time through ``run_batch``, joined.

    ``images``: float32 (B, 3, H, W); each head float32 (b, *head).
    """
    heads = [*heads, *(run_batch(images[start : start + max_batch]) for start in range(0, len(images), max_batch))]
    return heads[0] if len(heads) == 1 else np.concatenate(heads)
