"""What ``yolov8_infer``'s config asks of the runtime, read once for the stage and for anything that builds
the same runtime outside Triton (``make bench``'s in-process engine)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from python_backends.defaults import CPU_PRECISION
from python_backends.infer.tensorrt_engine import EngineOptions, engine_options_from_config
from python_backends.triton_helpers.config import instance_count, int_parameter, parameters

INT8_RUNTIME = "openvino"  # the one CPU runtime of an INT8 model (prepare --int8)


@dataclass(frozen=True)
class RuntimeSettings:
    """``create_runtime``'s arguments, as the config gives them."""

    runtime: str  # auto | onnxruntime | openvino | tensorrt | fastdeploy
    model_file: Path
    intra_op_threads: int  # 0: one per core
    cpu_streams: int  # one per instance
    max_batch_size: int
    engine_options: EngineOptions
    engine_dir: Path | None  # None: $YOLOV8_ENGINE_DIR or .cache/engines
    cpu_runtime: str  # what auto runs on CPU
    cpu_precision: str  # fp32 | int8

    def served_on_cpu(self) -> str:
        """The CPU runtime these settings run when no GPU takes them: the named one, or for ``auto`` its
        ``cpu_runtime`` (OpenVINO for an INT8 model)."""
        if self.runtime != "auto":
            return self.runtime
        return INT8_RUNTIME if self.cpu_precision == "int8" else self.cpu_runtime


def runtime_settings(config: dict[str, Any], version_dir: Path) -> RuntimeSettings:
    """The settings of ``config`` (the JSON Triton hands ``initialize``, parsed) for the model in ``version_dir``."""
    params = parameters(config)
    engine_dir = params.get("engine_dir", "").strip()
    return RuntimeSettings(
        runtime=params.get("runtime", "").strip() or "auto",
        model_file=version_dir / (params.get("model_file", "").strip() or "model.onnx"),
        intra_op_threads=int_parameter(params, "intra_op_threads", 0),
        cpu_streams=instance_count(config),
        max_batch_size=max(1, int(config.get("max_batch_size", 1))),
        engine_options=engine_options_from_config(config),
        engine_dir=Path(engine_dir) if engine_dir else None,
        cpu_runtime=params.get("cpu_runtime", "").strip() or "onnxruntime",
        cpu_precision=params.get("cpu_precision", "").strip() or CPU_PRECISION,
    )
