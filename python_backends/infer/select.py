"""Pick an inference runtime from the ``runtime`` config parameter.

``auto`` takes TensorRT when a GPU, CuPy and tensorrt are present and an engine is cached or can be
built, else the ``cpu_runtime`` that ``prepare`` measured fastest on this machine and wrote into the
config (``onnxruntime`` or ``openvino``); when OpenVINO cannot compile the model, ``auto`` logs one line
and takes ONNX Runtime. An explicit choice that cannot be satisfied raises RuntimeUnavailable, which
fails the model's load with that message.

``cpu_precision`` ``int8`` (written by ``prepare --int8``, never chosen by ``auto`` itself) makes the CPU
runtime OpenVINO on the INT8 model beside the ONNX (``int8_model_path``), for ``auto`` and ``openvino``
alike, with no fallback: an INT8 model that OpenVINO cannot compile fails the load with the reason.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Callable

from python_backends.defaults import CPU_PRECISION, CPU_PRECISIONS
from python_backends.infer.base import InferenceRuntime, RuntimeUnavailable
from python_backends.infer.settings import RuntimeSettings
from python_backends.infer.tensorrt_build import ensure_engine
from python_backends.infer.tensorrt_engine import (
    EngineBuildError,
    EngineKey,
    EngineOptions,
    default_engine_dir,
    file_sha256,
    gpu_identity,
    import_tensorrt,
)
from python_backends.triton_helpers.gpu_arrays import gpu_unavailable_reason

RUNTIMES = ("auto", "onnxruntime", "openvino", "tensorrt", "fastdeploy")
CPU_RUNTIMES = ("onnxruntime", "openvino")


def tensorrt_unavailable_reason() -> str | None:
    """None when TensorRT can run here, else every reason it cannot."""
    reasons = []
    gpu = gpu_unavailable_reason()
    if gpu:
        reasons.append(gpu)
    try:
        import_tensorrt()
    except EngineBuildError as exc:
        reasons.append(str(exc))
    return "; ".join(reasons) or None


def create_runtime(
    choice: str,
    onnx_path: str,
    intra_op_threads: int = 0,
    max_batch_size: int = 32,
    cpu_streams: int = 1,
    engine_options: EngineOptions | None = None,
    engine_dir: Path | None = None,
    log: Callable[[str], None] = print,
    cpu_runtime: str = "onnxruntime",
    openvino_cache_dir: Path | None = None,
    cpu_precision: str = CPU_PRECISION,
) -> InferenceRuntime:
    """Build the runtime named by ``choice`` (``auto`` picks the best one this machine can run)."""
    if choice not in RUNTIMES:
        raise RuntimeUnavailable(f"unknown runtime {choice!r}; expected one of {', '.join(RUNTIMES)}")
    _checked_precision(cpu_precision)
    options = engine_options or EngineOptions(max_batch=max(max_batch_size, 1))
    if choice == "tensorrt":
        return _tensorrt(Path(onnx_path), options, engine_dir, log)
    if choice == "fastdeploy":
        return _fastdeploy(Path(onnx_path), options, engine_dir)
    int8_model = _int8_model(choice, onnx_path) if cpu_precision == "int8" else None
    cpu = {"intra_op_threads": intra_op_threads, "max_batch_size": max_batch_size, "streams": cpu_streams}
    if choice == "openvino":
        return _openvino(int8_model or onnx_path, cpu, openvino_cache_dir)
    if choice == "auto":
        if cpu_runtime not in CPU_RUNTIMES:
            raise RuntimeUnavailable(f"unknown cpu_runtime {cpu_runtime!r}; expected one of {', '.join(CPU_RUNTIMES)}")
        on_cpu = "openvino (int8)" if int8_model else cpu_runtime
        try:
            return _tensorrt(Path(onnx_path), options, engine_dir, log)
        except RuntimeUnavailable as exc:
            log(f"runtime auto: {exc}; using {on_cpu} on CPU")
        if int8_model:
            return _openvino(int8_model, cpu, openvino_cache_dir)
        if cpu_runtime == "openvino":
            try:
                return _openvino(onnx_path, cpu, openvino_cache_dir)
            except RuntimeUnavailable as exc:
                log(f"runtime auto: {exc}; using onnxruntime on CPU")
    from python_backends.infer.onnxruntime_runtime import OnnxRuntimeSession

    return OnnxRuntimeSession(onnx_path, **cpu)


def runtime_from_settings(settings: RuntimeSettings, log: Callable[[str], None] = print) -> InferenceRuntime:
    """The runtime that a config's ``settings`` ask for (``auto`` picks the best one this machine can run)."""
    return create_runtime(
        settings.runtime,
        str(settings.model_file),
        intra_op_threads=settings.intra_op_threads,
        max_batch_size=settings.max_batch_size,
        cpu_streams=settings.cpu_streams,
        engine_options=settings.engine_options,
        engine_dir=settings.engine_dir,
        log=log,
        cpu_runtime=settings.cpu_runtime,
        cpu_precision=settings.cpu_precision,
    )


def _checked_precision(cpu_precision: str) -> None:
    if cpu_precision not in CPU_PRECISIONS:
        raise RuntimeUnavailable(
            f"unknown cpu_precision {cpu_precision!r}; expected one of {', '.join(CPU_PRECISIONS)}"
        )


def _int8_model(choice: str, onnx_path: str) -> str:
    """The INT8 model beside ``onnx_path``, which only OpenVINO runs; RuntimeUnavailable if it is missing."""
    from python_backends.infer.openvino_runtime import int8_model_path

    if choice == "onnxruntime":
        raise RuntimeUnavailable("cpu_precision 'int8' runs on OpenVINO: runtime 'onnxruntime' serves fp32 only")
    path = int8_model_path(onnx_path)
    if not path.exists():
        raise RuntimeUnavailable(
            f"cpu_precision 'int8': no INT8 model at {path}; "
            "write it with python -m prepare --onnx MODEL --int8 --calibration DIR"
        )
    return str(path)


def _openvino(onnx_path: str, cpu: dict, cache_dir: Path | None) -> InferenceRuntime:
    from python_backends.infer.openvino_runtime import OpenVinoRuntime

    return OpenVinoRuntime(onnx_path, cache_dir=cache_dir, **cpu)


def _tensorrt(onnx_path: Path, options: EngineOptions, engine_dir: Path | None, log: Callable[[str], None]):
    """TensorRTRuntime on the cached (or newly built) engine, built again once if the cached file does not
    deserialize; RuntimeUnavailable with the reason for anything that stops it."""
    reason = tensorrt_unavailable_reason()
    if reason:
        raise RuntimeUnavailable(f"runtime 'tensorrt' is unavailable: {reason}")
    from python_backends.infer.tensorrt_runtime import EngineUnreadable, TensorRTRuntime

    try:
        engine = ensure_engine(onnx_path, options, engine_dir, log)
        seen = engine.stat()
        try:
            return TensorRTRuntime(engine)
        except EngineUnreadable as exc:
            log(f"{exc}; building it again")
            return TensorRTRuntime(ensure_engine(onnx_path, options, engine_dir, log, discard=seen))
    except (EngineBuildError, OSError, subprocess.SubprocessError) as exc:
        raise RuntimeUnavailable(f"runtime 'tensorrt' is unavailable: {exc}") from exc


def _fastdeploy(onnx_path: Path, options: EngineOptions, engine_dir: Path | None):
    from python_backends.infer.fastdeploy_runtime import FastDeployRuntime, import_fastdeploy

    fd = import_fastdeploy()
    reason = gpu_unavailable_reason()
    if reason:
        raise RuntimeUnavailable(f"runtime 'fastdeploy' is unavailable: {reason}")
    try:
        key = EngineKey(f"fastdeploy{fd.__version__}", *gpu_identity(), file_sha256(onnx_path), options)
    except EngineBuildError as exc:
        raise RuntimeUnavailable(f"runtime 'fastdeploy' is unavailable: {exc}") from exc
    return FastDeployRuntime(onnx_path, options, (engine_dir or default_engine_dir()) / key.filename())
