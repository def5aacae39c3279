"""Ultralytics detection datasets: the DATA.yaml file and its ``val`` images, found as ``check_det_dataset`` finds them.

DATA.yaml holds ``path`` (the dataset root), ``val`` (a folder of images searched recursively, a .txt file
listing images, or a list of these; relative to ``path``) and ``names`` (a list, or a {class id: name}
mapping in any order). Without ``path`` the root is the yaml's folder. A relative ``path`` is read from the
current folder, as Ultralytics reads it, or from the yaml's folder: whichever holds the ``val`` entries (both
holding them, in different places, is an error). A ``val`` entry ``../x`` that does not exist is read as
``x`` (Roboflow's exports). In a .txt list, a line ``./x`` is relative to the list's folder, another relative
line to the root. A pose dataset has ``kpt_shape: [K, D]`` (K keypoints of D = 2 or 3 values) and may have
``kpt_oks_sigmas`` (K positive numbers). Labels: ``evaluation.labels``.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from evaluation.labels import DatasetError, Labels, label_path, read_labels, to_pixels

COCO_SIGMAS = (
    0.026,
    0.025,
    0.025,
    0.035,
    0.035,
    0.079,
    0.079,
    0.072,
    0.072,
    0.062,
    0.062,
    0.107,
    0.107,
    0.087,
    0.087,
    0.089,
    0.089,
)  # COCO's 17 person keypoints' OKS sigmas, nose to ankles (Ultralytics' OKS_SIGMA)
IMAGE_SUFFIXES = {".bmp", ".dng", ".jpeg", ".jpg", ".mpo", ".png", ".tif", ".tiff", ".webp", ".pfm"}


@dataclass
class Dataset:
    """The validation images of a dataset, its class names and every image's normalised labels.

    ``images``: absolute image paths, sorted, duplicates dropped; ``names``: class id → name, by id; ``files``:
    image → its ``Labels``; ``kpt_shape``: (K, D) of a pose dataset, else None; ``kpt_sigmas``: its
    ``kpt_oks_sigmas``, if given.
    """

    images: list[Path]
    names: dict[int, str]
    files: dict[Path, Labels] = field(repr=False)
    kpt_shape: tuple[int, int] | None = None
    kpt_sigmas: tuple[float, ...] | None = None

    @property
    def normalised(self) -> dict[Path, np.ndarray]:
        """image → float32 (N, 5) class, cx, cy, w, h as in its label file."""
        return {image: labels.boxes for image, labels in self.files.items()}

    @property
    def segments(self) -> bool:
        """Whether this is a segment dataset: a label line of any image is a polygon (more than 5 numbers, in a
        dataset without ``kpt_shape``); its box lines are scored as their rectangles."""
        return any(labels.segments for labels in self.files.values())

    @property
    def oks_sigmas(self) -> tuple[float, ...] | None:
        """The OKS sigma of each keypoint, as Ultralytics' pose validator takes it: ``kpt_oks_sigmas`` if given,
        else COCO's for ``kpt_shape`` [17, 3], else 1/K each; None for a dataset without keypoints."""
        if self.kpt_shape is None:
            return None
        if self.kpt_sigmas is not None:
            return self.kpt_sigmas
        count = self.kpt_shape[0]
        return COCO_SIGMAS if self.kpt_shape == (17, 3) else (1 / count,) * count

    def labels(self, image: Path, width: int, height: int) -> np.ndarray:
        """float32 (N, 5) class, x1, y1, x2, y2 in pixels of ``image``, decoded as ``width`` x ``height``."""
        return to_pixels(self.files[image].boxes, width, height)

    def keypoints(self, image: Path, width: int, height: int) -> np.ndarray:
        """float32 (N, K, 3) x, y in pixels and v of each object's keypoints (a pose dataset's images only)."""
        return self.files[image].keypoints * np.array([width, height, 1], np.float32)

    def polygons(self, image: Path, width: int, height: int) -> list[np.ndarray]:
        """Each object's outline, float32 (P, 2) x, y in pixels (see ``evaluation.labels.Labels``)."""
        return [polygon * np.array([width, height], np.float32) for polygon in self.files[image].polygons]


def load_dataset(data_yaml: Path) -> Dataset:
    """Read DATA.yaml, list its ``val`` images and read (and check) every label file.

    DatasetError for a missing or malformed DATA.yaml, ``val`` entries that don't exist or hold no image, no
    label file for any image, and bad label lines (``evaluation.labels.read_labels``).
    """
    data_yaml = Path(data_yaml)
    try:
        data = yaml.safe_load(data_yaml.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise DatasetError(f"{data_yaml}: {exc}") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{data_yaml}: expected a mapping with path, val and names")
    names = class_names(data.get("names"), data_yaml)
    if not data.get("val"):
        raise DatasetError(f"{data_yaml}: no 'val' entry")
    entries = [str(e) for e in (data["val"] if isinstance(data["val"], list) else [data["val"]])]
    root, located = find_root(data.get("path"), entries, data_yaml)
    images = sorted({image for entry in located for image in list_images(entry, root, data_yaml)})
    if not images:
        raise DatasetError(f"{data_yaml}: 'val' lists no images")
    if not any(label_path(image).is_file() for image in images):
        raise DatasetError(
            f"{data_yaml}: no label file for any of the {len(images)} images; "
            f"the first would be {label_path(images[0])}"
        )
    kpt_shape, kpt_sigmas = keypoint_shape(data, data_yaml)
    files = {image: read_labels(label_path(image), len(names), kpt_shape) for image in images}
    return Dataset(images, names, files, kpt_shape, kpt_sigmas)


def keypoint_shape(data: dict, data_yaml: Path) -> tuple[tuple[int, int] | None, tuple[float, ...] | None]:
    """``kpt_shape`` as (K, D) and ``kpt_oks_sigmas`` as K floats, each None where DATA.yaml has none."""
    shape, sigmas = data.get("kpt_shape"), data.get("kpt_oks_sigmas")
    if shape is None:
        if sigmas is not None:
            raise DatasetError(f"{data_yaml}: 'kpt_oks_sigmas' without 'kpt_shape'")
        return None, None
    if not (isinstance(shape, list) and len(shape) == 2 and all(isinstance(v, int) for v in shape)):
        raise DatasetError(f"{data_yaml}: 'kpt_shape' must be [keypoints, 2 or 3], got {shape!r}")
    if shape[0] < 1 or shape[1] not in (2, 3):
        raise DatasetError(f"{data_yaml}: 'kpt_shape' must be [keypoints, 2 or 3], got {shape!r}")
    if sigmas is None:
        return (shape[0], shape[1]), None
    try:
        values = tuple(float(v) for v in np.asarray(sigmas, dtype=np.float64).ravel())
    except (TypeError, ValueError):
        values = ()
    if len(values) != shape[0] or not all(v > 0 for v in values):
        raise DatasetError(f"{data_yaml}: 'kpt_oks_sigmas' must be {shape[0]} positive numbers, got {sigmas!r}")
    return (shape[0], shape[1]), values


def class_names(names: object, data_yaml: Path) -> dict[int, str]:
    """{class id: name}, by id, from ``names`` given as a list or a mapping with ids 0..n-1 in any order."""
    if isinstance(names, list):
        return {i: str(name) for i, name in enumerate(names)}
    if isinstance(names, dict) and names:
        try:
            mapping = {int(k): str(v) for k, v in names.items()}
        except (TypeError, ValueError):
            raise DatasetError(f"{data_yaml}: 'names' keys must be class ids") from None
        if sorted(mapping) == list(range(len(mapping))):
            return dict(sorted(mapping.items()))
    raise DatasetError(f"{data_yaml}: 'names' must be a list or a mapping with ids 0..n-1")


def find_root(path: object, entries: list[str], data_yaml: Path) -> tuple[Path, list[Path]]:
    """The dataset root and the absolute ``val`` entries under it (see the module's docstring).

    DatasetError when no reading of ``path`` holds every entry, or two different ones do.
    """
    folder = data_yaml.resolve().parent
    if not path:
        roots = [folder]
    elif Path(str(path)).is_absolute():
        roots = [Path(str(path)).resolve()]
    else:
        roots = list(dict.fromkeys([(Path.cwd() / str(path)).resolve(), (folder / str(path)).resolve()]))
    candidates = {root: [val_entry(root, entry) for entry in entries] for root in roots}
    found = {root: located for root, located in candidates.items() if all(p.exists() for p in located)}
    if len(found) == 1:
        return next(iter(found.items()))
    if found:
        first, second = found
        raise DatasetError(
            f"{data_yaml}: path {path!r} holds the val entries both in {first} (from the current folder, as "
            f"Ultralytics reads it) and in {second} (from the yaml's folder); make path absolute"
        )
    missing = dict.fromkeys(str(p) for located in candidates.values() for p in located if not p.exists())
    raise DatasetError(f"{data_yaml}: val entry not found: looked for {' and '.join(missing)}")


def val_entry(root: Path, entry: str) -> Path:
    """``root / entry``, absolute; ``root / x`` for an ``entry`` ``../x`` that does not exist (Roboflow's layout)."""
    located = (root / entry).resolve()
    if not located.exists() and entry.startswith("../"):
        return (root / entry[3:]).resolve()
    return located


def list_images(entry: Path, root: Path, data_yaml: Path) -> list[Path]:
    """The images of one ``val`` entry: a folder (recursive, hidden files left out) or a .txt list of paths."""
    if entry.is_dir():
        files = (Path(p) for p in glob.glob(str(entry / "**" / "*.*"), recursive=True))
        return [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
    if entry.is_file() and entry.suffix == ".txt":
        lines = (line.strip() for line in entry.read_text().splitlines())
        paths = (entry.parent / line[2:] if line.startswith("./") else root / line for line in lines if line)
        return [p for p in paths if p.suffix.lower() in IMAGE_SUFFIXES]
    raise DatasetError(f"{data_yaml}: val entry {entry} is neither a folder nor a .txt file")
