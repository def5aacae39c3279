"""The load harness of tests/test_cluster.py and benchmarks/cluster.py counts every failed request as lost."""

from __future__ import annotations

import time

from benchmarks.cluster_load import Load
from client.api import DetectionResult


def test_a_request_that_raises_is_recorded_as_lost(tmp_path):
    """A failure that is not a gRPC status (here the image file is missing) is an outcome, and the thread goes on."""
    load = Load("127.0.0.1:1", tmp_path / "missing.jpg", DetectionResult("bus.jpg", 810, 1080), clients=2).start()
    deadline = time.monotonic() + 30
    while len({o.client for o in list(load.outcomes) if o.error}) < 2 or len(load.outcomes) < 6:
        assert time.monotonic() < deadline, f"the failures are not recorded: {load.outcomes}"
        time.sleep(0.01)
    outcomes = load.stop(timeout_s=30)
    assert {o.error for o in outcomes} == {"FileNotFoundError"}
    assert not any(o.correct for o in outcomes)
