"""A classifier's postprocessing: its probabilities, and the top 5 classes by probability.

Ultralytics' Classify head exports its softmax, float32 (num_classes,) per image, which is served as it is
(``probs``, Ultralytics' ``probs.data``). ``top_classes`` and ``top_scores`` are its ``probs.top5`` and
``probs.top5conf``: the ids by descending probability, ties in id order. A model of fewer than ``TOP_K``
classes pads them with class -1 and score 0.
"""

from __future__ import annotations

import numpy as np

from python_backends.postprocess.postprocessor import check_threshold

TOP_K = 5
OUTPUTS = ("probs", "top_classes", "top_scores", "image_size")


def top_classes(probs: np.ndarray, k: int = TOP_K) -> tuple[np.ndarray, np.ndarray]:
    """int32 (k,) class ids by descending probability, and their float32 (k,) scores; past the classes -1 and 0."""
    order = np.argsort(-probs, kind="stable")[:k]
    classes, scores = np.full(k, -1, np.int32), np.zeros(k, np.float32)
    classes[: len(order)], scores[: len(order)] = order, probs[order]
    return classes, scores


class Classifier:
    """Turn a batch of classifier outputs into ``OUTPUTS``; the same ``batch`` call as ``Postprocessor``'s."""

    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self.outputs = OUTPUTS

    def batch(
        self,
        heads: np.ndarray,
        mappings: np.ndarray,
        confs: list[float | None],
        ious: list[float | None],
    ) -> dict[str, np.ndarray]:
        """A batch's outputs by name.

        Args:
            heads: float32 (B, num_classes) probabilities (the exported softmax).
            mappings: float32 (B, 5) LETTERBOX from preprocessing: gain, pad_x, pad_y, width, height.
            confs, ious: B per-image thresholds (None: none sent). They have no effect on a classifier; a value
                outside [0, 1] is still refused (ThresholdError), as every task refuses it.

        Returns:
            probs float32 (B, num_classes), top_classes int32 (B, TOP_K), top_scores float32 (B, TOP_K),
            image_size int32 (B, 2) width, height of the original image.
        """
        for name, values in (("conf_threshold", confs), ("iou_threshold", ious)):
            for value in values:
                if value is not None:
                    check_threshold(name, value)
        if heads.ndim != 2 or heads.shape[1] != self.num_classes:
            raise ValueError(f"a classify head must be (batch, {self.num_classes}), got {heads.shape}")
        probs = heads.astype(np.float32, copy=False)
        tops = [top_classes(p) for p in probs]
        return {
            "probs": probs,
            "top_classes": np.stack([c for c, _ in tops]),
            "top_scores": np.stack([s for _, s in tops]),
            "image_size": np.rint(mappings[:, 3:5]).astype(np.int32),
        }
