"""Start and stop a tritonserver process (for the demo, benchmarks and tests)."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from python_backends.triton_helpers.drain import DRAIN_DIR_VARIABLE, DrainGate
from serving.processes import (
    StubProcess,
    is_alive,
    listening_pids,
    orphaned_shm_files,
    port_taken_lines,
    shm_files,
    shm_regions,
    stub_processes,
    taken_port,
)
from serving.server_dirs import (
    GATE_PREFIX,
    new_python_env,
    python_env_dirs,
    python_env_lock,
    record_python_env,
    remove_server_dirs,
)
from serving.triton import ServerOptions, build_backend_dir, server_command, server_environment, stub_numpy_problem

log = logging.getLogger(__name__)


class ServerStartError(RuntimeError):
    """tritonserver exited or did not become ready in time."""


def http_ok(url: str, timeout_s: float = 2.0) -> bool:
    """``url`` answers 200 (a health endpoint); False when it answers otherwise or not at all."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as reply:
            return reply.status == 200
    except OSError:
        return False


class TritonServer:
    """A tritonserver child process with its log in ``log_path`` (None: this process's stdout).

    Once ready, it records the server's Python stubs and shared-memory regions, so that
    ``stop`` can make sure none of them outlives the server (``leftovers``). ``stop`` drains
    the pipeline before SIGTERM (see ``python_backends.triton_helpers.drain``).

    Usage::

        with TritonServer(ServerOptions(...), log_path) as server:
            client = InferenceServerClient(server.grpc_url)

    With ``own_process_group`` False, tritonserver and its stubs stay in the caller's process group
    (``make cluster``: one ``kill`` of a replica's group stops its supervisor, server and stubs).
    """

    def __init__(self, options: ServerOptions, log_path: Path | None, own_process_group: bool = True):
        self.options = options
        self.own_process_group = own_process_group
        self.log_path = None if log_path is None else Path(log_path)
        self.process: subprocess.Popen | None = None
        self.stubs: list[StubProcess] = []  # the ready server's Python stubs
        self.loading_stubs: dict[int, StubProcess] = {}  # pid → each stub seen while the models load (some exit)
        self.started = False  # ready, and ``stubs`` holds the stubs it had at ready
        self.shm: set[Path] = set()
        self.shm_before: set[Path] = set()  # the shared-memory files there before it started
        self.gate = DrainGate(None)
        self.python_env: Path | None = None  # its Python backend's folder in /tmp (serving.server_dirs)

    @property
    def grpc_url(self) -> str:
        return f"{self.options.host}:{self.options.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.options.host}:{self.options.http_port}"

    @property
    def ports(self) -> dict[str, int]:
        """What the server serves on each of its ports → the port."""
        ports = {"HTTP": self.options.http_port, "gRPC": self.options.grpc_port}
        return ports | ({"metrics": self.options.metrics_port} if self.options.metrics else {})

    def start(self, timeout_s: float = 120.0) -> TritonServer:
        """Start the server and wait until it is ready (``is_ready``).

        Refuses to start (ServerStartError) under a NumPy its Python stubs can't use (``stub_numpy_problem``),
        and when another process listens on one of its ports (the message names the port and, where /proc
        tells, the process).
        """
        problem = stub_numpy_problem(np.__version__) or taken_port(self.ports, self.options.host)
        if problem:
            raise ServerStartError(problem)
        log_start = 0
        if self.options.trace_file is not None:
            Path(self.options.trace_file).parent.mkdir(parents=True, exist_ok=True)
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        self.gate = DrainGate(tempfile.mkdtemp(prefix=GATE_PREFIX, dir=self.log_path and self.log_path.parent))
        self.shm_before = shm_files()
        self.stubs, self.shm, self.loading_stubs, self.started, self.python_env = [], set(), {}, False, None
        deadline = time.monotonic() + timeout_s
        with open(os.devnull if self.log_path is None else self.log_path, "ab") as log, python_env_lock():
            before = python_env_dirs()
            self.process = subprocess.Popen(
                server_command(self.options, build_backend_dir()),
                env=server_environment() | {DRAIN_DIR_VARIABLE: str(self.gate.directory)},
                stdout=None if self.log_path is None else log,
                stderr=None if self.log_path is None else subprocess.STDOUT,
                start_new_session=self.own_process_group,  # its own process group: stubs included in stop()
            )
            self.python_env = new_python_env(before, self.process, self.is_ready, min(deadline, time.monotonic() + 30))
        if self.python_env is not None:
            record_python_env(self.gate.directory, self.python_env)
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stubs = list(self.loading_stubs.values())  # a crash while loading (2.51's on a failed warm-up)
                self._clean_up()  # orphaned them: killed here, their shared memory removed
                reason = f"tritonserver exited with {self.process.returncode}{self._port_problem(log_start)}"
                raise ServerStartError(f"{reason}; see {self.log_path}")
            if self.is_ready():
                self._record_resources()
                self.started = True
                return self
            # a new dict each time, not updated in place: another thread may be reading it
            self.loading_stubs = self.loading_stubs | {stub.pid: stub for stub in stub_processes(self.process.pid)}
            self.shm |= shm_regions([self.process.pid, *self.loading_stubs])
            time.sleep(0.25)
        self.stop()
        raise ServerStartError(f"tritonserver not ready after {timeout_s:.0f} s; see {self.log_path}")

    def is_ready(self) -> bool:
        """``/v2/health/ready`` answers 200, and this server is the process listening there (not another one
        that answers on the same port)."""
        return http_ok(f"{self.http_url}/v2/health/ready") and bool(
            listening_pids(self.options.http_port, [self.process.pid])
        )

    def _port_problem(self, log_start: int) -> str:
        """``: <the log's line>`` where the log written since ``log_start`` says a port was taken, else ''."""
        taken = port_taken_lines(self.log_path, log_start) if self.log_path is not None else []
        return f": {taken[-1]}" if taken else ""

    def _record_resources(self) -> None:
        self.stubs = stub_processes(self.process.pid)
        self.shm |= shm_regions([self.process.pid, *(stub.pid for stub in self.stubs)])

    def drain(self) -> bool:
        """Refuse new requests and wait, up to the exit timeout, until those in the pipeline have left it.

        False (and a warning logged) when the exit timeout expired with requests still in the pipeline.
        """
        self.gate.close()
        deadline = time.monotonic() + self.options.exit_timeout_s
        settled = 0  # two empty readings in a row: no stage is between "checked the gate" and "counted"
        while settled < 2 and time.monotonic() < deadline and self.process.poll() is None:
            settled = settled + 1 if self.gate.in_flight() <= 0 else 0
            time.sleep(0.1)
        if settled < 2 and self.process.poll() is None:
            log.warning(
                "drain timed out after %d s, requests still in the pipeline: %d; killing tritonserver",
                self.options.exit_timeout_s,
                self.gate.in_flight(),
            )
            return False
        return True

    def stop(self, timeout_s: float = 60.0) -> int | None:
        """Drain, SIGTERM (Triton drains what is left), SIGKILL the group if it hangs; clean up after it.

        When the drain times out, SIGKILL at once: Triton would wait out its own exit timeout for the requests
        still in the pipeline, and then 2.51 hangs on the stage that holds them instead of exiting.
        """
        if self.process is None:
            return None
        if self.process.poll() is None:
            self._record_resources()
            if self.drain():
                self.process.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(timeout_s)
            if self.process.poll() is None:  # the drain timed out, or tritonserver hangs after SIGTERM
                self.kill_all()
                self.process.wait()
        self._clean_up()
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL the server and its stubs at once (no draining), then clean up (what it holds is recorded first,
        as ``stop`` does: the stubs it started since it was ready, their shared memory)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self._record_resources()
            self.kill_all()
            self.process.wait()
        self._clean_up()

    def kill_all(self) -> None:
        """SIGKILL tritonserver and every stub it started; no waiting (safe in a signal handler)."""
        if self.own_process_group:
            os.killpg(self.process.pid, signal.SIGKILL)
            return
        for pid in {self.process.pid, *(s.pid for s in self.stubs), *(s.pid for s in stub_processes(self.process.pid))}:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def _clean_up(self, timeout_s: float = 10.0) -> None:
        """Kill stubs that outlived the server; remove its shared-memory and lock files (after a crash too)."""
        if any(is_alive(stub.pid) for stub in self.stubs):
            self.kill_all()  # stubs that outlived the server
        deadline = time.monotonic() + timeout_s
        while any(is_alive(stub.pid) for stub in self.stubs) and time.monotonic() < deadline:
            time.sleep(0.05)
        for path in self.shm | orphaned_shm_files(self.shm_before):  # orphaned: made, never mapped, when killed
            path.unlink(missing_ok=True)
        if self.gate.directory is not None:
            remove_server_dirs(self.gate.directory)

    def leftovers(self) -> tuple[list[StubProcess], list[Path]]:
        """Recorded stubs still alive; shared-memory files and folders in /tmp still present (empty after ``stop``)."""
        paths = self.shm | {self.gate.directory, self.python_env} - {None}
        return [s for s in self.stubs if is_alive(s.pid)], sorted(p for p in paths if p.exists())

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
