"""Hold the preprocess (and infer) stage of a real tritonserver busy, through its CPU-activity lock, and see
where a request is: in a stage's ``execute`` (it holds or waits for the lock) or in its queue (Triton's metrics).

Preprocess takes the server's CPU-activity lock shared in ``execute`` while it decodes, and infer while
it runs (``python_backends/triton_helpers/cpu_activity.py``). While a test holds that lock exclusively, a
request that reached preprocess's ``execute`` waits there, and later ones wait in its queue.
"""

from __future__ import annotations

import fcntl
import os
import re
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from own_server import ensemble_outcome

from python_backends.triton_helpers.cpu_activity import activity_path
from serving.processes import StubProcess, shm_regions, stub_processes
from serving.server_dirs import gate_dirs
from serving.supervisor import SupervisorProcess


def lock_path(server_pid: int) -> Path:
    """The stages' CPU-activity lock of the running tritonserver ``server_pid`` (in its gate's folder)."""
    gates = gate_dirs([server_pid])
    return activity_path(server_pid, gates.pop() if gates else None)


@contextmanager
def stages_held(server_pid: int) -> Iterator[Path]:
    """Hold the lock of tritonserver ``server_pid`` exclusively; yields the lock file's path."""
    path = lock_path(server_pid)
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield path
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _lock_lines(pid: int, path: Path) -> list[list[str]]:
    """The /proc/locks lines of process ``pid`` on ``path``, split into fields."""
    inode = os.stat(path).st_ino
    lines = []
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()  # id: [->] FLOCK ADVISORY READ|WRITE pid major:minor:inode start end
        if fields[-4] == str(pid) and int(fields[-3].rsplit(":", 1)[1]) == inode:
            lines.append(fields)
    return lines


def waits_for_lock(pid: int, path: Path) -> bool:
    """Process ``pid`` is blocked on an flock of ``path`` (a ``->`` line of /proc/locks)."""
    return any("->" in fields for fields in _lock_lines(pid, path))


def holds_lock(pid: int, path: Path) -> bool:
    """Process ``pid`` holds an flock of ``path``: a stage working inside ``execute``."""
    return any("->" not in fields for fields in _lock_lines(pid, path))


def pending_requests(metrics_port: int, model: str) -> int:
    """Requests waiting in ``model``'s queue, not yet in an instance's ``execute`` (Triton's
    ``nv_inference_pending_request_count`` on 127.0.0.1:``metrics_port``)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    found = re.search(rf'^nv_inference_pending_request_count{{model="{model}",version="1"}} (\d+)$', text, re.M)
    assert found, f"no pending-request metric for {model}"
    return int(found.group(1))


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    """Poll ``condition``; fail after ``timeout_s`` (a liveness bound, not a timing check)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout_s} s: {what}"
        time.sleep(0.01)


@dataclass
class HeldRequest:
    """A supervised server's tritonserver (pid, stubs, shared memory) and a request held inside its preprocess."""

    server_pid: int
    stubs: list[StubProcess]
    shm: set[Path]
    outcome: Future  # ``ensemble_outcome`` of the held request


@contextmanager
def request_held_in_preprocess(supervised: SupervisorProcess, payload: bytes) -> Iterator[HeldRequest]:
    """Once ``supervised`` serves (and its start has returned), send ``payload`` through ``yolov8`` and hold it
    inside preprocess's ``execute`` (the stages' lock) until the block ends."""
    server_pid = supervised.wait_serving()
    # serving can come before the supervisor's start returns
    wait_until(lambda: "tritonserver ready in" in supervised.supervisor_log.read_text(), "the start returned")
    stubs = stub_processes(server_pid)
    shm = shm_regions([server_pid, *(s.pid for s in stubs)])
    preprocess = next(s.pid for s in stubs if s.model == "yolov8_preprocess")
    with ThreadPoolExecutor(1) as pool, stages_held(server_pid) as lock:
        outcome = pool.submit(ensemble_outcome, supervised.grpc_url, payload)
        wait_until(lambda: waits_for_lock(preprocess, lock), "the request in preprocess's execute")
        yield HeldRequest(server_pid, stubs, shm, outcome)
