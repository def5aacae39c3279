"""Keep tritonserver serving: restart it when a stage dies, and stop it cleanly on SIGTERM/SIGINT.

Triton 2.51 does not restart a Python stub that died (OOM kill, segfault in a native
library) and keeps reporting the model ready, so every request through that stage fails.
The supervisor watches for that and restarts the whole server:

- every ``check_interval_s``: the server process is alive and every stub it started is alive
  (stubs are children of tritonserver with the model instance name in their argv);
- every ``probe_interval_s``: a probe inference on a tiny image succeeds (an overloaded
  server's 503 does not count as a failure); ``probe_failures`` failures in a row restart it.

On SIGTERM/SIGINT it forwards SIGTERM: Triton refuses new requests, drains in-flight ones for
up to ``--exit-timeout-secs``, and exits; then no stub or shared-memory file is left behind.
A second signal kills the server at once.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from python_backends.paths import PROJECT_ROOT
from serving.lb_agent import LoadBalancerAgent
from serving.probe import probe_inference
from serving.processes import child_pids, free_port, is_alive
from serving.server import ServerStartError, TritonServer
from serving.triton import ServerOptions

log = logging.getLogger("supervisor")


class TooManyRestarts(RuntimeError):
    """The server keeps failing: restarting it again would only hide the fault."""


class RestartBudget:
    """At most ``max_restarts`` restarts within any ``window_s`` seconds: a fault that returns faster is not transient.

    ``clock`` gives the time in seconds (``time.monotonic``; tests pass their own). A restart exactly
    ``window_s`` seconds old no longer counts.
    """

    def __init__(self, max_restarts: int, window_s: float, clock: Callable[[], float] = time.monotonic):
        self.max_restarts, self.window_s, self.clock = max_restarts, window_s, clock
        self.times: list[float] = []

    def record(self) -> bool:
        """Count a restart now; False when it is one too many, that is ``max_restarts`` + 1 within the window."""
        now = self.clock()
        self.times = [t for t in self.times if now - t < self.window_s] + [now]
        return len(self.times) <= self.max_restarts


class Supervisor:
    """Run one ``TritonServer`` and restart it when a stage is dead.

    Args:
        options: the server's settings.
        log_path: tritonserver's log file; None for this process's stdout.
        check_interval_s: how often processes are checked.
        probe_interval_s: how often a probe inference runs; 0 turns probing off.
        probe_failures: failed probes in a row that count as a dead stage.
        probe_timeout_s: seconds a probe inference may take; longer fails it (a hung stage).
        max_restarts: restarts allowed within ``restart_window_s`` before giving up.
        clock: the time in seconds for the restart window (``time.monotonic``).
        own_process_group: False keeps tritonserver and its stubs in this process's group.
        agent_port: where HAProxy's agent check asks whether to send requests (None: no agent).
        drain_delay_s: on SIGTERM/SIGINT, seconds of answering ``drain`` to the agent check, still
            serving, before refusing new requests (the balancer must have taken this server out by then).
    """

    def __init__(
        self,
        options: ServerOptions,
        log_path: Path | None = None,
        check_interval_s: float = 0.5,
        probe_interval_s: float = 10.0,
        probe_failures: int = 2,
        probe_timeout_s: float = 60.0,
        max_restarts: int = 5,
        restart_window_s: float = 600.0,
        own_process_group: bool = True,
        agent_port: int | None = None,
        drain_delay_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.server = TritonServer(options, log_path, own_process_group)
        self.agent = None if agent_port is None else LoadBalancerAgent(agent_port)
        self.drain_delay_s = drain_delay_s
        self.killing = threading.Event()
        self.check_interval_s = check_interval_s
        self.probe_interval_s = probe_interval_s
        self.probe_failures = probe_failures
        self.probe_timeout_s = probe_timeout_s
        self.max_restarts = max_restarts
        self.restart_window_s = restart_window_s
        self.stopping = threading.Event()
        self.restarts = RestartBudget(max_restarts, restart_window_s, clock)
        self._failed_probes = 0
        self._next_probe = 0.0

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; returns the exit status (0 after a clean stop)."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            self._start()
            while not self.stopping.wait(self.check_interval_s):
                problem = self.find_problem()
                if problem is not None:
                    self._restart(problem)
            return 0
        except (ServerStartError, TooManyRestarts) as exc:
            if self.killing.is_set():  # a second Ctrl-C while a server was starting: it failed because we killed it
                log.info("stopped while starting: %s", exc)
                return 0
            log.error("giving up: %s", exc)
            self.server.kill()  # as for a restart: a broken stage cannot drain
            return 1
        finally:
            self._leave_rotation()
            if self.server.process is not None and self.server.process.poll() is None:
                log.info("stopping tritonserver (draining up to %d s)", self.server.options.exit_timeout_s)
            self.server.stop(timeout_s=self.server.options.exit_timeout_s + 15)
            stubs, shm = self.server.leftovers()
            log.info("stopped; leftover stubs: %d, shared-memory files and folders: %d", len(stubs), len(shm))
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _leave_rotation(self) -> None:
        """Tell the load balancer's agent check to drain, and keep serving while it takes this server out."""
        if self.agent is None:
            return
        self.agent.drain()
        if self.drain_delay_s and self.server.process is not None and self.server.process.poll() is None:
            log.info("agent check answers drain; still serving for %.1f s", self.drain_delay_s)
            self.killing.wait(self.drain_delay_s)
        self.agent.close()

    def find_problem(self) -> str | None:
        """Why the server must be restarted, or None while it is healthy."""
        process = self.server.process
        if process.poll() is not None:
            return f"tritonserver exited with status {process.returncode}"
        for stub in self.server.stubs:
            if not is_alive(stub.pid):
                return f"stage {stub.model}: its Python stub {stub.instance} (pid {stub.pid}) is gone"
        if self.probe_interval_s and time.monotonic() >= self._next_probe:
            self._next_probe = time.monotonic() + self.probe_interval_s
            result = probe_inference(self.server.http_url, timeout_s=self.probe_timeout_s)
            if result.ok or result.overloaded:
                self._failed_probes = 0
            else:
                self._failed_probes += 1
                log.warning("probe inference failed (%d in a row): %s", self._failed_probes, result.detail)
                if self._failed_probes >= self.probe_failures:
                    return f"{self._failed_probes} probe inferences failed, last: {result.detail}"
        return None

    def _start(self) -> None:
        started = time.monotonic()
        self.server.start()
        self._failed_probes, self._next_probe = 0, time.monotonic() + self.probe_interval_s
        stages = ", ".join(f"{s.instance} (pid {s.pid})" for s in self.server.stubs)
        log.info(
            "tritonserver ready in %.1f s (pid %d); stubs: %s",
            time.monotonic() - started,
            self.server.process.pid,
            stages,
        )

    def _restart(self, reason: str) -> None:
        if not self.restarts.record():
            times = "time" if self.max_restarts == 1 else "times"
            raise TooManyRestarts(
                f"{reason}; already restarted {self.max_restarts} {times} in {self.restart_window_s:.0f} s"
            )
        log.warning("restarting tritonserver: %s", reason)
        self.server.kill()  # a broken stage cannot drain; its in-flight requests already failed
        if not self.stopping.is_set():
            self._start()

    def _on_signal(self, signum, _frame) -> None:
        if self.stopping.is_set():
            log.warning("second %s: killing tritonserver now", signal.Signals(signum).name)
            self.killing.set()
            self.server.kill_all()  # stop() then reaps it and cleans up
        else:
            log.info("%s received: refusing new requests, draining in-flight ones", signal.Signals(signum).name)
            self.stopping.set()


class SupervisorProcess:
    """``python -m serving`` (the supervisor) as a subprocess on free loopback ports: for tests and the soak."""

    def __init__(self, repository: Path, log_dir: Path, *args: str):
        self.ports = {"http_port": free_port(), "grpc_port": free_port(), "metrics_port": free_port()}
        self.http_url = f"http://127.0.0.1:{self.ports['http_port']}"
        self.grpc_url = f"127.0.0.1:{self.ports['grpc_port']}"
        self.supervisor_log = log_dir / "supervisor.log"
        log_dir.mkdir(parents=True, exist_ok=True)
        flags = [f"--{name.replace('_', '-')}={port}" for name, port in self.ports.items()]
        command = [sys.executable, "-m", "serving", "--repository", str(repository), *flags]
        command += ["--log-file", str(log_dir / "tritonserver.log"), "--exit-timeout", "10", *args]
        with open(self.supervisor_log, "ab") as log:
            self.process = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT)

    def wait_serving(self, timeout_s: float = 120.0) -> int:
        """Wait until a probe inference succeeds; returns tritonserver's pid."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerStartError(f"the supervisor exited: see {self.supervisor_log}")
            if probe_inference(self.http_url, timeout_s=10).ok:
                return self.server_pid()
            time.sleep(0.2)
        raise ServerStartError(f"not serving after {timeout_s} s: see {self.supervisor_log}")

    def server_pid(self) -> int | None:
        """tritonserver's pid; None between two servers."""
        children = child_pids(self.process.pid)
        return children[0] if children else None

    def stop(self, timeout_s: float = 60.0) -> int | None:
        """SIGTERM the supervisor; its exit status, or None if it hung and had to be killed."""
        self.process.terminate()
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return None
