"""``python -m client report``: where the time goes on a running server, from statistic deltas."""

from __future__ import annotations

import itertools
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from client.api import YoloTritonClient
from client.stage_stats import PHASES, STAGES, counted_deltas, snapshot, stage_table

MODELS = (*STAGES, "yolov8")
PROBE_NOTE = (
    "live traffic includes the health probes of a supervised server (python -m serving, make serve, make cluster): "
    "one 8x8 image every 10 s by default, counted like any request"
)


def drive(client: YoloTritonClient, images: list[Path], concurrency: int, count: int) -> list[float]:
    """Send ``count`` requests, cycling through ``images``, with ``concurrency`` in flight; client latencies in ms.

    Interrupted (Ctrl-C) or on a failed request, it sends no more and waits only for the requests in flight.
    """
    payloads = [image.read_bytes() for image in images]
    numbers, stop, latencies = itertools.count(), threading.Event(), []

    def worker() -> None:
        try:
            while not stop.is_set() and (number := next(numbers)) < count:
                started = time.perf_counter()
                client.detect(payloads[number % len(payloads)])
                latencies.append((time.perf_counter() - started) * 1e3)
        finally:
            stop.set()

    with ThreadPoolExecutor(concurrency) as pool:
        workers = [pool.submit(worker) for _ in range(concurrency)]
        try:
            for done in workers:
                done.result()
        finally:
            stop.set()
    return latencies


def report(url: str, images: list[Path], concurrency: int = 1, repeat: int = 4, window_s: float | None = None) -> str:
    """Per-stage breakdown over a driven run (``images``) or over ``window_s`` seconds of live traffic."""
    with YoloTritonClient(url) as client:
        before = snapshot(client.client, MODELS)
        started = time.perf_counter()
        if window_s is not None:
            time.sleep(window_s)
            latencies: list[float] = []
        else:
            latencies = drive(client, images, concurrency, len(images) * repeat)
        elapsed = time.perf_counter() - started
        delta = counted_deltas(client.client, before, len(latencies), timeout_s=5.0)
    lines = [stage_table(delta)]
    requests = delta["yolov8"].success
    lines.append(f"\n{requests} ensemble requests in {elapsed:.1f} s ({requests / elapsed:.2f}/s)")
    if window_s is not None:
        lines.append(PROBE_NOTE)
    if latencies:
        in_stages = sum(delta[m].mean_ms(p) for m in STAGES for p in PHASES)
        p50, p99 = np.percentile(latencies, [50, 99])
        mean = float(np.mean(latencies))
        lines.append(
            f"client latency (concurrency {concurrency}): p50 {p50:.1f} ms, p99 {p99:.1f} ms, mean {mean:.1f} ms; "
            f"in the stages (queue and compute, summed) {in_stages:.2f} ms; outside them (gRPC, the ensemble's "
            f"hand-offs and the client) {mean - in_stages:.1f} ms"
        )
    return "\n".join(lines)
