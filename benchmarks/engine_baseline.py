"""The raw engine limit: the infer stage's own ONNX Runtime runtime, in-process, no Triton."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from python_backends.infer.onnxruntime_runtime import OnnxRuntimeRuntime
from python_backends.triton_helpers.config import instance_count, int_parameter, parameters


def engine_runtime(repository: Path, config: dict) -> OnnxRuntimeRuntime:
    """The runtime ``yolov8_infer`` runs, from the model config Triton loaded (``get_model_config`` as JSON).

    Its model file and thread count, and one stream per instance: in the server each instance
    runs one image at a time on its share of the cores; here the streams run a batch's images
    side by side the same way.
    """
    params = parameters(config)
    return OnnxRuntimeRuntime(
        str(repository / "yolov8_infer" / "1" / params.get("model_file", "model.onnx")),
        intra_op_threads=int_parameter(params, "intra_op_threads", 0),
        streams=instance_count(config),
    )


def engine_baseline(
    runtime: OnnxRuntimeRuntime,
    batches: tuple[int, ...] = (1, 2, 4, 8),
    min_runs: int = 3,
    min_seconds: float = 1.5,
    warmup: bool = True,
) -> dict[int, dict[str, float]]:
    """{batch: {p50_ms, p99_ms, images_per_s, cpu_ms_per_image}}: ``runtime.run`` back to back, after a warm-up run.

    Each batch size runs at least ``min_runs`` times and for at least ``min_seconds``.
    ``cpu_ms_per_image`` is this process's CPU time (all threads) per image.
    """
    height, width = runtime.session.get_inputs()[0].shape[2:]
    rng = np.random.default_rng(0)
    found = {}
    for batch in batches:
        images = rng.random((batch, 3, height, width), dtype=np.float32)
        if warmup:
            runtime.run(images)
        times: list[float] = []
        started, cpu_started = time.perf_counter(), time.process_time()
        while len(times) < min_runs or time.perf_counter() - started < min_seconds:
            begin = time.perf_counter()
            runtime.run(images)
            times.append((time.perf_counter() - begin) * 1e3)
        cpu_ms = (time.process_time() - cpu_started) * 1e3 / (batch * len(times))
        p50, p99 = np.percentile(times, [50, 99])
        found[batch] = {
            "p50_ms": float(p50),
            "p99_ms": float(p99),
            "images_per_s": batch * 1e3 / float(p50),
            "cpu_ms_per_image": cpu_ms,
        }
    return found
