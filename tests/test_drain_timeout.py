"""The drain's exit timeout expires: a request that never leaves the pipeline does not keep the server up.

``python -m serving --exit-timeout 3`` gets SIGTERM while the test holds the CPU-activity lock that
preprocessing takes (tests/held_stage.py), so one request stays inside ``yolov8_preprocess``. The drain waits
3 s for it, logs that it timed out, and kills tritonserver (a SIGTERM would have Triton wait out its own exit
timeout, then hang on the held stage); the request fails, and nothing of the server is left. The server
serves tests/models' YOLO11n (conftest's yolo11n_repository): the subject is the drain, not the model.
"""

from __future__ import annotations

import signal
import time

from held_stage import request_held_in_preprocess, wait_until
from tritonclient.utils import InferenceServerException

from serving.processes import is_alive
from serving.supervisor import SupervisorProcess

EXIT_TIMEOUT_S = 3
TIMED_OUT = f"drain timed out after {EXIT_TIMEOUT_S} s, requests still in the pipeline: 1; killing tritonserver"


def test_a_held_request_ends_the_drain_at_the_exit_timeout(yolo11n_repository, sample_images, tmp_path):
    payload = sample_images["bus.jpg"].read_bytes()
    supervised = SupervisorProcess(
        yolo11n_repository, tmp_path, "--probe-interval", "0", "--exit-timeout", str(EXIT_TIMEOUT_S)
    )
    try:
        with request_held_in_preprocess(supervised, payload) as request:
            answered: list[float] = []  # when the held request got its answer
            request.outcome.add_done_callback(lambda _: answered.append(time.monotonic()))
            signalled = time.monotonic()
            supervised.process.send_signal(signal.SIGTERM)
            wait_until(lambda: TIMED_OUT in supervised.supervisor_log.read_text(), "the drain timed out")
            assert time.monotonic() - signalled >= EXIT_TIMEOUT_S  # not before the exit timeout
            status = supervised.process.wait(timeout=60)  # a liveness bound: the lock is still held
            outcome = request.outcome.result(timeout=60)
    finally:
        supervised.stop()
    log = supervised.supervisor_log.read_text()
    assert status == 0, log
    assert log.index(TIMED_OUT) < log.index("stopped; leftover stubs: 0, shared-memory files and folders: 0"), log
    assert isinstance(outcome, InferenceServerException), outcome  # cut off, not completed
    assert answered[0] - signalled >= EXIT_TIMEOUT_S  # held through the drain: answered only when it ended
    assert "Signal (15) received" not in (tmp_path / "tritonserver.log").read_text()  # killed at the drain's end
    assert not [s for s in request.stubs if is_alive(s.pid)] and not is_alive(request.server_pid)
    assert len(request.shm) >= 3 and not [p for p in request.shm if p.exists()]
