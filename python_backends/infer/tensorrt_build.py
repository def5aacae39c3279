"""Build one TensorRT engine file from the prepared ONNX: trtexec when it can, else the tensorrt Python builder.

The engine is the ONNX graph as it is: no NMS plugin (EfficientNMS) is added. A raw head is decoded,
NMS included, in yolov8_postprocess; an end-to-end head (top-k or NMS inside the graph) already has its
(batch, max_det, 6) rows, which yolov8_postprocess only thresholds and rescales.

The optimization profile gives every dynamic input dimension: the batch from the options' min/opt/max,
and H and W (dynamic in an export made with ``dynamic=True``) fixed at the served size.
Where the engine goes, under which name and lock, is ``tensorrt_engine``'s business: ``build_engine``
writes the file it is given. ``tensorrt`` and ``onnx`` are imported only inside functions.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable

from python_backends.infer.tensorrt_engine import (
    EngineBuildError,
    EngineKey,
    EngineOptions,
    cached_engine,
    default_engine_dir,
    engine_key,
    import_tensorrt,
)

PROGRESS_EVERY_S = 15.0
TRTEXEC_TIMEOUT_ENV = "YOLOV8_TRTEXEC_TIMEOUT_S"
DEFAULT_TRTEXEC_TIMEOUT_S = 3600.0


def build_engine(onnx_path: Path, key: EngineKey, out: Path, log: Callable[[str], None] = print) -> None:
    """Build the engine for ``key`` into ``out`` (trtexec when on PATH, else the Python builder).

    Raises EngineBuildError with the reason; ``out`` may then hold a part of a file, which the caller removes.
    """
    trtexec = shutil.which("trtexec") if trtexec_can_build(key.tensorrt_version, key.options.fp16) else None
    log(
        f"building TensorRT {key.tensorrt_version} engine for {key.gpu_name} (sm{key.compute_capability}, "
        f"{'FP16' if key.options.fp16 else 'FP32'}, batch {key.options.min_batch}/{key.options.opt_batch}/"
        f"{key.options.max_batch}, {key.options.input_height}x{key.options.input_width}) with "
        f"{trtexec or 'the tensorrt Python builder'}; this takes minutes"
    )
    started = time.monotonic()
    done = threading.Event()
    ticker = threading.Thread(target=_report_progress, args=(done, started, log), daemon=True)
    ticker.start()
    try:
        if trtexec:
            build_with_trtexec(trtexec, onnx_path, key.options, out, trtexec_timeout_s())
        else:
            _build_with_python(onnx_path, key.options, out)
    finally:
        done.set()
    log(f"engine built in {time.monotonic() - started:.0f} s")


def _report_progress(done: threading.Event, started: float, log: Callable[[str], None]) -> None:
    while not done.wait(PROGRESS_EVERY_S):
        log(f"... still building the TensorRT engine ({time.monotonic() - started:.0f} s)")


def trtexec_timeout_s() -> float:
    """``$YOLOV8_TRTEXEC_TIMEOUT_S``, else an hour: a trtexec that hangs fails the build instead of the load."""
    return float(os.environ.get(TRTEXEC_TIMEOUT_ENV) or DEFAULT_TRTEXEC_TIMEOUT_S)


def trtexec_can_build(tensorrt_version: str, fp16: bool) -> bool:
    """False for FP16 on TensorRT 11 and later: its trtexec has no precision flags (``--fp16`` fails the build),
    so FP16 goes through the Python builder with ModelOpt's FP16 ONNX (see ``_enable_fp16``)."""
    return not fp16 or int(tensorrt_version.split(".")[0]) < 11


def trtexec_command(trtexec: str, onnx_path: Path, options: EngineOptions, out: Path) -> list[str]:
    """The trtexec command line that builds ``onnx_path`` into ``out``: the graph as it is, no plugin
    library (no EfficientNMS, whatever the head), and the profile's input shapes (the served H and W
    whatever the export's), except for a graph whose input is all fixed (NMS inside it for batch 1),
    for which trtexec refuses any shape flag."""
    cmd = [trtexec, f"--onnx={onnx_path}", f"--saveEngine={out}"]
    name = onnx_input_name(onnx_path)
    if not onnx_input_is_static(onnx_path):
        shapes = ["x".join(map(str, s)) for s in options.input_shapes()]
        cmd += [f"--minShapes={name}:{shapes[0]}", f"--optShapes={name}:{shapes[1]}", f"--maxShapes={name}:{shapes[2]}"]
    if options.fp16:
        cmd.append("--fp16")
    return cmd


def build_with_trtexec(trtexec: str, onnx_path: Path, options: EngineOptions, out: Path, timeout_s: float) -> None:
    """Run trtexec into ``out``; EngineBuildError when it fails or runs past ``timeout_s`` (it is then killed)."""
    command = trtexec_command(trtexec, onnx_path, options, out)
    try:
        reply = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        raise EngineBuildError(
            f"trtexec ran past {timeout_s:.0f} s and was stopped (${TRTEXEC_TIMEOUT_ENV} sets the limit)"
        ) from exc
    if reply.returncode != 0 or not out.exists():
        raise EngineBuildError(f"trtexec failed ({reply.returncode}): {reply.stdout[-2000:]}{reply.stderr[-2000:]}")


def _build_with_python(onnx_path: Path, options: EngineOptions, out: Path) -> None:
    trt = import_tensorrt()
    onnx_bytes = onnx_path.read_bytes()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10+
    parser = trt.OnnxParser(network, logger)
    config = builder.create_builder_config()
    if options.fp16:
        onnx_bytes = _enable_fp16(trt, config, onnx_path, onnx_bytes)
    if not parser.parse(onnx_bytes):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineBuildError(f"TensorRT cannot parse {onnx_path}: {errors}")
    if any(d < 0 for d in network.get_input(0).shape):  # a graph of a fixed batch and size takes no profile
        profile = builder.create_optimization_profile()
        low, opt, high = options.input_shapes()
        profile.set_shape(network.get_input(0).name, low, opt, high)
        config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError("TensorRT returned no engine; see its log above")
    out.write_bytes(bytes(serialized))


def _enable_fp16(trt: Any, config: Any, onnx_path: Path, onnx_bytes: bytes) -> bytes:
    """TensorRT 10: the FP16 builder flag. TensorRT 11 removed it: convert the ONNX with ModelOpt AutoCast."""
    if hasattr(trt.BuilderFlag, "FP16"):
        config.set_flag(trt.BuilderFlag.FP16)
        return onnx_bytes
    try:
        from modelopt.onnx.autocast import convert_to_mixed_precision
    except Exception as exc:
        raise EngineBuildError(
            f"TensorRT {trt.__version__} builds FP16 only from an FP16 ONNX and ModelOpt is not importable "
            f"({exc}): install nvidia-modelopt[onnx], or build with --fp32"
        ) from exc
    try:
        model = convert_to_mixed_precision(onnx_path=str(onnx_path), low_precision_type="fp16", keep_io_types=True)
    except Exception as exc:  # ModelOpt raises its own and third-party exceptions
        raise EngineBuildError(f"ModelOpt AutoCast cannot convert {onnx_path} to FP16 ({exc!r}); build FP32") from exc
    return model.SerializeToString()


def onnx_input_name(onnx_path: Path) -> str:
    import onnx

    return onnx.load(str(onnx_path), load_external_data=False).graph.input[0].name


def onnx_input_is_static(onnx_path: Path) -> bool:
    """Whether every dimension of the ONNX input is fixed."""
    import onnx

    dims = onnx.load(str(onnx_path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim
    return all(dim.HasField("dim_value") for dim in dims)


def onnx_fixed_batch(onnx_path: Path) -> int | None:
    """The ONNX input's batch dimension when it is fixed, else None.

    ``prepare`` makes the batch dynamic, except in a graph whose NMS handles batch 1 only, which it
    installs as exported (batch 1): no engine profile may go past it.
    """
    import onnx

    dim = onnx.load(str(onnx_path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim[0]
    return dim.dim_value if dim.HasField("dim_value") else None


def ensure_engine(
    onnx_path: Path,
    options: EngineOptions,
    engine_dir: Path | None = None,
    log: Callable[[str], None] = print,
    discard: os.stat_result | None = None,
) -> Path:
    """The cached engine for this ONNX, options, TensorRT and GPU; built first when missing.

    ``discard``: the stat of an engine file that did not deserialize, which is replaced by a new build
    (unless another process has replaced it already).
    """
    key = engine_key(onnx_path, options)
    return cached_engine(onnx_path, key, engine_dir or default_engine_dir(), build_engine, log, discard)
