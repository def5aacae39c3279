"""The drain's exit timeout expires: a request that never leaves the pipeline does not keep the server up.

``python -m serving --exit-timeout 3`` gets SIGTERM while the test holds the CPU-activity lock that
preprocessing takes (tests/held_stage.py), so one request stays inside ``yolov8_preprocess``. The drain waits
3 s for it, logs that it timed out, and kills tritonserver (a SIGTERM would have Triton wait out its own exit
timeout, then hang on the held stage); the request fails, and nothing of the server is left.
"""

from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor

from held_stage import stages_held, wait_until, waits_for_lock
from own_server import ensemble_outcome
from tritonclient.utils import InferenceServerException

from serving.processes import is_alive, shm_regions, stub_processes
from serving.supervisor import SupervisorProcess

EXIT_TIMEOUT_S = 3
TIMED_OUT = f"drain timed out after {EXIT_TIMEOUT_S} s, requests still in the pipeline: 1; killing tritonserver"


def test_a_held_request_ends_the_drain_at_the_exit_timeout(model_repository, sample_images, tmp_path):
    payload = sample_images["bus.jpg"].read_bytes()
    supervised = SupervisorProcess(
        model_repository, tmp_path, "--probe-interval", "0", "--exit-timeout", str(EXIT_TIMEOUT_S)
    )
    try:
        server_pid = supervised.wait_serving()
        wait_until(lambda: "tritonserver ready in" in supervised.supervisor_log.read_text(), "the start returned")
        stubs = stub_processes(server_pid)
        shm = shm_regions([server_pid, *(s.pid for s in stubs)])
        preprocess = next(s.pid for s in stubs if s.model == "yolov8_preprocess")
        with ThreadPoolExecutor(1) as pool, stages_held(server_pid) as lock:
            held = pool.submit(ensemble_outcome, supervised.grpc_url, payload)
            wait_until(lambda: waits_for_lock(preprocess, lock), "the request in preprocess's execute")
            signalled = time.monotonic()
            supervised.process.send_signal(signal.SIGTERM)
            wait_until(lambda: TIMED_OUT in supervised.supervisor_log.read_text(), "the drain timed out")
            assert time.monotonic() - signalled >= EXIT_TIMEOUT_S  # not before the exit timeout
            assert not held.done()  # held until the end of the drain
            status = supervised.process.wait(timeout=60)  # a liveness bound: the lock is still held
            outcome = held.result(timeout=60)
    finally:
        supervised.stop()
    log = supervised.supervisor_log.read_text()
    assert status == 0, log
    assert log.index(TIMED_OUT) < log.index("stopped; leftover stubs: 0, shared-memory regions: 0"), log
    assert isinstance(outcome, InferenceServerException), outcome  # cut off, not completed
    assert "Signal (15) received" not in (tmp_path / "tritonserver.log").read_text()  # killed at the drain's end
    assert not [s for s in stubs if is_alive(s.pid)] and not is_alive(server_pid)
    assert len(shm) >= 3 and not [p for p in shm if p.exists()]
