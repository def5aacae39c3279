"""The raw engine limit: the infer stage's own CPU runtimes, in-process, no Triton."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from python_backends.defaults import CPU_PRECISION
from python_backends.infer.base import InferenceRuntime
from python_backends.infer.select import runtime_from_settings
from python_backends.infer.settings import runtime_settings

REFERENCE = "onnxruntime"  # what a user would otherwise call in their own process: the headline ratios' base


def served_cpu_precision(config: dict) -> str:
    """``fp32`` or ``int8``: the ``cpu_precision`` of ``yolov8_infer``'s config (int8 after ``prepare --int8``)."""
    return runtime_settings(config, Path()).cpu_precision


def served_cpu_runtime(config: dict) -> str:
    """The CPU runtime ``yolov8_infer`` runs with this config, as the stage reads it (``RuntimeSettings``)."""
    return runtime_settings(config, Path()).served_on_cpu()


def engine_runtime(
    repository: Path, config: dict, name: str = REFERENCE, cpu_precision: str = CPU_PRECISION
) -> InferenceRuntime:
    """CPU runtime ``name`` as ``yolov8_infer`` builds it from the config Triton loaded (``get_model_config`` JSON),
    on the model of ``cpu_precision`` (``int8``: OpenVINO's INT8 model beside the ONNX).

    The stage's own settings (model file, threads, one stream per instance: in the server each instance runs
    one image at a time on its share of the cores; here the streams run a batch's images side by side the same
    way), with the runtime and precision named.
    """
    settings = runtime_settings(config, repository / "yolov8_infer" / "1")
    return runtime_from_settings(replace(settings, runtime=name, cpu_precision=cpu_precision))


def input_hw(config: dict) -> tuple[int, int]:
    """(height, width) of ``yolov8_infer``'s ``images`` input in the config Triton loaded."""
    (images,) = [tensor for tensor in config["input"] if tensor["name"] == "images"]
    return int(images["dims"][1]), int(images["dims"][2])


def random_pixels(runtime: InferenceRuntime, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Random pixels of ``shape`` (B, 3, H, W) in the kind ``runtime``'s model takes (its ``input_dtype``): uint8
    0..255 for a prepared model, float32 in [0, 1] for an export as Ultralytics wrote it."""
    pixels = rng.integers(0, 256, shape, dtype=np.uint8)
    if np.dtype(getattr(runtime, "input_dtype", np.uint8)) == np.uint8:
        return pixels
    return np.divide(pixels, np.float32(255), dtype=np.float32)


def engine_baseline(
    runtime: InferenceRuntime,
    image_hw: tuple[int, int],
    batches: tuple[int, ...] = (1, 2, 4, 8),
    min_runs: int = 3,
    min_seconds: float = 1.5,
    warmup: bool = True,
) -> dict[int, dict[str, float]]:
    """{batch: {p50_ms, p99_ms, images_per_s, cpu_ms_per_image}}: ``runtime.run`` back to back, after a warm-up run.

    Each batch size runs at least ``min_runs`` times and for at least ``min_seconds``, on random
    pixels (batch, 3, *image_hw) of the kind the model takes (``random_pixels``). ``cpu_ms_per_image`` is this process's
    CPU time (all threads) per image.
    """
    rng = np.random.default_rng(0)
    found = {}
    for batch in batches:
        images = random_pixels(runtime, (batch, 3, *image_hw), rng)
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


def peak_batch(found: dict[int, dict[str, float]]) -> dict[str, float]:
    """The batch size's entry of an ``engine_baseline`` result with the most images/s: the engine's peak."""
    return max(found.values(), key=lambda entry: entry["images_per_s"])
