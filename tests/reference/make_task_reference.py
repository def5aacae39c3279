"""Generate tests/reference/task_models.json: Ultralytics' predict on the pose, OBB and segment models of
tests/models/ (grid heads, and the same models exported with nms=True).

Run once, in the environment that made the models (see tests/models/make_task_models.py; the project
never depends on Ultralytics):

    /work/ulvenv/bin/python tests/reference/make_task_reference.py

Each model is rebuilt from its committed graph and recipe by tests/models/materialize.py, the code the
tests run. ``YOLO(model, task=...).predict`` then runs on every sample photo at the model's own input
size with the served pipeline's defaults (conf 0.25, iou 0.7, max_det 300). Each detection keeps
``box`` (xyxy pixels: ``boxes.xyxy``, or an OBB's axis-aligned bounds ``obb.xyxy``), ``score`` and
``class_id``; a pose detection ``keypoints`` (``keypoints.data``: K x [x, y, score]), an OBB one
``obb`` (``obb.xywhr``: cx, cy, w, h, angle in radians) and a segment one ``mask``: ``masks.data`` of
``predict(retina_masks=True)`` (the original image's size) as COCO compressed RLE ({"size": [h, w],
"counts": str}, pycocotools' encoding, written here by ``coco_rle``) with its ``area`` in pixels.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parent.parent)]  # tests/ and the checkout

from models.materialize import load_recipe, write_model  # noqa: E402
from sample_images import PHOTOS, PROJECT_ROOT, SAMPLES  # noqa: E402

MODELS = {"fall_pose": "pose", "fall_obb": "obb", "fall_seg": "segment"}
MODELS |= {f"{name}_nms": task for name, task in MODELS.items()}  # the same models exported with nms=True
SOURCES = {"default": PROJECT_ROOT / ".cache" / "models" / "yolov8s-fall-detection.onnx"}
SETTINGS = {"conf": 0.25, "iou": 0.7, "max_det": 300}  # the served pipeline's defaults


def rounded(values: list, digits: int) -> list:
    return [rounded(v, digits) if isinstance(v, list) else round(float(v), digits) for v in values]


def coco_rle(mask) -> dict:
    """A bool (h, w) array as COCO compressed RLE, written out as pycocotools' rleToString does, one run at a time."""
    import numpy as np

    flat = np.asarray(mask, bool).reshape(-1, order="F")
    counts, value, run = [], False, 0
    for pixel in flat.tolist():
        if pixel != value:
            counts.append(run)
            value, run = pixel, 0
        run += 1
    counts.append(run)
    text = []
    for i, count in enumerate(counts):
        x = count - counts[i - 2] if i > 2 else count
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = x != -1 if c & 0x10 else x != 0
            text.append(chr((c | 0x20 if more else c) + 48))
    return {"size": list(mask.shape), "counts": "".join(text)}


def detections(pred, task: str) -> list[dict]:
    """One photo's detections as JSON-ready dicts."""
    if task == "obb":
        found = pred.obb
        extra = [{"obb": rounded(row, 5)} for row in found.xywhr.tolist()]
    elif task == "segment":
        found = pred.boxes
        masks = [] if pred.masks is None else pred.masks.data.bool().numpy()
        extra = [{"mask": coco_rle(mask), "area": int(mask.sum())} for mask in masks]
    else:
        found = pred.boxes
        extra = [{"keypoints": rounded(kpts, 4)} for kpts in pred.keypoints.data.tolist()]
    return [
        {"box": rounded(box, 3), "score": round(float(score), 5), "class_id": int(c), **more}
        for box, score, c, more in zip(found.xyxy.tolist(), found.conf.tolist(), found.cls.tolist(), extra)
    ]


def predict(model_path: Path, task: str, imgsz: list[int]) -> dict[str, dict]:
    """Photo name → its size and Ultralytics' detections."""
    from ultralytics import YOLO

    model = YOLO(str(model_path), task=task)
    results = {}
    for photo in PHOTOS:
        retina = {"retina_masks": True} if task == "segment" else {}
        (pred,) = model.predict(str(SAMPLES / photo), imgsz=imgsz, verbose=False, **SETTINGS, **retina)
        results[photo] = {
            "width": int(pred.orig_shape[1]),
            "height": int(pred.orig_shape[0]),
            "detections": detections(pred, task),
        }
    return results


def main() -> None:
    import ultralytics

    models = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, task in MODELS.items():
            recipe = load_recipe(name)
            path = write_model(name, Path(tmp), SOURCES)
            models[name] = {
                "description": recipe["description"],
                "task": task,
                "imgsz": recipe["imgsz"],
                "results": predict(path, task, recipe["imgsz"]),
            }
    out = {
        "generator": "tests/reference/make_task_reference.py",
        "ultralytics_version": ultralytics.__version__,
        "settings": SETTINGS,
        "models": models,
    }
    (HERE / "task_models.json").write_text(json.dumps(out, separators=(",", ":")) + "\n")
    for name, model in models.items():
        counts = {photo: len(r["detections"]) for photo, r in model["results"].items()}
        print(f"{name}: {sum(counts.values())} detections {counts}")


if __name__ == "__main__":
    main()
