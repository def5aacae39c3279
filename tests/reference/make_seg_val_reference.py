"""Generate tests/data/seg_set/labels and tests/reference/ultralytics_seg_val.json (box and mask mAP).

Run once, in the environment that made the task models (Ultralytics and its ONNX Runtime; pycocotools beside
them, e.g. on PYTHONPATH; the project never depends on them):

    /work/ulvenv/bin/python tests/reference/make_seg_val_reference.py labels      # tests/data/seg_set/labels
    /work/ulvenv/bin/python tests/reference/make_seg_val_reference.py reference   # the reference JSON

The model is tests/models' fall_seg, rebuilt by tests/models/materialize.py (boxes from the default fall
detector's weights, mask coefficients and prototypes from seeded branches), at its input size 480x640.

``labels`` writes the five photos' polygon labels: each detection of ``predict(conf=0.3, retina_masks=True)``
becomes a label of its class, the outline of its mask's largest contour (Ultralytics' ``masks2segments``,
strategy "largest") simplified by ``cv2.approxPolyDP`` (tolerance 0.2% of the contour's length), then moved
by seeded draws on the object's own scale r = sqrt(box area): the whole outline scaled about its mean point
by a factor uniform in [0.75, 1.05] and shifted by a normal draw of σ 0.04 r in x and y, each point moved by a
normal draw of σ 0.01 r, and clipped to the image. So each label's box is its outline's extent, as
Ultralytics and ``evaluation.labels`` read a polygon line.

``reference`` runs ``predict(conf=0.001, iou=0.7, max_det=300, retina_masks=True)`` on every photo and scores
it with pycocotools' COCOeval, COCO's parameters, iouType bbox (each detection's box) and segm (each
detection's mask, COCO RLE at the photo's size, as ``pycocotools.mask.encode`` makes it): a label's box is
its polygon's extent, with that box's area for bbox; for segm its polygon is rasterised by pycocotools
(``frPyObjects``, ``merge``) with the rasterised area, as ``evaluation.coco`` does.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parent.parent)]  # tests/ and the checkout

from models.materialize import load_recipe, write_model  # noqa: E402
from sample_images import PHOTOS, PROJECT_ROOT, SAMPLES  # noqa: E402
from val_set import SEG_SET  # noqa: E402

SOURCES = {"default": PROJECT_ROOT / ".cache" / "models" / "yolov8s-fall-detection.onnx"}
NAMES = {0: "Normal", 1: "Fall"}
SETTINGS = {"conf": 0.001, "iou": 0.7, "max_det": 300, "retina_masks": True}
LABEL_CONF, SEED = 0.3, 29
SIMPLIFY = 0.002  # approxPolyDP's tolerance, as a share of the contour's length
SCALE, SHIFT, JITTER = (0.75, 1.05), 0.04, 0.01  # the outline's scale range, its shift and each point's σ over r


def model(tmp: Path):
    from ultralytics import YOLO

    recipe = load_recipe("fall_seg")
    return YOLO(str(write_model("fall_seg", tmp, SOURCES)), task="segment"), recipe["imgsz"]


def label_lines(pred, rng: np.random.Generator) -> list[str]:
    """One photo's label lines from its detections (see the module's docstring)."""
    import cv2
    from ultralytics.utils import ops

    height, width = pred.orig_shape
    outlines = ops.masks2segments(pred.masks.data, strategy="largest")
    lines = []
    for box, c, outline in zip(pred.boxes.xyxy.tolist(), pred.boxes.cls.tolist(), outlines):
        x1, y1, x2, y2 = box
        r = np.sqrt((x2 - x1) * (y2 - y1))
        contour = outline.reshape(-1, 1, 2).astype(np.float32)
        points = cv2.approxPolyDP(contour, SIMPLIFY * cv2.arcLength(contour, True), True).reshape(-1, 2)
        centre = points.mean(axis=0)
        points = centre + rng.uniform(*SCALE) * (points - centre) + rng.normal(0, SHIFT * r, 2)
        points = np.clip(points + rng.normal(0, JITTER * r, points.shape), 0, [width, height])
        values = (points / [width, height]).ravel()
        lines.append(" ".join([str(int(c))] + [f"{v:.6f}" for v in values]))
    return lines


def write_labels() -> None:
    rng = np.random.default_rng(SEED)
    out = SEG_SET / "labels"
    out.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        yolo, imgsz = model(Path(tmp))
        for photo in PHOTOS:
            (pred,) = yolo.predict(str(SAMPLES / photo), imgsz=imgsz, conf=LABEL_CONF, retina_masks=True, verbose=False)
            lines = label_lines(pred, rng)
            (out / f"{Path(photo).stem}.txt").write_text("".join(f"{line}\n" for line in lines))
            print(photo, len(lines), "labels", [len(line.split()) // 2 for line in lines], "points")


def read_truth(label: Path, width: int, height: int) -> list[dict]:
    """COCO annotations (no ids) of one YOLO polygon label file: bbox (the polygon's extent), its area, and the
    polygon in pixels."""
    objects = []
    for line in label.read_text().splitlines():
        c, *values = (float(v) for v in line.split())
        points = np.array(values).reshape(-1, 2) * [width, height]
        (x1, y1), (x2, y2) = points.min(axis=0), points.max(axis=0)
        objects.append(
            {
                "category_id": int(c) + 1,
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "area": (x2 - x1) * (y2 - y1),
                "iscrowd": 0,
                "segmentation": [points.ravel().tolist()],
            }
        )
    return objects


def score(truth: dict, detections: list[dict], iou_type: str) -> dict:
    from pycocotools import mask as mask_util
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    ground = COCO()
    ground.dataset = json.loads(json.dumps(truth))
    if iou_type == "segm":
        sizes = {image["id"]: (image["height"], image["width"]) for image in truth["images"]}
        for ann in ground.dataset["annotations"]:
            rles = mask_util.frPyObjects(ann["segmentation"], *sizes[ann["image_id"]])
            ann["area"] = float(mask_util.area(mask_util.merge(rles)))
    ground.createIndex()
    key = "bbox" if iou_type == "bbox" else "segmentation"
    results = [{k: d[k] for k in ("image_id", "category_id", "score", key)} for d in detections]
    coco_eval = COCOeval(ground, ground.loadRes(results), iouType=iou_type)
    coco_eval.evaluate()
    coco_eval.accumulate()
    coco_eval.summarize()
    precision = coco_eval.eval["precision"][:, :, :, 0, -1]  # all areas, the most detections

    def mean(p):
        return float(p[p > -1].mean()) if (p > -1).any() else None

    per_class = [
        {"class_id": c, "name": name, "map50_95": mean(precision[:, :, k]), "map50": mean(precision[0, :, k])}
        for k, (c, name) in enumerate(NAMES.items())
    ]
    return {"map50_95": mean(precision), "map50": mean(precision[0]), "per_class": per_class}


def write_reference() -> None:
    from importlib.metadata import version

    from pycocotools import mask as mask_util

    truth = {"info": {}, "images": [], "annotations": [], "categories": []}
    truth["categories"] = [{"id": c + 1, "name": name} for c, name in NAMES.items()]
    detections = []
    with tempfile.TemporaryDirectory() as tmp:
        yolo, imgsz = model(Path(tmp))
        for image_id, photo in enumerate(PHOTOS, start=1):
            (pred,) = yolo.predict(str(SAMPLES / photo), imgsz=imgsz, verbose=False, **SETTINGS)
            height, width = pred.orig_shape
            truth["images"].append({"id": image_id, "file_name": photo, "width": width, "height": height})
            for ann in read_truth(SEG_SET / "labels" / f"{Path(photo).stem}.txt", width, height):
                truth["annotations"].append({"id": len(truth["annotations"]) + 1, "image_id": image_id, **ann})
            boxes, masks = pred.boxes, pred.masks.data.cpu().numpy().astype(np.uint8)
            for box, conf, c, mask in zip(boxes.xyxy.tolist(), boxes.conf.tolist(), boxes.cls.tolist(), masks):
                x1, y1, x2, y2 = box
                rle = mask_util.encode(np.asfortranarray(mask))
                detections.append(
                    {
                        "image_id": image_id,
                        "category_id": int(c) + 1,
                        "bbox": [x1, y1, x2 - x1, y2 - y1],
                        "segmentation": {"size": rle["size"], "counts": rle["counts"].decode()},
                        "score": conf,
                    }
                )
    out = {
        "generator": "tests/reference/make_seg_val_reference.py",
        "versions": {name: version(name) for name in ("ultralytics", "pycocotools", "onnxruntime")},
        "model": load_recipe("fall_seg")["description"],
        "dataset": "tests/data/seg_set (tests/val_set.py build_seg_set)",
        "predict": SETTINGS | {"imgsz": imgsz},
        "images": len(truth["images"]),
        "labels": len(truth["annotations"]),
        "detections": len(detections),
        "box": score(truth, detections, "bbox"),
        "mask": score(truth, detections, "segm"),
    }
    (HERE / "ultralytics_seg_val.json").write_text(json.dumps(out, indent=1) + "\n")
    print(
        json.dumps(
            {k: v for k, v in out.items() if k not in ("box", "mask")}
            | {kind: [out[kind]["map50_95"], out[kind]["map50"]] for kind in ("box", "mask")},
            indent=1,
        )
    )


if __name__ == "__main__":
    {"labels": write_labels, "reference": write_reference}[sys.argv[1]]()
