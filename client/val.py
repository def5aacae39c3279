"""``python -m client val``: COCO mAP of the served ensemble on a labelled dataset (Ultralytics layout), or a
served classifier's top-1 and top-5 accuracy on a classification dataset folder.

Every image of the dataset's ``val`` split goes through the ``yolov8`` ensemble with ``detect``'s machinery
(requests in flight, progress bar, failed images skipped and counted); ``evaluation`` reads the labels and
scores the detections (``evaluation.coco``: box mAP for every model, keypoint (OKS) mAP too for a pose model on a
pose dataset, mask mAP too for a segment model on a segment dataset) or a classifier's top 5
(``evaluation.classification``).
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
from evaluation.classification import Accuracy, ClassificationSet, accuracy, load_classification_set
from evaluation.coco import Metrics, Prediction, evaluate_kinds
from evaluation.dataset import Dataset, DatasetError, load_dataset

KIND_OF_OUTPUT = {"det_keypoints": "pose", "det_masks": "mask"}  # a served task output → the metrics it adds


def prediction(result: DetectionResult, keypoints: int | None = None, masks: bool = False) -> Prediction:
    """The detections of one served result as arrays (boxes float32 (N, 4), scores float32 (N,), classes int (N,),
    with ``keypoints`` K: float32 (N, K, 3); with ``masks``: N COCO RLEs {"size": [height, width], "counts": str}
    at the original size) and the size the server decoded the image at."""
    detections = result.detections
    points = None
    if keypoints is not None:
        points = np.array([d.keypoints for d in detections], np.float32).reshape(-1, keypoints, 3)
    return Prediction(
        boxes=np.array([d.box for d in detections], np.float32).reshape(-1, 4),
        scores=np.array([d.score for d in detections], np.float32),
        classes=np.array([d.class_id for d in detections], np.int64),
        size=(result.width, result.height),
        keypoints=points,
        masks=[d.rle for d in detections] if masks else None,
    )


def format_metrics(metrics: dict[str, Metrics]) -> str:
    """A table: all classes together, then one row per class ('-' where a class has no labels); with box mAP
    alone (a detector) its columns are mAP50-95 and mAP50, else each kind's are named after it."""

    def number(value: float | None) -> str:
        return "-" if value is None else f"{value:.4f}"

    first = next(iter(metrics.values()))
    labels = sum(c.instances for c in first.per_class)
    rows = [("all", labels, [v for m in metrics.values() for v in (m.map50_95, m.map50)])]
    for k, c in enumerate(first.per_class):
        rows.append(
            (
                c.name,
                c.instances,
                [v for m in metrics.values() for v in (m.per_class[k].map50_95, m.per_class[k].map50)],
            )
        )
    prefixes = [""] if list(metrics) == ["box"] else [f"{kind} " for kind in metrics]
    columns = [f"{prefix}{name}" for prefix in prefixes for name in ("mAP50-95", "mAP50")]
    widths = [max(9, len(column)) for column in columns]
    width = max(16, *(len(name) for name, *_ in rows))
    header = f"{'class':<{width}} {'labels':>7}" + "".join(f" {c:>{w}}" for c, w in zip(columns, widths))
    lines = [f"{first.images} images", header]
    for name, count, values in rows:
        lines.append(f"{name:<{width}} {count:>7}" + "".join(f" {number(v):>{w}}" for v, w in zip(values, widths)))
    return "\n".join(lines)


def metrics_json(metrics: dict[str, Metrics]) -> dict:
    """A detector's: {"map50_95", "map50", "images", "per_class"}; with more kinds: {"images", kind: {"map50_95",
    "map50", "per_class"} for each kind ("box", "pose" or "mask")}."""
    if list(metrics) == ["box"]:
        return metrics["box"].to_dict()
    out = {"images": next(iter(metrics.values())).images}
    for kind, values in metrics.items():
        out[kind] = {key: value for key, value in values.to_dict().items() if key != "images"}
    return out


def warn_if_names_differ(served: list[str], dataset: Dataset) -> None:
    """Warn when the served class names (index = class id) are not the dataset's names of the same ids."""
    names = [dataset.names[i] for i in sorted(dataset.names)]
    if served and served != names:
        print(f"warning: served classes {served}, dataset classes {names}: scored by class id", file=sys.stderr)


def metric_kinds(task_outputs: tuple[str, ...], dataset: Dataset) -> tuple[str, ...]:
    """The metrics to report: box always; pose for a pose model on a pose dataset, mask for a segment model on a
    segment dataset (``Dataset.segments``: a polygon label line); box alone, with a warning, on another."""
    kinds = ("box", *(KIND_OF_OUTPUT[o] for o in task_outputs if o in KIND_OF_OUTPUT))
    if "pose" in kinds and dataset.kpt_shape is None:
        print("warning: a pose model on a dataset without kpt_shape: box mAP only", file=sys.stderr)
        return ("box",)
    if "mask" in kinds and not dataset.segments:
        print("warning: a segment model on a dataset without polygon labels: box mAP only", file=sys.stderr)
        return ("box",)
    return kinds


def validate(args: argparse.Namespace) -> int:
    """Run ``val``: 0 when every image was scored, 1 if any image failed, 2 for a dataset error or refused shared
    memory. ``--data`` a folder: a classification dataset (``validate_classifier``)."""
    if Path(args.data).is_dir():
        return validate_classifier(args)
    try:
        dataset = load_dataset(Path(args.data))
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    progress = progress_bar(len(dataset.images), args.quiet, sys.stderr)
    results: dict[Path, DetectionResult] = {}

    def keep(item: ImageItem, result: DetectionResult) -> None:
        results[item.path] = result

    try:
        with YoloTritonClient(args.url, timeout_s=args.timeout, **client_options(args)) as client:
            kinds = metric_kinds(client.task_outputs, dataset)
            run = DetectRun(args, client)
            run.run((ImageItem(p) for p in dataset.images), progress, keep)
            warn_if_names_differ(client.class_names, dataset)
    except SharedMemoryRefused as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    finally:
        progress.close()
    keypoints = dataset.kpt_shape[0] if "pose" in kinds else None
    served = {len(d.keypoints) for r in results.values() for d in r.detections if d.keypoints is not None}
    if keypoints is not None and served - {keypoints}:
        print(
            f"error: the served model gives {sorted(served)} keypoints, DATA.yaml's kpt_shape {keypoints}",
            file=sys.stderr,
        )
        return 2
    masks = "mask" in kinds
    predictions = {path: prediction(result, keypoints, masks) for path, result in results.items()}
    metrics = evaluate_kinds(dataset, predictions, kinds)
    print(format_metrics(metrics))
    if args.json:
        Path(args.json).write_text(json.dumps(metrics_json(metrics), indent=2) + "\n")
    seconds = time.perf_counter() - started
    images = next(iter(metrics.values())).images
    print(f"summary: {images} images scored, {run.failed} failed, over {seconds:.1f} s", file=sys.stderr)
    return 1 if run.failed else 0


def format_accuracy(found: Accuracy, dataset: ClassificationSet) -> str:
    """The split read, then the top-1 and top-5 counts and accuracies."""
    share = found.to_dict()
    lines = [f"{found.images} images ({dataset.split.name} split)"]
    lines += [f"{k:<6} {getattr(found, k):>6}/{found.images} {share[f'{k}_acc']:.4f}" for k in ("top1", "top5")]
    return "\n".join(lines)


def validate_classifier(args: argparse.Namespace) -> int:
    """``val`` of a served classifier on the folder ``args.data``: 0 when every image was scored, 1 if any image
    failed, 2 for a dataset error or a served model that is not a classifier."""
    try:
        dataset = load_classification_set(Path(args.data))
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    progress = progress_bar(len(dataset.labels), args.quiet, sys.stderr)
    predictions: dict[Path, list[str]] = {}
    detections = 0

    def keep(item: ImageItem, result: DetectionResult) -> None:
        nonlocal detections
        if result.classification is None:
            detections += 1
        else:
            predictions[item.path] = [name for name, _ in result.classification.top5]

    try:
        with YoloTritonClient(args.url, timeout_s=args.timeout, **client_options(args)) as client:
            run = DetectRun(args, client)
            run.run((ImageItem(p) for p in dataset.labels), progress, keep)
            served = client.class_names
    except SharedMemoryRefused as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    finally:
        progress.close()
    if detections:
        print(f"error: {args.data} is a classification dataset but the served model detects", file=sys.stderr)
        return 2
    unknown = sorted(set(dataset.names) - set(served))
    if unknown:
        print(f"warning: class folders {unknown} are not among the served classes {served}", file=sys.stderr)
    found = accuracy(dataset, predictions)
    print(format_accuracy(found, dataset))
    if args.json:
        Path(args.json).write_text(json.dumps(found.to_dict(), indent=2) + "\n")
    seconds = time.perf_counter() - started
    print(f"summary: {found.images} images scored, {run.failed} failed, over {seconds:.1f} s", file=sys.stderr)
    return 1 if run.failed else 0
