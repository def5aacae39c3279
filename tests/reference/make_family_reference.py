"""Generate tests/reference/model_families.json: Ultralytics' predict on the models of tests/models/.

Run once, in the environment that made the models (see tests/models/make_models.py; the project
never depends on Ultralytics):

    /work/ulvenv/bin/python tests/reference/make_family_reference.py

Each model is rebuilt from its committed graph and recipe by tests/models/materialize.py, the code
the tests run. ``YOLO(model, task="detect").predict`` then runs on every sample photo, at the model's
own input size, with the served pipeline's defaults: conf 0.25, iou 0.7, max_det 300.
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

MODELS = ("yolo11n", "yolo26n_e2e", "fall_nms")
SOURCES = {"default": PROJECT_ROOT / ".cache" / "models" / "yolov8s-fall-detection.onnx"}
SETTINGS = {"conf": 0.25, "iou": 0.7, "max_det": 300}  # the served pipeline's defaults


def predict(model_path: Path, imgsz: list[int]) -> dict[str, dict]:
    """Photo name → its size and Ultralytics' detections (xyxy pixels, score, class id)."""
    from ultralytics import YOLO

    model = YOLO(str(model_path), task="detect")
    results = {}
    for photo in PHOTOS:
        (pred,) = model.predict(str(SAMPLES / photo), imgsz=imgsz, verbose=False, **SETTINGS)
        results[photo] = {
            "width": int(pred.orig_shape[1]),
            "height": int(pred.orig_shape[0]),
            "detections": [
                {"box": [round(float(v), 3) for v in box], "score": round(float(score), 5), "class_id": int(c)}
                for box, score, c in zip(pred.boxes.xyxy.tolist(), pred.boxes.conf.tolist(), pred.boxes.cls.tolist())
            ],
        }
    return results


def main() -> None:
    import ultralytics

    models = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in MODELS:
            recipe = load_recipe(name)
            path = write_model(name, Path(tmp), SOURCES)
            models[name] = {
                "description": recipe["description"],
                "imgsz": recipe["imgsz"],
                "results": predict(path, recipe["imgsz"]),
            }
    out = {
        "generator": "tests/reference/make_family_reference.py",
        "ultralytics_version": ultralytics.__version__,
        "settings": SETTINGS,
        "models": models,
    }
    (HERE / "model_families.json").write_text(json.dumps(out, indent=1) + "\n")
    for name, model in models.items():
        counts = {photo: len(r["detections"]) for photo, r in model["results"].items()}
        print(f"{name}: {sum(counts.values())} detections {counts}")


if __name__ == "__main__":
    main()
