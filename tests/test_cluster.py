"""`make cluster` on free loopback ports: two real replicas, real nginx and HAProxy, real Prometheus.

The replicas serve tests/models' YOLO11n (conftest's yolo11n_repository): the subject is the cluster, and its
load runs at a tenth of the default model's CPU.

One cluster serves the whole module; the last test stops it with Ctrl-C (SIGINT) and checks that
nothing is left. Timings are only "doesn't hang" bounds; the numbers are in benchmarks/cluster.py.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import tritonclient.grpc as grpcclient
from held_stage import stages_held, wait_until, waits_for_lock
from own_server import image_input
from tritonclient.utils import InferenceServerException

from benchmarks.cluster_load import ClusterProcess, Load
from client.api import DetectionError, YoloTritonClient
from cluster.config import BODY_CAP_BYTES, FrontPorts
from cluster.haproxy_runtime import balancer_stats
from cluster.local import Cluster, ClusterError, find_tool, group_pids
from serving.processes import child_pids, free_port, is_alive, shm_regions, stub_processes

RULE = "yolov8:infer_queue_per_compute:ratio"
BACKENDS = ("grpc_replicas", "http_replicas")


def non_root_path() -> str:
    """PATH as a non-root login has it: without the sbin directories, where Debian puts nginx and haproxy."""
    sbin = {"/usr/local/sbin", "/usr/sbin", "/sbin"}
    return os.pathsep.join(d for d in os.environ["PATH"].split(os.pathsep) if d.rstrip("/") not in sbin)


@pytest.fixture(scope="module")
def cluster(yolo11n_repository, tmp_path_factory):
    env = os.environ | {"PATH": non_root_path()}
    running = ClusterProcess(yolo11n_repository, tmp_path_factory.mktemp("cluster"), env=env)
    try:
        running.wait_serving()
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def bus(sample_images) -> bytes:
    return sample_images["bus.jpg"].read_bytes()


@pytest.fixture(scope="module")
def expected(cluster, bus):
    with YoloTritonClient(cluster.grpc_url) as client:
        return client.detect(bus)


def send_once(url: str, image: bytes) -> tuple[str, str] | None:
    """One request that is not retried, on its own connection: None, or (the gRPC status, message) of its failure."""
    client = grpcclient.InferenceServerClient(url)
    try:
        client.infer("yolov8", [image_input(image)], client_timeout=120)
        return None
    except InferenceServerException as exc:
        return exc.status(), exc.message()
    finally:
        client.close()


def wait_successes(load: Load, count: int, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while sum(not o.error for o in list(load.outcomes)) < count:
        assert time.monotonic() < deadline, "the load makes no progress"
        time.sleep(0.05)


def replica_ready(replica: dict) -> bool:
    """The replica's own tritonserver answers ready (HAProxy's state can lag behind a replica just restarted)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{replica['http_port']}/v2/health/ready", timeout=5) as reply:
            return reply.status == 200
    except OSError:
        return False


def wait_replaced(cluster: ClusterProcess, index: int, old_pgid: int, timeout_s: float = 180.0) -> set[str]:
    """Until the cluster has started replica ``index`` again, it is ready, and HAProxy has every replica up.

    Returns the states HAProxy's gRPC backend showed for that replica meanwhile.
    """
    seen, key = set(), ("grpc_replicas", f"replica-{index}")
    deadline = time.monotonic() + timeout_s
    while (
        cluster.replicas()[index]["pgid"] == old_pgid
        or not replica_ready(cluster.replicas()[index])
        or not all(s == "UP" for s in cluster.states().values())
    ):
        assert time.monotonic() < deadline, f"replica-{index} not started again and back in rotation: {seen}"
        seen.add(cluster.states().get(key))
        time.sleep(0.05)
    return seen


def test_replicas_json_and_balancing(cluster, expected, bus):
    replicas = cluster.replicas()
    assert [r["name"] for r in replicas] == ["replica-0", "replica-1"]
    for replica in replicas:
        assert {"grpc_port", "http_port", "metrics_port", "pgid"} <= set(replica)
        members = group_pids(replica["pgid"])
        names = {Path(f"/proc/{pid}/exe").resolve().name for pid in members}
        assert {"tritonserver", "triton_python_backend_stub"} <= names, names  # and the supervisor: python
    assert expected.detections
    fails = cluster.fail_counts()

    def successes(replica: dict) -> int:
        url = f"http://127.0.0.1:{replica['http_port']}/v2/models/yolov8/stats"
        with urllib.request.urlopen(url) as reply:
            return json.load(reply)["model_stats"][0]["inference_stats"]["success"]["count"]

    counts = {replica["name"]: successes(replica) for replica in replicas}
    with YoloTritonClient(cluster.grpc_url) as client:
        for _ in range(8):
            client.detect(bus)
    for replica in replicas:
        assert successes(replica) >= counts[replica["name"]] + 3, "per-request balancing: both replicas get requests"
    assert cluster.fail_counts() == fails


def replaced_under_load(cluster, bus, expected, index: int, send, sig: signal.Signals, retries: int):
    """4 clients through the balancer while replica ``index`` gets ``send(pgid, sig)`` and is replaced, until 8
    more successes after that: (the victim's replicas.json entry, HAProxy's states seen meanwhile, all outcomes)."""
    victim = cluster.replicas()[index]
    load = Load(cluster.grpc_url, bus, expected, clients=4, retries=retries).start()
    try:
        wait_successes(load, 8)
        send(victim["pgid"], sig)
        seen = wait_replaced(cluster, index, victim["pgid"])
        wait_successes(load, len(load.outcomes) + 8)
    finally:
        outcomes = load.stop(timeout_s=120)
    return victim, seen, outcomes


def test_failover_kill_9_of_a_replica_under_load(cluster, bus, expected):
    victim, seen, outcomes = replaced_under_load(cluster, bus, expected, 0, os.killpg, signal.SIGKILL, retries=3)
    assert "DOWN" in seen, f"HAProxy took the dead replica out of rotation: {seen}"
    assert not [o for o in outcomes if o.error], "a client that retries UNAVAILABLE loses no request"
    assert all(o.correct for o in outcomes)
    assert not group_pids(victim["pgid"])


def test_rolling_restart_needs_no_client_retry(cluster, bus, expected):
    # SIGTERM to the supervisor alone: it drains
    _, seen, outcomes = replaced_under_load(cluster, bus, expected, 1, os.kill, signal.SIGTERM, retries=0)
    assert "DRAIN (agent)" in seen, f"HAProxy took the replica out before it stopped: {seen}"
    assert not [o for o in outcomes if o.error], [o for o in outcomes if o.error][:3]
    assert {o.attempts for o in outcomes} == {1} and all(o.correct for o in outcomes)


def test_the_balancer_resends_what_a_dead_replica_refuses_not_what_it_held(cluster, bus):
    """Clients that don't retry, and a replica that HAProxy still sends to after a kill -9 (its health and agent
    checks off here: they take about 1 s to notice, and make that window short, not empty). A request in flight in the
    replica when it dies is either resent by HAProxy (answered) or gets UNAVAILABLE, whose resending is left to the
    client; both happen, run to run. Every later request that HAProxy sends to the dead replica is refused there and
    resent to the other one (``retries``, ``option redispatch``)."""
    victim = cluster.replicas()[0]
    server = replica_server_pid(cluster, 0)
    (preprocess,) = [s.pid for s in stub_processes(server) if s.model == "yolov8_preprocess"]
    checks = [f"{kind} {backend}/replica-0" for kind in ("health", "agent") for backend in BACKENDS]
    for check in checks:
        assert cluster.balancer_command(f"disable {check}").strip() == "", check
    cluster.process.send_signal(signal.SIGSTOP)  # the cluster does not start replica-0 again until the end
    try:
        with ThreadPoolExecutor(1) as pool, stages_held(server) as lock:
            for _ in range(8):  # round robin: at most a few requests land on replica-1 (answered) first
                in_flight = pool.submit(send_once, cluster.grpc_url, bus)
                wait_until(lambda f=in_flight: f.done() or waits_for_lock(preprocess, lock), "answered, or held")
                if not in_flight.done():
                    break
                assert in_flight.result() is None, in_flight.result()
            assert not in_flight.done(), "no request reached replica-0"
            os.killpg(victim["pgid"], signal.SIGKILL)
            lost = in_flight.result(timeout=60)
        assert lost in (None, ("StatusCode.UNAVAILABLE", "no Triton replica answered: retry later")), lost
        wait_until(lambda: not [p for p in group_pids(victim["pgid"]) if is_alive(p)], "replica-0's processes gone")
        assert cluster.states()[("grpc_replicas", "replica-0")] == "no check"  # in rotation, unchecked
        resent = balancer_count(cluster, "grpc_replicas", "BACKEND", "wredis")
        outcomes = [send_once(cluster.grpc_url, bus) for _ in range(6)]
        assert outcomes == [None] * 6, outcomes  # each answered, though the client does not retry
        resent = balancer_count(cluster, "grpc_replicas", "BACKEND", "wredis") - resent
        assert resent >= 3, f"every other request went to the dead replica: {resent} resent"
    finally:
        for check in checks:
            cluster.balancer_command(f"enable {check}")
        cluster.process.send_signal(signal.SIGCONT)
        wait_replaced(cluster, 0, victim["pgid"])  # the next test finds both replicas, whatever happened here


def test_autoscaling_signal_rises_under_load(cluster, bus, expected):
    deadline = time.monotonic() + 60
    while not (idle := cluster.query(RULE)):
        assert time.monotonic() < deadline, "Prometheus records no autoscaling signal"
        time.sleep(1)
    assert {r["metric"]["pod"] for r in idle} == {"replica-0", "replica-1"}
    assert {r["metric"]["namespace"] for r in idle} == {"local"}
    idle_max = max(float(r["value"][1]) for r in idle)
    load = Load(cluster.grpc_url, bus, expected, clients=12, retries=3).start()
    try:
        deadline = time.monotonic() + 90
        while max(float(r["value"][1]) for r in cluster.query(RULE)) <= idle_max:
            assert time.monotonic() < deadline, f"the recorded metric stayed at its idle value {idle_max}"
            time.sleep(1)
    finally:
        load.stop(timeout_s=120)


def bytes_to_replicas(cluster: ClusterProcess) -> int:
    """Request bytes HAProxy has sent to the replicas so far (counted when a stream ends)."""
    return sum(int(row["bin"]) for row in balancer_stats(cluster.state_dir) if row["svname"].startswith("replica-"))


def balancer_count(cluster: ClusterProcess, proxy: str, server: str, counter: str) -> int:
    """One of HAProxy's ``show stat`` counters, e.g. (grpc_in, FRONTEND, req_tot): requests it received from nginx
    (counted at their headers); (grpc_replicas, BACKEND, wredis): requests it sent again to another replica."""
    (row,) = [r for r in balancer_stats(cluster.state_dir) if r["pxname"] == proxy and r["svname"] == server]
    return int(row[counter])


def requests_at_balancer(cluster: ClusterProcess, frontend: str) -> int:
    return balancer_count(cluster, frontend, "FRONTEND", "req_tot")


def replica_server_pid(cluster: ClusterProcess, index: int) -> int:
    """Replica ``index``'s tritonserver process: a crashed one is gone, and its restart has another pid."""
    group = group_pids(cluster.replicas()[index]["pgid"])
    (pid,) = [p for p in group if Path(f"/proc/{p}/exe").resolve().name == "tritonserver"]
    return pid


def http_ready_through_the_balancer(cluster: ClusterProcess) -> None:
    with urllib.request.urlopen(f"{cluster.http_url}/v2/health/ready", timeout=60) as reply:
        assert reply.status == 200


def test_oversized_request_refused_at_the_balancer(cluster, bus):
    fails, sent = cluster.fail_counts(), bytes_to_replicas(cluster)
    grpc_requests = requests_at_balancer(cluster, "grpc_in")
    client = grpcclient.InferenceServerClient(cluster.grpc_url)
    try:
        with pytest.raises(InferenceServerException) as refused:
            client.infer("yolov8", [image_input(b"\xff" * (BODY_CAP_BYTES + 8 * 2**20))], client_timeout=60)
        assert refused.value.status() == "StatusCode.RESOURCE_EXHAUSTED", refused.value
        assert "refused by the gateway" in refused.value.message()
        reply = client.infer("yolov8", [image_input(bus)], client_timeout=60)
        assert reply.as_numpy("num_dets")[0, 0] >= 1
    finally:
        client.close()
    # HAProxy counted the request after it when its headers came, and its bytes when its stream ended:
    # had nginx passed any of the oversized one on, both counts would show it
    assert requests_at_balancer(cluster, "grpc_in") == grpc_requests + 1, "the oversized request reached HAProxy"
    deadline = time.monotonic() + 30
    while bytes_to_replicas(cluster) == sent:
        assert time.monotonic() < deadline, "HAProxy never counted the small request's bytes"
        time.sleep(0.05)
    assert bytes_to_replicas(cluster) - sent < 2 * len(bus), "no byte of the oversized request reached a replica"
    http_requests = requests_at_balancer(cluster, "http_in")
    request = urllib.request.Request(
        f"http://127.0.0.1:{cluster.http_port}/v2/models/yolov8/infer", data=b"x" * (BODY_CAP_BYTES + 1), method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as http_refused:
        urllib.request.urlopen(request, timeout=60)
    assert http_refused.value.code == 413
    http_ready_through_the_balancer(cluster)
    assert requests_at_balancer(cluster, "http_in") == http_requests + 1, "the oversized request reached HAProxy"
    assert cluster.fail_counts() == fails, "no replica saw the oversized requests"


def test_large_json_body_refused_before_it_crashes_a_replica(cluster):
    """tritonserver 2.51 segfaulted on a valid 8 MiB JSON request (and 4 MiB of non-JSON): the balancer refuses it."""
    servers, http_requests = [replica_server_pid(cluster, i) for i in (0, 1)], requests_at_balancer(cluster, "http_in")
    image = {"name": "IMAGE", "shape": [1, 1], "datatype": "BYTES", "data": ["x" * 8 * 2**20]}
    request = urllib.request.Request(
        f"http://127.0.0.1:{cluster.http_port}/v2/models/yolov8/infer",
        data=json.dumps({"inputs": [image]}).encode(),
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=60)
    assert refused.value.code == 413
    # the next request through the balancer is the only one HAProxy received: no replica got the JSON body
    http_ready_through_the_balancer(cluster)
    assert requests_at_balancer(cluster, "http_in") == http_requests + 1, "the JSON body reached HAProxy"
    assert [replica_server_pid(cluster, i) for i in (0, 1)] == servers, "a tritonserver crashed"
    for replica in ("replica-0", "replica-1"):
        assert "restarting tritonserver" not in (cluster.state_dir / replica / "supervisor.log").read_text()


def test_bad_image_gets_invalid_argument_once(cluster):
    """Through the balancer a bad image fails exactly as often as sent straight to one replica: not retried."""
    deltas = []
    for url in (f"127.0.0.1:{cluster.replicas()[0]['grpc_port']}", cluster.grpc_url):
        fails = cluster.fail_counts()
        with YoloTritonClient(url, retries=3) as client:
            with pytest.raises(DetectionError) as bad:
                client.detect(os.urandom(5000))
            assert client.last_attempts == 1
        assert bad.value.status == "StatusCode.INVALID_ARGUMENT" and "cannot decode image" in bad.value.message
        deltas.append(cluster.fail_counts() - fails)
    assert deltas[0] >= 1 and deltas[1] == deltas[0], deltas


def bound(sock: socket.socket, port: int) -> bool:
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        return False
    return True


def test_a_replica_whose_port_was_taken_starts_on_new_ports(cluster, bus):
    """Another process holds replica-1's gRPC port when it is started again: it is started on new ports, which
    HAProxy and Prometheus follow, and it serves there."""
    old = cluster.replicas()[1]
    with socket.socket() as taken:
        cluster.process.send_signal(signal.SIGSTOP)  # the cluster starts the replica again once the port is taken
        try:
            os.killpg(old["pgid"], signal.SIGKILL)
            wait_until(lambda: not [p for p in group_pids(old["pgid"]) if is_alive(p)], "replica-1 gone", 30)
            taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # over the connections in TIME_WAIT
            wait_until(lambda: bound(taken, old["grpc_port"]), "the dead replica's connections closed", 120)
            taken.listen()
        finally:
            cluster.process.send_signal(signal.SIGCONT)
        wait_replaced(cluster, 1, old["pgid"])
        new = cluster.replicas()[1]
        assert new["grpc_port"] != old["grpc_port"], new
    assert "replica-1 exited with 1, another process took a port of its: starting it on" in cluster.log.read_text()
    (row,) = [
        r for r in balancer_stats(cluster.state_dir) if r["pxname"] == "grpc_replicas" and r["svname"] == "replica-1"
    ]
    assert row["addr"] == f"127.0.0.1:{new['grpc_port']}"
    assert send_once(f"127.0.0.1:{new['grpc_port']}", bus) is None
    scraped = f"127.0.0.1:{new['metrics_port']}"
    deadline = time.monotonic() + 60
    while [r["metric"]["instance"] for r in cluster.query('up{pod="replica-1"} == 1')] != [scraped]:
        assert time.monotonic() < deadline, f"Prometheus does not scrape replica-1 at {scraped}"
        time.sleep(0.5)


def test_cluster_that_cannot_start(model_repository, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        blocked = ClusterProcess(model_repository, tmp_path / "port", f"--grpc-port={port}")
        assert blocked.process.wait(60) == 1
    assert f"port {port} (gRPC) is already in use" in blocked.log.read_text()
    assert not (blocked.state_dir / "replicas.json").exists() and not child_pids(blocked.process.pid)
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in ("nginx", "prometheus"):
        (tools / tool).symlink_to(find_tool(tool))
    front = FrontPorts(*(free_port() for _ in range(6)))
    missing = Cluster(2, front, model_repository, tmp_path / "tool", find=lambda t: find_tool(t, str(tools), ()))
    with pytest.raises(ClusterError, match=r"^haproxy is not installed: run `make setup`"):
        missing.start()
    assert not (tmp_path / "tool").exists() and all(r.process is None for r in missing.replicas)


def test_tools_are_found_on_path_then_in_the_system_directories(tmp_path):
    on_path, system = tmp_path / "bin", tmp_path / "sbin"
    for folder, tool in ((on_path, "nginx"), (system, "nginx"), (system, "haproxy")):
        folder.mkdir(exist_ok=True)
        (folder / tool).write_text("#!/bin/sh\n")
        (folder / tool).chmod(0o755)
    assert find_tool("nginx", str(on_path), (str(system),)) == str(on_path / "nginx")
    assert find_tool("haproxy", str(on_path), (str(system),)) == str(system / "haproxy")
    assert find_tool("haproxy", str(on_path), ()) is None
    assert find_tool("prometheus", str(on_path), (str(system),)) is None


def test_ctrl_c_drains_the_replicas_and_leaves_nothing(cluster):
    pgids = [r["pgid"] for r in cluster.replicas()] + child_pids(cluster.process.pid)
    pids = [pid for pgid in pgids for pid in group_pids(pgid)]
    shm = shm_regions(pids)
    assert len(pids) >= 2 * 5 + 3 and shm
    cluster.process.send_signal(signal.SIGINT)
    assert cluster.process.wait(120) == 0
    assert not [pid for pid in pids if is_alive(pid)]
    assert not [path for path in shm if path.exists()]
    for replica in ("replica-0", "replica-1"):
        log = (cluster.state_dir / replica / "supervisor.log").read_text()
        assert log.rstrip().endswith("stopped; leftover stubs: 0, shared-memory files and folders: 0"), log[-500:]
    assert "stopped: replicas, nginx, haproxy and prometheus" in cluster.log.read_text()
