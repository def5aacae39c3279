"""COCO mAP (faster-coco-eval) of predictions against a dataset's labels.

mAP50-95 averages COCO's 101-point interpolated precision over IoU thresholds 0.50:0.05:0.95 and the classes
that have labels; mAP50 is the same at IoU 0.50. The defaults are COCO's own: all object sizes, at most 100
detections per image and class (the highest scores).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from faster_coco_eval import COCO, COCOeval_faster

from evaluation.dataset import Dataset
from evaluation.labels import file_image_size

ALL_AREAS, MOST_DETECTIONS = 0, -1  # indices into COCOeval's precision array


@dataclass(frozen=True)
class Prediction:
    """One image's detections: ``boxes`` float32 (N, 4) x1, y1, x2, y2 in original-image pixels,
    ``scores`` float32 (N,), ``classes`` integer (N,) class ids, and ``size``: (width, height) of the image as
    the detector decoded it (upright after EXIF), which scales the image's normalised labels to pixels; None
    reads it from the image file's header."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    size: tuple[int, int] | None = None


@dataclass(frozen=True)
class ClassMetrics:
    """One class: its labelled objects and mAPs (None when it has no labels: COCO leaves it out)."""

    class_id: int
    name: str
    instances: int
    map50_95: float | None
    map50: float | None


@dataclass(frozen=True)
class Metrics:
    """Overall mAPs (None when no image has labels), the number of images scored, and each class's."""

    map50_95: float | None
    map50: float | None
    images: int
    per_class: list[ClassMetrics]

    def to_dict(self) -> dict:
        """{"map50_95", "map50", "images", "per_class": [{"class_id", "name", "map50_95", "map50"}]}."""
        return {
            "map50_95": self.map50_95,
            "map50": self.map50,
            "images": self.images,
            "per_class": [
                {"class_id": c.class_id, "name": c.name, "map50_95": c.map50_95, "map50": c.map50}
                for c in self.per_class
            ],
        }


def evaluate(dataset: Dataset, predictions: Mapping[Path, Prediction]) -> Metrics:
    """Score the images in ``predictions`` (each one of ``dataset.images``) against their labels.

    Images of the dataset absent from ``predictions`` are left out (the client leaves out images that failed);
    detections of class ids the dataset doesn't name are ignored. Each class's row is in id order. OSError if an
    image without a ``size`` in its prediction can't be read for it.
    """
    images = [image for image in dataset.images if image in predictions]
    truth = {"info": {}, "images": [], "annotations": [], "categories": []}
    names = dict(sorted(dataset.names.items()))  # COCOeval orders its categories by id
    truth["categories"] = [{"id": category(c), "name": name} for c, name in names.items()]
    detections = []
    instances = dict.fromkeys(names, 0)
    for image_id, image in enumerate(images, start=1):
        prediction = predictions[image]
        labels = dataset.labels(image, *(prediction.size or file_image_size(image)))
        truth["images"].append({"id": image_id, "file_name": str(image)})
        for class_id, x1, y1, x2, y2 in labels.tolist():
            instances[int(class_id)] += 1
            truth["annotations"].append(annotation(image_id, int(class_id), (x1, y1, x2, y2)))
        for box, score, class_id in zip(prediction.boxes.tolist(), prediction.scores.tolist(), prediction.classes):
            if int(class_id) in names:
                detections.append(annotation(image_id, int(class_id), box) | {"score": float(score)})
    for number, ann in enumerate(truth["annotations"], start=1):
        ann["id"] = number  # COCOeval reads id 0 as 'unmatched'
    precision = coco_precision(truth, detections)
    per_class = []
    for k, (class_id, name) in enumerate(names.items()):
        per_class.append(
            ClassMetrics(class_id, name, instances[class_id], mean(precision[:, :, k]), mean(precision[0, :, k]))
        )
    return Metrics(mean(precision), mean(precision[0]), len(images), per_class)


def category(class_id: int) -> int:
    """COCO category id of a class id (COCO's ids start at 1)."""
    return class_id + 1


def annotation(image_id: int, class_id: int, box: tuple | list) -> dict:
    x1, y1, x2, y2 = (float(v) for v in box)
    width, height = x2 - x1, y2 - y1
    return {
        "image_id": image_id,
        "category_id": category(class_id),
        "bbox": [x1, y1, width, height],
        "area": width * height,
        "iscrowd": 0,
    }


def coco_precision(truth: dict, detections: list[dict]) -> np.ndarray:
    """float (T, R, K) precision per IoU threshold, recall point and category (-1: category without labels)."""
    ground = COCO(truth, print_function=quiet)
    found = ground.loadRes(detections)
    coco_eval = COCOeval_faster(ground, found, iouType="bbox", print_function=quiet)
    coco_eval.params.catIds = [c["id"] for c in truth["categories"]]
    coco_eval.evaluate()
    coco_eval.accumulate()
    return coco_eval.eval["precision"][:, :, :, ALL_AREAS, MOST_DETECTIONS]


def mean(precision: np.ndarray) -> float | None:
    """The mean of the defined entries (> -1), as COCO's summary takes it; None when there are none."""
    defined = precision[precision > -1]
    return float(defined.mean()) if defined.size else None


def quiet(*_args) -> None:
    """faster-coco-eval's progress messages go nowhere."""
