"""The raw engine limit: ONNX Runtime ``session.run`` in-process, no Triton, same options as yolov8_infer."""

from __future__ import annotations

import time

import numpy as np
import onnxruntime as ort

from python_backends.runtimes.onnxruntime_runtime import session_options


def engine_baseline(
    onnx_path: str, batches: tuple[int, ...] = (1, 2, 4, 8), intra_op_threads: int = 0, runs: int = 10
) -> dict[int, dict[str, float]]:
    """{batch: {p50_ms, p99_ms, images_per_s}} over ``runs`` timed runs after one warm-up run each.

    Uses ``session_options`` with the thread count of yolov8_infer's config, as the served model does.
    """
    session = ort.InferenceSession(
        onnx_path, sess_options=session_options(intra_op_threads), providers=["CPUExecutionProvider"]
    )
    model_input = session.get_inputs()[0]
    _, channels, height, width = model_input.shape
    rng = np.random.default_rng(0)
    found = {}
    for batch in batches:
        images = rng.random((batch, channels, height, width), dtype=np.float32)
        session.run(None, {model_input.name: images})
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            session.run(None, {model_input.name: images})
            times.append((time.perf_counter() - started) * 1e3)
        p50, p99 = np.percentile(times, [50, 99])
        found[batch] = {"p50_ms": float(p50), "p99_ms": float(p99), "images_per_s": batch * 1e3 / float(p50)}
    return found
