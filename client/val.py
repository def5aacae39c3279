"""``python -m client val``: COCO mAP of the served ensemble on a labelled dataset (Ultralytics layout).

Every image of the dataset's ``val`` split goes through the ``yolov8`` ensemble with ``detect``'s machinery
(requests in flight, progress bar, failed images skipped and counted); ``evaluation`` reads the labels and
scores the detections.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from client.api import DetectionResult, YoloTritonClient
from client.detect_run import DetectRun, client_options, progress_bar
from client.errors import SharedMemoryRefused
from client.sources import ImageItem
from evaluation.coco import Metrics, Prediction, evaluate
from evaluation.dataset import Dataset, DatasetError, load_dataset


def prediction(result: DetectionResult) -> Prediction:
    """The detections of one served result as arrays (boxes float32 (N, 4), scores float32 (N,), classes int (N,))
    and the size the server decoded the image at."""
    detections = result.detections
    return Prediction(
        boxes=np.array([d.box for d in detections], np.float32).reshape(-1, 4),
        scores=np.array([d.score for d in detections], np.float32),
        classes=np.array([d.class_id for d in detections], np.int64),
        size=(result.width, result.height),
    )


def format_metrics(metrics: Metrics) -> str:
    """A table: all classes together, then one row per class ('-' where a class has no labels)."""

    def number(value: float | None) -> str:
        return "-" if value is None else f"{value:.4f}"

    labels = sum(c.instances for c in metrics.per_class)
    rows = [("all", labels, metrics.map50_95, metrics.map50)]
    rows += [(c.name, c.instances, c.map50_95, c.map50) for c in metrics.per_class]
    width = max(16, *(len(name) for name, *_ in rows))
    lines = [f"{metrics.images} images", f"{'class':<{width}} {'labels':>7} {'mAP50-95':>9} {'mAP50':>9}"]
    lines += [f"{name:<{width}} {count:>7} {number(a):>9} {number(b):>9}" for name, count, a, b in rows]
    return "\n".join(lines)


def warn_if_names_differ(served: list[str], dataset: Dataset) -> None:
    """Warn when the served class names (index = class id) are not the dataset's names of the same ids."""
    names = [dataset.names[i] for i in sorted(dataset.names)]
    if served and served != names:
        print(f"warning: served classes {served}, dataset classes {names}: scored by class id", file=sys.stderr)


def validate(args: argparse.Namespace) -> int:
    """Run ``val``: 0 when every image was scored, 1 if any image failed, 2 for a dataset error or refused shared
    memory."""
    try:
        dataset = load_dataset(Path(args.data))
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    progress = progress_bar(len(dataset.images), args.quiet, sys.stderr)
    predictions: dict[Path, Prediction] = {}

    def keep(item: ImageItem, result: DetectionResult) -> None:
        predictions[item.path] = prediction(result)

    try:
        with YoloTritonClient(args.url, timeout_s=args.timeout, **client_options(args)) as client:
            run = DetectRun(args, client)
            run.run((ImageItem(p) for p in dataset.images), progress, keep)
            warn_if_names_differ(client.class_names, dataset)
    except SharedMemoryRefused as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    finally:
        progress.close()
    metrics = evaluate(dataset, predictions)
    print(format_metrics(metrics))
    if args.json:
        Path(args.json).write_text(json.dumps(metrics.to_dict(), indent=2) + "\n")
    seconds = time.perf_counter() - started
    print(f"summary: {metrics.images} images scored, {run.failed} failed, over {seconds:.1f} s", file=sys.stderr)
    return 1 if run.failed else 0
