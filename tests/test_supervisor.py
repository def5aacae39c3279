"""The supervisor's limits on real tritonservers: it gives up after too many restarts, and a second Ctrl-C kills.

The restart limit runs in this process (``Supervisor.run`` on the main thread, as ``python -m serving``
runs it) with a smaller limit, while a thread ``kill -9``s a ``yolov8_infer`` stub of each new server; the
window's arithmetic (what counts, what no longer does) is unit-tested on a set clock in test_restart_budget.py.
The second Ctrl-C goes to ``python -m serving`` itself, while a request is held inside the pipeline. The servers
serve tests/models' YOLO11n (conftest's yolo11n_repository): the subject is the supervisor, not the model.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

import pytest
from held_stage import request_held_in_preprocess, wait_until
from own_server import options
from tritonclient.utils import InferenceServerException

from serving.probe import probe_inference
from serving.processes import StubProcess, held_shm_files, is_alive, shm_files, stub_processes
from serving.supervisor import Supervisor, SupervisorProcess

DRAINING = "SIGINT received: refusing new requests, draining in-flight ones"


@pytest.fixture(autouse=True)
def signal_handlers_restored():
    """Each test leaves this process's signal handlers as it found them."""
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    assert {sig: signal.getsignal(sig) for sig in handlers} == handlers


def test_python_m_serving_gives_up_after_5_restarts_in_10_minutes(tmp_path, monkeypatch):
    """The limits of the Supervisor that ``python -m serving`` builds (its run() is not started here)."""
    from serving import __main__ as serving_main

    built: list[Supervisor] = []

    class Built(Supervisor):
        def run(self) -> int:
            built.append(self)
            return 0

    monkeypatch.setattr(serving_main, "Supervisor", Built)
    monkeypatch.setattr(serving_main, "ADMIN_KEY_FILE", tmp_path / "admin_key")
    assert serving_main.main(["--repository", str(tmp_path)]) == 0
    assert (built[0].max_restarts, built[0].restart_window_s) == (5, 600.0)


class StageKiller(threading.Thread):
    """``kill -9`` a yolov8_infer stub of each new server the supervisor starts, ``kills`` times, then stop it.

    If the supervisor still runs 60 s after the last kill (or 120 s without a new server), it asks it to
    stop, as its signal handler would.
    """

    def __init__(self, supervisor: Supervisor, kills: int):
        super().__init__(daemon=True)
        self.supervisor, self.kills = supervisor, kills
        self.killed: list[StubProcess] = []
        self.servers: list[int] = []
        self.returned = threading.Event()  # set by the test once run() returned

    def ready_stub(self) -> StubProcess | None:
        """A yolov8_infer stub of the current server once it is ready and its stubs are recorded."""
        server = self.supervisor.server
        process = server.process
        if process is None or not server.started or process.pid in self.servers or process.poll() is not None:
            return None
        children = {stub.pid for stub in stub_processes(process.pid)}
        stubs = [s for s in server.stubs if s.model == "yolov8_infer" and s.pid in children]
        return stubs[0] if stubs and server.is_ready() else None

    def run(self) -> None:
        while len(self.killed) < self.kills:
            deadline = time.monotonic() + 120
            while (stub := self.ready_stub()) is None:
                if self.returned.wait(0.05) or time.monotonic() > deadline:
                    return self.supervisor.stopping.set()
            self.servers.append(self.supervisor.server.process.pid)
            os.kill(stub.pid, signal.SIGKILL)
            self.killed.append(stub)
        deadline = time.monotonic() + 60
        while not self.returned.wait(0.05):
            if time.monotonic() > deadline or self.ready_stub() is not None:  # restarted once more: not given up
                self.servers.append(self.supervisor.server.process.pid)
                return self.supervisor.stopping.set()


def supervise(repository, tmp_path, kills: int, **limits) -> tuple[int, StageKiller]:
    """Run a Supervisor (probes off) with ``limits`` under a StageKiller; (exit status, the killer)."""
    supervisor = Supervisor(options(repository), tmp_path / "tritonserver.log", probe_interval_s=0, **limits)
    killer = StageKiller(supervisor, kills)
    killer.start()
    try:
        status = supervisor.run()
    finally:
        killer.returned.set()
        killer.join(timeout=30)
    stubs, shm = supervisor.server.leftovers()
    assert not stubs and not shm
    return status, killer


def restart_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if "restarting tritonserver: stage yolov8_infer: " in line]


def test_gives_up_after_max_restarts_within_the_window(yolo11n_repository, tmp_path, caplog):
    """The first kill is restarted (the limit of one allows it), the second gives up.

    Every count and window of the limit is unit-tested on an injected clock in test_restart_budget.py.
    """
    with caplog.at_level(logging.INFO, logger="supervisor"):
        status, killer = supervise(yolo11n_repository, tmp_path, kills=2, max_restarts=1, restart_window_s=60.0)
    assert status == 1
    assert len(killer.killed) == 2 and len(set(killer.servers)) == 2, killer.servers  # no third server
    assert len(restart_lines(caplog.text)) == 1, caplog.text
    last = killer.killed[-1]
    reason = f"stage yolov8_infer: its Python stub {last.instance} (pid {last.pid}) is gone"
    assert f"giving up: {reason}; already restarted 1 time in 60 s" in caplog.text, caplog.text
    assert "stopping tritonserver (draining" not in caplog.text.split("giving up: ")[1]  # killed: it cannot drain


def test_second_ctrl_c_kills_at_once(yolo11n_repository, sample_images, tmp_path):
    """The first Ctrl-C drains, which here cannot end before the 600 s exit timeout; the second one kills.

    The test holds the CPU-activity lock that preprocessing takes (python_backends/triton_helpers/cpu_activity.py),
    so a request stays inside yolov8_preprocess and the drain waits for it.
    """
    payload = sample_images["bus.jpg"].read_bytes()
    supervised = SupervisorProcess(yolo11n_repository, tmp_path, "--probe-interval", "0", "--exit-timeout", "600")
    try:
        with request_held_in_preprocess(supervised, payload) as request:
            supervised.process.send_signal(signal.SIGINT)
            wait_until(lambda: DRAINING in supervised.supervisor_log.read_text(), "the first SIGINT logged")
            assert supervised.process.poll() is None and not request.outcome.done()  # draining, the request held
            supervised.process.send_signal(signal.SIGINT)
            status = supervised.process.wait(timeout=60)  # a liveness bound, 10x shorter than the drain
            outcome = request.outcome.result(timeout=60)
    finally:
        supervised.stop()
    assert status == 0
    assert "second SIGINT: killing tritonserver now" in supervised.supervisor_log.read_text()
    assert isinstance(outcome, InferenceServerException), outcome  # cut off, not completed
    assert not [s for s in request.stubs if is_alive(s.pid)] and not is_alive(request.server_pid)
    assert len(request.shm) >= 3 and not [p for p in request.shm if p.exists()]


def test_second_ctrl_c_while_the_server_loads_is_a_clean_stop(yolo11n_repository, tmp_path):
    """Both Ctrl-Cs arrive before tritonserver is ready: the start fails because the supervisor killed it, which
    is the stop that was asked for (status 0), not a server that cannot start ("giving up", status 1). A stub's
    shared memory that tritonserver had made but not yet mapped when it was killed is removed too."""
    before = shm_files()
    supervised = SupervisorProcess(yolo11n_repository, tmp_path, "--probe-interval", "0")
    try:
        wait_until(lambda: supervised.server_pid() is not None, "tritonserver started by the supervisor", 60)
        assert not probe_inference(supervised.http_url, timeout_s=1).ok  # still loading its models
        supervised.process.send_signal(signal.SIGINT)
        wait_until(lambda: DRAINING in supervised.supervisor_log.read_text(), "the first SIGINT logged")
        supervised.process.send_signal(signal.SIGINT)
        status = supervised.process.wait(timeout=60)
    finally:
        supervised.stop()
    log = supervised.supervisor_log.read_text()
    assert status == 0 and "stopped while starting" in log and "giving up" not in log
    assert (shm_files() - before) - held_shm_files() == set()
