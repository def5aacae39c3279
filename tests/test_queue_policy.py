"""The stages' queue policies (README, "Overload"): the documented limits, a timeout, and bursts over a limit.

The documented values are read from the shared server; the behaviours run on tritonservers of their own
whose repository copy has a short limit (one for the timeout, one for both bursts). A stage is
held busy for real: preprocess (like infer) takes the server's CPU-activity lock
(``python_backends/triton_helpers/cpu_activity.py``) in ``execute``, so while the test holds that lock
exclusively (``held_stage``), the preprocess stub waits inside ``execute`` and later requests wait in its queue.
Postprocess takes no lock; there a batch of 32 heads with 8400 candidates each keeps it busy.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from held_stage import pending_requests, stages_held, wait_until, waits_for_lock
from own_server import edited_repository, ensemble_outcome, options, started
from tritonclient.utils import InferenceServerException

from serving.processes import cpu_seconds
from serving.server import TritonServer

UNAVAILABLE = "StatusCode.UNAVAILABLE"
QUEUE_FULL = "Exceeds maximum queue size"
TIMED_OUT = "Request timeout expired"
SHORT_QUEUE = 2


def infer(url: str, model: str, inputs: list[grpcclient.InferInput]):
    """One request on its own connection: the reply, or the error."""
    client = grpcclient.InferenceServerClient(url)
    try:
        return client.infer(model, inputs, client_timeout=120)
    except InferenceServerException as exc:
        return exc
    finally:
        client.close()


def head_inputs(head: np.ndarray) -> list[grpcclient.InferInput]:
    """yolov8_postprocess inputs for heads float32 (B, 6, 8400), each letterboxed from a 640x640 image."""
    letterbox = np.tile(np.array([1, 0, 0, 640, 640], np.float32), (len(head), 1))
    tensors = [grpcclient.InferInput("output0", list(head.shape), "FP32")]
    tensors.append(grpcclient.InferInput("LETTERBOX", list(letterbox.shape), "FP32"))
    tensors[0].set_data_from_numpy(head)
    tensors[1].set_data_from_numpy(letterbox)
    return tensors


def busy_heads(batch: int = 32) -> np.ndarray:
    """float32 (batch, 6, 8400): 8400 small boxes with scores above every threshold; NMS keeps 300 per image."""
    rng = np.random.default_rng(0)
    head = np.empty((batch, 6, 8400), np.float32)
    head[:, :2] = rng.uniform(0, 640, (batch, 2, 8400))
    head[:, 2:4] = rng.uniform(1, 4, (batch, 2, 8400))
    head[:, 4:] = rng.uniform(0.5, 1, (batch, 2, 8400))
    return head


def stub_pid(server: TritonServer, model: str) -> int:
    (pid,) = [stub.pid for stub in server.stubs if stub.model == model]
    return pid


@pytest.fixture(scope="module")
def short_queues(model_repository, tmp_path_factory):
    """Preprocess and postprocess admit SHORT_QUEUE waiting requests (64 in the project)."""
    edits = [("max_queue_size: 64", f"max_queue_size: {SHORT_QUEUE}")]
    folder = tmp_path_factory.mktemp("short_queues")
    repository = edited_repository(
        model_repository, folder / "repo", {"yolov8_preprocess": edits, "yolov8_postprocess": edits}
    )
    with started(options(repository), folder / "tritonserver.log") as server:
        yield server


def test_stage_queue_policies_are_the_documented_ones(grpc_client):
    """README's table: N waiting requests at most, and a request queued T = 10 s is rejected."""
    limits = {"yolov8_preprocess": 64, "yolov8_infer": 32, "yolov8_postprocess": 64}
    for stage, max_queue_size in limits.items():
        batching = grpc_client.get_model_config(stage, as_json=True)["config"]["dynamic_batching"]
        policy = batching["default_queue_policy"]
        assert policy.get("timeout_action", "REJECT") == "REJECT", stage  # JSON leaves out the enum's default
        assert int(policy["default_timeout_microseconds"]) == 10_000_000, stage
        assert int(policy["max_queue_size"]) == max_queue_size, stage


def test_request_queued_past_the_timeout_is_refused(yolo11n_repository, sample_images, tmp_path):
    """On tests/models' YOLO11n, whose bus.jpg has 42 boxes: the subject is preprocess's queue."""
    timeout = [("default_timeout_microseconds: 10000000", "default_timeout_microseconds: 500000")]  # 0.5 s
    repository = edited_repository(yolo11n_repository, tmp_path / "repo", {"yolov8_preprocess": timeout})
    payload = sample_images["bus.jpg"].read_bytes()
    with started(options(repository), tmp_path / "tritonserver.log") as server:
        preprocess, metrics_port = stub_pid(server, "yolov8_preprocess"), server.options.metrics_port
        with ThreadPoolExecutor(2) as pool, stages_held(server.process.pid) as lock:
            running = pool.submit(ensemble_outcome, server.grpc_url, payload)
            wait_until(lambda: waits_for_lock(preprocess, lock), "the first request in preprocess's execute")
            sent = time.monotonic()
            queued = pool.submit(ensemble_outcome, server.grpc_url, payload)
            wait_until(lambda: pending_requests(metrics_port, "yolov8_preprocess") == 1, "the second one queued")
            wait_until(queued.done, "the queued request refused while the stage is still held")
            waited_s = time.monotonic() - sent
            assert not running.done() and pending_requests(metrics_port, "yolov8_preprocess") == 0
        after = ensemble_outcome(server.grpc_url, payload)
    assert waited_s >= 0.5, waited_s  # not before its 0.5 s in the queue
    assert running.result() == 42, running.result()  # bus.jpg: executed, so never subject to the queue timeout
    refused = queued.result()
    assert isinstance(refused, InferenceServerException), refused
    assert refused.status() == UNAVAILABLE and TIMED_OUT in refused.message(), refused
    assert refused.message().startswith("in ensemble 'yolov8', "), refused
    assert after == 42, after


def rejected_at_once(burst: list[Future], expected: int) -> set[Future]:
    """Wait until ``expected`` requests of ``burst`` are answered; the answered ones."""
    wait_until(lambda: sum(f.done() for f in burst) >= expected, f"{expected} answers")
    return {f for f in burst if f.done()}


def assert_queue_full(errors: list) -> None:
    for error in errors:
        assert isinstance(error, InferenceServerException), error
        assert error.status() == UNAVAILABLE and QUEUE_FULL in error.message(), error


def test_burst_over_the_preprocess_queue_limit_is_rejected_at_once(short_queues, sample_images):
    payload = sample_images["bus.jpg"].read_bytes()
    url, preprocess = short_queues.grpc_url, stub_pid(short_queues, "yolov8_preprocess")
    with ThreadPoolExecutor(8) as pool, stages_held(short_queues.process.pid) as lock:
        running = pool.submit(ensemble_outcome, url, payload)
        wait_until(lambda: waits_for_lock(preprocess, lock), "the first request in preprocess's execute")
        burst = [pool.submit(ensemble_outcome, url, payload) for _ in range(6)]
        answered = rejected_at_once(burst, 6 - SHORT_QUEUE)
        assert not running.done()  # the stage is still held: these answers did not wait for it
    assert_queue_full([f.result() for f in answered])
    admitted = [f.result() for f in burst if f not in answered]
    assert [running.result(), *admitted] == [4] * (1 + SHORT_QUEUE), (running.result(), admitted)


def test_burst_over_the_postprocess_queue_limit_is_rejected_at_once(short_queues):
    url, postprocess = short_queues.grpc_url, stub_pid(short_queues, "yolov8_postprocess")
    idle = np.zeros((1, 6, 8400), np.float32)  # no candidate: nothing to suppress
    with ThreadPoolExecutor(9) as pool:
        cpu_before = cpu_seconds(postprocess)
        running = pool.submit(infer, url, "yolov8_postprocess", head_inputs(busy_heads()))
        wait_until(lambda: cpu_seconds(postprocess) > cpu_before + 0.1, "the busy batch in postprocess's execute")
        burst = [pool.submit(infer, url, "yolov8_postprocess", head_inputs(idle)) for _ in range(8)]
        answered = rejected_at_once(burst, 8 - SHORT_QUEUE)
        assert not running.done()  # 32 images of 300-box NMS: the answers came while it ran
    assert_queue_full([f.result() for f in answered])
    busy = running.result()
    assert not isinstance(busy, Exception), busy
    assert busy.as_numpy("num_dets").ravel().tolist() == [300] * 32
    admitted = [f.result() for f in burst if f not in answered]
    assert [reply.as_numpy("num_dets").ravel().tolist() for reply in admitted] == [[0]] * SHORT_QUEUE, admitted
