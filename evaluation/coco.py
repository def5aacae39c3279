"""COCO mAP (faster-coco-eval) of predictions against a dataset's labels: boxes, keypoints and masks.

mAP50-95 averages COCO's 101-point interpolated precision over IoU thresholds 0.50:0.05:0.95 and the classes
that have labels; mAP50 is the same at IoU 0.50. Each kind is scored by COCOeval with COCO's own parameters,
as pycocotools scores it:

- ``box`` (iouType ``bbox``): box IoU; all object sizes, at most 100 detections per image and class.
- ``pose`` (``keypoints``): OKS, exp(-d² / (2 s² (2σ)²)) averaged over the labelled keypoints (v > 0), with
  σ the dataset's ``oks_sigmas`` and s² the object's area, taken as 0.53 × its labelled box's area (COCO's
  person area over box area: what Ultralytics' pose validator and xtcocotools take without a segmentation);
  an object with no labelled keypoint is ignored; at most 20 detections per image and class.
- ``mask`` (``segm``): mask IoU of each detection's RLE against the label's polygon, rasterised at the image's
  size by COCO's ``frPyObjects`` and ``merge`` (a box line's rectangle likewise); at most 100 detections.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from faster_coco_eval import COCO, COCOeval_faster
from faster_coco_eval.core import mask as mask_util

from evaluation.dataset import Dataset
from evaluation.labels import file_image_size

ALL_AREAS, MOST_DETECTIONS = 0, -1  # indices into COCOeval's precision array
IOU_TYPES = {"box": "bbox", "pose": "keypoints", "mask": "segm"}  # each kind of metrics: its COCOeval iouType
PERSON_AREA = 0.53  # a COCO person's segmented area over its box's: the OKS scale of a label without a mask


@dataclass(frozen=True)
class Prediction:
    """One image's detections: ``boxes`` float32 (N, 4) x1, y1, x2, y2 in original-image pixels,
    ``scores`` float32 (N,), ``classes`` integer (N,) class ids, and ``size``: (width, height) of the image as
    the detector decoded it (upright after EXIF), which scales the image's normalised labels to pixels; None
    reads it from the image file's header. A pose model's ``keypoints``: float32 (N, K, 3) x, y in original-image
    pixels and score; a segmentation model's ``masks``: N COCO compressed RLEs ``{"size": [height, width],
    "counts": bytes or str}`` at the image's size."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    size: tuple[int, int] | None = None
    keypoints: np.ndarray | None = None
    masks: list[dict] | None = None


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
    """Box mAP of the images in ``predictions`` (see ``evaluate_kinds``)."""
    return evaluate_kinds(dataset, predictions, ("box",))["box"]


def evaluate_kinds(
    dataset: Dataset, predictions: Mapping[Path, Prediction], kinds: tuple[str, ...]
) -> dict[str, Metrics]:
    """Score the images in ``predictions`` (each one of ``dataset.images``) against their labels, for each of
    ``kinds`` (keys of ``IOU_TYPES``): kind → its metrics.

    Images of the dataset absent from ``predictions`` are left out (the client leaves out images that failed);
    detections of class ids the dataset doesn't name are ignored. Each class's row is in id order. ``pose``
    needs a pose dataset and each prediction's ``keypoints``, ``mask`` each prediction's ``masks``
    (ValueError otherwise). OSError if an image without a ``size`` in its prediction can't be read for it.
    """
    if "pose" in kinds and dataset.kpt_shape is None:
        raise ValueError("keypoint metrics need a pose dataset: kpt_shape in DATA.yaml")
    images = [image for image in dataset.images if image in predictions]
    names = dict(sorted(dataset.names.items()))  # COCOeval orders its categories by id
    truth = {"info": {}, "images": [], "annotations": [], "categories": []}
    truth["categories"] = [{"id": category(c), "name": name} for c, name in names.items()]
    detections = []
    instances = dict.fromkeys(names, 0)
    for image_id, image in enumerate(images, start=1):
        prediction = predictions[image]
        width, height = prediction.size or file_image_size(image)
        truth["images"].append({"id": image_id, "file_name": str(image), "width": width, "height": height})
        objects = labelled_objects(dataset, image, width, height, kinds)
        for ann in objects:
            instances[ann["category_id"] - 1] += 1
        truth["annotations"] += [{"image_id": image_id, **ann} for ann in objects]
        detections += [{"image_id": image_id, **found} for found in detected_objects(prediction, names, kinds)]
    for number, ann in enumerate(truth["annotations"], start=1):
        ann["id"] = number  # COCOeval reads id 0 as 'unmatched'
    sizes = {image["id"]: (image["height"], image["width"]) for image in truth["images"]}
    metrics = {}
    for kind in kinds:
        annotations = [ann | {"area": area_of(kind, ann, *sizes[ann["image_id"]])} for ann in truth["annotations"]]
        precision = coco_precision(truth | {"annotations": annotations}, detections, kind, dataset.oks_sigmas)
        per_class = [
            ClassMetrics(c, name, instances[c], mean(precision[:, :, k]), mean(precision[0, :, k]))
            for k, (c, name) in enumerate(names.items())
        ]
        metrics[kind] = Metrics(mean(precision), mean(precision[0]), len(images), per_class)
    return metrics


def labelled_objects(dataset: Dataset, image: Path, width: int, height: int, kinds: tuple[str, ...]) -> list[dict]:
    """The COCO annotations (no ids yet) of ``image``'s labels: box and its area, keypoints and their count for
    ``pose``, the outline for ``mask``."""
    boxes = dataset.labels(image, width, height)
    objects = [annotation(int(class_id), box) for class_id, *box in boxes.tolist()]
    if "pose" in kinds:
        for ann, points in zip(objects, dataset.keypoints(image, width, height)):
            ann["keypoints"] = points.ravel().tolist()
            ann["num_keypoints"] = int((points[:, 2] > 0).sum())
    if "mask" in kinds:
        for ann, polygon in zip(objects, dataset.polygons(image, width, height)):
            ann["segmentation"] = [polygon.ravel().tolist()]
    return objects


def area_of(kind: str, ann: dict, height: int, width: int) -> float:
    """The area COCOeval takes for a label: its box's (``box``), PERSON_AREA times that (``pose``: OKS's scale),
    its rasterised outline's (``mask``)."""
    if kind == "pose":
        return PERSON_AREA * ann["area"]
    if kind == "mask":
        return float(mask_util.area(mask_util.merge(mask_util.frPyObjects(ann["segmentation"], height, width))))
    return ann["area"]


def detected_objects(prediction: Prediction, names: dict[int, str], kinds: tuple[str, ...]) -> list[dict]:
    """COCO results (no image id yet) of one prediction's detections of the classes in ``names``."""
    for kind, values in (("pose", prediction.keypoints), ("mask", prediction.masks)):
        if kind in kinds and values is None:
            raise ValueError(f"{kind} metrics need each prediction's {'keypoints' if kind == 'pose' else 'masks'}")
    found = []
    for k, (box, score, class_id) in enumerate(
        zip(prediction.boxes.tolist(), prediction.scores.tolist(), prediction.classes)
    ):
        if int(class_id) not in names:
            continue
        result = annotation(int(class_id), box) | {"score": float(score)}
        if "pose" in kinds:
            result["keypoints"] = np.asarray(prediction.keypoints[k], np.float64).ravel().tolist()
        if "mask" in kinds:
            result["segmentation"] = prediction.masks[k]
        found.append(result)
    return found


def category(class_id: int) -> int:
    """COCO category id of a class id (COCO's ids start at 1)."""
    return class_id + 1


def annotation(class_id: int, box: tuple | list) -> dict:
    """The COCO fields of one box x1, y1, x2, y2 of class ``class_id``: category, bbox, area, iscrowd."""
    x1, y1, x2, y2 = (float(v) for v in box)
    width, height = x2 - x1, y2 - y1
    return {"category_id": category(class_id), "bbox": [x1, y1, width, height], "area": width * height, "iscrowd": 0}


def coco_precision(truth: dict, detections: list[dict], kind: str, sigmas: tuple[float, ...] | None) -> np.ndarray:
    """float (T, R, K) precision of one kind per IoU threshold, recall point and category (-1: category without
    labels); ``sigmas``: the keypoints' OKS sigmas (``pose``)."""
    ground = COCO(truth, print_function=quiet)
    found = ground.loadRes([dict(d) for d in detections])  # loadRes adds fields to its results
    coco_eval = COCOeval_faster(
        ground, found, iouType=IOU_TYPES[kind], kpt_oks_sigmas=sigmas if kind == "pose" else None, print_function=quiet
    )
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
