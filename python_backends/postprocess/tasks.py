"""What each task adds to a detection, mapped from network-input to original-image pixels.

pose: ``det_keypoints`` float32 (max_det, K, 3), x and y clipped to the image (Ultralytics' scale_coords)
and each keypoint's score. obb: ``det_obb`` float32 (max_det, 5) cx, cy, w, h and the angle in radians
(Ultralytics' ``obb.xywhr``, not clipped); its ``det_boxes`` row is the rotated box's axis-aligned
bounds (``obb.xyxy``). segment: ``det_masks`` bytes (max_det,), each detection's mask at the original
image's size as COCO compressed RLE (``python_backends.postprocess.masks``); empty past num_dets.
"""

from __future__ import annotations

import numpy as np

from python_backends.postprocess.masks import MASK_COEFFICIENTS

TASKS = ("detect", "pose", "obb", "segment")
TASK_OUTPUTS = {"detect": (), "pose": ("det_keypoints",), "obb": ("det_obb",), "segment": ("det_masks",)}
OBB_VALUES = 5  # cx, cy, w, h, angle
KEYPOINT_VALUES = 3  # x, y, score


def extra_channels(task: str, num_keypoints: int = 0) -> int:
    """Channels a grid head has after its class scores: K x 3 keypoint values for pose, the angle for obb, 32 mask
    coefficients for segment, none for detect."""
    return {"detect": 0, "pose": num_keypoints * KEYPOINT_VALUES, "obb": 1, "segment": MASK_COEFFICIENTS}[task]


def scale_keypoints(keypoints: np.ndarray, mapping: np.ndarray) -> np.ndarray:
    """float32 (N, K, 3) keypoints in network-input pixels → original-image pixels, x and y clipped.

    ``mapping``: float32 (5,) LETTERBOX gain, pad_x, pad_y, width, height.
    """
    gain, pad_x, pad_y, width, height = (float(v) for v in mapping)
    out = keypoints.astype(np.float32, copy=True)
    out[..., 0] = ((out[..., 0] - pad_x) / np.float32(gain)).clip(0, width)
    out[..., 1] = ((out[..., 1] - pad_y) / np.float32(gain)).clip(0, height)
    return out


def scale_rboxes(rboxes: np.ndarray, mapping: np.ndarray) -> np.ndarray:
    """float32 (N, 5) xywhr in network-input pixels → original-image pixels; the angle is kept."""
    gain, pad_x, pad_y = (float(v) for v in mapping[:3])
    out = rboxes.astype(np.float32, copy=True)
    out[:, 0] -= pad_x
    out[:, 1] -= pad_y
    out[:, :4] /= np.float32(gain)
    return out


def rbox_corners(rboxes: np.ndarray) -> np.ndarray:
    """float32 (N, 4, 2) corners of xywhr boxes (N, 5), in Ultralytics' ``xywhr2xyxyxyxy`` order."""
    centre, w, h, angle = rboxes[:, None, :2], rboxes[:, 2:3], rboxes[:, 3:4], rboxes[:, 4:5]
    cos, sin = np.cos(angle), np.sin(angle)
    along = np.concatenate([w / 2 * cos, w / 2 * sin], axis=-1)[:, None]
    across = np.concatenate([-h / 2 * sin, h / 2 * cos], axis=-1)[:, None]
    signs = np.array([[1, 1], [1, -1], [-1, -1], [-1, 1]], np.float32)[None]  # (1, 4, 2): along, across
    return (centre + signs[..., 0:1] * along + signs[..., 1:2] * across).astype(np.float32)


def rbox_bounds(rboxes: np.ndarray) -> np.ndarray:
    """float32 (N, 4) x1, y1, x2, y2: the axis-aligned bounds of xywhr boxes (N, 5), not clipped."""
    corners = rbox_corners(rboxes)
    return np.concatenate([corners.min(axis=1), corners.max(axis=1)], axis=1)


def empty_output(name: str, max_det: int, num_keypoints: int) -> np.ndarray:
    """A task output's empty rows: det_keypoints float32 (max_det, K, 3), det_obb float32 (max_det, 5), zeros;
    det_masks object (max_det,), empty bytes."""
    if name == "det_masks":
        return np.full(max_det, b"", object)
    shape = (max_det, num_keypoints, KEYPOINT_VALUES) if name == "det_keypoints" else (max_det, OBB_VALUES)
    return np.zeros(shape, np.float32)
