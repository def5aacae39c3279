"""Calibration photos for ``prepare --int8`` made from the sample photos: flips and crops, written as PNG.

The bench and the tests quantize with them; a user calibrates on a folder of their own photos.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

SAMPLE_PHOTOS = ("bus.jpg", "zidane.jpg", "grace_hopper.jpg", "astronaut.png", "camera.png")


def variants(image: np.ndarray) -> list[np.ndarray]:
    """uint8 (H, W, 3) → eight views of it: itself, mirrored, four corner crops (70 %) and two centre crops."""
    height, width = image.shape[:2]
    h, w = int(height * 0.7), int(width * 0.7)
    ch, cw = int(height * 0.5), int(width * 0.5)
    top, left = (height - ch) // 2, (width - cw) // 2
    return [
        image,
        cv2.flip(image, 1),
        image[:h, :w],
        image[:h, width - w :],
        image[height - h :, :w],
        cv2.flip(image[height - h :, width - w :], 1),
        image[top : top + ch, left : left + cw],
        cv2.flip(image[top : top + ch, :], 1),
    ]


def write_calibration_photos(samples: Path, out_dir: Path, count: int) -> list[Path]:
    """Write ``count`` images (at most 8 per photo) into ``out_dir``, photo by photo in turns; returns their paths."""
    photos = [cv2.imread(str(samples / name), cv2.IMREAD_COLOR) for name in SAMPLE_PHOTOS]
    views = [variants(photo) for photo in photos]
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        photo, view = index % len(photos), index // len(photos)
        path = out_dir / f"{Path(SAMPLE_PHOTOS[photo]).stem}_{view}.png"
        if not cv2.imwrite(str(path), views[photo][view]):
            raise OSError(f"cannot write {path}")
        paths.append(path)
    return paths
