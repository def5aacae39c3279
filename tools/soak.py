"""Soak and fault run against the supervised server, on loopback only.

    python -m tools.soak --duration 300 [--clients 4]

Several clients send a mix of good and bad requests for ``--duration`` seconds. On the way
one extra client is killed in the middle of a request, and the ``yolov8_infer`` stubs are
killed with SIGKILL (the supervisor must restart the server). The traffic goes on past
``--duration`` until a request has succeeded again after the kill, and for a fifth of the
duration after that (at most RECOVERY_LIMIT_S past the kill). Then the supervisor gets SIGTERM.
The report: requests sent, successes, errors by code, hangs (client deadline passed, or a
client thread that never returned), wrong answers (each good reply must carry the number of
detections its photo got before the run), p99 latency of successes, server RSS growth, downtime
after the kill, and stub processes and shared-memory files left after shutdown.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from client.stage_stats import executions_by_batch_size
from python_backends.paths import DEFAULT_REPOSITORY, PROJECT_ROOT
from serving.processes import is_alive, rss_bytes, shm_regions, stub_processes
from serving.supervisor import SupervisorProcess

SAMPLES = PROJECT_ROOT / ".cache" / "samples"
DEADLINE_S = 60.0  # a request without an answer after this long is a hang
# gRPC waits up to 120 s between reconnects by default; a client of a restarting server wants it short
RECONNECT = [(f"grpc.{k}_reconnect_backoff_ms", ms) for k, ms in (("initial", 250), ("min", 2000), ("max", 1000))]
HANG = "StatusCode.DEADLINE_EXCEEDED"
RECOVERY_LIMIT_S = 180.0  # after the kill, the server has this long to answer again (16 s measured here)
# The killed client: one slow request (a batch of argv[3] images), killed once the server has it, before the answer.
KILLED_CLIENT = """
import sys, numpy as np, tritonclient.grpc as g
c = g.InferenceServerClient(sys.argv[1])
x = g.InferInput("IMAGE", [int(sys.argv[3]), 1], "BYTES")
x.set_data_from_numpy(np.array([[open(sys.argv[2], "rb").read()]] * int(sys.argv[3]), dtype=object))
print("sending", flush=True)
c.infer("yolov8", [x])
"""
PREPROCESS = "yolov8_preprocess"


@dataclass
class SoakReport:
    duration_s: float
    clients: int
    sent: int = 0
    successes: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    wrong_answers: int = 0  # a good request refused as invalid or answered with other detections, a bad one answered
    hangs: int = 0
    p99_ms: float = 0.0
    killed_clients: int = 0  # killed while waiting for the answer to a request that the server's statistics count
    expected_detections: dict[str, int] = field(default_factory=dict)  # per good request, measured before the run
    downtime_s: float | None = None  # stub killed -> next success (None: none within RECOVERY_LIMIT_S)
    successes_after_recovery: int = 0  # after the first success that followed the kill
    rss_start_mib: float = 0.0  # the restarted server, once warm
    rss_end_mib: float = 0.0
    supervisor_status: int | None = None
    stubs_seen: int = 0  # over both servers (before and after the kill)
    shm_seen: int = 0
    leftover_stubs: int = 0
    leftover_shm: int = 0

    @property
    def balanced(self) -> bool:
        """Every request got an answer; a client thread that died or hung in the middle of one breaks it."""
        return self.sent == self.successes + sum(self.errors.values())


@dataclass(frozen=True)
class MixRequest:
    name: str
    good: bool
    payload: bytes
    conf: float | None  # CONF_THRESHOLD to send; None: the server's default

    @property
    def label(self) -> str:
        return self.name if self.conf is None else f"{self.name} conf={self.conf}"


def requests_mix(samples: Path = SAMPLES) -> list[MixRequest]:
    """The requests in the order clients cycle through: 4 good, 5 bad."""
    good = (samples / "bus.jpg").read_bytes()
    bomb = bytearray(good)
    struct.pack_into(">HH", bomb, bomb.index(b"\xff\xc0") + 5, 60000, 60000)  # SOF0 declares 60000x60000
    noise = np.random.default_rng(0).integers(0, 256, 20_000, dtype=np.uint8).tobytes()
    zidane = (samples / "zidane.jpg").read_bytes()
    return [
        MixRequest("bus.jpg", True, good, None),
        MixRequest("zidane.jpg", True, zidane, 0.4),
        MixRequest("empty", False, b"", None),
        MixRequest("bus.jpg", True, good, None),
        MixRequest("random bytes", False, noise, None),
        MixRequest("truncated bus.jpg", False, good[: len(good) // 2], None),
        MixRequest("zidane.jpg", True, zidane, None),
        MixRequest("bomb 60000x60000", False, bytes(bomb), None),
        MixRequest("bus.jpg", False, good, float("nan")),
    ]


class Soak:
    def __init__(self, duration_s: float, clients: int, repository: Path, log_dir: Path):
        self.report = SoakReport(duration_s, clients)
        self.server = SupervisorProcess(repository, log_dir, "--probe-interval", "2")
        self.log_dir = log_dir
        self.mix = requests_mix()
        self.killed_batch = max(8, clients + 2)  # larger than any batch the other clients and the probe can form
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.errors: Counter[str] = Counter()
        self.success_times: list[float] = []
        self.stubs: set[tuple[int, str]] = set()
        self.shm: set[Path] = set()
        self.done = threading.Event()
        self.killed_at: float | None = None
        self.recovered = threading.Event()  # a request succeeded after the kill
        self.end = float("inf")  # when the clients stop: set at the start, moved past the recovery

    def run(self) -> SoakReport:
        try:
            self.server.wait_serving()
            self._watch_server()
            self._measure_expected_detections()
            start = time.monotonic()
            self.end = start + self.report.duration_s
            count = self.report.clients
            clients = [threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(count)]
            watcher = threading.Thread(target=self._watch_until, daemon=True)
            for thread in [*clients, watcher]:
                thread.start()
            self._sleep_until(start + 0.2 * self.report.duration_s)
            self._kill_a_client()
            self._sleep_until(start + 0.3 * self.report.duration_s)
            self.killed_at = self._kill_infer_stub()
            self._measure_rss_after_restart()
            for thread in clients:
                thread.join(timeout=max(self._stop_at() - time.monotonic(), 0) + DEADLINE_S + 30)
            self.report.hangs += sum(thread.is_alive() for thread in clients)
            self.report.rss_end_mib = self._rss_mib()
            self.done.set()
            watcher.join(timeout=10)
            later = sorted(t for t in self.success_times if t > self.killed_at)
            self.report.downtime_s = round(later[0] - self.killed_at, 2) if later else None
            self.report.successes_after_recovery = max(len(later) - 1, 0)
        finally:
            self.done.set()
            self.report.supervisor_status = self.server.stop(timeout_s=90)
        self.report.stubs_seen, self.report.shm_seen = len(self.stubs), len(self.shm)
        self.report.leftover_stubs = sum(is_alive(pid) for pid, _ in self.stubs)
        self.report.leftover_shm = sum(path.exists() for path in self.shm)
        self.report.successes = len(self.latencies)
        self.report.errors = dict(self.errors)
        self.report.p99_ms = round(float(np.percentile(self.latencies, 99)) * 1e3, 1) if self.latencies else 0.0
        return self.report

    def _stop_at(self) -> float:
        """When the clients stop: ``end``, or RECOVERY_LIMIT_S after the kill while the server has not answered."""
        if self.killed_at is not None and not self.recovered.is_set():
            return max(self.end, self.killed_at + RECOVERY_LIMIT_S)
        return self.end

    def _client(self, index: int) -> None:
        client = grpcclient.InferenceServerClient(self.server.grpc_url, channel_args=RECONNECT)
        turn = index
        try:
            while not self.done.is_set() and (self.killed_at is None or time.monotonic() < self._stop_at()):
                request = self.mix[turn % len(self.mix)]
                turn += 1
                self._one(client, request)
        finally:
            client.close()

    def _one(self, client, request: MixRequest) -> None:
        inputs = request_inputs(request)
        with self.lock:
            self.report.sent += 1
        started = time.monotonic()
        try:
            reply = client.infer("yolov8", inputs, client_timeout=DEADLINE_S)
        except InferenceServerException as exc:
            code = str(exc.status())
            with self.lock:
                self.errors[code] += 1
                self.report.hangs += code == HANG
                self.report.wrong_answers += request.good and code == "StatusCode.INVALID_ARGUMENT"
            if code != "StatusCode.INVALID_ARGUMENT":
                time.sleep(0.1)  # server restarting or busy: back off a little, as a retrying client would
            return
        detections = int(reply.as_numpy("num_dets")[0, 0])
        with self.lock:
            now = time.monotonic()
            self.latencies.append(now - started)
            self.success_times.append(now)
            if self.killed_at is not None and now > self.killed_at and not self.recovered.is_set():
                self.end = max(self.end, now + 0.2 * self.report.duration_s)  # traffic on the restarted server
                self.recovered.set()
            wrong = not request.good or detections != self.report.expected_detections[request.label]
            self.report.wrong_answers += wrong

    def _measure_expected_detections(self) -> None:
        """Each good request's number of detections, from the fresh server before any load or fault."""
        client = grpcclient.InferenceServerClient(self.server.grpc_url)
        try:
            for request in (r for r in self.mix if r.good and r.label not in self.report.expected_detections):
                reply = client.infer("yolov8", request_inputs(request), client_timeout=DEADLINE_S)
                self.report.expected_detections[request.label] = int(reply.as_numpy("num_dets")[0, 0])
        finally:
            client.close()

    def _kill_a_client(self, timeout_s: float = 30.0) -> None:
        """A client process that dies in the middle of a request: once the server has its request, before the answer.

        The server has it when yolov8_preprocess has run a batch of ``killed_batch`` images or more (its statistics).
        """
        stats = grpcclient.InferenceServerClient(self.server.grpc_url)
        try:
            before = large_batches(stats, self.killed_batch)
            command = [sys.executable, "-c", KILLED_CLIENT, self.server.grpc_url, str(SAMPLES / "bus.jpg")]
            process = subprocess.Popen(
                [*command, str(self.killed_batch)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
            )
            process.stdout.readline()  # "sending"
            deadline = time.monotonic() + timeout_s
            while large_batches(stats, self.killed_batch) == before and time.monotonic() < deadline:
                time.sleep(0.05)
            reached = large_batches(stats, self.killed_batch) > before
        finally:
            stats.close()
        waiting = process.poll() is None  # still waiting for its answer
        process.kill()
        process.wait()
        self.report.killed_clients += reached and waiting

    def _kill_infer_stub(self) -> float:
        pid = self.server.server_pid()
        for stub in [s for s in stub_processes(pid) if s.model == "yolov8_infer"]:  # each instance's
            os.kill(stub.pid, signal.SIGKILL)
        return time.monotonic()

    def _measure_rss_after_restart(self) -> None:
        """Wait for the restarted server to answer, let it warm up, then take its RSS."""
        self.recovered.wait(timeout=RECOVERY_LIMIT_S)
        self._sleep_until(min(time.monotonic() + 2.0, self._stop_at()))
        self.report.rss_start_mib = self._rss_mib()

    def _watch_server(self) -> None:
        """Remember every stub and shared-memory file the server has had (checked after shutdown)."""
        pid = self.server.server_pid()
        if pid is None:
            return
        stubs = stub_processes(pid)
        with self.lock:
            self.stubs |= {(s.pid, s.instance) for s in stubs}
            self.shm |= shm_regions([pid, *(s.pid for s in stubs)])

    def _watch_until(self) -> None:
        while not self.done.wait(0.5):
            self._watch_server()

    def _rss_mib(self) -> float:
        pid = self.server.server_pid()
        if pid is None:
            return 0.0
        return round(rss_bytes([pid, *(s.pid for s in stub_processes(pid))]) / 2**20, 1)

    @staticmethod
    def _sleep_until(when: float) -> None:
        time.sleep(max(when - time.monotonic(), 0))


def request_inputs(request: MixRequest) -> list[grpcclient.InferInput]:
    """IMAGE (BYTES [1, 1]) and, when the request sets one, CONF_THRESHOLD (FP32 [1, 1])."""
    image = grpcclient.InferInput("IMAGE", [1, 1], "BYTES")
    image.set_data_from_numpy(np.array([[request.payload]], dtype=object))
    inputs = [image]
    if request.conf is not None:
        threshold = grpcclient.InferInput("CONF_THRESHOLD", [1, 1], "FP32")
        threshold.set_data_from_numpy(np.array([[request.conf]], np.float32))
        inputs.append(threshold)
    return inputs


def large_batches(client: grpcclient.InferenceServerClient, size: int) -> int:
    """Executions of yolov8_preprocess so far that held ``size`` images or more."""
    return sum(n for batch, n in executions_by_batch_size(client, PREPROCESS).items() if batch >= size)


def format_report(report: SoakReport) -> str:
    errors = ", ".join(f"{code.removeprefix('StatusCode.')}: {n}" for code, n in sorted(report.errors.items()))
    return "\n".join(
        [
            f"duration {report.duration_s:.0f} s, {report.clients} clients, killed clients {report.killed_clients}",
            f"sent {report.sent}, successes {report.successes}, errors {sum(report.errors.values())} ({errors})",
            "detections expected: " + ", ".join(f"{k}: {n}" for k, n in report.expected_detections.items()),
            f"hangs {report.hangs}, wrong answers {report.wrong_answers}, p99 latency of successes {report.p99_ms} ms",
            f"downtime after kill -9 of the yolov8_infer stubs: {report.downtime_s} s, "
            f"then {report.successes_after_recovery} successes",
            f"server RSS after the restart: {report.rss_start_mib} MiB -> {report.rss_end_mib} MiB at the end"
            f" (growth {report.rss_end_mib - report.rss_start_mib:+.1f} MiB)",
            f"supervisor exit status {report.supervisor_status}; after shutdown: leftover stubs"
            f" {report.leftover_stubs} of {report.stubs_seen}, shared-memory regions {report.leftover_shm} of"
            f" {report.shm_seen}",
            f"sent == successes + errors: {report.balanced}",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of traffic (bounded)")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY)
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    log_dir = Path(tempfile.mkdtemp(prefix="soak-", dir=PROJECT_ROOT / ".cache"))
    print(f"soak: {args.duration:.0f} s, {args.clients} clients, loopback; logs in {log_dir}", flush=True)
    report = Soak(args.duration, args.clients, args.repository, log_dir).run()
    print(format_report(report))
    if args.json:
        args.json.write_text(json.dumps(asdict(report), indent=2))
    ok = report.balanced and report.hangs == 0 and report.leftover_stubs == 0 and report.leftover_shm == 0
    return 0 if ok and report.wrong_answers == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
