"""Prepare any Ultralytics YOLOv8 detection ONNX for serving.

    python -m python_backends.prepare --onnx yolov8n.onnx [--repository model_repository]
    python -m python_backends.prepare --onnx yolov8n.onnx --tensorrt [--no-fp16] [--batch-profile 1,8,32]

Reads class names, imgsz and stride from the ONNX metadata, makes the batch dimension
dynamic (checking numerically that outputs do not change), installs the model with a
labels file, and sets the configs' input size, class count and max_det to match.
With --tensorrt it also builds (or finds cached) the TensorRT engine of the installed model
for this machine's TensorRT and GPU, and writes its precision and profile into yolov8_infer.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import onnx

from python_backends.onnx_model import (
    ANCHOR_STRIDES,
    UnsupportedModelError,
    YoloModelInfo,
    make_batch_dynamic,
    read_model_info,
    verify_same_outputs,
)
from python_backends.repository import config_files, copy_template, install, set_parameter
from python_backends.tensorrt_engine import (
    DEFAULT_PROFILE,
    EngineBuildError,
    EngineOptions,
    compute_capability,
    ensure_engine,
    import_tensorrt,
    parse_profile,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def prepare(
    onnx_path: Path,
    repository: Path,
    max_det: int = 300,
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
    dynamic, rewritten = make_batch_dynamic(model)
    original_bytes, dynamic_bytes = model.SerializeToString(), dynamic.SerializeToString()
    diff = verify_same_outputs(original_bytes, dynamic_bytes, info)
    if template is not None and template.resolve() != repository.resolve():
        copy_template(template, repository)
    model_path = install(repository, dynamic_bytes, info, max_det)
    return (
        f"installed {onnx_path.name} -> {model_path}: {len(info.class_names)} classes, "
        f"input {info.input_height}x{info.input_width}, {info.num_anchors} anchors, "
        f"{rewritten} Reshape(s) made batch-dynamic (max |diff| {diff:.2g} at batch 2)"
    )


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

    In config.pbtxt and its variants (configs/gpu.pbtxt).
    """
    for config_path in config_files(repository / "yolov8_infer"):
        config = set_parameter(config_path.read_text(), "precision", "fp16" if options.fp16 else "fp32")
        profile = f"{options.min_batch},{options.opt_batch},{options.max_batch}"
        config = set_parameter(config, "trt_batch_profile", profile)
        if engine_dir is not None:
            config = set_parameter(config, "engine_dir", str(engine_dir.resolve()))
        config_path.write_text(config)


def parse_input_size(text: str) -> tuple[int, int]:
    """``"640"`` or ``"480x640"`` (height x width) → (height, width)."""
    parts = text.lower().split("x")
    if len(parts) not in (1, 2) or not all(p.strip().isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"input size must be N or HxW, got {text!r}")
    return int(parts[0]), int(parts[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--onnx", required=True, type=Path, help="Ultralytics YOLOv8 detection ONNX export")
    parser.add_argument("--repository", type=Path, default=PROJECT_ROOT / "model_repository")
    parser.add_argument("--max-det", type=int, default=300, help="detections kept per image (output rows)")
    parser.add_argument("--input-size", type=parse_input_size, help="N or HxW (default: the model's imgsz)")
    parser.add_argument("--tensorrt", action="store_true", help="also build the TensorRT engine (needs a GPU)")
    parser.add_argument("--no-fp16", dest="fp16", action="store_false", help="build an FP32 engine (default FP16)")
    parser.add_argument(
        "--batch-profile",
        default=",".join(map(str, DEFAULT_PROFILE)),
        help="engine min,opt,max batch (default %(default)s; FastDeploy's YOLOv8 example used 1,1,40)",
    )
    parser.add_argument("--engine-dir", type=Path, help="engine cache (default $YOLOV8_ENGINE_DIR or .cache/engines)")
    args = parser.parse_args(argv)
    try:
        if args.tensorrt:  # refuse before touching the repository
            import_tensorrt()
            compute_capability()
            low, opt, high = parse_profile(args.batch_profile)
        print(
            prepare(
                args.onnx, args.repository, args.max_det, PROJECT_ROOT / "model_repository", input_size=args.input_size
            )
        )
        if args.tensorrt:
            height, width = args.input_size or _installed_size(args.repository)
            options = EngineOptions(height, width, low, opt, high, fp16=args.fp16)
            print(prepare_tensorrt(args.repository, options, args.engine_dir))
    except (UnsupportedModelError, FileNotFoundError, EngineBuildError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _installed_size(repository: Path) -> tuple[int, int]:
    info = read_model_info(onnx.load(str(repository / "yolov8_infer" / "1" / "model.onnx")))
    return info.input_height, info.input_width


if __name__ == "__main__":
    sys.exit(main())
