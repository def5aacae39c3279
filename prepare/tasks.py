"""The Ultralytics tasks prepare serves, read from an export's metadata (``task``, ``kpt_shape``).

A YOLOv8/YOLO11 grid head is (batch, 4 + classes + extra, anchors): ``extra`` channels follow the class
scores, K x (x, y, score) keypoints for ``pose``, one angle in radians for ``obb`` and 32 mask coefficients
for ``segment``. A ``classify`` model's output is (batch, classes): the probabilities of its Classify head.
"""

from __future__ import annotations

import ast

from prepare.errors import UnsupportedModelError
from python_backends.postprocess.tasks import KEYPOINT_VALUES
from python_backends.postprocess.tasks import TASKS as SERVED_TASKS

CLASSIFY = "classify"  # a classifier: output (batch, classes), the Classify head's softmax


def read_task(meta: dict[str, str]) -> tuple[str, tuple[int, int] | None]:
    """The export's task (``detect`` when the metadata has none) and, for ``pose``, its kpt_shape (K, 3)."""
    task = meta.get("task", "detect")
    served = ", ".join((*SERVED_TASKS, CLASSIFY))
    if task not in (*SERVED_TASKS, CLASSIFY):
        raise UnsupportedModelError(f"model task is {task!r}, a task prepare does not know; served: {served}")
    if task != "pose":
        return task, None
    return task, _kpt_shape(meta.get("kpt_shape"))


def _kpt_shape(text: str | None) -> tuple[int, int]:
    if text is None:
        raise UnsupportedModelError(
            "a pose model without 'kpt_shape' in its metadata (keypoints per object, values per keypoint): "
            "export it with Ultralytics, which writes it"
        )
    try:
        shape = ast.literal_eval(text)
        count, dims = (int(v) for v in shape)
    except (ValueError, SyntaxError, TypeError) as exc:
        raise UnsupportedModelError(f"kpt_shape {text!r} is not [keypoints, values per keypoint]") from exc
    if count < 1 or dims != KEYPOINT_VALUES:
        raise UnsupportedModelError(
            f"kpt_shape {text!r}: pose models with {KEYPOINT_VALUES} values per keypoint (x, y, score) are served"
        )
    return count, dims
