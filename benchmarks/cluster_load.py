"""Steady load on a cluster (or one server) from client threads, recording every request's outcome.

Shared by ``benchmarks/cluster.py`` and the cluster tests: each client thread sends one image after
another through ``client.YoloTritonClient`` and records when it started and ended, whether it
succeeded, how many attempts it took, and whether its detections match the expected ones.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from client.api import DetectionError, DetectionResult, YoloTritonClient


@dataclass(frozen=True)
class Outcome:
    """One request: ``error`` is the gRPC status name of a failure ('' for a success)."""

    client: int
    started: float
    ended: float
    error: str
    attempts: int
    correct: bool


def same_detections(a: DetectionResult, b: DetectionResult, tolerance_px: float = 1.0) -> bool:
    """Same classes in the same order, boxes within ``tolerance_px``."""
    if len(a.detections) != len(b.detections):
        return False
    return all(
        x.class_id == y.class_id and all(abs(p - q) <= tolerance_px for p, q in zip(x.box, y.box))
        for x, y in zip(a.detections, b.detections)
    )


@dataclass
class Load:
    """``clients`` threads sending ``image`` (encoded bytes) to ``url`` until ``stop``.

    ``retries`` is the client's retry budget on UNAVAILABLE (0: every UNAVAILABLE counts as a loss).
    """

    url: str
    image: bytes
    expected: DetectionResult
    clients: int = 4
    retries: int = 0
    timeout_s: float = 60.0
    outcomes: list[Outcome] = field(default_factory=list)

    def __post_init__(self):
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(self.clients)]

    def start(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, timeout_s: float = 120.0) -> list[Outcome]:
        """Stop sending; wait for the requests in flight (a thread still busy after ``timeout_s`` is a hang)."""
        self._stop.set()
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        hung = [t.name for t in self._threads if t.is_alive()]
        if hung:
            raise TimeoutError(f"requests still unanswered after {timeout_s:.0f} s: {hung}")
        return sorted(self.outcomes, key=lambda o: o.started)

    def _run(self, index: int) -> None:
        with YoloTritonClient(self.url, timeout_s=self.timeout_s, retries=self.retries, backoff_s=0.1) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    result = client.detect(self.image)
                    error, correct = "", same_detections(result, self.expected)
                except DetectionError as exc:
                    error, correct = exc.status.removeprefix("StatusCode."), True
                outcome = Outcome(index, started, time.monotonic(), error, client.last_attempts, correct)
                with self._lock:
                    self.outcomes.append(outcome)


def longest_gap_s(outcomes: list[Outcome], after: float) -> float:
    """The longest time between two consecutive successes (by end time) from ``after`` on."""
    ends = sorted(o.ended for o in outcomes if not o.error and o.ended >= after)
    return max((b - a for a, b in zip(ends, ends[1:])), default=0.0)
