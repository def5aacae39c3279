"""Overload and image limits on one server with edited limits; a killed stage, and shutdown under load, each on a
tritonserver of its own."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import tritonclient.grpc as grpcclient
from held_stage import holds_lock, lock_path, pending_requests, wait_until
from matching import CPU_PARITY, mismatches
from own_server import edited_repository, ensemble_outcome, image_input, options, started, stub_count
from tritonclient.utils import InferenceServerException

from client.stage_stats import snapshot
from python_backends.triton_helpers.cpu_activity import activity_path
from serving.processes import is_alive, shm_regions, stub_processes
from serving.server import ServerStartError, TritonServer
from serving.supervisor import SupervisorProcess
from tools.soak import large_batches

UNAVAILABLE = "StatusCode.UNAVAILABLE"
DEADLINE = "StatusCode.DEADLINE_EXCEEDED"
INTERNAL = "StatusCode.INTERNAL"


def detections(reply, image: int) -> list[dict]:
    """The detections of batch element ``image``: [{"box": [x1, y1, x2, y2], "score": s, "class_id": c}]."""
    count = int(reply.as_numpy("num_dets")[image, 0])
    rows = zip(*(reply.as_numpy(name)[image, :count] for name in ("det_boxes", "det_scores", "det_classes")))
    return [{"box": box.tolist(), "score": float(score), "class_id": int(c)} for box, score, c in rows]


def send_timed(url: str, payload: bytes, batch: int, timeout_s: float = 120.0):
    """One request on its own connection: (each image's detections, or the error; time.monotonic() of the answer)."""
    client = grpcclient.InferenceServerClient(url)
    try:
        reply = client.infer("yolov8", [image_input(payload, batch)], client_timeout=timeout_s)
        outcome = [detections(reply, image) for image in range(batch)]
    except InferenceServerException as exc:
        outcome = exc
    finally:
        client.close()
    return outcome, time.monotonic()


def wait_for(condition, timeout_s: float) -> bool:
    """Poll ``condition`` until it holds (True) or ``timeout_s`` passes (False)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture(scope="module")
def limited(model_repository, tmp_path_factory):
    """A server whose yolov8_infer queues 1 request (32 in the project) and whose preprocess admits images of up to
    100000 bytes and 500000 pixels (33554432 and 40000000)."""
    folder = tmp_path_factory.mktemp("limited")
    edits = {
        "yolov8_infer": [("max_queue_size: 32", "max_queue_size: 1")],
        "yolov8_preprocess": [('"40000000"', '"500000"'), ('"33554432"', '"100000"')],
    }
    with started(options(edited_repository(model_repository, folder / "repo", edits)), folder / "server.log") as server:
        yield server


def test_burst_over_the_queue_limit_is_rejected_not_timed_out(limited, sample_images):
    payload = sample_images["grace_hopper.jpg"].read_bytes()  # 512x600, 61 kB: within the image limits
    with ThreadPoolExecutor(16) as pool:
        outcomes = list(pool.map(lambda _: ensemble_outcome(limited.grpc_url, payload), range(16)))
    after = ensemble_outcome(limited.grpc_url, payload)
    errors = [o for o in outcomes if isinstance(o, Exception)]
    assert errors, "16 requests at once against a queue of 1: some must be rejected"
    for error in errors:
        assert error.status() == UNAVAILABLE and "Exceeds maximum queue size" in error.message(), error
    counts = {o for o in outcomes if isinstance(o, int)}
    assert len(errors) < len(outcomes) and counts == {3}, outcomes  # grace_hopper.jpg: Ultralytics' 3 boxes
    assert after == 3


def test_supervisor_restarts_a_killed_stage(model_repository, sample_images, tmp_path):
    payload = sample_images["bus.jpg"].read_bytes()
    supervised = SupervisorProcess(model_repository, tmp_path, "--probe-interval", "0")  # no request but the test's
    try:
        first_pid = supervised.wait_serving()
        first_stubs = stub_processes(first_pid)
        shm = shm_regions([first_pid, *(s.pid for s in first_stubs)])
        infer_stubs, lock = [s for s in first_stubs if s.model == "yolov8_infer"], lock_path(first_pid)
        stats = grpcclient.InferenceServerClient(supervised.grpc_url)
        preprocessed = snapshot(stats, ("yolov8_preprocess",))["yolov8_preprocess"].inferences

        def in_infer() -> bool:
            """Preprocess passed the 16 images on, none waits in infer's queue, and an infer instance runs."""
            done = snapshot(stats, ("yolov8_preprocess",))["yolov8_preprocess"].inferences >= preprocessed + 16
            queued = pending_requests(supervised.ports["metrics_port"], "yolov8_infer")
            return done and queued == 0 and any(holds_lock(s.pid, lock) for s in infer_stubs)

        with ThreadPoolExecutor(1) as pool:
            in_flight = pool.submit(ensemble_outcome, supervised.grpc_url, payload, 16)  # about 3 s in yolov8_infer
            wait_until(in_infer, "the batch of 16 in yolov8_infer's execute")
            stats.close()
            killed = [s for s in infer_stubs if holds_lock(s.pid, lock)]  # the instance running it
            # Paused, the supervisor cannot kill the server before Triton notices the dead stub (it polls about
            # once a second): running, it often wins that race and the request gets UNAVAILABLE "Socket closed".
            supervised.process.send_signal(signal.SIGSTOP)
            try:
                assert not in_flight.done()
                for stub in killed:
                    os.kill(stub.pid, signal.SIGKILL)
                outcome = in_flight.result(timeout=150)
            finally:
                supervised.process.send_signal(signal.SIGCONT)
        assert isinstance(outcome, InferenceServerException) and outcome.status() != DEADLINE, outcome
        # the request was in the killed stage: Triton's own error names the dead stub of the instance running it
        (busy,) = killed
        assert outcome.status() == INTERNAL, outcome
        assert f"Stub process '{busy.instance}' is not healthy" in outcome.message(), outcome
        second_pid = supervised.wait_serving()
        assert second_pid != first_pid
        assert ensemble_outcome(supervised.grpc_url, payload) >= 1
        second_stubs = stub_processes(second_pid)
        shm |= shm_regions([second_pid, *(s.pid for s in second_stubs)])
    finally:
        status = supervised.stop()
    log = supervised.supervisor_log.read_text()
    reasons = [f"stage yolov8_infer: its Python stub {s.instance} (pid {s.pid}) is gone" for s in killed]
    assert any(f"restarting tritonserver: {reason}" in log for reason in reasons), log
    assert status == 0
    assert not [s for s in first_stubs + second_stubs if is_alive(s.pid)]
    assert len(shm) >= 3 and not [p for p in shm if p.exists()]


def test_shutdown_under_load_drains_and_leaves_nothing(model_repository, sample_images, reference, tmp_path):
    """``stop`` (what the supervisor does on SIGTERM): in-flight requests complete, new ones are refused."""
    payload = sample_images["zidane.jpg"].read_bytes()
    server = TritonServer(options(model_repository, exit_timeout_s=30), tmp_path / "tritonserver.log").start()
    stubs_expected = stub_count(server.grpc_url)
    lock = activity_path(server.process.pid, server.gate.directory)
    assert lock.exists()  # the stages' CPU-activity lock, removed below
    outcomes, stop_load = [], threading.Event()

    def load():
        while not stop_load.is_set():
            outcomes.append(ensemble_outcome(server.grpc_url, payload, timeout_s=60))

    def timed_stop():
        began = time.monotonic()
        return server.stop(), began, time.monotonic()

    clients = [threading.Thread(target=load) for _ in range(4)]
    try:
        for client in clients:
            client.start()
        stats = grpcclient.InferenceServerClient(server.grpc_url)
        big_batches_before = large_batches(stats, 8)
        with ThreadPoolExecutor(2) as pool:
            in_flight = pool.submit(send_timed, server.grpc_url, payload, 8)  # about 2 s of work
            # the load sends single images (at most 5 preprocessed together): a batch of 8 or more is this request
            assert wait_for(lambda: large_batches(stats, 8) > big_batches_before, 60), "never reached the server"
            stats.close()
            stopping = pool.submit(timed_stop)
            assert wait_for(server.gate.is_closed, 10), "stop did not close the gate"
            refused, _ = send_timed(server.grpc_url, payload, 1, timeout_s=60)
            drained, answered_at = in_flight.result(timeout=120)
            status, stop_began, stop_ended = stopping.result(timeout=120)
        stop_load.set()
        for client in clients:
            client.join(timeout=120)
        assert not any(client.is_alive() for client in clients), "a client hung"
    finally:
        stop_load.set()
        server.stop()
    # in the pipeline before the stop began, answered after it: drained, with every image's own detections
    assert answered_at > stop_began, "the request was answered before the stop began"
    assert not isinstance(drained, Exception), drained
    want = reference["results"]["conf=0.25,iou=0.7"]["zidane.jpg"]["detections"]
    assert len(drained) == 8 and all(not mismatches(found, want, **CPU_PARITY) for found in drained), drained
    assert isinstance(refused, InferenceServerException) and refused.status() == UNAVAILABLE, refused
    assert "server is shutting down" in refused.message(), refused
    # the drain ended because the pipeline was empty, not at the exit timeout
    assert stop_ended - stop_began < server.options.exit_timeout_s
    errors = [o for o in outcomes if isinstance(o, Exception)]
    # refused by the drain or by Triton while it stops (UNAVAILABLE), after it unloaded the models (NOT_FOUND),
    # or cut by its gRPC service closing (CANCELLED): answers all, none a timeout
    closing = (UNAVAILABLE, "StatusCode.CANCELLED")
    unexpected = [o for o in errors if o.status() not in closing and "has no available versions" not in o.message()]
    assert not unexpected, [str(o) for o in unexpected]
    assert status == 0
    stubs, shm = server.leftovers()
    assert len(server.stubs) == stubs_expected and len(server.shm) >= 3 and not stubs and not shm
    assert not lock.exists()


def test_a_server_that_dies_while_loading_leaves_no_stub_or_shared_memory(model_repository, tmp_path):
    """tritonserver killed while its models load (2.51 crashed there on a failed warm-up): ``start`` says so,
    and the stubs it had started are gone with their shared memory, not left to notice their parent's death, and
    its folders in /tmp with them."""
    repo = tmp_path / "repo"
    shutil.copytree(model_repository, repo)
    model = repo / "yolov8_postprocess" / "1" / "model.py"
    model.write_text("import time\n\ntime.sleep(300)  # a load that never ends\n" + model.read_text())
    server = TritonServer(options(repo), tmp_path / "tritonserver.log")
    with ThreadPoolExecutor(1) as pool:
        starting = pool.submit(server.start, 120)
        assert wait_for(lambda: server.process is not None and len(stub_processes(server.process.pid)) >= 2, 60)
        stubs = stub_processes(server.process.pid)
        shm = shm_regions([server.process.pid, *(stub.pid for stub in stubs)])
        # start, which looks for stubs every 0.25 s while it waits, has seen these
        assert wait_for(lambda: {s.pid for s in stubs} <= set(server.loading_stubs) and shm <= server.shm, 60)
        folders = [server.gate.directory, server.python_env]  # the Python backend's: Triton removes it at a clean exit
        assert all(folder is not None and folder.is_dir() for folder in folders), folders
        os.kill(server.process.pid, signal.SIGKILL)
        with pytest.raises(ServerStartError, match="exited with -9"):
            starting.result(timeout=60)
    assert len(shm) >= 2 and not [s for s in stubs if is_alive(s.pid)] and not [p for p in shm if p.exists()]
    assert not [folder for folder in folders if folder.exists()]


def test_image_limits_come_from_the_config(limited, sample_images):
    too_many_bytes = ensemble_outcome(limited.grpc_url, sample_images["bus.jpg"].read_bytes())  # 137 kB
    too_many_pixels = ensemble_outcome(limited.grpc_url, sample_images["zidane.jpg"].read_bytes())  # 1280x720
    small = ensemble_outcome(limited.grpc_url, sample_images["grace_hopper.jpg"].read_bytes())  # 512x600, 61 kB
    assert "the limit is 100000" in too_many_bytes.message(), too_many_bytes
    assert "declares 1280x720 = 921600 pixels, the limit is 500000" in too_many_pixels.message(), too_many_pixels
    assert isinstance(small, int), small
