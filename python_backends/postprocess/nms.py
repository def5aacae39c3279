"""Ultralytics-compatible non-maximum suppression for YOLOv8/YOLO11 grid heads, in NumPy."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from python_backends.defaults import CONF_THRESHOLD, IOU_THRESHOLD, MAX_DET

MAX_WH = 7680  # Ultralytics' class offset for class-aware NMS
MAX_NMS = 30000  # boxes kept for NMS, by score


@dataclass(frozen=True)
class Detections:
    """Detections for one image, by descending score (an end-to-end head's: in the model's order).

    boxes: float32 (N, 4) x1, y1, x2, y2; scores: float32 (N,); class_ids: int32 (N,).
    extras: float32 (N, E), the task's values of each detection (keypoints, an OBB); E is 0 for detect.
    """

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    extras: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))

    def __len__(self) -> int:
        return len(self.scores)


def xywh_to_xyxy(xywh: np.ndarray) -> np.ndarray:
    """float32 (N, 4) centre x, centre y, width, height → (N, 4) x1, y1, x2, y2."""
    xyxy = np.empty_like(xywh)
    half = xywh[:, 2:] / 2
    xyxy[:, :2] = xywh[:, :2] - half
    xyxy[:, 2:] = xywh[:, :2] + half
    return xyxy


def greedy_nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, max_keep: int) -> np.ndarray:
    """torchvision.ops.nms semantics: keep the best box, drop those with IoU > threshold, repeat.

    Args:
        boxes: float32 (N, 4) xyxy; scores: float32 (N,).
        max_keep: stop once this many boxes are kept (the kept order does not change).

    Returns:
        int64 (K,) indices into ``boxes``, by descending score.
    """
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = (x2 - x1) * (y2 - y1)
    keep: list[int] = []
    while order.size and len(keep) < max_keep:
        best, rest = order[0], order[1:]
        keep.append(int(best))
        # overlaps below 0 are 0: np.maximum, as np.clip(..., 0, None) but without its Python-level overhead
        inter_w = np.maximum(np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]), 0)
        inter_h = np.maximum(np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]), 0)
        inter = inter_w * inter_h
        iou = inter / (areas[best] + areas[rest] - inter)
        order = rest[~(iou > iou_threshold)]
    return np.asarray(keep, dtype=np.int64)


def non_max_suppression(
    head: np.ndarray,
    conf_threshold: float = CONF_THRESHOLD,
    iou_threshold: float = IOU_THRESHOLD,
    max_det: int = MAX_DET,
    classes: np.ndarray | None = None,
    num_classes: int | None = None,
) -> Detections:
    """Decode one image's YOLOv8/YOLO11 head output the way Ultralytics' ``non_max_suppression`` does.

    Best class per anchor, keep score > conf_threshold, class-aware NMS, at most max_det.

    Args:
        head: float32 (4 + num_classes + E, num_anchors): cx, cy, w, h, class scores, then E extra channels
            (a pose head's keypoints) that each detection keeps in ``extras``.
        classes: optional int array of class ids to keep.
        num_classes: the head's classes; None: every channel after the box is a class score.

    Returns:
        Detections in network-input pixels.
    """
    candidates, scores, class_ids = best_classes(head, conf_threshold, num_classes)
    boxes = xywh_to_xyxy(np.ascontiguousarray(head[:4, candidates].T))
    extras = np.ascontiguousarray(head[4 + (num_classes or len(head) - 4) :, candidates].T)
    if classes is not None:
        wanted = np.isin(class_ids, classes)
        boxes, scores, class_ids, extras = boxes[wanted], scores[wanted], class_ids[wanted], extras[wanted]
    if len(scores) > MAX_NMS:
        top = np.argsort(-scores, kind="stable")[:MAX_NMS]
        boxes, scores, class_ids, extras = boxes[top], scores[top], class_ids[top], extras[top]
    offset_boxes = boxes + (class_ids.astype(np.float32) * MAX_WH)[:, None]
    keep = greedy_nms(offset_boxes, scores, iou_threshold, max_det)
    return Detections(boxes[keep], scores[keep], class_ids[keep], extras[keep])


def best_classes(
    head: np.ndarray, conf_threshold: float, num_classes: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The anchors whose best class scores > conf_threshold: int64 (N,) anchor indices, float32 (N,) scores,
    int32 (N,) class ids. ``head``: float32 (4 + num_classes + E, anchors); None: no extra channels."""
    class_scores = head[4 : 4 + num_classes] if num_classes else head[4:]
    scores = class_scores.max(axis=0)
    candidates = np.flatnonzero(scores > conf_threshold)
    class_ids = class_scores[:, candidates].argmax(axis=0).astype(np.int32)
    return candidates, scores[candidates], class_ids
