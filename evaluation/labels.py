"""YOLO label files, read as Ultralytics' ``img2label_paths`` finds them and ``verify_image_label`` checks them.

An image's label file: the last ``/images/`` component of its path becomes ``/labels/`` and the suffix becomes
``.txt``. Each line is one object: a box ``class cx cy w h``, or a polygon ``class x1 y1 x2 y2 x3 y3 ...``
(three points or more) whose box is the polygon's extent, as Ultralytics' ``segments2boxes`` makes it. All
coordinates are normalised to the image's width and height, within Ultralytics' 1% tolerance. Repeated rows
count once (Ultralytics drops duplicate labels).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

TOLERANCE = 0.01  # normalised coordinates may stray this far outside [0, 1], as in Ultralytics
EXIF_ORIENTATION = 0x0112
ROTATED_ORIENTATIONS = {5, 6, 7, 8}  # EXIF orientations that swap width and height


class DatasetError(ValueError):
    """The dataset file, an image list or a label file is wrong; the message names the file (and line)."""


def label_path(image: Path) -> Path:
    """The label file of absolute path ``image``: the last ``/images/`` becomes ``/labels/``, the suffix ``.txt``."""
    images, labels = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    return Path(labels.join(str(image).rsplit(images, 1)).rsplit(".", 1)[0] + ".txt")


def read_labels(path: Path, num_classes: int) -> np.ndarray:
    """float32 (N, 5) unique rows of class, cx, cy, w, h (normalised) from a label file; (0, 5) if it is missing.

    DatasetError, naming the file and line, for a line that is neither a box nor a polygon of numbers, a class
    id that is not an integer in [0, num_classes), or a coordinate outside [0, 1] (beyond the tolerance).
    """
    if not path.is_file():
        return np.zeros((0, 5), np.float32)
    rows = [row_of(line, f"{path}:{n}", num_classes) for n, line in enumerate(path.read_text().splitlines(), 1)]
    labels = np.array([row for row in rows if row is not None], np.float32).reshape(-1, 5)
    return np.unique(labels, axis=0)


def row_of(line: str, where: str, num_classes: int) -> list[float] | None:
    """class, cx, cy, w, h of one label line (None for a blank line); ``where`` is "file:line" for errors."""
    fields = line.split()
    if not fields:
        return None
    shape = "'class cx cy w h' or a polygon 'class x1 y1 x2 y2 x3 y3 ...'"
    if not (len(fields) == 5 or (len(fields) >= 7 and len(fields) % 2 == 1)):
        raise DatasetError(f"{where}: expected {shape}, got {line.strip()!r}")
    try:
        class_id, *coordinates = (float(v) for v in fields)
    except ValueError:
        raise DatasetError(f"{where}: expected {shape}, got {line.strip()!r}") from None
    if class_id != int(class_id) or not 0 <= class_id < num_classes:
        raise DatasetError(f"{where}: class {fields[0]} is not a class id in 0..{num_classes - 1}")
    if not all(-TOLERANCE <= v <= 1 + TOLERANCE for v in coordinates):
        raise DatasetError(f"{where}: coordinates must be normalised to [0, 1], got {' '.join(fields[1:])}")
    if len(coordinates) == 4:
        return [class_id, *coordinates]
    xs, ys = coordinates[0::2], coordinates[1::2]
    x1, y1, x2, y2 = min(xs), min(ys), max(xs), max(ys)
    return [class_id, (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1]


def to_pixels(labels: np.ndarray, width: int, height: int) -> np.ndarray:
    """float32 (N, 5) class, cx, cy, w, h normalised → float32 (N, 5) class, x1, y1, x2, y2 in pixels."""
    out = np.empty_like(labels)
    out[:, 0] = labels[:, 0]
    out[:, 1] = (labels[:, 1] - labels[:, 3] / 2) * width
    out[:, 2] = (labels[:, 2] - labels[:, 4] / 2) * height
    out[:, 3] = (labels[:, 1] + labels[:, 3] / 2) * width
    out[:, 4] = (labels[:, 2] + labels[:, 4] / 2) * height
    return out


def file_image_size(image: Path) -> tuple[int, int]:
    """(width, height) of ``image`` from its header, EXIF orientation applied; OSError if unreadable.

    For callers that have no decoder's size at hand (``evaluation.coco.Prediction.size`` is None).
    """
    try:
        with Image.open(image) as img:
            width, height = img.size
            if img.getexif().get(EXIF_ORIENTATION) in ROTATED_ORIENTATIONS:
                width, height = height, width
    except UnidentifiedImageError as exc:
        raise OSError(f"not an image: {exc}") from None
    return width, height
