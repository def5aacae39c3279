"""The supervisor's probe finds a hung stage and restarts the server; the new server serves.

A stage that hangs (here: preprocess waits on the stages' CPU-activity lock, which the test holds,
tests/held_stage.py) leaves every process alive, so only the probe inference notices: it runs every second,
may take 1 s here, and two failures in a row restart the server. Every supervisor probe of this test runs while
the stage is held: the test stops the supervisor once the new server has answered its own probe.
``Supervisor.run`` runs in this process, on the main thread as in ``python -m serving``; a thread holds the
stage and watches. The server serves tests/models' YOLO11n: the subject is the supervisor, not the model.
"""

from __future__ import annotations

import logging
import signal
import threading

import pytest
from held_stage import stages_held, wait_until, waits_for_lock
from own_server import options

from serving.probe import probe_inference
from serving.processes import StubProcess, is_alive
from serving.supervisor import Supervisor


@pytest.fixture(autouse=True)
def signal_handlers_restored():
    """Each test leaves this process's signal handlers as it found them."""
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    assert {sig: signal.getsignal(sig) for sig in handlers} == handlers


class StageHanger(threading.Thread):
    """Hold the first server's stages until the supervisor has started another one; then probe that one.

    Records the first server's pid and stubs, whether its probe waited inside preprocess, and the new
    server's probe result; then stops the supervisor, as its signal handler would.
    """

    def __init__(self, supervisor: Supervisor):
        super().__init__(daemon=True)
        self.supervisor = supervisor
        self.first_pid: int | None = None
        self.first_stubs: list[StubProcess] = []
        self.probe_held_in_preprocess = False
        self.served_again = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            server = self.supervisor.server
            wait_until(lambda: server.process is not None and server.started, "ready", 120)
            self.first_pid, self.first_stubs = server.process.pid, list(server.stubs)
            preprocess = next(s.pid for s in self.first_stubs if s.model == "yolov8_preprocess")
            with stages_held(self.first_pid) as lock:
                wait_until(lambda: waits_for_lock(preprocess, lock), "a probe inside preprocess's execute")
                self.probe_held_in_preprocess = True
                wait_until(lambda: server.process.pid != self.first_pid, "a new server", 60)
            wait_until(lambda: server.started, "the new server ready", 120)
            self.served_again = probe_inference(server.http_url, timeout_s=60)
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            self.supervisor.stopping.set()


def test_a_hung_stage_is_found_by_the_probe_and_the_server_restarted(yolo11n_repository, tmp_path, caplog):
    supervisor = Supervisor(
        options(yolo11n_repository),
        tmp_path / "tritonserver.log",
        probe_interval_s=1.0,
        probe_failures=2,
        probe_timeout_s=1.0,
    )
    hanger = StageHanger(supervisor)
    hanger.start()
    try:
        with caplog.at_level(logging.INFO, logger="supervisor"):
            status = supervisor.run()
    finally:
        supervisor.stopping.set()
        hanger.join(timeout=120)
    assert hanger.error is None, hanger.error
    assert hanger.probe_held_in_preprocess
    log = caplog.text
    failed = [line for line in log.splitlines() if "probe inference failed" in line]
    assert len(failed) == 2 and "(1 in a row)" in failed[0] and "(2 in a row)" in failed[1], log
    restarts = [line for line in log.splitlines() if "restarting tritonserver: " in line]
    assert len(restarts) == 1 and "2 probe inferences failed, last: " in restarts[0], log
    assert "timed out" in restarts[0], restarts  # hung, not refused or answered with an error
    assert hanger.served_again is not None and hanger.served_again.ok, hanger.served_again
    assert status == 0
    assert not is_alive(hanger.first_pid) and not [s for s in hanger.first_stubs if is_alive(s.pid)]
    stubs, shm = supervisor.server.leftovers()
    assert not stubs and not shm
