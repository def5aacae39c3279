"""Postprocessing: the model's output → fixed-size detections in original-image pixels."""

from __future__ import annotations

import numpy as np

from python_backends.defaults import CONF_THRESHOLD, IOU_THRESHOLD, MAX_DET
from python_backends.postprocess.end2end import END2END_COLUMNS, end2end_detections
from python_backends.postprocess.masks import box_masks, encode_masks
from python_backends.postprocess.nms import Detections, non_max_suppression
from python_backends.postprocess.rotated import rotated_nms
from python_backends.postprocess.tasks import (
    KEYPOINT_VALUES,
    TASK_OUTPUTS,
    TASKS,
    empty_output,
    extra_channels,
    rbox_bounds,
    scale_keypoints,
    scale_rboxes,
)

HEADS = ("raw", "end2end")  # (4 + classes + extra, anchors): NMS here | (rows, 6 + extra): rows the model chose

OUTPUTS = ("num_dets", "det_boxes", "det_scores", "det_classes", "image_size")  # every task's


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
    """Turn one image's head into detections in original-image pixels.

    ``head_kind`` ``raw``: a YOLOv8/YOLO11 head, float32 (4 + num_classes + extra, num_anchors), decoded with
    Ultralytics-style NMS; ``task`` ``pose`` has num_keypoints * 3 extra channels, ``obb`` one (the angle,
    rotated NMS), ``segment`` 32 mask coefficients, with the prototypes as a second input. ``end2end``:
    float32 (rows, 6 + extra) x1, y1, x2, y2 (obb: cx, cy, w, h), score, class id and the same extra values,
    rows the model has chosen itself (YOLO26, YOLOv10, NMS in the graph): kept by score only, the IoU
    threshold is checked but has no effect.
    """

    def __init__(
        self,
        num_classes: int,
        max_det: int = MAX_DET,
        conf_threshold: float = CONF_THRESHOLD,
        iou_threshold: float = IOU_THRESHOLD,
        head_kind: str = "raw",
        task: str = "detect",
        num_keypoints: int = 0,
    ):
        if head_kind not in HEADS:
            raise ValueError(f"head must be one of {', '.join(HEADS)}, got {head_kind!r}")
        if task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
        if (task == "pose") != (num_keypoints > 0):
            raise ValueError(f"num_keypoints is for pose only and must be positive there, got {num_keypoints}")
        self.task = task
        self.num_keypoints = num_keypoints
        self.outputs = OUTPUTS + TASK_OUTPUTS[task]
        self.channels = 4 + num_classes + extra_channels(task, num_keypoints)
        self.end2end_columns = END2END_COLUMNS + extra_channels(task, num_keypoints)
        self.num_classes = num_classes
        self.max_det = max_det
        self.conf_threshold = check_threshold("conf_threshold", conf_threshold)
        self.iou_threshold = check_threshold("iou_threshold", iou_threshold)
        self.head_kind = head_kind

    def detect(
        self,
        head: np.ndarray,
        mapping: np.ndarray,
        conf_threshold: float | None = None,
        iou_threshold: float | None = None,
        prototypes: np.ndarray | None = None,
    ) -> Detections:
        """Detections for one image in original-image pixels.

        Args:
            head: float32 (4 + num_classes + extra, num_anchors) for a raw head, (rows, 6 + extra) for an end2end one.
            mapping: float32 (5,) gain, pad_x, pad_y, width, height from preprocessing (LETTERBOX).
            conf_threshold, iou_threshold: per-request values; None uses the defaults.
            prototypes: segment only: float32 (32, H/4, W/4), the head's mask prototypes.

        Returns:
            Detections whose ``extras`` are pose's keypoints, float32 (N, K, 3), obb's xywhr (N, 5), or
            segment's masks, object (N,) COCO RLE bytes. A segment detection whose mask is empty is dropped,
            as Ultralytics drops it.
        """
        conf = self.conf_threshold if conf_threshold is None else check_threshold("conf_threshold", conf_threshold)
        iou = self.iou_threshold if iou_threshold is None else check_threshold("iou_threshold", iou_threshold)
        if self.head_kind == "end2end":
            if head.ndim != 2 or head.shape[1] != self.end2end_columns:
                columns = self.end2end_columns
                raise ValueError(f"an end2end {self.task} head must be (rows, {columns}), got {head.shape}")
            found = end2end_detections(head, conf, self.max_det)
        else:
            if head.ndim != 2 or head.shape[0] != self.channels:
                raise ValueError(f"a {self.task} head must be ({self.channels}, anchors), got {head.shape}")
            if self.task == "obb":
                found = rotated_nms(head, conf, iou, self.max_det, self.num_classes)
            else:
                found = non_max_suppression(head, conf, iou, self.max_det, num_classes=self.num_classes)
        if self.task == "obb":  # boxes are cx, cy, w, h and extras the angle, from either head
            rboxes = scale_rboxes(np.concatenate([found.boxes, found.extras], axis=1), mapping)
            return Detections(rbox_bounds(rboxes), found.scores, found.class_ids, rboxes)
        extras, boxes = found.extras, scale_boxes(found.boxes, mapping)
        if self.task == "pose":
            extras = scale_keypoints(extras.reshape(len(found), self.num_keypoints, KEYPOINT_VALUES), mapping)
        if self.task == "segment":
            return _with_masks(Detections(boxes, found.scores, found.class_ids, extras), prototypes, mapping)
        return Detections(boxes, found.scores, found.class_ids, extras)

    def pad(self, found: Detections, mapping: np.ndarray) -> dict[str, np.ndarray]:
        """One image's outputs by name (``self.outputs``), laid out in ``max_det`` rows, zero past num_dets.

        num_dets: int32 (1,); det_boxes: float32 (max_det, 4) x1, y1, x2, y2; det_scores: float32 (max_det,);
        det_classes: int32 (max_det,); image_size: int32 (2,) width, height of the original image (from
        ``mapping``); pose's det_keypoints float32 (max_det, K, 3), obb's det_obb float32 (max_det, 5),
        segment's det_masks object (max_det,) COCO RLE bytes, empty past num_dets.
        """
        count = len(found)
        out = {
            "num_dets": np.array([count], dtype=np.int32),
            "det_boxes": np.zeros((self.max_det, 4), dtype=np.float32),
            "det_scores": np.zeros(self.max_det, dtype=np.float32),
            "det_classes": np.zeros(self.max_det, dtype=np.int32),
            "image_size": np.rint(mapping[3:5]).astype(np.int32),
        }
        out["det_boxes"][:count], out["det_scores"][:count] = found.boxes, found.scores
        out["det_classes"][:count] = found.class_ids
        for name in TASK_OUTPUTS[self.task]:
            out[name] = empty_output(name, self.max_det, self.num_keypoints)
            out[name][:count] = found.extras
        return out

    def batch(
        self,
        heads: np.ndarray,
        mappings: np.ndarray,
        confs: list[float | None],
        ious: list[float | None],
        prototypes: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        """A batch's outputs by name (``self.outputs``), each image's detections in its rows.

        Args:
            heads: float32 (B, 4 + num_classes, num_anchors) raw, or (B, rows, 6) end2end.
            mappings: float32 (B, 5) LETTERBOX; confs, ious: B per-image thresholds (None: the default).
            prototypes: segment only: float32 (B, 32, H/4, W/4).

        Returns:
            num_dets (B, 1), det_boxes (B, max_det, 4), det_scores (B, max_det), det_classes (B, max_det),
            image_size (B, 2), and the task's det_keypoints (B, max_det, K, 3), det_obb (B, max_det, 5) or
            det_masks (B, max_det), dtypes as in ``pad``.
        """
        if self.task == "segment" and (prototypes is None or len(prototypes) != len(heads)):
            raise ValueError("a segment head needs its prototypes, one (32, H/4, W/4) per image")
        each = [None] * len(heads) if prototypes is None else prototypes
        padded = [
            self.pad(self.detect(head, mapping, conf, iou, protos), mapping)
            for head, mapping, conf, iou, protos in zip(heads, mappings, confs, ious, each)
        ]
        return {name: np.stack([p[name] for p in padded]) for name in self.outputs}


def _with_masks(found: Detections, prototypes: np.ndarray, mapping: np.ndarray) -> Detections:
    """``found`` (extras: float32 (N, 32) mask coefficients) with its masks as COCO RLE bytes, those with an empty
    mask dropped. ``prototypes``: float32 (32, H/4, W/4); ``mapping``: LETTERBOX, its width and height the image's."""
    width, height = (int(v) for v in np.rint(mapping[3:5]))
    masks = box_masks(prototypes, found.extras, found.boxes, (height, width))
    kept = np.array([box.by_column.any() for box in masks], bool)
    rles = np.empty(int(kept.sum()), object)
    rles[:] = encode_masks([m for m, keep in zip(masks, kept) if keep], (height, width))
    return Detections(found.boxes[kept], found.scores[kept], found.class_ids[kept], rles)
