"""Each CPU runtime in-process and served: p50 at batch 1 (concurrency 1) and peak images/s.

For each runtime the bench builds it in-process the way ``yolov8_infer`` does, then starts a server
whose ``yolov8_infer`` names that runtime explicitly, and drives the ``yolov8`` ensemble with the
same client as the paired rounds (``YoloTritonClient``; peak by Little's law, ``paired.ensemble_throughput``).
The runtimes are measured one after the other, not in turns: the table compares them, the paired
rounds give the headline ratios.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from benchmarks.engine_baseline import engine_baseline, engine_runtime, input_hw, peak_batch
from benchmarks.paired import ensemble_throughput
from client.api import YoloTritonClient
from prepare.repository import copy_with_parameters
from serving.processes import free_port
from serving.server import TritonServer
from serving.triton import ServerOptions

FIRST_REQUEST_TARGET = 1.25  # warm-up before ready: the first request costs at most this times the served p50


def first_and_p50_ms(client: YoloTritonClient, image: bytes | Path, requests: int) -> tuple[float, float]:
    """ms of the first ``client.detect(image)``, then the p50 of the ``requests`` after it, one at a time.

    On a server that has just reported ready, the first is warm-up's target: at most ``FIRST_REQUEST_TARGET``
    times the p50.
    """
    times = []
    for _ in range(requests + 1):
        started = time.perf_counter()
        client.detect(image)
        times.append((time.perf_counter() - started) * 1e3)
    return times[0], statistics.median(times[1:])


def served_numbers(url: str, image: bytes, requests: int, concurrencies: list[int], block_s: float) -> dict:
    """{first_ms, served_p50_ms, served_peak, served_peak_concurrency} of the ``yolov8`` ensemble at ``url``,
    ``first_ms`` being the first request after the server reported ready."""
    with YoloTritonClient(url) as client:
        first_ms, p50_ms = first_and_p50_ms(client, image, requests)
    peaks = {c: ensemble_throughput(url, image, c, block_s) for c in concurrencies}
    best = max(peaks, key=peaks.get)
    return {"first_ms": first_ms, "served_p50_ms": p50_ms, "served_peak": peaks[best],
            "served_peak_concurrency": best}  # fmt: skip


def runtime_rows(names: list[str], repository: Path) -> dict[str, tuple[Path, dict[str, str]]]:
    """The table's FP32 rows: {runtime: (repository, yolov8_infer parameters that name it, in FP32)}."""
    return {name: (repository, {"runtime": name, "cpu_precision": "fp32"}) for name in names}


def runtime_table(
    rows: dict[str, tuple[Path, dict[str, str]]],
    config: dict,
    image: bytes,
    out: Path,
    concurrencies: list[int],
    block_s: float,
    requests: int = 15,
) -> dict[str, dict[str, float]]:
    """{row: {in_process_p50_ms, in_process_peak, in_process_cpu_ms, first_ms, served_p50_ms, served_peak,
    served_peak_concurrency}}; ``in_process_cpu_ms`` is the core-ms per image at the in-process peak.

    ``rows``: {row: (repository, yolov8_infer parameters: runtime and cpu_precision)}.
    """
    table = {}
    for name, (repository, params) in rows.items():
        print(f"runtime {name}: in-process, then served ...", flush=True)
        runtime = engine_runtime(repository, config, params["runtime"], params["cpu_precision"])
        engine = engine_baseline(runtime, input_hw(config))
        del runtime
        repo = copy_with_parameters(repository, out / f"repository_{name}", "yolov8_infer", **params)
        options = ServerOptions(repository=repo, http_port=free_port(), grpc_port=free_port(),
                                metrics_port=free_port())  # fmt: skip
        with TritonServer(options, out / f"tritonserver_{name}.log") as server:
            served = served_numbers(server.grpc_url, image, requests, concurrencies, block_s)
        peak = peak_batch(engine)
        table[name] = {
            "in_process_p50_ms": engine[1]["p50_ms"],
            "in_process_peak": peak["images_per_s"],
            "in_process_cpu_ms": peak["cpu_ms_per_image"],
            **served,
        }
    return table
