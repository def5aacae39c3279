"""The interface every inference runtime implements, and the choice between them."""

from __future__ import annotations

from typing import Callable, Protocol

import numpy as np


class RuntimeUnavailable(RuntimeError):
    """The requested runtime cannot run on this machine (missing package or device)."""


class InferenceRuntime(Protocol):
    """Runs a YOLOv8 detection model on a batch.

    ``run`` takes float32 (B, 3, H, W) and returns the head, float32 (B, *head): (4 + num_classes,
    num_anchors) for a raw head, (max_det, 6) for an end-to-end one. The CPU runtimes also have
    ``run_outputs``: every output of the model, the head first (a segment model's prototypes second).
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


Outputs = tuple  # a model's outputs for a batch, float32 (B, ...) each, the head first


def run_in_chunks(
    run_batch: Callable[[np.ndarray], Outputs], images: np.ndarray, max_batch: int, done: list[Outputs]
) -> Outputs:
    """``done`` followed by the outputs of ``images`` run ``max_batch`` at a time through ``run_batch``, joined
    output by output.

    ``images``: float32 (B, 3, H, W); each of ``run_batch``'s outputs float32 (b, ...).
    """
    done = [*done, *(run_batch(images[start : start + max_batch]) for start in range(0, len(images), max_batch))]
    return done[0] if len(done) == 1 else tuple(np.concatenate(parts) for parts in zip(*done))
