"""Postprocessing: YOLOv8 head output → fixed-size detections in original-image pixels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from python_backends.postprocess.nms import Detections, non_max_suppression


@dataclass(frozen=True)
class PaddedDetections:
    """One image's detections in the ensemble's output layout (EfficientNMS names).

    num_dets: int32 (1,); det_boxes: float32 (max_det, 4) x1, y1, x2, y2;
    det_scores: float32 (max_det,); det_classes: int32 (max_det,). Rows past num_dets are zero.
    image_size: int32 (2,) width, height of the original image.
    """

    num_dets: np.ndarray
    det_boxes: np.ndarray
    det_scores: np.ndarray
    det_classes: np.ndarray
    image_size: np.ndarray


def scale_boxes(boxes: np.ndarray, mapping: np.ndarray) -> np.ndarray:
    """Map xyxy boxes from network-input pixels to original-image pixels, clipped to the image.

    Args:
        boxes: float32 (N, 4) x1, y1, x2, y2 in network-input pixels.
        mapping: float32 (5,) the LETTERBOX tensor from preprocessing: gain, pad_x, pad_y, width, height.

    Returns:
        float32 (N, 4) in original-image pixels.
    """
    gain, pad_x, pad_y, width, height = (float(v) for v in mapping)
    out = boxes.astype(np.float32, copy=True)
    out[:, [0, 2]] -= pad_x
    out[:, [1, 3]] -= pad_y
    out /= np.float32(gain)
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, width)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, height)
    return out


class ThresholdError(ValueError):
    """A confidence or IoU threshold outside [0, 1]."""


def check_threshold(name: str, value: float) -> float:
    """Return ``value`` as a float if it is a number in [0, 1], else raise ThresholdError."""
    value = float(value)
    if not 0.0 <= value <= 1.0:  # also false for NaN
        raise ThresholdError(f"{name} must be a number in [0, 1], got {value}")
    return value


class Postprocessor:
    """Decode the head, run Ultralytics-style NMS, and rescale boxes to the original image."""

    def __init__(self, num_classes: int, max_det: int = 300, conf_threshold: float = 0.25, iou_threshold: float = 0.7):
        self.num_classes = num_classes
        self.max_det = max_det
        self.conf_threshold = check_threshold("conf_threshold", conf_threshold)
        self.iou_threshold = check_threshold("iou_threshold", iou_threshold)

    def detect(
        self,
        head: np.ndarray,
        mapping: np.ndarray,
        conf_threshold: float | None = None,
        iou_threshold: float | None = None,
    ) -> Detections:
        """Detections for one image in original-image pixels.

        Args:
            head: float32 (4 + num_classes, num_anchors).
            mapping: float32 (5,) gain, pad_x, pad_y, width, height from preprocessing (LETTERBOX).
            conf_threshold, iou_threshold: per-request values; None uses the defaults.
        """
        if head.ndim != 2 or head.shape[0] != 4 + self.num_classes:
            raise ValueError(f"head output must be (4 + {self.num_classes}, anchors), got {head.shape}")
        conf = self.conf_threshold if conf_threshold is None else check_threshold("conf_threshold", conf_threshold)
        iou = self.iou_threshold if iou_threshold is None else check_threshold("iou_threshold", iou_threshold)
        found = non_max_suppression(head, conf, iou, self.max_det)
        return Detections(scale_boxes(found.boxes, mapping), found.scores, found.class_ids)

    def pad(self, found: Detections, mapping: np.ndarray) -> PaddedDetections:
        """Lay detections out in fixed-size arrays of ``max_det`` rows (``mapping`` gives the image size)."""
        count = len(found)
        boxes = np.zeros((self.max_det, 4), dtype=np.float32)
        scores = np.zeros(self.max_det, dtype=np.float32)
        classes = np.zeros(self.max_det, dtype=np.int32)
        boxes[:count], scores[:count], classes[:count] = found.boxes, found.scores, found.class_ids
        size = np.rint(mapping[3:5]).astype(np.int32)
        return PaddedDetections(np.array([count], dtype=np.int32), boxes, scores, classes, size)
