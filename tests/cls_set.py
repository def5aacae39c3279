"""The labelled set of ``python -m client val`` for a classifier, built from the sample photos.

Ultralytics' folder layout for classification: ``test/<class name>/<image>`` (no ``val/``, so the split is
``test``, as Ultralytics falls back to it). Eight crops of the people in the sample photos, written
losslessly (PNG) with OpenCV so that the reference generator and the tests see the same pixels: four
upright people labelled ``Normal``, and four people turned on their side (the crop rotated a quarter turn)
labelled ``Fall``. tests/data/cls_set/README.md says where each crop comes from.
"""

from __future__ import annotations

from pathlib import Path

import cv2
from sample_images import SAMPLES

SPLIT = "test"
# name -> (photo, x1, y1, x2, y2 in the photo's pixels, turned a quarter turn clockwise)
CROPS = {
    "Normal/bus_left.png": ("bus.jpg", 53, 400, 245, 900, False),
    "Normal/bus_middle.png": ("bus.jpg", 225, 407, 343, 858, False),
    "Normal/zidane_right.png": ("zidane.jpg", 750, 42, 1120, 720, False),
    "Normal/grace_hopper.png": ("grace_hopper.jpg", 10, 22, 508, 600, False),
    "Fall/bus_left_turned.png": ("bus.jpg", 53, 400, 245, 900, True),
    "Fall/bus_right_turned.png": ("bus.jpg", 670, 397, 810, 878, True),
    "Fall/zidane_right_turned.png": ("zidane.jpg", 750, 42, 1120, 720, True),
    "Fall/grace_hopper_turned.png": ("grace_hopper.jpg", 10, 22, 508, 600, True),
}


def build_cls_set(out_dir: Path, samples: Path = SAMPLES) -> Path:
    """Write the set's images into ``out_dir/test/<class>/`` and return ``out_dir``, the dataset root."""
    for name, (photo, x1, y1, x2, y2, turned) in CROPS.items():
        crop = cv2.imread(str(samples / photo), cv2.IMREAD_COLOR)[y1:y2, x1:x2]
        if turned:
            crop = cv2.rotate(crop, cv2.ROTATE_90_CLOCKWISE)
        path = out_dir / SPLIT / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(path), crop):
            raise OSError(f"cannot write {path}")
    return out_dir


if __name__ == "__main__":  # python tests/cls_set.py OUT_DIR (docs/tasks.md)
    import sys

    print(build_cls_set(Path(sys.argv[1])))
