"""Prepare any Ultralytics YOLOv8 detection ONNX for serving.

    python -m python_backends.prepare --onnx yolov8n.onnx [--repository model_repository]

Reads class names, imgsz and stride from the ONNX metadata, makes the batch dimension
dynamic (checking numerically that outputs do not change), installs the model with a
labels file, and sets the configs' input size, class count and max_det to match.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import onnx

from python_backends.onnx_model import UnsupportedModelError, make_batch_dynamic, read_model_info, verify_same_outputs
from python_backends.repository import copy_template, install

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def prepare(onnx_path: Path, repository: Path, max_det: int = 300, template: Path | None = None) -> str:
    """Prepare ``onnx_path`` into ``repository``; returns a one-line summary."""
    try:
        model = onnx.load(str(onnx_path))
    except Exception as exc:  # onnx raises DecodeError, OSError, ...
        raise UnsupportedModelError(f"{onnx_path}: not a readable ONNX model ({exc})") from exc
    info = read_model_info(model)
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--onnx", required=True, type=Path, help="Ultralytics YOLOv8 detection ONNX export")
    parser.add_argument("--repository", type=Path, default=PROJECT_ROOT / "model_repository")
    parser.add_argument("--max-det", type=int, default=300, help="detections kept per image (output rows)")
    args = parser.parse_args(argv)
    try:
        print(prepare(args.onnx, args.repository, args.max_det, template=PROJECT_ROOT / "model_repository"))
    except (UnsupportedModelError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
