"""Draw what a pose, OBB or segment model adds to a detection (its keypoints and skeleton, its rotated box,
its mask), and a classifier's top 5."""

from __future__ import annotations

import cv2
import numpy as np

from client.api import Classification, Detection

MASK_OPACITY = 0.5  # a mask's colour over the photo
KEYPOINT_MIN_SCORE = 0.25  # keypoints scored lower are not drawn (Ultralytics' plotting default)
# COCO's 17-point skeleton as pairs of keypoint indices (nose, eyes, ears, shoulders, elbows, wrists, hips,
# knees, ankles); drawn for a model with 17 keypoints.
COCO_SKELETON = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7),
    (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)  # fmt: skip


def obb_corners(obb: tuple[float, float, float, float, float]) -> np.ndarray:
    """int32 (4, 2) pixel corners of a rotated box cx, cy, w, h, angle (radians)."""
    cx, cy, w, h, angle = obb
    return np.rint(cv2.boxPoints(((cx, cy), (w, h), float(np.degrees(angle))))).astype(np.int32)


def draw_obb(image: np.ndarray, det: Detection, colour: tuple[int, int, int], thickness: int) -> None:
    """Outline ``det.obb`` on ``image`` (uint8 (H, W, 3) BGR), in place."""
    cv2.polylines(image, [obb_corners(det.obb)], True, colour, thickness, cv2.LINE_AA)


def draw_keypoints(image: np.ndarray, det: Detection, colour: tuple[int, int, int], thickness: int) -> None:
    """Draw ``det.keypoints`` scored at least KEYPOINT_MIN_SCORE, and for 17 of them COCO's skeleton, in place."""
    points = [(int(round(x)), int(round(y))) if score >= KEYPOINT_MIN_SCORE else None for x, y, score in det.keypoints]
    if len(points) == len(COCO_SKELETON) - 2:  # 17 keypoints, 19 limbs
        for first, second in COCO_SKELETON:
            if points[first] and points[second]:
                cv2.line(image, points[first], points[second], colour, max(1, thickness - 1), cv2.LINE_AA)
    for point in filter(None, points):
        cv2.circle(image, point, thickness + 2, colour, -1, cv2.LINE_AA)


def draw_top5(
    image: np.ndarray,
    classification: Classification,
    thickness: int,
    scale: float,
    font: int = cv2.FONT_HERSHEY_SIMPLEX,
) -> None:
    """Write a classifier's top 5, one "name score" line each on a dark band, down the top-left corner, in place."""
    lines = [f"{name} {score:.2f}" for name, score in classification.top5]
    weight = max(1, thickness - 1)
    sizes = [cv2.getTextSize(line, font, scale, weight) for line in lines]
    top = 0
    for line, ((width, height), baseline) in zip(lines, sizes):
        bottom = top + height + baseline + 4
        cv2.rectangle(image, (0, top), (width + 6, bottom), (0, 0, 0), -1)
        cv2.putText(image, line, (3, bottom - baseline - 2), font, scale, (255, 255, 255), weight, cv2.LINE_AA)
        top = bottom


def draw_mask(image: np.ndarray, det: Detection, colour: tuple[int, int, int]) -> None:
    """Tint ``det.mask``'s pixels of ``image`` (uint8 (H, W, 3) BGR) with ``colour``, in place."""
    mask = det.mask
    if mask.shape != image.shape[:2]:  # a mask of another image: nothing of it belongs here
        return
    image[mask] = (image[mask] * (1 - MASK_OPACITY) + np.array(colour) * MASK_OPACITY).astype(np.uint8)
