"""Which CPU runtime ``auto`` runs here: ONNX Runtime and OpenVINO timed once on the installed model.

The choice is written into yolov8_infer's configs (``cpu_runtime``), so serving does not depend on a
measurement at load time. OpenVINO is taken only when it is clearly faster (``CLEARLY_FASTER``), so that
the noise of a shared machine does not flip the choice between two runs of ``prepare``.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from prepare.pbtxt import triton_config
from prepare.repository import config_files, set_parameter
from python_backends.infer.base import RuntimeUnavailable
from python_backends.infer.onnxruntime_runtime import OnnxRuntimeSession
from python_backends.infer.openvino_runtime import OpenVinoRuntime
from python_backends.triton_helpers.config import input_dims

CLEARLY_FASTER = 1.10  # OpenVINO's p50 at least 10 % below ONNX Runtime's; benchmarks/README.md has what it measured


@dataclass(frozen=True)
class CpuRuntimeChoice:
    """The runtime ``auto`` runs on CPU, and why: each runtime's p50 (ms) at batch 1, or why it cannot run."""

    choice: str
    p50_ms: dict[str, float]
    unavailable: dict[str, str]

    def summary(self) -> str:
        timings = ", ".join(f"{name} {ms:.1f} ms" for name, ms in self.p50_ms.items())
        if len(self.p50_ms) == 2:
            speedup = self.p50_ms["onnxruntime"] / self.p50_ms["openvino"]
            timings += f"; OpenVINO {speedup:.2f}x ONNX Runtime, taken from {CLEARLY_FASTER:.2f}x"
        reasons = "".join(f"; {name}: {reason}" for name, reason in self.unavailable.items())
        return f"CPU runtime for auto: {self.choice} (p50 at batch 1: {timings}{reasons})"


def choose(p50_ms: dict[str, float]) -> str:
    """``openvino`` when its p50 is at most ONNX Runtime's / CLEARLY_FASTER, else ``onnxruntime``."""
    if "openvino" in p50_ms and p50_ms["onnxruntime"] >= CLEARLY_FASTER * p50_ms["openvino"]:
        return "openvino"
    return "onnxruntime"


def measure(model_path: Path, input_hw: tuple[int, int], runs: int = 9, warmup: int = 2) -> CpuRuntimeChoice:
    """Time both runtimes on random uint8 pixels (1, 3, H, W), as the installed model takes them, at the served
    ``input_hw``, in turns, after ``warmup`` runs each (an export of dynamic height and width is served at the
    size its configs name)."""
    runtimes = {"onnxruntime": OnnxRuntimeSession(str(model_path))}
    unavailable = {}
    try:
        runtimes["openvino"] = OpenVinoRuntime(str(model_path))
    except RuntimeUnavailable as exc:
        unavailable["openvino"] = str(exc)
    images = np.random.default_rng(0).integers(0, 256, (1, 3, *input_hw), dtype=np.uint8)
    times: dict[str, list[float]] = {name: [] for name in runtimes}
    for turn in range(warmup + runs):
        for name, runtime in runtimes.items():  # in turns: a slow spell of the machine hits both
            started = time.perf_counter()
            runtime.run(images)
            if turn >= warmup:
                times[name].append((time.perf_counter() - started) * 1e3)
    p50_ms = {name: statistics.median(values) for name, values in times.items()}
    return CpuRuntimeChoice(choose(p50_ms), p50_ms, unavailable)


def served_input_hw(repository: Path) -> tuple[int, int]:
    """(height, width) of yolov8_infer's ``images`` input in the repository's config.pbtxt."""
    config = triton_config((repository / "yolov8_infer" / "config.pbtxt").read_text())
    _, height, width = input_dims(config, "images")
    return height, width


def write_cpu_runtime(repository: Path, choice: str) -> None:
    """Set ``cpu_runtime`` in yolov8_infer's config.pbtxt and its variants."""
    for path in config_files(repository / "yolov8_infer"):
        path.write_text(set_parameter(path.read_text(), "cpu_runtime", choice))
