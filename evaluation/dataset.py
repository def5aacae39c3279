"""Ultralytics detection datasets: the DATA.yaml file, its images and their YOLO-format labels.

DATA.yaml holds ``path`` (the dataset root, relative to the yaml's folder; the yaml's folder when absent),
``val`` (a folder of images searched recursively, a .txt file listing images, or a list of these; relative
to ``path``) and ``names`` (a list, or a {class id: name} mapping).

Each image's labels are in a .txt file found the way Ultralytics finds them: the last ``/images/``
component of the image's path becomes ``/labels/`` and the suffix becomes ``.txt``. Each line is
``class cx cy w h`` with the box centre and size normalised to [0, 1]. A missing label file means the
image has no objects.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = {".bmp", ".dng", ".jpeg", ".jpg", ".mpo", ".png", ".tif", ".tiff", ".webp", ".pfm"}
EXIF_ORIENTATION = 0x0112
ROTATED_ORIENTATIONS = {5, 6, 7, 8}  # EXIF orientations that swap width and height


class DatasetError(ValueError):
    """The dataset file, an image list or a label file is wrong; the message names the file (and line)."""


def label_path(image: Path) -> Path:
    """The label file of ``image``: the last ``/images/`` becomes ``/labels/``, the suffix ``.txt``."""
    images, labels = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    return Path(labels.join(str(image).rsplit(images, 1)).rsplit(".", 1)[0] + ".txt")


def read_labels(path: Path, num_classes: int) -> np.ndarray:
    """float32 (N, 5) rows of class, cx, cy, w, h (normalised) from a YOLO label file; (0, 5) if it is missing.

    DatasetError, naming the file and line, for a line that is not five numbers, a class id that is not an
    integer in [0, num_classes), or a coordinate outside [0, 1].
    """
    if not path.exists():
        return np.zeros((0, 5), np.float32)
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{path}:{number}"
        if len(fields) != 5:
            raise DatasetError(f"{where}: expected 5 numbers 'class cx cy w h', got {line.strip()!r}")
        try:
            values = [float(v) for v in fields]
        except ValueError:
            raise DatasetError(f"{where}: expected 5 numbers 'class cx cy w h', got {line.strip()!r}") from None
        class_id = values[0]
        if class_id != int(class_id) or not 0 <= class_id < num_classes:
            raise DatasetError(f"{where}: class {fields[0]} is not a class id in 0..{num_classes - 1}")
        if not all(0.0 <= v <= 1.0 for v in values[1:]):
            raise DatasetError(f"{where}: coordinates must be normalised to [0, 1], got {' '.join(fields[1:])}")
        rows.append(values)
    return np.array(rows, np.float32).reshape(-1, 5)


def image_size(image: Path) -> tuple[int, int]:
    """(width, height) of ``image`` as decoded with its EXIF orientation applied; OSError if unreadable."""
    try:
        with Image.open(image) as img:
            width, height = img.size
            if img.getexif().get(EXIF_ORIENTATION) in ROTATED_ORIENTATIONS:
                width, height = height, width
    except UnidentifiedImageError as exc:
        raise OSError(f"not an image: {exc}") from None
    return width, height


def to_pixels(labels: np.ndarray, width: int, height: int) -> np.ndarray:
    """float32 (N, 5) class, cx, cy, w, h normalised → float32 (N, 5) class, x1, y1, x2, y2 in pixels."""
    out = np.empty_like(labels)
    out[:, 0] = labels[:, 0]
    out[:, 1] = (labels[:, 1] - labels[:, 3] / 2) * width
    out[:, 2] = (labels[:, 2] - labels[:, 4] / 2) * height
    out[:, 3] = (labels[:, 1] + labels[:, 3] / 2) * width
    out[:, 4] = (labels[:, 2] + labels[:, 4] / 2) * height
    return out


@dataclass
class Dataset:
    """The validation images of a dataset, its class names and every image's normalised labels.

    ``images``: the image files, sorted, duplicates dropped; ``names``: class id → name;
    ``normalised``: image → float32 (N, 5) class, cx, cy, w, h as in its label file.
    """

    images: list[Path]
    names: dict[int, str]
    normalised: dict[Path, np.ndarray] = field(repr=False)

    def labels(self, image: Path) -> np.ndarray:
        """float32 (N, 5) class, x1, y1, x2, y2 in pixels of ``image``; OSError if the image is unreadable."""
        width, height = image_size(image)
        return to_pixels(self.normalised[image], width, height)


def load_dataset(data_yaml: Path) -> Dataset:
    """Read DATA.yaml, list its ``val`` images and read (and check) every label file.

    DatasetError for a missing or malformed DATA.yaml, ``val`` entries that don't exist or hold no image,
    and bad label lines (see ``read_labels``).
    """
    data_yaml = Path(data_yaml)
    try:
        data = yaml.safe_load(data_yaml.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise DatasetError(f"{data_yaml}: {exc}") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{data_yaml}: expected a mapping with path, val and names")
    names = class_names(data.get("names"), data_yaml)
    root = data_yaml.parent / data["path"] if data.get("path") else data_yaml.parent
    if not data.get("val"):
        raise DatasetError(f"{data_yaml}: no 'val' entry")
    entries = data["val"] if isinstance(data["val"], list) else [data["val"]]
    images = sorted({image for entry in entries for image in list_images(root / str(entry), data_yaml)})
    if not images:
        raise DatasetError(f"{data_yaml}: 'val' lists no images")
    normalised = {image: read_labels(label_path(image), len(names)) for image in images}
    return Dataset(images, names, normalised)


def class_names(names: object, data_yaml: Path) -> dict[int, str]:
    """{class id: name} from ``names`` given as a list or a mapping with ids 0..n-1."""
    if isinstance(names, list):
        return {i: str(name) for i, name in enumerate(names)}
    if isinstance(names, dict) and names:
        try:
            mapping = {int(k): str(v) for k, v in names.items()}
        except (TypeError, ValueError):
            raise DatasetError(f"{data_yaml}: 'names' keys must be class ids") from None
        if sorted(mapping) == list(range(len(mapping))):
            return mapping
    raise DatasetError(f"{data_yaml}: 'names' must be a list or a mapping with ids 0..n-1")


def list_images(entry: Path, data_yaml: Path) -> list[Path]:
    """The images of one ``val`` entry: a folder (recursive) or a .txt file of paths (relative to its folder)."""
    if entry.is_dir():
        return [p for p in entry.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if entry.is_file() and entry.suffix == ".txt":
        lines = (line.strip() for line in entry.read_text().splitlines())
        return [entry.parent / line for line in lines if line]
    raise DatasetError(f"{data_yaml}: val entry {entry} is neither a folder nor a .txt file")
