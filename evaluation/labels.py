"""YOLO label files, read as Ultralytics' ``img2label_paths`` finds them and ``verify_image_label`` checks them.

An image's label file: the last ``/images/`` component of its path becomes ``/labels/`` and the suffix becomes
``.txt``. Each line is one object: a box ``class cx cy w h``, or a polygon ``class x1 y1 x2 y2 x3 y3 ...``
(three points or more: segment labels) whose box is the polygon's extent, as Ultralytics' ``segments2boxes``
makes it. A pose dataset (``kpt_shape: [K, D]`` in DATA.yaml) has one kind of line: the box, then K keypoints of
D values each, ``x y`` or ``x y v`` (v: 0 not labelled, 1 hidden, 2 visible; with D = 2 a keypoint is labelled
unless x or y is below 0, as in Ultralytics). All coordinates are normalised to the image's width and height,
within Ultralytics' 1% tolerance. Repeated lines count once (Ultralytics drops duplicate labels).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

TOLERANCE = 0.01  # normalised coordinates may stray this far outside [0, 1], as in Ultralytics
EXIF_ORIENTATION = 0x0112
ROTATED_ORIENTATIONS = {5, 6, 7, 8}  # EXIF orientations that swap width and height


class DatasetError(ValueError):
    """The dataset file, an image list or a label file is wrong; the message names the file (and line)."""


@dataclass(frozen=True)
class Labels:
    """One image's objects, normalised to its width and height, one row per object in the same order.

    ``boxes``: float32 (N, 5) class, cx, cy, w, h. ``keypoints``: float32 (N, K, 3) x, y, v (v > 0: labelled)
    in a pose dataset, else None. ``polygons``: N float32 (P, 2) outlines x, y: a polygon line's points, a box
    line's four corners. ``segments``: whether any line is a polygon (more than 5 numbers, outside a pose
    dataset).
    """

    boxes: np.ndarray
    keypoints: np.ndarray | None
    polygons: list[np.ndarray]
    segments: bool = False


def label_path(image: Path) -> Path:
    """The label file of absolute path ``image``: the last ``/images/`` becomes ``/labels/``, the suffix ``.txt``."""
    images, labels = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    return Path(labels.join(str(image).rsplit(images, 1)).rsplit(".", 1)[0] + ".txt")


def read_labels(path: Path, num_classes: int, kpt_shape: tuple[int, int] | None = None) -> Labels:
    """The unique objects of a label file (none if it is missing), ordered by box; pose lines with ``kpt_shape``.

    DatasetError, naming the file and line, for a line that is not a box, a polygon (without ``kpt_shape``) or a
    pose line (with it) of numbers, a class id that is not an integer in [0, num_classes), a coordinate outside
    [0, 1] (beyond the tolerance), or a negative keypoint visibility.
    """
    lines = path.read_text().splitlines() if path.is_file() else []
    rows = {row_of(line, f"{path}:{n}", num_classes, kpt_shape) for n, line in enumerate(lines, 1)} - {None}
    rows = sorted(rows)  # (box, rest): by box first, as np.unique orders Ultralytics' rows
    boxes = np.array([box for box, _ in rows], np.float32).reshape(-1, 5)
    if kpt_shape is not None:
        count, values = kpt_shape
        points = np.array([rest for _, rest in rows], np.float32).reshape(-1, count, values)
        if values == 2:
            labelled = (points[..., 0] >= 0) & (points[..., 1] >= 0)
            points = np.concatenate([points, labelled[..., None].astype(np.float32)], axis=-1)
        return Labels(boxes, points, [corners(box) for box, _ in rows])
    polygons = [np.array(rest, np.float32).reshape(-1, 2) if rest else corners(box) for box, rest in rows]
    return Labels(boxes, None, polygons, any(rest for _, rest in rows))


def row_of(
    line: str, where: str, num_classes: int, kpt_shape: tuple[int, int] | None = None
) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """(class, cx, cy, w, h) and the line's other values (a polygon's points or the keypoints; () for a box) of
    one label line; None for a blank line. ``where`` is "file:line" for errors."""
    fields = line.split()
    if not fields:
        return None
    if kpt_shape is None:
        shape = "'class cx cy w h' or a polygon 'class x1 y1 x2 y2 x3 y3 ...'"
        well_formed = len(fields) == 5 or (len(fields) >= 7 and len(fields) % 2 == 1)
    else:
        count, values = kpt_shape
        shape = f"'class cx cy w h' and {count} keypoints of {values} values ({5 + count * values} numbers)"
        well_formed = len(fields) == 5 + count * values
    if not well_formed:
        raise DatasetError(f"{where}: expected {shape}, got {line.strip()!r}")
    try:
        class_id, *numbers = (float(v) for v in fields)
    except ValueError:
        raise DatasetError(f"{where}: expected {shape}, got {line.strip()!r}") from None
    if class_id != int(class_id) or not 0 <= class_id < num_classes:
        raise DatasetError(f"{where}: class {fields[0]} is not a class id in 0..{num_classes - 1}")
    if kpt_shape is None:
        coordinates, rest = numbers, tuple(numbers) if len(numbers) > 4 else ()
    else:
        rest = tuple(numbers[4:])
        points = np.array(rest).reshape(kpt_shape)
        if kpt_shape[1] == 3 and (points[:, 2] < 0).any():
            raise DatasetError(f"{where}: a keypoint's visibility is negative in {' '.join(fields[1:])}")
        coordinates = numbers[:4] + points[:, :2].ravel().tolist()
    if not all(-TOLERANCE <= v <= 1 + TOLERANCE for v in coordinates):
        raise DatasetError(f"{where}: coordinates must be normalised to [0, 1], got {' '.join(fields[1:])}")
    if len(numbers) == 4 or kpt_shape is not None:
        return (class_id, *numbers[:4]), rest
    xs, ys = numbers[0::2], numbers[1::2]
    x1, y1, x2, y2 = min(xs), min(ys), max(xs), max(ys)
    return (class_id, (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1), rest


def corners(box: tuple[float, ...]) -> np.ndarray:
    """float32 (4, 2) corners of a box (class, cx, cy, w, h), clockwise from the top left."""
    _, cx, cy, w, h = box
    x1, y1, x2, y2 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
    return np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], np.float32)


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
