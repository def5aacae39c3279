"""The engine and the ensemble measured in alternation, so that both ratios compare like with like.

A small shared machine changes speed on its own: on a shared 2-vCPU machine, two-thread ONNX
Runtime runs YOLOv8s in about 155 ms for a while, then in about 192 ms, for seconds to minutes at a
time (in-process and in the server alike). Two numbers measured a minute apart can then differ by
20 % for no reason of ours. Here the engine and the ensemble take turns: one engine run, one request,
one engine run, ... for latency; a short engine block, then a short ensemble block at one concurrency,
for throughput. Each ratio is taken between neighbours.

The engine is ONNX Runtime in-process, the engine a user would otherwise call; when the server runs
another runtime (OpenVINO), each latency turn also runs that runtime in-process, for the served
runtime's own overhead.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from benchmarks.engine_baseline import engine_baseline, random_pixels
from client.api import YoloTritonClient
from python_backends.infer.base import InferenceRuntime

SETTLE_S = 0.05  # a pause between turns, so that the tail of one (a last copy, a late thread) misses the other


@dataclass(frozen=True)
class PairedLatency:
    """Alternate engine runs (batch 1) and ensemble requests (concurrency 1), in ms.

    ``engine_ms`` is ONNX Runtime in-process; ``own_ms`` the served runtime in-process, when that is another one.
    """

    engine_ms: list[float]
    client_ms: list[float]
    own_ms: list[float] | None = None

    @property
    def engine_p50_ms(self) -> float:
        return statistics.median(self.engine_ms)

    @property
    def client_p50_ms(self) -> float:
        return statistics.median(self.client_ms)

    @property
    def own_p50_ms(self) -> float:
        return statistics.median(self.own_ms) if self.own_ms else self.engine_p50_ms

    @property
    def ratio(self) -> float:
        return self.client_p50_ms / self.engine_p50_ms

    @property
    def own_ratio(self) -> float:
        """Client p50 over the served runtime's own in-process p50."""
        return self.client_p50_ms / self.own_p50_ms


@dataclass(frozen=True)
class PairedThroughput:
    """An ensemble block at one concurrency and the engine block just before it, in images/s."""

    concurrency: int
    ensemble: float
    engine: dict[int, float]  # batch size -> images/s

    @property
    def ratio(self) -> float:
        return self.ensemble / max(self.engine.values())


def paired_latency(
    runtime: InferenceRuntime,
    client: YoloTritonClient,
    image: bytes,
    pairs: int,
    image_hw: tuple[int, int],
    own: InferenceRuntime | None = None,
) -> PairedLatency:
    """``pairs`` turns of one in-process engine run on random pixels (1, 3, *image_hw) (then one of ``own``, when
    given; each of the kind its model takes), then one ``client.detect(image)``."""
    tensor = random_pixels(runtime, (1, 3, *image_hw), np.random.default_rng(0))
    turn = [("engine", lambda: runtime.run(tensor))]
    if own is not None:
        own_tensor = random_pixels(own, (1, 3, *image_hw), np.random.default_rng(0))
        turn.append(("own", lambda: own.run(own_tensor)))
    turn += [("client", lambda: client.detect(image))]
    times = timed_turns(turn, pairs)
    return PairedLatency(times["engine"], times["client"], times.get("own"))


def timed_turns(turn: list[tuple[str, Callable[[], object]]], pairs: int) -> dict[str, list[float]]:
    """``pairs`` turns of the named calls of ``turn``, in order, ``SETTLE_S`` apart: name → its times in ms."""
    times: dict[str, list[float]] = {name: [] for name, _ in turn}
    for _ in range(pairs):
        for name, call in turn:
            started = time.perf_counter()
            call()
            times[name].append((time.perf_counter() - started) * 1e3)
            time.sleep(SETTLE_S)
    return times


def ensemble_throughput(url: str, image: bytes, concurrency: int, seconds: float, warmup_s: float = 1.0) -> float:
    """Images/s of the ensemble with ``concurrency`` requests always in flight, by Little's law.

    The mean latency R is taken over the requests sent during ``seconds`` after ``warmup_s``; load
    goes on until every one of them has finished, so each one sees the full load. With N requests
    always in flight the throughput is N / R. Counting completions in a window instead quantizes
    badly when a batch finishes several requests at once, and cutting the window at a fixed end
    keeps the short requests and drops the long ones.
    """
    start = time.perf_counter() + warmup_s
    stop = start + seconds
    measured: list[float] = []
    lock = threading.Lock()
    pending = threading.Semaphore(0)  # released once per worker when its last measured request is done

    def worker() -> None:
        with YoloTritonClient(url) as client:
            try:
                while time.perf_counter() < stop:
                    sent = time.perf_counter()
                    client.detect(image)
                    if sent >= start:
                        with lock:
                            measured.append(time.perf_counter() - sent)
            finally:
                pending.release()
            while not finished.is_set():  # keep the load on for the other workers' last requests
                client.detect(image)

    finished = threading.Event()
    with ThreadPoolExecutor(concurrency) as pool:
        futures = [pool.submit(worker) for _ in range(concurrency)]
        for _ in range(concurrency):
            pending.acquire()
        finished.set()
        for future in futures:
            future.result()
    return concurrency / statistics.fmean(measured)


def paired_throughput(
    runtime: InferenceRuntime,
    url: str,
    image: bytes,
    concurrencies: list[int],
    seconds: float,
    image_hw: tuple[int, int],
) -> list[PairedThroughput]:
    """For each concurrency: the engine at batch 1, 2, 4 and 8, then the ensemble for ``seconds``."""
    found = []
    for concurrency in concurrencies:
        engine = engine_baseline(runtime, image_hw, min_runs=1, min_seconds=seconds / 4, warmup=False)
        time.sleep(SETTLE_S)
        ensemble = ensemble_throughput(url, image, concurrency, seconds)
        found.append(PairedThroughput(concurrency, ensemble, {b: e["images_per_s"] for b, e in engine.items()}))
    return found
