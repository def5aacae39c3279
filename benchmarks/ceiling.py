"""What this machine allows: the best each headline ratio could be if tritonserver, gRPC and the client cost nothing.

- Latency: at concurrency 1 the stages run one after another, so the client p50 is at least the served
  runtime's own in-process p50 plus preprocess's and postprocess's compute (``compute_infer``) at concurrency 1.
- Throughput: all stages share the cores, so the peak is at most cores x 1000 / (the served runtime's core-ms
  per image at its in-process peak + preprocess's and postprocess's core-ms per image at the highest
  concurrency), and at most that runtime's own in-process peak.

A target beyond these bounds cannot be met on this machine by anything the server does around the engine.
"""

from __future__ import annotations

import os
import statistics

from benchmarks.engine_baseline import peak_batch

PRE, POST = "yolov8_preprocess", "yolov8_postprocess"


def _compute_ms(stages: dict[str, dict[str, float]], model: str) -> float:
    """A stage's compute_infer in ms per request, from an ensemble run's composing models (µs)."""
    return stages.get(model, {}).get("compute_infer", 0.0) / 1e3


def ceilings(summary: dict, cores: int | None = None) -> dict:
    """{overhead_ratio, own_overhead_ratio, throughput_ratio, ...parts} from a ``bench.summarize`` summary.

    The latency parts are the medians of the paired rounds (ms); the throughput bound needs the served
    runtime's in-process core-ms per image (``in_process_cpu_ms`` of the runtime table, or the ONNX Runtime
    baseline when that runtime is served), else it is left out.
    """
    cores = cores or len(os.sched_getaffinity(0))
    rounds = summary["rounds"]
    own_ms = statistics.median(r["own_p50_ms"] for r in rounds)
    engine_ms = statistics.median(r["engine_p50_ms"] for r in rounds)
    first = summary["ensemble"][min(summary["ensemble"])]["stages"]
    pre_ms, post_ms = _compute_ms(first, PRE), _compute_ms(first, POST)
    floor_ms = own_ms + pre_ms + post_ms
    found = {
        "cores": cores,
        "own_ms": own_ms,
        "engine_ms": engine_ms,
        "preprocess_ms": pre_ms,
        "postprocess_ms": post_ms,
        "overhead_ratio": floor_ms / engine_ms,
        "own_overhead_ratio": floor_ms / own_ms,
    }
    own = summary["runtimes"].get(summary["served_runtime"], {})
    if "in_process_cpu_ms" not in own and summary["served_runtime"] == "onnxruntime":
        best = peak_batch(summary["engine"])
        own = {"in_process_cpu_ms": best["cpu_ms_per_image"], "in_process_peak": best["images_per_s"]}
    cpu = summary["ensemble"][max(summary["ensemble"])]["cpu_ms_per_image"]
    if "in_process_cpu_ms" in own and cpu:
        stages_cpu_ms = own["in_process_cpu_ms"] + cpu.get(PRE, 0.0) + cpu.get(POST, 0.0)
        peak = min(cores * 1e3 / stages_cpu_ms, own["in_process_peak"])
        engine_peak = statistics.median(
            max(max(pair["engine_images_per_s"].values()) for pair in r["throughput"].values()) for r in rounds
        )
        found |= {
            "engine_cpu_ms": own["in_process_cpu_ms"],
            "preprocess_cpu_ms": cpu.get(PRE, 0.0),
            "postprocess_cpu_ms": cpu.get(POST, 0.0),
            "peak_images_per_s": peak,
            "engine_peak": engine_peak,
            "throughput_ratio": peak / engine_peak,
        }
    return found


def format_ceilings(found: dict, served: str, reference: str) -> list[str]:
    """The report's lines for ``ceilings``."""
    pre, post = found["preprocess_ms"], found["postprocess_ms"]
    parts = f"{found['own_ms']:.1f} + preprocess {pre:.1f} + postprocess {post:.1f}"
    lines = [
        f"what {found['cores']} cores allow, if tritonserver, gRPC and the client cost nothing:",
        f"  overhead ratio     >= {found['overhead_ratio']:.3f}  ({served} {parts} ms / {reference} "
        f"{found['engine_ms']:.1f} ms)",
        f"  own overhead ratio >= {found['own_overhead_ratio']:.3f}  (the same / {served} {found['own_ms']:.1f} ms)",
    ]
    if "throughput_ratio" in found:
        lines.append(
            f"  throughput ratio   <= {found['throughput_ratio']:.3f}  ({found['peak_images_per_s']:.2f} img/s: "
            f"{found['cores']} cores / ({served} {found['engine_cpu_ms']:.1f} + preprocess "
            f"{found['preprocess_cpu_ms']:.1f} + postprocess {found['postprocess_cpu_ms']:.1f} core-ms per image), "
            f"/ {reference} {found['engine_peak']:.2f} img/s)"
        )
    return lines
