"""Prepare an Ultralytics detection ONNX (YOLOv8, YOLO11, YOLO26, YOLOv10; end-to-end or with NMS inside) for serving.

    python -m prepare --onnx yolov8n.onnx [--repository model_repository]
    python -m prepare --onnx yolov8n.onnx --tensorrt [--no-fp16] [--batch-profile 1,8,32]
    python -m prepare --onnx yolov8n.onnx --cpu-runtime onnxruntime
    python -m prepare --onnx yolov8n.onnx --int8 --calibration DIR [--data DATA.yaml]

Reads class names, imgsz, stride and the kind of head from the ONNX metadata, makes the batch
dimension dynamic (checking numerically that outputs do not change), installs the model with a
labels file, and sets the configs' input size, head, class count and max_det to match. An end-to-end
head (batch, max_det, 6) is served without NMS in postprocess, and at most its max_det rows per image;
an export with NMS inside the graph that handles batch 1 only is served at batch 1.
It then times ONNX Runtime and OpenVINO on the installed model and writes the CPU runtime that
`runtime: auto` runs (`cpu_runtime`): OpenVINO only when it is clearly faster here
(--cpu-runtime names one instead of measuring).
With --tensorrt it also builds (or finds cached) the TensorRT engine of the installed model
for this machine's TensorRT and GPU, and writes its precision and profile into yolov8_infer.
With --int8 it quantizes the installed model with NNCF, calibrated on the photos in --calibration, into an
OpenVINO INT8 model beside the ONNX, and sets yolov8_infer to serve it on CPU (``cpu_precision: int8``).
With --data it keeps the mAP50-95 drop on that Ultralytics dataset within --max-drop (NNCF's accuracy
control), scoring with the postprocessing served for the model's head, and prints both mAPs. Without --int8,
the model is served in FP32. Every step works on a copy of the repository beside it, which takes its place
when they all succeed: a failed run leaves the repository as it was.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import onnx

from evaluation.dataset import Dataset, load_dataset
from prepare.cpu_runtime import measure, served_input_hw, write_cpu_runtime
from prepare.int8 import CalibrationSet, quantize, read_calibration, save_int8
from prepare.int8_accuracy import dataset_fits, quantize_within, served_map, served_postprocessor, validation_images
from prepare.onnx_model import UnsupportedModelError, YoloModelInfo, read_model_info
from prepare.prepare_model import prepare, prepare_tensorrt
from prepare.repository import engine_precision, set_cpu_precision, staged
from python_backends.defaults import CPU_PRECISIONS, MAX_DET
from python_backends.infer.tensorrt_build import onnx_fixed_batch
from python_backends.infer.tensorrt_engine import (
    DEFAULT_PROFILE,
    EngineBuildError,
    EngineOptions,
    clamp_profile,
    gpu_identity,
    import_tensorrt,
    parse_profile,
)
from python_backends.paths import DEFAULT_REPOSITORY


def parse_input_size(text: str) -> tuple[int, int]:
    """``"640"`` or ``"480x640"`` (height x width) → (height, width)."""
    parts = text.lower().split("x")
    if len(parts) not in (1, 2) or not all(p.strip().isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"input size must be N or HxW, got {text!r}")
    return int(parts[0]), int(parts[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="yolo-triton-prepare",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--onnx", required=True, type=Path, help="Ultralytics detection ONNX export")
    parser.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY)
    parser.add_argument("--max-det", type=int, default=MAX_DET, help="detections kept per image (output rows)")
    parser.add_argument("--input-size", type=parse_input_size, help="N or HxW (default: the model's imgsz)")
    parser.add_argument("--tensorrt", action="store_true", help="also build the TensorRT engine (needs a GPU)")
    parser.add_argument("--no-fp16", dest="fp16", action="store_false", help="build an FP32 engine (default FP16)")
    parser.add_argument(
        "--batch-profile",
        default=",".join(map(str, DEFAULT_PROFILE)),
        help="engine min,opt,max batch (default %(default)s; FastDeploy's YOLOv8 example used 1,1,40)",
    )
    parser.add_argument(
        "--cpu-runtime",
        choices=("measure", "onnxruntime", "openvino"),
        default="measure",
        help="what runtime auto runs on CPU (default: the faster one here, OpenVINO only when clearly faster)",
    )
    parser.add_argument("--engine-dir", type=Path, help="engine cache (default $YOLOV8_ENGINE_DIR or .cache/engines)")
    parser.add_argument("--int8", action="store_true", help="also quantize to INT8 for OpenVINO on CPU and serve that")
    parser.add_argument("--calibration", type=Path, help="--int8: a folder of ordinary photos (64 or more)")
    parser.add_argument("--data", type=Path, help="--int8: an Ultralytics DATA.yaml whose mAP50-95 bounds the drop")
    parser.add_argument("--max-drop", type=float, default=0.01, help="--data: largest mAP50-95 drop (default 0.01)")
    args = parser.parse_args(argv)
    if args.int8 != (args.calibration is not None):
        parser.error("--int8 and --calibration DIR go together")
    if args.data is not None and not args.int8:
        parser.error("--data needs --int8")
    try:
        if args.tensorrt:  # refuse before touching the repository
            import_tensorrt()
            gpu_identity()
            low, opt, high = parse_profile(args.batch_profile)
        if args.int8:  # read the photos (and the dataset) before touching the repository
            info = _model_info(args.onnx)
            if info.task == "classify":
                raise UnsupportedModelError(
                    "--int8 quantizes detectors (letterboxed calibration, mAP): serve a classifier in FP32"
                )
            size = args.input_size or (info.input_height, info.input_width)
            calibration = read_calibration(args.calibration, *size)
            dataset = load_dataset(args.data) if args.data else None
            if dataset is not None:
                dataset_fits(dataset, info)
        with staged(args.repository) as work:  # the repository changes when every step succeeds

            def say(line: str) -> None:  # paths as they will be once the repository is in place
                print(line.replace(str(work), str(args.repository)))

            say(prepare(args.onnx, work, args.max_det, DEFAULT_REPOSITORY, input_size=args.input_size))
            say(set_cpu_runtime(work, args.cpu_runtime))
            if args.tensorrt:
                options = engine_options(work, args.input_size, (low, opt, high), args.fp16)
                say(prepare_tensorrt(work, options, args.engine_dir))
            if args.int8:
                say(prepare_int8(work, calibration, dataset, args.max_drop, size, info))
    except (UnsupportedModelError, FileNotFoundError, EngineBuildError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def prepare_int8(
    repository: Path,
    calibration: CalibrationSet,
    dataset: Dataset | None,
    max_drop: float,
    size: tuple[int, int],
    info: YoloModelInfo,
) -> str:
    """Quantize the installed model (``info``: the export's, read once) within ``max_drop`` of its mAP50-95 on
    ``dataset`` when given, its images letterboxed to ``size`` as calibration's; write the INT8 model beside it
    and serve it; prints what calibrates it; returns a summary line."""
    print(calibration.summary())
    warning = calibration.warning()
    if warning:
        print(warning, file=sys.stderr)
    onnx_path = repository / "yolov8_infer" / "1" / "model.onnx"
    started = time.perf_counter()
    if dataset is None:
        model, scores = quantize(onnx_path, calibration), ""
    else:
        images, skipped = validation_images(dataset, *size)
        if skipped:
            print(f"--data: {len(skipped)} unreadable image(s) left out ({'; '.join(skipped[:3])})", file=sys.stderr)
        if not images:
            raise ValueError("--data: no readable image to measure mAP on")
        postprocessor = served_postprocessor(info)
        model = quantize_within(onnx_path, calibration, images, dataset, postprocessor, max_drop)
        fp32 = served_map(onnx_path, images, dataset, postprocessor)
        int8 = served_map(model, images, dataset, postprocessor)
        scores = (
            f"; mAP50-95 on {len(images)} images: FP32 {fp32:.4f}, INT8 {int8:.4f} "
            f"(drop {fp32 - int8:.4f}, at most {max_drop})"
        )
    path = save_int8(model, onnx_path)
    set_cpu_precision(repository, CPU_PRECISIONS[1])
    return f"INT8 model {path} in {time.perf_counter() - started:.0f} s, served on CPU (cpu_precision int8){scores}"


def set_cpu_runtime(repository: Path, requested: str) -> str:
    """Write ``cpu_runtime`` into yolov8_infer's configs, measured or as requested; returns a summary line."""
    if requested == "measure":
        found = measure(repository / "yolov8_infer" / "1" / "model.onnx", served_input_hw(repository))
        requested, summary = found.choice, found.summary()
    else:
        summary = f"CPU runtime for auto: {requested} (--cpu-runtime)"
    write_cpu_runtime(repository, requested)
    return summary


def engine_options(
    repository: Path, input_size: tuple[int, int] | None, profile: tuple[int, int, int], fp16: bool
) -> EngineOptions:
    """The engine options for the installed model: ``input_size`` (default its imgsz), ``profile``
    within the batch the graph handles: its fixed batch when installed as exported (batch 1), else the
    most its NMS loop takes (``max_batch``), and FP32 for a graph with NMS inside whatever ``fp16`` says
    (``repository.engine_precision``)."""
    model_path = repository / "yolov8_infer" / "1" / "model.onnx"
    info = read_model_info(onnx.load(str(model_path)))
    height, width = input_size or (info.input_height, info.input_width)
    low, opt, high = clamp_profile(profile, onnx_fixed_batch(model_path) or info.max_batch)
    return EngineOptions(height, width, low, opt, high, fp16=fp16 and engine_precision(info) == "fp16")


def _model_info(onnx_path: Path) -> YoloModelInfo:
    try:
        model = onnx.load(str(onnx_path))
    except Exception as exc:  # onnx raises DecodeError, OSError, ...
        raise UnsupportedModelError(f"{onnx_path}: not a readable ONNX model ({exc})") from exc
    return read_model_info(model)
