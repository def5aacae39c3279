"""The labelled test sets of ``python -m client val``, built from the sample photos.

tests/data/val_set/ holds data.yaml and the hand-made labels; ``build_val_set`` copies them and writes the
images next to them: the photos as they are, and derived images made losslessly (PNG) with OpenCV, so the
reference generator and the tests see the same pixels. tests/data/pose_set/ holds a pose data.yaml and its
labels, tests/data/seg_set/ a segment set's polygon labels (each folder's README.md says how they were made);
``build_pose_set`` and ``build_seg_set`` add the five photos.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
from sample_images import PHOTOS, PROJECT_ROOT, SAMPLES

VAL_SET = PROJECT_ROOT / "tests" / "data" / "val_set"
POSE_SET = PROJECT_ROOT / "tests" / "data" / "pose_set"
SEG_SET = PROJECT_ROOT / "tests" / "data" / "seg_set"


def derived_images(samples: Path) -> dict[str, object]:
    """File name → uint8 BGR pixels of the images derived from the photos."""
    bus = cv2.imread(str(samples / "bus.jpg"), cv2.IMREAD_COLOR)
    zidane = cv2.imread(str(samples / "zidane.jpg"), cv2.IMREAD_COLOR)
    hopper = cv2.imread(str(samples / "grace_hopper.jpg"), cv2.IMREAD_COLOR)
    camera = cv2.imread(str(samples / "camera.png"), cv2.IMREAD_COLOR)
    return {
        "bus_flipped.png": cv2.flip(bus, 1),
        "zidane_left.png": zidane[:, :700],
        "grace_hopper_half.png": cv2.resize(hopper, (256, 300), interpolation=cv2.INTER_AREA),
        "bus_top.png": bus[:340],  # no people, and no label file
        "camera_sky.png": camera[:150, 330:],  # no people, an empty label file
    }


def build_val_set(out_dir: Path, samples: Path = SAMPLES) -> Path:
    """Write the set (data.yaml, images/, labels/) into ``out_dir`` and return its data.yaml."""
    shutil.copytree(VAL_SET / "labels", out_dir / "labels")
    shutil.copy(VAL_SET / "data.yaml", out_dir / "data.yaml")
    images = out_dir / "images"
    images.mkdir()
    for name in PHOTOS:
        shutil.copy(samples / name, images / name)
    for name, pixels in derived_images(samples).items():
        if not cv2.imwrite(str(images / name), pixels):
            raise OSError(f"cannot write {images / name}")
    return out_dir / "data.yaml"


def build_photo_set(source: Path, out_dir: Path, samples: Path = SAMPLES) -> Path:
    """Write ``source``'s data.yaml and labels/ and the five photos (images/) into ``out_dir``; its data.yaml."""
    shutil.copytree(source / "labels", out_dir / "labels")
    shutil.copy(source / "data.yaml", out_dir / "data.yaml")
    (out_dir / "images").mkdir()
    for name in PHOTOS:
        shutil.copy(samples / name, out_dir / "images" / name)
    return out_dir / "data.yaml"


def build_pose_set(out_dir: Path, samples: Path = SAMPLES) -> Path:
    """Write the pose set (data.yaml, images/ with the five photos, labels/) into ``out_dir``; its data.yaml."""
    return build_photo_set(POSE_SET, out_dir, samples)


def build_seg_set(out_dir: Path, samples: Path = SAMPLES) -> Path:
    """Write the segment set (data.yaml, images/ with the five photos, labels/) into ``out_dir``; its data.yaml."""
    return build_photo_set(SEG_SET, out_dir, samples)


if __name__ == "__main__":  # python tests/val_set.py OUT_DIR (docs/accuracy.md)
    import sys

    print(build_val_set(Path(sys.argv[1])))
