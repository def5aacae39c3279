"""Client-side balancing: several endpoints, or a DNS name, balanced per request with gRPC's round_robin."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request

import pytest
from own_server import options, started

from client.api import YoloTritonClient, grpc_target
from client.async_api import AsyncYoloTritonClient
from client.cli import main as cli_main
from serving.processes import free_port
from serving.server import TritonServer


@pytest.fixture(scope="module")
def second(model_repository, tmp_path_factory):
    """A second tritonserver beside the session's ``triton``."""
    with started(options(model_repository), tmp_path_factory.mktemp("second") / "tritonserver.log") as server:
        yield server


def successes(server: TritonServer) -> int:
    with urllib.request.urlopen(f"{server.http_url}/v2/models/yolov8/stats", timeout=10) as reply:
        return json.load(reply)["model_stats"][0]["inference_stats"]["success"]["count"]


def test_targets():
    assert grpc_target("127.0.0.1:8001") == ("127.0.0.1:8001", None)
    target, args = grpc_target("localhost:8001, 127.0.0.2:9001")
    assert target == "ipv4:127.0.0.1:8001,127.0.0.2:9001" and ("grpc.lb_policy_name", "round_robin") in args
    assert grpc_target("dns:///yolov8-headless:8001")[0] == "dns:///yolov8-headless:8001"
    with pytest.raises(ValueError, match="host:port"):
        grpc_target("a:1,b")


def test_a_list_of_endpoints_is_balanced_per_request(triton, second, sample_images):
    url = f"{triton.grpc_url},{second.grpc_url}"
    before = successes(triton), successes(second)
    with YoloTritonClient(url) as client:
        for _ in range(8):
            assert client.detect(sample_images["bus.jpg"]).detections
    assert successes(triton) - before[0] >= 3 and successes(second) - before[1] >= 3
    assert cli_main(["detect", "--url", url, "--quiet", str(sample_images["zidane.jpg"])]) == 0

    async def detect_many():
        async with AsyncYoloTritonClient(url) as client:
            return await client.detect_many([sample_images["bus.jpg"]] * 4)

    assert all(result.detections for result in asyncio.run(detect_many()))


def test_dns_name_and_an_endpoint_that_is_down(triton, sample_images):
    for url in (f"dns:///localhost:{triton.options.grpc_port}", f"127.0.0.1:{free_port()},{triton.grpc_url}"):
        with YoloTritonClient(url, retries=0) as client:
            for _ in range(3):
                assert client.detect(sample_images["bus.jpg"]).detections


def test_a_retry_after_unavailable_lands_on_another_server(triton, second, sample_images):
    url = f"{second.grpc_url},{triton.grpc_url}"
    # once its gate is closed, second refuses every request, so a success after an UNAVAILABLE came from the other
    # server; retries=3, so that a retry landing on second again would show as a third attempt
    with YoloTritonClient(url, retries=3, backoff_s=0.01) as client:
        # round robin picks among the connections that are up, so both must be: each server has answered one
        before, deadline = (successes(triton), successes(second)), time.monotonic() + 60
        while successes(triton) == before[0] or successes(second) == before[1]:
            assert time.monotonic() < deadline, "the client never reached both servers"
            assert client.detect(sample_images["bus.jpg"]).detections
        assert client.class_names  # read once, now: from here on each call is one inference request
        second.gate.close()  # second now answers UNAVAILABLE "shutting down" while it stays connected and ready
        attempts = []
        for _ in range(6):
            assert client.detect(sample_images["bus.jpg"]).detections
            attempts.append(client.last_attempts)
    # round robin alternates: each request after the first starts on second (the first ended on the other one),
    # is refused, and succeeds on the other server at its first retry; the first may start on either
    assert attempts[0] in (1, 2) and attempts[1:] == [2] * 5, attempts
