"""Install a prepared model into the Triton model repository and set the configs to match it."""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prepare.classify_outputs import DETECTION_OUTPUTS, classify_outputs, set_kind_outputs
from prepare.onnx_model import YoloModelInfo, ultralytics_metadata
from prepare.task_outputs import set_prototypes, set_task_outputs, task_output_dims
from prepare.warmup import (
    profile_batch_sizes,
    set_warmup_batch_sizes,
    set_warmup_dims,
    write_warmup_files,
)
from python_backends.defaults import CONF_THRESHOLD, CPU_PRECISION, IOU_THRESHOLD, MAX_DET
from python_backends.infer.openvino_runtime import int8_model_path
from python_backends.infer.tensorrt_engine import DEFAULT_PROFILE, clamp_profile

STAGES = ("yolov8", "yolov8_raw", "yolov8_preprocess", "yolov8_infer", "yolov8_postprocess")
MAX_BATCH = 32  # max_batch_size of the ensembles and yolov8_infer for a graph that takes any batch


def engine_precision(info: YoloModelInfo) -> str:
    """``fp32`` for a graph with NMS inside, else ``fp16``. Such a graph offsets each box by its class
    and scales the result towards 1, where FP16's step (2.4e-4 to 4.9e-4) is 12-25 px of a 640 input with
    80 classes: FP16 NMS keeps boxes that FP32 merges (ultralytics#21601: 13 boxes against 4)."""
    return "fp32" if info.nms_inside else "fp16"


def set_dims(config: str, tensor: str, dims: list[int]) -> str:
    """Replace the ``dims`` of the input/output named ``tensor`` in config.pbtxt text."""
    pattern = re.compile(r'(name:\s*"' + re.escape(tensor) + r'"[^{}]*?dims:\s*\[)[^\]]*(\])', re.S)
    new, count = pattern.subn(lambda m: m.group(1) + " " + ", ".join(map(str, dims)) + " " + m.group(2), config)
    if count == 0:
        raise ValueError(f"no tensor {tensor!r} with dims in the config")
    return new


def set_max_batch_size(config: str, max_batch: int) -> str:
    """Replace the model's ``max_batch_size`` in config.pbtxt text."""
    new, count = re.subn(r"^(max_batch_size:\s*)\d+", lambda m: f"{m.group(1)}{max_batch}", config, flags=re.M)
    if count != 1:
        raise ValueError(f"expected one max_batch_size in the config, found {count}")
    return new


def set_parameter(config: str, key: str, value: str) -> str:
    """Replace the string value of parameter ``key`` in config.pbtxt text."""
    pattern = re.compile(r'(key:\s*"' + re.escape(key) + r'",\s*value:\s*\{\s*string_value:\s*)"(?:[^"\\]|\\.)*"')
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    new, count = pattern.subn(lambda m: m.group(1) + f'"{escaped}"', config)
    if count == 0:
        raise ValueError(f"no parameter {key!r} in the config")
    return new


def set_parameters(config: str, values: dict[str, str]) -> str:
    """``set_parameter`` for each key and value of ``values``."""
    for key, value in values.items():
        config = set_parameter(config, key, value)
    return config


def config_files(stage: Path) -> list[Path]:
    """A model's config.pbtxt and its named variants in configs/ (``tritonserver --model-config-name``)."""
    return [stage / "config.pbtxt", *sorted((stage / "configs").glob("*.pbtxt"))]


def served_max_det(info: YoloModelInfo, requested: int) -> int:
    """The detections kept per image (the outputs' rows): ``requested``, at most an end2end head's rows."""
    return min(requested, info.max_det) if info.head == "end2end" else requested


def configure(repository: Path, info: YoloModelInfo, max_det: int = MAX_DET) -> None:
    """Rewrite the models' config files (variants included) for this model's input size, head, class count,
    max_det and batch size.

    The warm-up samples' dims follow the tensors' own. yolov8_postprocess gets the head kind (``head``) and
    the task (``task``); it and the ensembles output the task's own outputs (``prepare.task_outputs``), a
    classifier's in place of the detection outputs (``prepare.classify_outputs``), and yolov8_preprocess
    gets the classify transform for a classifier (``transform``), the letterbox for any other. A segment
    model's prototypes go from yolov8_infer to yolov8_postprocess beside the head.
    A graph that handles a limited batch (``info.max_batch``: NMS inside it) sets max_batch_size of
    yolov8_infer and of the ensembles, yolov8_infer's TensorRT profile and the batch sizes it warms up
    at; any other gets ``MAX_BATCH`` and the default profile. ``precision`` (of a TensorRT engine) is
    ``engine_precision``'s.

    yolov8_infer also gets the export's metadata (``ultralytics_metadata``) as a Python literal, which
    Ultralytics' ``YOLO("grpc://host:8001/yolov8_infer")`` client eval()s.
    """
    image = [3, info.input_height, info.input_width]
    head = info.head_dims()
    max_det = served_max_det(info, max_det)
    max_batch = min(info.max_batch or MAX_BATCH, MAX_BATCH)
    profile = clamp_profile(DEFAULT_PROFILE, max_batch)
    metadata = repr(ultralytics_metadata(info))
    outputs = task_output_dims(info, max_det)
    kind = classify_outputs(len(info.class_names)) if info.task == "classify" else DETECTION_OUTPUTS
    transform = "classify" if info.task == "classify" else "letterbox"
    prototypes = info.prototype_dims()
    edits = {
        "yolov8_preprocess": lambda c: set_parameters(
            set_dims(c, "images", image),
            {"input_height": str(info.input_height), "input_width": str(info.input_width), "transform": transform},
        ),
        "yolov8_infer": lambda c: _batching(
            set_parameter(
                set_warmup_dims(
                    set_prototypes(
                        set_dims(set_dims(set_dims(c, "images", image), "pixels", image), "output0", head),
                        prototypes,
                        "output",
                    ),
                    "pixels",
                    image,
                ),
                "metadata",
                metadata,
            ),
            max_batch,
            profile,
            engine_precision(info),
        ),
        "yolov8_postprocess": lambda c: _detections(
            set_parameters(
                set_warmup_dims(set_prototypes(set_dims(c, "output0", head), prototypes, "input"), "output0", head),
                {
                    "num_classes": str(len(info.class_names)),
                    "class_names": json.dumps(list(info.class_names)),
                    "head": info.head,
                    "conf_threshold": str(CONF_THRESHOLD),  # the serving defaults (python_backends.defaults)
                    "iou_threshold": str(IOU_THRESHOLD),
                },
            ),
            max_det,
            kind,
            info.task,
            outputs,
        ),
        "yolov8": lambda c: set_max_batch_size(
            _detections(set_prototypes(c, prototypes), max_det, kind, outputs=outputs), max_batch
        ),
        "yolov8_raw": lambda c: set_max_batch_size(
            _detections(set_prototypes(c, prototypes), max_det, kind, outputs=outputs), max_batch
        ),
    }
    for stage, edit in edits.items():
        for path in config_files(repository / stage):
            path.write_text(edit(path.read_text()))


def _batching(config: str, max_batch: int, profile: tuple[int, int, int], precision: str) -> str:
    """yolov8_infer's max_batch_size and TensorRT profile and precision; a config that batches for the engine
    (no ``preferred_batch_size``) warms up at the profile's batch sizes."""
    config = set_parameter(set_max_batch_size(config, max_batch), "trt_batch_profile", ",".join(map(str, profile)))
    config = set_parameter(config, "precision", precision)
    if "preferred_batch_size" not in config:
        config = set_warmup_batch_sizes(config, profile_batch_sizes(*profile))
    return config


def _detections(
    config: str,
    max_det: int,
    kind: dict[str, tuple[str, list[int], str]],
    task: str | None = None,
    outputs: dict[str, list[int]] | None = None,
) -> str:
    """The detection outputs (``kind``: ``DETECTION_OUTPUTS``) and their rows (``max_det``) or a classifier's
    outputs, the task's outputs, and (yolov8_postprocess) ``task``."""
    config = set_kind_outputs(set_task_outputs(config, outputs or {}), kind)
    if task is not None:
        config = set_parameter(config, "task", task)
    if kind is not DETECTION_OUTPUTS:
        return config
    config = set_dims(config, "det_boxes", [max_det, 4])
    config = set_dims(config, "det_scores", [max_det])
    config = set_dims(config, "det_classes", [max_det])
    return set_parameter(config, "max_det", str(max_det)) if '"max_det"' in config else config


def copy_template(source: Path, target: Path) -> None:
    """Copy the committed repository (configs and model.py files, no model) to ``target``."""
    for stage in STAGES:
        shutil.copytree(
            source / stage,
            target / stage,
            dirs_exist_ok=True,
            ignore=shutil.ignore_patterns("*.onnx", "*_int8.xml", "*_int8.bin", "__pycache__"),
        )


def copy_linked(source: Path, target: Path) -> Path:
    """A copy of the prepared repository ``source``: configs, model.py files, labels and warm-up data copied, the
    models (the ONNX, an INT8 IR) linked."""
    copy_template(source, target)
    for pattern in ("*.onnx", "*_int8.xml", "*_int8.bin"):
        for model_file in (source / "yolov8_infer" / "1").glob(pattern):
            (target / "yolov8_infer" / "1" / model_file.name).symlink_to(model_file.resolve())
    return target


def copy_with_parameters(source: Path, target: Path, model: str, **params: str) -> Path:
    """A copy of the prepared repository ``source`` in which ``model``'s config.pbtxt has ``params`` set.

    Configs, model.py files, labels and warm-up data are copied; the models (the ONNX, an INT8 IR) are linked.
    """
    copy_linked(source, target)
    config = target / model / "config.pbtxt"
    config.write_text(set_parameters(config.read_text(), params))
    return target


def install(repository: Path, onnx_bytes: bytes, info: YoloModelInfo, max_det: int = MAX_DET) -> Path:
    """Write model.onnx, labels.txt and the warm-up data, and set the configs; returns the model file's path.

    The model is served in FP32: an INT8 model of an earlier ``prepare --int8`` is removed.
    """
    model_path = repository / "yolov8_infer" / "1" / "model.onnx"
    model_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = model_path.with_suffix(".onnx.tmp")
    tmp.write_bytes(onnx_bytes)
    tmp.replace(model_path)
    (repository / "yolov8_postprocess" / "labels.txt").write_text("\n".join(info.class_names) + "\n")
    write_warmup_files(repository, info)
    configure(repository, info, max_det)
    set_cpu_precision(repository, CPU_PRECISION)
    int8 = int8_model_path(model_path)
    for path in (int8, int8.with_suffix(".bin")):
        path.unlink(missing_ok=True)
    return model_path


@contextmanager
def staged(repository: Path) -> Iterator[Path]:
    """A copy of ``repository`` (empty when there is none) beside it, to prepare: it takes the place of
    ``repository`` when the block succeeds and is removed when the block raises, leaving ``repository`` as it
    was."""
    repository.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{repository.name}.prepare-", dir=repository.parent))
    try:
        work = stage / repository.name
        if repository.exists():
            shutil.copytree(repository, work, symlinks=True)
        yield work
        if repository.exists():
            repository.rename(stage / "replaced")
        work.rename(repository)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def set_cpu_precision(repository: Path, precision: str) -> None:
    """Set ``cpu_precision`` (fp32 | int8) in yolov8_infer's config.pbtxt and its variants."""
    for path in config_files(repository / "yolov8_infer"):
        path.write_text(set_parameter(path.read_text(), "cpu_precision", precision))
