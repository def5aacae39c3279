"""Draw detections on an image: boxes with class name and score, labels kept inside the image."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from client.api import DetectionResult

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
    """A copy of ``image`` (uint8 (H, W, 3) BGR) with every detection drawn on it."""
    out = image.copy()
    height, width = out.shape[:2]
    thickness, scale = style(height, width)
    for mark in layout(height, width, result):
        x1, y1, x2, y2 = mark.box
        cv2.rectangle(out, (x1, y1), (x2, y2), mark.colour, thickness, cv2.LINE_AA)
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
    return out
