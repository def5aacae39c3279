"""perf_analyzer ``--input-data`` files for the ensemble and for each stage alone.

    python -m benchmarks.perf_data IMAGE [IMAGE ...] -o input.json [--repository DIR]

The ensemble file holds the encoded images (client.perf_input). The stage files hold real
intermediate tensors, computed in-process by the same classes the stages run, set up from the
repository's configs (``benchmarks.stages``), so that each stage can be measured alone, for any task:
``yolov8_preprocess`` gets IMAGE, ``yolov8_infer`` the preprocessed uint8 ``pixels`` (letterboxed, or
a classifier's centre crop), ``yolov8_postprocess`` the head ``output0`` (a classifier's probabilities),
``LETTERBOX`` and a segment model's prototypes ``output1``.
Non-string tensors are written as base64 of their little-endian bytes.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from pathlib import Path

import numpy as np

from benchmarks.stages import Stages, stage_configs
from client.perf_input import input_data
from python_backends.paths import DEFAULT_REPOSITORY


def tensor_entry(array: np.ndarray) -> dict:
    """One perf_analyzer tensor: base64 of the raw little-endian data, and its shape (no batch dim)."""
    little = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    return {"content": {"b64": base64.b64encode(little.tobytes()).decode()}, "shape": list(array.shape)}


def stage_inputs(images: list[Path], repository: Path) -> dict[str, dict]:
    """Input data for each composing model, from the real pipeline's intermediate tensors (ONNX Runtime's)."""
    stages = Stages.of(repository, stage_configs(repository))
    infer, post = [], []
    for image in images:
        tensor, mapping = stages.preprocessor.from_bytes(image.read_bytes())
        inputs = stages.postprocess_inputs(stages.infer(tensor[None]), mapping[None])
        infer.append({"pixels": tensor_entry(tensor)})
        post.append({name: tensor_entry(value[0]) for name, value in inputs.items()})
    return {
        "yolov8_preprocess": input_data(images),
        "yolov8_infer": {"data": infer},
        "yolov8_postprocess": {"data": post},
    }


def stage_path(out: Path, model: str) -> Path:
    """``out.json`` → ``out.<model>.json``."""
    return out.with_name(f"{out.stem}.{model}{out.suffix}")


def write_perf_data(images: list[Path], out: Path, repository: Path = DEFAULT_REPOSITORY) -> list[Path]:
    """Write the ensemble file ``out`` and one file per stage of ``repository``; returns every path written."""
    out.write_text(json.dumps(input_data(images)))
    written = [out]
    for model, data in stage_inputs(images, repository).items():
        path = stage_path(out, model)
        path.write_text(json.dumps(data))
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.perf_data", description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    parser.add_argument(
        "-o", "--output", required=True, type=Path, help="ensemble file; stages go to OUTPUT.<model>.json"
    )
    parser.add_argument(
        "--repository", type=Path, default=DEFAULT_REPOSITORY, help="the prepared repository whose stages to feed"
    )
    args = parser.parse_args(argv)
    for path in write_perf_data(args.images, args.output, args.repository):
        print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
