"""Detections from an end-to-end head: rows the model has already chosen, no NMS.

YOLO26 and YOLOv10 exported end-to-end, and exports with NMS inside the graph (``nms=True``), output
float32 (batch, rows, 6 + extra): x1, y1, x2, y2, score, class id, then the task's values (pose: K x (x, y,
score); obb: the angle, its box cx, cy, w, h), in network-input pixels, zero rows as padding.
"""

from __future__ import annotations

import numpy as np

from python_backends.defaults import CONF_THRESHOLD, MAX_DET
from python_backends.postprocess.nms import Detections

END2END_COLUMNS = 6  # x1, y1, x2, y2, score, class id


def end2end_detections(
    rows: np.ndarray, conf_threshold: float = CONF_THRESHOLD, max_det: int = MAX_DET, classes: np.ndarray | None = None
) -> Detections:
    """Keep one image's rows the way Ultralytics' ``non_max_suppression`` does for an end-to-end head.

    Rows with score > conf_threshold (and, with ``classes``, one of those class ids), in the model's order
    (by descending score in Ultralytics' exports), the first ``max_det`` of them. The IoU threshold has no
    part: the model has already removed overlaps.

    Args:
        rows: float32 (R, 6 + extra) x1, y1, x2, y2, score, class id, then the task's values.
        classes: optional int array of class ids to keep.

    Returns:
        Detections in network-input pixels; ``extras`` float32 (N, extra), the kept rows' task values.
    """
    scores = rows[:, 4]
    class_ids = rows[:, 5].astype(np.int32)
    kept = scores > conf_threshold
    if classes is not None:
        kept &= np.isin(class_ids, classes)
    index = np.flatnonzero(kept)[:max_det]
    return Detections(
        rows[index, :4].astype(np.float32),
        scores[index].astype(np.float32),
        class_ids[index].astype(np.int32),
        rows[index, END2END_COLUMNS:].astype(np.float32),
    )
