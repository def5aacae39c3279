"""Expand CLI sources (images, folders, videos) into work items."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"}


@dataclass(frozen=True)
class ImageItem:
    """An image file, sent encoded to ``yolov8``."""

    path: Path

    @property
    def label(self) -> str:
        return str(self.path)


@dataclass(frozen=True)
class FrameItem:
    """One decoded video frame, uint8 (H, W, 3) BGR, sent raw to ``yolov8_raw``."""

    video: Path
    index: int
    pixels: np.ndarray

    @property
    def label(self) -> str:
        return f"{self.video}#frame={self.index}"


def expand(sources: list[str]) -> tuple[list[Path], list[Path]]:
    """(images, videos): folders are searched recursively by extension; other paths are taken as given."""
    images, videos = [], []
    for source in map(Path, sources):
        if source.is_dir():
            for path in sorted(p for p in source.rglob("*") if p.is_file()):
                if path.suffix.lower() in IMAGE_SUFFIXES:
                    images.append(path)
                elif path.suffix.lower() in VIDEO_SUFFIXES:
                    videos.append(path)
        elif source.suffix.lower() in VIDEO_SUFFIXES:
            videos.append(source)
        else:
            images.append(source)
    return images, videos


def video_frames(path: Path) -> Iterator[FrameItem]:
    """Every frame of a video, decoded with OpenCV; OSError if it cannot be opened."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise OSError(f"cannot open video {path}")
    try:
        index = 0
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            yield FrameItem(path, index, frame)
            index += 1
    finally:
        capture.release()


def video_fps(path: Path) -> float:
    capture = cv2.VideoCapture(str(path))
    try:
        return capture.get(cv2.CAP_PROP_FPS) or 25.0
    finally:
        capture.release()
