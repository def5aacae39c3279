"""Draw detections on an image: boxes with class name and score, labels kept inside the image.

A pose model's detections get their keypoints and skeleton, an OBB model's their rotated box in place of
the axis-aligned one, a segment model's their mask tinted in their colour, and a classifier's result its top 5
in the top-left corner (``client.draw_tasks``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from client.api import DetectionResult
from client.draw_tasks import draw_keypoints, draw_mask, draw_obb, draw_top5

# Distinct, readable colours (BGR), cycled by class id.
PALETTE = (
    (56, 56, 255),
    (151, 157, 255),
    (31, 112, 255),
    (29, 178, 255),
    (49, 210, 207),
    (10, 249, 72),
    (23, 204, 146),
    (134, 219, 61),
    (52, 147, 26),
    (187, 212, 0),
    (168, 153, 44),
    (255, 194, 0),
)
FONT = cv2.FONT_HERSHEY_SIMPLEX


@dataclass(frozen=True)
class Mark:
    """Where one detection is drawn: its box and its filled label rectangle, (x1, y1, x2, y2) in pixels."""

    box: tuple[int, int, int, int]
    label_box: tuple[int, int, int, int]
    text: str
    colour: tuple[int, int, int]


def style(height: int, width: int) -> tuple[int, float]:
    """(line thickness, font scale) that stay readable at this image size."""
    thickness = max(1, round(0.002 * (height + width)))
    return thickness, max(0.4, thickness / 3)


def layout(height: int, width: int, result: DetectionResult) -> list[Mark]:
    """Place every box and label; a label sits above its box when there is room, else inside it."""
    thickness, scale = style(height, width)
    marks = []
    for det in result.detections:
        x1, y1, x2, y2 = (int(round(v)) for v in det.box)
        text = f"{det.class_name} {det.score:.2f}"
        (text_w, text_h), baseline = cv2.getTextSize(text, FONT, scale, max(1, thickness - 1))
        label_h, label_w = text_h + baseline + 2, text_w + 2
        top = y1 - label_h if y1 - label_h >= 0 else y1
        top = min(max(0, top), max(0, height - label_h))
        left = min(max(0, x1), max(0, width - label_w))
        colour = PALETTE[det.class_id % len(PALETTE)]
        marks.append(Mark((x1, y1, x2, y2), (left, top, left + label_w, top + label_h), text, colour))
    return marks


def annotate(image: np.ndarray, result: DetectionResult) -> np.ndarray:
    """A copy of ``image`` (uint8 (H, W, 3) BGR) with every detection (or a classifier's top 5) drawn on it."""
    out = image.copy()
    height, width = out.shape[:2]
    thickness, scale = style(height, width)
    for det, mark in zip(result.detections, layout(height, width, result)):  # a mark per detection
        x1, y1, x2, y2 = mark.box
        if det.rle is not None:
            draw_mask(out, det, mark.colour)
        if det.obb is not None:
            draw_obb(out, det, mark.colour, thickness)
        else:
            cv2.rectangle(out, (x1, y1), (x2, y2), mark.colour, thickness, cv2.LINE_AA)
        if det.keypoints is not None:
            draw_keypoints(out, det, mark.colour, thickness)
        left, top, right, bottom = mark.label_box
        cv2.rectangle(out, (left, top), (right, bottom), mark.colour, -1)
        text_colour = (0, 0, 0) if sum(mark.colour) > 400 else (255, 255, 255)
        baseline = cv2.getTextSize(mark.text, FONT, scale, max(1, thickness - 1))[1]
        cv2.putText(
            out,
            mark.text,
            (left + 1, bottom - baseline - 1),
            FONT,
            scale,
            text_colour,
            max(1, thickness - 1),
            cv2.LINE_AA,
        )
    if result.classification is not None:
        draw_top5(out, result.classification, thickness, scale, FONT)
    return out


@contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Send what C libraries write to stderr (file descriptor 2) to /dev/null while the block runs.

    libpng, inside OpenCV, prints "libpng warning: iCCP: known incorrect sRGB profile" when it
    reads astronaut.png: the file carries an sRGB colour profile that libpng deems malformed.
    It is harmless (OpenCV ignores colour profiles), and no OpenCV setting turns it off.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def read_image(path: Path) -> np.ndarray | None:
    """uint8 BGR (H, W, 3) pixels of the image file at ``path`` (None when OpenCV cannot read it), without
    libpng's warnings about colour profiles on stderr."""
    with native_stderr_silenced():
        return cv2.imread(str(path), cv2.IMREAD_COLOR)
