"""``make cluster`` as a subprocess, and steady load on it from client threads; shared by benchmarks/cluster.py
and tests/test_cluster.py.

Each client thread sends one image after another through ``client.YoloTritonClient`` and records when
it started and ended, whether it succeeded, how many attempts it took, and whether its detections
match the expected ones.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from client.api import DetectionError, DetectionResult, YoloTritonClient
from cluster.haproxy_runtime import balancer_states, runtime_command
from python_backends.paths import PROJECT_ROOT
from serving.processes import free_port


class ClusterProcess:
    """``python -m cluster --replicas 2`` as a subprocess, and ways to look at it."""

    def __init__(self, repository: Path, state_dir: Path, *extra: str, env: dict | None = None):
        self.state_dir = state_dir
        self.grpc_port, self.http_port, self.prometheus_port = free_port(), free_port(), free_port()
        command = [
            sys.executable,
            "-m",
            "cluster",
            "--replicas=2",
            f"--repository={repository}",
            f"--grpc-port={self.grpc_port}",
            f"--http-port={self.http_port}",
            f"--prometheus-port={self.prometheus_port}",
            f"--state-dir={state_dir}",
            *extra,
        ]
        self.log = state_dir / "cluster.log"
        state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT, env=env)

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def wait_serving(self, timeout_s: float = 300.0) -> None:
        deadline = time.monotonic() + timeout_s
        while "cluster: serving:" not in self.log.read_text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the cluster is not serving:\n{self.log.read_text()}")
            time.sleep(0.25)

    def replicas(self) -> list[dict]:
        return json.loads((self.state_dir / "replicas.json").read_text())

    def states(self) -> dict[tuple[str, str], str]:
        return balancer_states(self.state_dir)

    def balancer_command(self, command: str) -> str:
        """One command to HAProxy's runtime API (its stats socket, admin level); its answer."""
        return runtime_command(self.state_dir, command)

    def wait_all_up(self, timeout_s: float = 180.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not (self.states() and all(s == "UP" for s in self.states().values())):
            if time.monotonic() > deadline:
                raise TimeoutError(f"replicas not back in rotation: {self.states()}")
            time.sleep(0.1)

    def stop(self, timeout_s: float = 120.0) -> None:
        """Ctrl-C the cluster if it still runs (it drains the replicas, then stops the helpers); kill it past
        ``timeout_s``."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def fail_counts(self) -> int:
        """Failed yolov8 requests, summed over the replicas (Triton's own statistics)."""
        total = 0
        for replica in self.replicas():
            url = f"http://127.0.0.1:{replica['http_port']}/v2/models/yolov8/stats"
            with urllib.request.urlopen(url, timeout=10) as reply:
                total += json.load(reply)["model_stats"][0]["inference_stats"]["fail"]["count"]
        return total

    def query(self, promql: str) -> list[dict]:
        url = f"http://127.0.0.1:{self.prometheus_port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=10) as reply:
            return json.load(reply)["data"]["result"]


@dataclass(frozen=True)
class Outcome:
    """One request: ``error`` is the gRPC status name of a failure, or the exception's type name for a failure
    that is not a gRPC status ('' for a success)."""

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
    """``clients`` threads sending ``image`` (encoded bytes, or a path) to ``url`` until ``stop``.

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
        """Send until ``stop``; every request ends as one Outcome, whatever it raised."""
        with YoloTritonClient(self.url, timeout_s=self.timeout_s, retries=self.retries, backoff_s=0.1) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    result = client.detect(self.image)
                    error, correct = "", same_detections(result, self.expected)
                except DetectionError as exc:
                    error, correct = exc.status.removeprefix("StatusCode."), True
                except Exception as exc:  # a loss of any kind is counted, not a silent end of the thread
                    error, correct = type(exc).__name__, False
                outcome = Outcome(index, started, time.monotonic(), error, client.last_attempts, correct)
                with self._lock:
                    self.outcomes.append(outcome)


def longest_gap_s(outcomes: list[Outcome], after: float) -> float:
    """The longest time between two consecutive successes (by end time) from ``after`` on."""
    ends = sorted(o.ended for o in outcomes if not o.error and o.ended >= after)
    return max((b - a for a, b in zip(ends, ends[1:])), default=0.0)
