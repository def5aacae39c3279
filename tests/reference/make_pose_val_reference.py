"""Generate tests/data/pose_set/labels and tests/reference/ultralytics_pose_val.json (box and keypoint mAP).

Run once, in the environment that made the task models (Ultralytics and its ONNX Runtime; pycocotools beside
them, e.g. on PYTHONPATH; the project never depends on them):

    /work/ulvenv/bin/python tests/reference/make_pose_val_reference.py labels      # tests/data/pose_set/labels
    /work/ulvenv/bin/python tests/reference/make_pose_val_reference.py reference   # the reference JSON

The model is tests/models' fall_pose, rebuilt by tests/models/materialize.py (boxes from the default fall
detector's weights, keypoints from a seeded branch), at its input size 480x640.

``labels`` writes the five photos' labels: each detection of ``predict(conf=0.3)`` becomes a label of its
class, its box corners moved by a seeded draw (σ 4% of the box's side), its keypoints moved by a seeded draw
of a person's own scale (so OKS spans 0.2 to 1 across people), each keypoint's visibility from the model's
score (below 0.3: 0, not labelled, written as 0 0 0; below 0.6: 1; else 2).

``reference`` runs ``predict(conf=0.001, iou=0.7, max_det=300)`` on every photo and scores it with
pycocotools' COCOeval, iouType bbox and keypoints, COCO's parameters and COCO's 17 sigmas (kpt_shape [17, 3],
as Ultralytics' pose validator takes them): each label's area is its box's for bbox and 0.53 times that for
keypoints (the OKS scale that Ultralytics' pose validator takes), as ``evaluation.coco`` does.
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
from val_set import POSE_SET  # noqa: E402

SOURCES = {"default": PROJECT_ROOT / ".cache" / "models" / "yolov8s-fall-detection.onnx"}
NAMES = {0: "Normal", 1: "Fall"}
SETTINGS = {"conf": 0.001, "iou": 0.7, "max_det": 300}
LABEL_CONF, SEED = 0.3, 29
COCO_SIGMAS = [0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89]
PERSON_AREA = 0.53


def model(tmp: Path):
    from ultralytics import YOLO

    recipe = load_recipe("fall_pose")
    return YOLO(str(write_model("fall_pose", tmp, SOURCES)), task="pose"), recipe["imgsz"]


def label_lines(pred, rng: np.random.Generator) -> list[str]:
    """One photo's label lines from its detections (see the module's docstring)."""
    height, width = pred.orig_shape
    lines = []
    for box, c, points in zip(pred.boxes.xyxy.tolist(), pred.boxes.cls.tolist(), pred.keypoints.data.tolist()):
        x1, y1, x2, y2 = box
        w, h = x2 - x1, y2 - y1
        x1, x2 = np.clip([x1, x2] + rng.normal(0, 0.04 * w, 2), 0, width)
        y1, y2 = np.clip([y1, y2] + rng.normal(0, 0.04 * h, 2), 0, height)
        scale = rng.uniform(0.1, 1.2) * np.sqrt(PERSON_AREA * w * h)  # this person's keypoint error, in s units
        values = [(x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height]
        for (x, y, score), sigma in zip(points, COCO_SIGMAS):
            if score < 0.3:
                values += [0.0, 0.0, 0]
                continue
            dx, dy = rng.normal(0, 2 * sigma / 10 * scale, 2)
            values += [float(np.clip((x + dx) / width, 0, 1)), float(np.clip((y + dy) / height, 0, 1))]
            values.append(1 if score < 0.6 else 2)
        lines.append(" ".join([str(int(c))] + [str(v) if isinstance(v, int) else f"{v:.6f}" for v in values]))
    return lines


def write_labels() -> None:
    rng = np.random.default_rng(SEED)
    out = POSE_SET / "labels"
    out.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        yolo, imgsz = model(Path(tmp))
        for photo in PHOTOS:
            (pred,) = yolo.predict(str(SAMPLES / photo), imgsz=imgsz, conf=LABEL_CONF, verbose=False)
            lines = label_lines(pred, rng)
            (out / f"{Path(photo).stem}.txt").write_text("".join(f"{line}\n" for line in lines))
            print(photo, len(lines), "labels")


def read_truth(label: Path, width: int, height: int) -> list[dict]:
    """COCO annotations (no ids) of one YOLO pose label file: bbox, box area, keypoints, num_keypoints."""
    objects = []
    for line in label.read_text().splitlines():
        c, cx, cy, w, h, *points = (float(v) for v in line.split())
        x1, y1 = (cx - w / 2) * width, (cy - h / 2) * height
        keypoints = np.array(points).reshape(17, 3) * [width, height, 1]
        objects.append(
            {
                "category_id": int(c) + 1,
                "bbox": [x1, y1, w * width, h * height],
                "area": w * width * h * height,
                "iscrowd": 0,
                "keypoints": keypoints.ravel().tolist(),
                "num_keypoints": int((keypoints[:, 2] > 0).sum()),
            }
        )
    return objects


def score(truth: dict, detections: list[dict], iou_type: str) -> dict:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    ground = COCO()
    ground.dataset = json.loads(json.dumps(truth))
    if iou_type == "keypoints":
        for ann in ground.dataset["annotations"]:
            ann["area"] *= PERSON_AREA
    ground.createIndex()
    coco_eval = COCOeval(ground, ground.loadRes(json.loads(json.dumps(detections))), iouType=iou_type)
    coco_eval.params.kpt_oks_sigmas = np.array(COCO_SIGMAS) / 10
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

    truth = {"info": {}, "images": [], "annotations": [], "categories": []}
    truth["categories"] = [{"id": c + 1, "name": name} for c, name in NAMES.items()]
    detections = []
    with tempfile.TemporaryDirectory() as tmp:
        yolo, imgsz = model(Path(tmp))
        for image_id, photo in enumerate(PHOTOS, start=1):
            (pred,) = yolo.predict(str(SAMPLES / photo), imgsz=imgsz, verbose=False, **SETTINGS)
            height, width = pred.orig_shape
            truth["images"].append({"id": image_id, "file_name": photo, "width": width, "height": height})
            for ann in read_truth(POSE_SET / "labels" / f"{Path(photo).stem}.txt", width, height):
                truth["annotations"].append({"id": len(truth["annotations"]) + 1, "image_id": image_id, **ann})
            boxes = pred.boxes
            for box, conf, c, points in zip(
                boxes.xyxy.tolist(), boxes.conf.tolist(), boxes.cls.tolist(), pred.keypoints.data.tolist()
            ):
                x1, y1, x2, y2 = box
                detections.append(
                    {
                        "image_id": image_id,
                        "category_id": int(c) + 1,
                        "bbox": [x1, y1, x2 - x1, y2 - y1],
                        "keypoints": np.ravel(points).tolist(),
                        "score": conf,
                    }
                )
    out = {
        "generator": "tests/reference/make_pose_val_reference.py",
        "versions": {name: version(name) for name in ("ultralytics", "pycocotools", "onnxruntime")},
        "model": load_recipe("fall_pose")["description"],
        "dataset": "tests/data/pose_set (tests/val_set.py build_pose_set)",
        "predict": SETTINGS | {"imgsz": imgsz},
        "images": len(truth["images"]),
        "labels": len(truth["annotations"]),
        "detections": len(detections),
        "box": score(truth, detections, "bbox"),
        "pose": score(truth, detections, "keypoints"),
    }
    (HERE / "ultralytics_pose_val.json").write_text(json.dumps(out, indent=1) + "\n")
    print(
        json.dumps(
            {k: v for k, v in out.items() if k not in ("box", "pose")}
            | {"box": out["box"]["map50_95"], "pose": out["pose"]["map50_95"]},
            indent=1,
        )
    )


if __name__ == "__main__":
    {"labels": write_labels, "reference": write_reference}[sys.argv[1]]()
