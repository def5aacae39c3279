"""The interface every inference runtime implements, and the choice between them."""

from __future__ import annotations

from typing import Callable, Protocol

import numpy as np


class RuntimeUnavailable(RuntimeError):
    """The requested runtime cannot run on this machine (missing package or device)."""


class InferenceRuntime(Protocol):
    """Runs a YOLOv8 detection model on a batch.

    ``run`` takes uint8 (B, 3, H, W) pixels (float32 in [0, 1] for an export as written: ``model_input``) and
    returns the head, float32 (B, *head): (4 + num_classes, num_anchors) for a raw head, (max_det, 6) for an
    end-to-end one. The CPU runtimes also have ``run_outputs``: every output of the model, the head first (a
    segment model's prototypes second).
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


def model_input(images: np.ndarray, dtype: type) -> np.ndarray:
    """``images`` as the contiguous ``dtype`` array a CPU runtime's model takes: uint8 pixels 0..255 for a
    prepared model, float32 in [0, 1] for an export as Ultralytics wrote it (other float types are converted).
    Raises ValueError for pixels of the other kind, which a conversion would silently ruin."""
    if (np.dtype(dtype) == np.uint8) != (np.asarray(images).dtype == np.uint8):
        kinds = {True: "uint8 pixels 0..255 (a prepared model)", False: "float32 in [0, 1] (an export)"}
        raise ValueError(f"the model takes {kinds[np.dtype(dtype) == np.uint8]}, got {np.asarray(images).dtype}")
    return np.ascontiguousarray(images, dtype=dtype)


def pixels_of(images):
    """float32 (B, 3, H, W) in [0, 1], NumPy or CuPy, → uint8 pixels on the same side: each value the nearest of
    the 256 levels, so Ultralytics' ``pixels / 255`` gets its pixels back exactly."""
    return (images * 255).round().clip(0, 255).astype(np.uint8)
