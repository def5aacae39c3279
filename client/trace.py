"""``yolo-triton trace``: every request's time in each stage, from Triton's request traces.

The command turns tracing on for the ensemble alone through the trace API (an admin call: it sends the admin key),
drives images through it (or samples live traffic for a window), turns tracing off and reads the trace files.
Triton 2.51 takes the trace file only at start (``python -m serving --trace-file``; the trace API refuses a new
one), and the command reads that file's ``.<n>`` parts where the server wrote them, so it runs on the server's
host (or where the server's trace folder is mounted at the same path). It removes the parts it read. At most
``requests`` traces are taken (``trace_count``), ``LOG_FREQUENCY`` to a file. Tracing is off again afterwards,
also when the run fails or is interrupted (Ctrl-C, SIGTERM): the ensemble's trace settings go back to the
server's own.
"""

from __future__ import annotations

import contextlib
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import tritonclient.grpc as grpcclient

from client.report import drive
from client.trace_stats import RequestTrace, request_traces
from python_backends.defaults import ADMIN_KEY_FILE, GRPC_ADMIN_KEY_HEADER

ENSEMBLE = "yolov8"
LOG_FREQUENCY = 100  # traces per file: a request's trace (the ensemble's and its stages') is about 2.5 kB
SETTINGS = ("trace_level", "trace_rate", "trace_count", "log_frequency")
FLUSH_TIMEOUT_S = 10.0


class TraceError(RuntimeError):
    """The server cannot be traced as asked (no trace file, already tracing, trace files out of reach)."""


def admin_headers(admin_key: str | None) -> dict[str, str]:
    """The admin key's gRPC header: ``admin_key``, else ``.cache/admin_key`` of a server started from this
    checkout, else none (a server without an admin key)."""
    if admin_key is None and ADMIN_KEY_FILE.exists():
        admin_key = ADMIN_KEY_FILE.read_text().strip()
    return {GRPC_ADMIN_KEY_HEADER: admin_key} if admin_key else {}


def settings(client: grpcclient.InferenceServerClient, headers: dict[str, str], model: str = ENSEMBLE) -> dict:
    """``model``'s trace settings, name → value (a list for trace_level)."""
    found = client.get_trace_settings(model, headers=headers, as_json=True)["settings"]
    return {name: value["value"] if name == "trace_level" else value["value"][0] for name, value in found.items()}


def trace_parts(trace_file: Path) -> dict[Path, int]:
    """The trace file's ``.<n>`` parts → their mtime (ns)."""
    return {p: p.stat().st_mtime_ns for p in trace_file.parent.glob(trace_file.name + ".*") if p.suffix[1:].isdigit()}


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """SIGINT (Ctrl-C) and SIGTERM interrupt the block, even in a process started with SIGINT ignored (a shell
    script's background job), as the supervisor's do; the handlers of before come back afterwards."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def uninterrupted() -> Iterator[None]:
    """Ctrl-C and SIGTERM wait until the block is done (turning tracing off)."""
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class Tracing:
    """Tracing of the ensemble on a running server, on for ``count`` traces of one in ``rate`` requests."""

    def __init__(self, client: grpcclient.InferenceServerClient, headers: dict[str, str], count: int, rate: int = 1):
        self.client, self.headers, self.count, self.rate = client, headers, count, rate
        before = settings(client, headers)
        if before["trace_level"] != ["OFF"]:
            raise TraceError(f"{ENSEMBLE} is traced already (trace_level {before['trace_level']}): left as it is")
        if not before["trace_file"]:
            raise TraceError("the server has no trace file: start it with python -m serving (--trace-file)")
        self.trace_file = Path(before["trace_file"])
        if not self.trace_file.parent.is_dir():
            raise TraceError(f"the server's trace folder {self.trace_file.parent} is not on this host")
        self.before = trace_parts(self.trace_file)

    def __enter__(self) -> Tracing:
        return self

    def on(self) -> None:
        """Turn tracing on, inside the ``with`` block: off again when the block ends, however it ends."""
        wanted = {"trace_level": ["TIMESTAMPS"], "trace_rate": str(self.rate), "trace_count": str(self.count)}
        wanted["log_frequency"] = str(LOG_FREQUENCY)
        self.client.update_trace_settings(ENSEMBLE, wanted, headers=self.headers)

    def remaining(self) -> int:
        """Traces still to take (trace_count counts down as Triton samples requests)."""
        return int(settings(self.client, self.headers)["trace_count"])

    def __exit__(self, failed, *exc) -> None:
        """Tracing off: first its level, which stops the sampling and keeps the count of traces taken where it is
        (read after, it cannot miss a request sampled meanwhile), then the ensemble's trace settings back to the
        server's; a failed run's parts removed, once Triton has written them (it writes the last part after
        tracing goes off, so a part removed at once could be followed by that one)."""
        with uninterrupted():
            try:
                self.client.update_trace_settings(ENSEMBLE, {"trace_level": ["OFF"]}, headers=self.headers)
                self.taken = self.count - self.remaining()
            finally:
                self.client.update_trace_settings(ENSEMBLE, dict.fromkeys(SETTINGS), headers=self.headers)
        if failed is not None:
            self.take_parts()

    def new_parts(self) -> list[Path]:
        """The trace file's parts written since tracing went on, in order."""
        parts = trace_parts(self.trace_file)
        new = [p for p, mtime in parts.items() if self.before.get(p) != mtime]
        return sorted(new, key=lambda p: int(p.suffix[1:]))

    def collect(self, timeout_s: float = FLUSH_TIMEOUT_S) -> list[RequestTrace]:
        """The traced requests, once every trace taken is written (Triton writes a trace when its request is
        released, and the last file when tracing goes off) or at the timeout; the parts read are removed."""
        return request_traces(self.take_parts(timeout_s), ENSEMBLE)

    def take_parts(self, timeout_s: float = FLUSH_TIMEOUT_S) -> list[dict]:
        """The records of the parts written since tracing went on, read and removed once they hold every trace
        taken, or at the timeout."""
        deadline = time.monotonic() + timeout_s
        while True:
            parts = self.new_parts()
            try:
                records = [r for p in parts for r in json.loads(p.read_text())]
            except ValueError:  # a part Triton is still writing
                records = []
            ensembles = sum(1 for r in records if r.get("model_name") == ENSEMBLE and "parent_id" not in r)
            if ensembles >= self.taken or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        for part in parts:
            part.unlink()
        return records


def trace(
    url: str,
    images: list[Path],
    requests: int,
    concurrency: int = 1,
    rate: int = 1,
    window_s: float = 60.0,
    admin_key: str | None = None,
) -> list[RequestTrace]:
    """Trace ``requests`` requests to the ensemble: ``requests * rate`` requests driven with ``images``
    (one in ``rate`` traced), or, without images, live traffic until that many are traced or ``window_s`` ends."""
    from client.api import YoloTritonClient

    headers = admin_headers(admin_key)
    with YoloTritonClient(url) as yolo, interruptible():
        with Tracing(yolo.client, headers, requests, rate) as tracing:
            tracing.on()
            if images:
                drive(yolo, images, concurrency, requests * rate)
            else:
                deadline = time.monotonic() + window_s
                while time.monotonic() < deadline and tracing.remaining() > 0:
                    time.sleep(0.5)
        return tracing.collect()
