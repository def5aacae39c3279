"""``python -m cluster`` gives up on a replica that keeps exiting: status 1, a message naming it, nothing left.

One real replica (``--replicas=1``) with a limit of one restart (``--max-restarts=1``), behind real nginx and
HAProxy, with real Prometheus: its process group is killed once (it is started again), then once more (the
cluster stops). The window's arithmetic is unit-tested in test_restart_budget.py.
"""

from __future__ import annotations

import os
import signal

from held_stage import wait_until

from benchmarks.cluster_load import ClusterProcess
from cluster.haproxy_runtime import balancer_stats
from cluster.local import group_pids
from serving.processes import port_in_use


def test_a_replica_that_exits_more_than_its_limit_stops_the_cluster(yolo11n_repository, tmp_path):
    cluster = ClusterProcess(yolo11n_repository, tmp_path, "--replicas=1", "--max-restarts=1")
    try:
        cluster.wait_serving()
        first = cluster.replicas()[0]["pgid"]
        os.killpg(first, signal.SIGKILL)
        wait_until(lambda: cluster.replicas()[0]["pgid"] != first, "replica-0 started again", 60)
        second = cluster.replicas()[0]["pgid"]
        assert cluster.process.poll() is None  # one restart is within the limit
        os.killpg(second, signal.SIGKILL)
        status = cluster.process.wait(60)  # a liveness bound: it stops the replicas and helpers first
    finally:
        cluster.stop()
    log = cluster.log.read_text()
    assert status == 1, log
    assert "replica-0 exited with -9: cleaning up, starting it again" in log, log
    replica_logs = tmp_path.resolve() / "replica-0"
    assert f"cannot run the cluster: replica-0 exited 2 times in 600 s, last with -9: see {replica_logs}" in log, log
    assert log.count("starting it again") == 1, log
    assert not group_pids(first) and not group_pids(second)
    assert balancer_stats(tmp_path) == []  # HAProxy is gone
    assert not port_in_use(cluster.grpc_port) and not port_in_use(cluster.prometheus_port)  # nginx, Prometheus
