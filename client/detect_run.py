"""Sending many images through the served ensemble, shared by ``detect`` and ``val``.

``DetectRun`` keeps a window of requests in flight, reports each result in input order, and skips, names
and counts the images (and frames) that fail; ``progress_bar`` and ``client_options`` turn the command-line
options every sending command has into a tqdm bar and ``YoloTritonClient``'s TLS and shared-memory arguments.
"""

from __future__ import annotations

import argparse
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TextIO

import cv2
from tqdm import tqdm

from client.annotate import annotate, read_image
from client.api import DetectionResult, YoloTritonClient
from client.errors import DetectionError, SharedMemoryRefused
from client.sources import FrameItem, ImageItem, video_fps, video_frames


def ordered_map(pool: ThreadPoolExecutor, fn: Callable, items: Iterable, window: int) -> Iterator[tuple]:
    """Yield (item, future) in input order with at most ``window`` calls in flight (items are read lazily)."""
    pending: deque[tuple[object, Future]] = deque()
    for item in items:
        pending.append((item, pool.submit(fn, item)))
        if len(pending) >= window:
            yield pending.popleft()
    while pending:
        yield pending.popleft()


class DetectRun:
    """One run of ``detect`` or ``val``: images and frames in, results (and annotated files with --save) out."""

    def __init__(self, args: argparse.Namespace, client: YoloTritonClient):
        self.args, self.client = args, client
        self.results: list[DetectionResult] = []
        self.failed = 0
        self.save_dir = Path(args.save) if args.save else None

    def detect(self, item: ImageItem | FrameItem) -> DetectionResult:
        image = item.pixels if isinstance(item, FrameItem) else item.path
        result = self.client.detect(image, conf=self.args.conf, iou=self.args.iou)
        result.image = item.label
        return result

    def fail(self, label: str, why: str) -> None:
        self.failed += 1
        print(f"error: {label}: {why}", file=sys.stderr)

    def run(self, items: Iterable[ImageItem | FrameItem], progress: tqdm, on_result: Callable) -> None:
        with ThreadPoolExecutor(self.args.concurrency) as pool:
            for item, future in ordered_map(pool, self.detect, items, 2 * self.args.concurrency):
                try:
                    result = future.result()
                except OSError as exc:
                    self.fail(item.label, exc.strerror or str(exc))
                except SharedMemoryRefused:
                    raise  # no image can go through: the run stops
                except DetectionError as exc:
                    self.fail(item.label, exc.message)
                else:
                    self.results.append(result)
                    on_result(item, result)
                progress.update()

    def save_image(self, item: ImageItem, result: DetectionResult) -> None:
        if self.save_dir is None:
            return
        pixels = read_image(item.path)
        target = self.save_dir / item.path.name
        if target.exists():  # same file name from another folder
            target = self.save_dir / f"{item.path.stem}_{len(self.results)}{item.path.suffix}"
        cv2.imwrite(str(target), annotate(pixels, result))

    def run_video(self, path: Path, progress: tqdm) -> None:
        writer = None
        try:
            frames = video_frames(path)
            if self.save_dir is not None:
                fps = video_fps(path)

                def write(item: FrameItem, result: DetectionResult) -> None:
                    nonlocal writer
                    if writer is None:
                        height, width = item.pixels.shape[:2]
                        target = str(self.save_dir / f"{path.stem}_annotated.mp4")
                        writer = cv2.VideoWriter(target, cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
                    writer.write(annotate(item.pixels, result))
            else:

                def write(item: FrameItem, result: DetectionResult) -> None:
                    return None

            self.run(frames, progress, write)
        except OSError as exc:
            self.fail(str(path), str(exc))
        finally:
            if writer is not None:
                writer.release()


def progress_bar(total: int, quiet: bool, stream: TextIO) -> tqdm:
    """A tqdm bar (count, img/s, ETA) on ``stream``; disabled with ``quiet``, for 3 items or fewer, or off a TTY."""
    return tqdm(total=total, unit="img", file=stream, disable=quiet or total <= 3 or not stream.isatty())


def client_options(args: argparse.Namespace) -> dict:
    """YoloTritonClient's keyword arguments from --tls-root-cert, --tls-key, --tls-cert and --shared-memory."""
    return {
        "root_certificates": args.tls_root_cert,
        "private_key": args.tls_key,
        "certificate_chain": args.tls_cert,
        "shared_memory": args.shared_memory,
    }
