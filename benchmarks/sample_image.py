"""The image every benchmark sends, and where results go."""

from __future__ import annotations

from pathlib import Path

import cv2

from python_backends.paths import PROJECT_ROOT

RESULTS = PROJECT_ROOT / "benchmarks" / "results"
SAMPLES = PROJECT_ROOT / ".cache" / "samples"
SAMPLE = SAMPLES / "bus.jpg"


def one_megapixel_jpeg(out: Path) -> Path:
    """bus.jpg (810x1080) scaled to 866x1155 (1.0 MP), JPEG quality 90."""
    image = cv2.imread(str(SAMPLE), cv2.IMREAD_COLOR)
    path = out / "bus_1mp.jpg"
    cv2.imwrite(
        str(path), cv2.resize(image, (866, 1155), interpolation=cv2.INTER_LINEAR), [cv2.IMWRITE_JPEG_QUALITY, 90]
    )
    return path
