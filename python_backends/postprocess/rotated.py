"""Rotated NMS for OBB heads, by ProbIoU, as Ultralytics' ``non_max_suppression(rotated=True)`` does it.

An OBB box is xywhr: centre x, centre y, width, height and the angle in radians. Ultralytics compares two
boxes as Gaussians (``batch_probiou``, https://arxiv.org/pdf/2106.06072v1.pdf) and suppresses with
Fast-NMS (``TorchNMS.fast_nms``): a box is dropped when any higher-scored box, kept or not, overlaps it by
more than the IoU threshold.
"""

from __future__ import annotations

import numpy as np

from python_backends.defaults import CONF_THRESHOLD, IOU_THRESHOLD, MAX_DET
from python_backends.postprocess.nms import MAX_NMS, MAX_WH, Detections, best_classes

EPS = 1e-7  # Ultralytics' batch_probiou eps


def covariance(rboxes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each box's Gaussian covariance [[a, c], [c, b]]: three float32 (N,) arrays. ``rboxes``: (N, 5) xywhr."""
    a, b = rboxes[:, 2] ** 2 / 12, rboxes[:, 3] ** 2 / 12
    cos, sin = np.cos(rboxes[:, 4]), np.sin(rboxes[:, 4])
    return a * cos**2 + b * sin**2, a * sin**2 + b * cos**2, (a - b) * cos * sin


def batch_probiou(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """ProbIoU of every pair: float32 (N, M) for xywhr boxes ``first`` (N, 5) and ``second`` (M, 5)."""
    x1, y1 = first[:, 0:1], first[:, 1:2]
    x2, y2 = second[None, :, 0], second[None, :, 1]
    a1, b1, c1 = (v[:, None] for v in covariance(first))
    a2, b2, c2 = (v[None] for v in covariance(second))
    spread = (a1 + a2) * (b1 + b2) - (c1 + c2) ** 2
    t1 = ((a1 + a2) * (y1 - y2) ** 2 + (b1 + b2) * (x1 - x2) ** 2) / (spread + EPS) * 0.25
    t2 = ((c1 + c2) * (x2 - x1) * (y1 - y2)) / (spread + EPS) * 0.5
    dets = np.clip(a1 * b1 - c1**2, 0, None) * np.clip(a2 * b2 - c2**2, 0, None)
    t3 = np.log(spread / (4 * np.sqrt(dets) + EPS) + EPS) * 0.5
    distance = np.clip(t1 + t2 + t3, EPS, 100.0)
    return 1 - np.sqrt(1.0 - np.exp(-distance) + EPS)


def fast_nms(rboxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """int64 (K,) indices of the boxes Fast-NMS keeps, by descending score. ``rboxes``: float32 (N, 5) xywhr."""
    order = np.argsort(-scores, kind="stable")
    ious = np.triu(batch_probiou(rboxes[order], rboxes[order]), k=1)
    return order[~(ious > iou_threshold).any(axis=0)]


def rotated_nms(
    head: np.ndarray,
    conf_threshold: float = CONF_THRESHOLD,
    iou_threshold: float = IOU_THRESHOLD,
    max_det: int = MAX_DET,
    num_classes: int | None = None,
) -> Detections:
    """Decode one image's OBB head: best class per anchor, score > conf_threshold, class-aware rotated NMS.

    Args:
        head: float32 (4 + num_classes + 1, num_anchors): cx, cy, w, h, class scores, the angle in radians.

    Returns:
        Detections in network-input pixels whose ``boxes`` are cx, cy, w, h (not corners) and ``extras``
        float32 (N, 1) the angle.
    """
    candidates, scores, class_ids = best_classes(head, conf_threshold, num_classes or len(head) - 5)
    rboxes = np.ascontiguousarray(head[[0, 1, 2, 3, -1]][:, candidates].T)
    if len(scores) > MAX_NMS:
        top = np.argsort(-scores, kind="stable")[:MAX_NMS]
        rboxes, scores, class_ids = rboxes[top], scores[top], class_ids[top]
    offset = rboxes.copy()
    offset[:, :2] += (class_ids.astype(np.float32) * MAX_WH)[:, None]
    keep = fast_nms(offset, scores, iou_threshold)[:max_det]
    return Detections(rboxes[keep, :4], scores[keep], class_ids[keep], rboxes[keep, 4:])
