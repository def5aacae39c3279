"""Generate tests/reference/cls_model.json: Ultralytics' classify predict on tests/models' fall_cls.

Run once, in the environment that made the model (see tests/models/make_cls_model.py; the project never
depends on Ultralytics):

    /work/ulvenv/bin/python tests/reference/make_cls_reference.py

The model is rebuilt from its committed graph and recipe by tests/models/materialize.py, the code the tests
run. ``YOLO(model, task="classify").predict`` then runs at imgsz 224 on every sample photo (``photos``:
``probs.data``, ``probs.top5`` and ``probs.top5conf``) and on every image of tests/cls_set.py's labelled set
(``cls_set``: its label, top-1 and top-5 class ids), with the top-1 and top-5 counts that ``client val``
must report.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parent.parent)]  # tests/ and the checkout

from cls_set import CROPS, SPLIT, build_cls_set  # noqa: E402
from models.materialize import load_recipe, write_model  # noqa: E402
from sample_images import PHOTOS, PROJECT_ROOT, SAMPLES  # noqa: E402

NAME = "fall_cls"
SOURCES = {"default": PROJECT_ROOT / ".cache" / "models" / "yolov8s-fall-detection.onnx"}
IMGSZ = 224


def probs(model, path: Path) -> dict:
    """Ultralytics' probabilities of one image: all of them, and its top 5 ids and scores."""
    (pred,) = model.predict(str(path), imgsz=IMGSZ, verbose=False)
    return {
        "probs": [round(float(p), 6) for p in pred.probs.data.tolist()],
        "top5": [int(c) for c in pred.probs.top5],
        "top5conf": [round(float(p), 6) for p in pred.probs.top5conf.tolist()],
    }


def main() -> None:
    import ultralytics
    from ultralytics import YOLO

    with tempfile.TemporaryDirectory() as tmp:
        model = YOLO(str(write_model(NAME, Path(tmp), SOURCES)), task="classify")
        names = list(model.names.values())
        photos = {photo: probs(model, SAMPLES / photo) for photo in PHOTOS}
        root = build_cls_set(Path(tmp) / "cls_set")
        labelled = {}
        for name in CROPS:
            found = probs(model, root / SPLIT / name)
            labelled[name] = {"label": names.index(name.split("/")[0]), "top5": found["top5"]}
    out = {
        "generator": "tests/reference/make_cls_reference.py",
        "ultralytics_version": ultralytics.__version__,
        "model": NAME,
        "description": load_recipe(NAME)["description"],
        "imgsz": IMGSZ,
        "names": names,
        "photos": photos,
        "cls_set": {
            "images": labelled,
            "top1_correct": sum(r["top5"][0] == r["label"] for r in labelled.values()),
            "top5_correct": sum(r["label"] in r["top5"] for r in labelled.values()),
        },
    }
    (HERE / "cls_model.json").write_text(json.dumps(out, indent=1) + "\n")
    for photo, found in photos.items():
        print(photo, found["probs"])
    print({k: v for k, v in out["cls_set"].items() if k != "images"})


if __name__ == "__main__":
    main()
