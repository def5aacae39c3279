"""Prepare an ONNX export into a model repository, and point yolov8_infer at a TensorRT engine built from it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import onnx

from prepare.onnx_model import (
    ANCHOR_STRIDES,
    UnsupportedModelError,
    YoloModelInfo,
    make_batch_dynamic,
    read_model_info,
    verify_same_outputs,
    with_pixel_input,
)
from prepare.repository import config_files, copy_template, install, served_max_det, set_parameter
from prepare.warmup import profile_batch_sizes, set_warmup_batch_sizes
from python_backends.defaults import MAX_DET
from python_backends.infer.tensorrt_build import ensure_engine
from python_backends.infer.tensorrt_engine import EngineOptions
from python_backends.postprocess.classify import TOP_K


def prepare(
    onnx_path: Path,
    repository: Path,
    max_det: int = MAX_DET,
    template: Path | None = None,
    input_size: tuple[int, int] | None = None,
) -> str:
    """Prepare ``onnx_path`` into ``repository``; returns a one-line summary.

    ``input_size`` (height, width) overrides the metadata's imgsz; only an export with a dynamic
    H/W can take a size other than its own.
    """
    try:
        model = onnx.load(str(onnx_path))
    except Exception as exc:  # onnx raises DecodeError, OSError, ...
        raise UnsupportedModelError(f"{onnx_path}: not a readable ONNX model ({exc})") from exc
    info = read_model_info(model)
    if input_size is not None:
        info = with_input_size(model, info, *input_size)
    installed, info, batching = served_graph(model, info)
    if template is not None and template.resolve() != repository.resolve():
        copy_template(template, repository)
    model_path = install(repository, installed, info, max_det)
    return (
        f"installed {onnx_path.name} -> {model_path}: {len(info.class_names)} classes, "
        f"input {info.input_height}x{info.input_width}, {head_summary(info, max_det)}, {batching}"
    )


def served_graph(model: onnx.ModelProto, info: YoloModelInfo) -> tuple[bytes, YoloModelInfo, str]:
    """The model to install, its info as served (``max_batch``), and a summary of its batching.

    A graph with NMS inside (``info.max_batch`` set) is installed as exported: its loop, not its
    Reshapes, fixes the batch, and the images it leaves out get zero rows, which a check on random
    images (no detections either way) would not notice. Any other is made batch-dynamic and checked
    against the export at batch 2. An end-to-end head of a batch-1 export that fails the check (a
    top-k indexed with a fixed batch) is installed as exported and served at batch 1, saying why.
    Every installed graph takes uint8 pixels (``with_pixel_input``).
    """

    def as_exported() -> bytes:
        return with_pixel_input(model).SerializeToString()

    if info.max_batch == 1:
        return as_exported(), info, "the NMS inside this graph handles batch 1 only: serving batch 1"
    if info.max_batch is not None:
        n = info.max_batch
        return (
            as_exported(),
            info,
            f"the NMS inside this graph handles {n} images at most: serving batches of up to {n}",
        )
    dynamic, rewritten = make_batch_dynamic(model)
    try:
        diff = verify_same_outputs(model.SerializeToString(), dynamic.SerializeToString(), info, batch=2)
    except UnsupportedModelError as exc:
        if info.head != "end2end" or info.batch_dim != 1:
            raise
        return as_exported(), dataclasses.replace(info, max_batch=1), f"{exc}: serving batch 1 as exported"
    installed = with_pixel_input(dynamic).SerializeToString()
    return installed, info, f"{rewritten} Reshape(s) made batch-dynamic (max |diff| {diff:.2g} at batch 2)"


def head_summary(info: YoloModelInfo, max_det: int) -> str:
    """How the head is served, for prepare's summary line."""
    if info.task == "classify":
        return f"a classifier: each class's probability and the top {TOP_K} (classify transform, no letterbox)"
    if info.head == "raw":
        return f"{info.num_anchors} anchors"
    kept = served_max_det(info, max_det)
    limit = f", {kept} kept per image (--max-det)" if kept < info.max_det else ""
    return f"end-to-end head of {info.max_det} rows{limit} (no NMS in postprocess)"


def with_input_size(model: onnx.ModelProto, info: YoloModelInfo, height: int, width: int) -> YoloModelInfo:
    """``info`` for another input size, which a static H/W export refuses."""
    if (height, width) == (info.input_height, info.input_width):
        return info
    dims = model.graph.input[0].type.tensor_type.shape.dim
    if any(d.HasField("dim_value") for d in dims[2:4]):
        raise UnsupportedModelError(
            f"the model's input is fixed at {info.input_height}x{info.input_width}; export it with "
            f"imgsz={height},{width} (or dynamic=True) to serve {height}x{width}"
        )
    if height % 32 or width % 32:
        raise UnsupportedModelError(f"input size {height}x{width} must be a multiple of 32")
    anchors = sum((height // s) * (width // s) for s in ANCHOR_STRIDES)
    return dataclasses.replace(info, input_height=height, input_width=width, num_anchors=anchors)


def prepare_tensorrt(repository: Path, options: EngineOptions, engine_dir: Path | None = None) -> str:
    """Build (or find) the engine of the installed model and point yolov8_infer's config at its settings."""
    engine = ensure_engine(repository / "yolov8_infer" / "1" / "model.onnx", options, engine_dir)
    write_engine_settings(repository, options, engine_dir)
    return f"TensorRT engine {engine} (batch profile {options.min_batch}/{options.opt_batch}/{options.max_batch})"


def write_engine_settings(repository: Path, options: EngineOptions, engine_dir: Path | None = None) -> None:
    """Set yolov8_infer's ``precision``, ``trt_batch_profile`` (and ``engine_dir``) so it loads this engine.

    In config.pbtxt and its variants (configs/gpu.pbtxt). A config that batches for the engine (no
    ``preferred_batch_size``: configs/gpu.pbtxt) warms up at the profile's batch sizes.
    """
    for config_path in config_files(repository / "yolov8_infer"):
        config = set_parameter(config_path.read_text(), "precision", "fp16" if options.fp16 else "fp32")
        profile = f"{options.min_batch},{options.opt_batch},{options.max_batch}"
        config = set_parameter(config, "trt_batch_profile", profile)
        if engine_dir is not None:
            config = set_parameter(config, "engine_dir", str(engine_dir.resolve()))
        if "preferred_batch_size" not in config:
            sizes = profile_batch_sizes(options.min_batch, options.opt_batch, options.max_batch)
            config = set_warmup_batch_sizes(config, sizes)
        config_path.write_text(config)
