"""``python -m benchmarks.cluster`` (``make cluster-bench``): the local cluster's numbers.

Starts ``make cluster`` with 2 replicas on free loopback ports and measures, in this order:

1. on idle replicas, oversized requests (4 concurrent gRPC and one HTTP, 100 MiB each): the error,
   the time to it, the replicas' RSS before and after;
2. the balancer's added latency at concurrency 1: interleaved pairs, straight to replica-0 and through
   nginx + HAProxy to the same replica, for a detection (bus.jpg) and for a bare ServerReady call;
   p50 of each, and the median of the paired differences;
3. throughput from 8 clients with both replicas in rotation, then with one (HAProxy's runtime API puts
   the other in maintenance); on a 2-core machine expect about the same: the work is CPU-bound;
4. the autoscaling signal: Prometheus's recorded metric idle and under that load, and the replica count
   the HPA's formula asks for, ceil(replicas * average / target);
5. each Grafana panel's query (deploy/kubernetes/base/grafana-dashboard.json) against the local Prometheus;
6. failover: 4 clients (retrying UNAVAILABLE, the client's default) while a replica's process group gets
   kill -9; the longest gap between two successes, against the longest before the kill.

Writes benchmarks/results/cluster-<time>.json and prints a summary.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import statistics
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
import yaml
from tritonclient.utils import InferenceServerException

from benchmarks.cluster_load import ClusterProcess, Load, longest_gap_s
from client.api import YoloTritonClient
from cluster.haproxy_runtime import balancer_stats
from cluster.local import group_pids
from python_backends.paths import DEFAULT_REPOSITORY, PROJECT_ROOT
from serving.processes import rss_bytes

BASE = PROJECT_ROOT / "deploy" / "kubernetes" / "base"
RULE = "yolov8:infer_queue_per_compute:ratio"
IMAGE = PROJECT_ROOT / ".cache" / "samples" / "bus.jpg"


def image_request(payload: bytes) -> list[grpcclient.InferInput]:
    tensor = grpcclient.InferInput("IMAGE", [1, 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[payload]], dtype=object))
    return [tensor]


def added_latency(cluster: ClusterProcess, pairs: int) -> dict:
    """p50 straight to replica-0 and through the balancer to the same replica, interleaved, at concurrency 1 (ms).

    replica-1 is in maintenance meanwhile, so both paths end at the same server.
    """
    cluster.balancer_command("set server grpc_replicas/replica-1 state maint")
    direct = grpcclient.InferenceServerClient(f"127.0.0.1:{cluster.replicas()[0]['grpc_port']}")
    balanced = grpcclient.InferenceServerClient(cluster.grpc_url)
    inputs = image_request(IMAGE.read_bytes())
    calls = {
        "detection": lambda c: c.infer("yolov8", inputs),
        "server_ready": lambda c: c.is_server_ready(),
    }
    result = {}
    for name, call in calls.items():
        n = pairs if name == "detection" else 10 * pairs
        times = {"direct": [], "balancer": []}
        for _ in range(n):
            for label, client in (("direct", direct), ("balancer", balanced)):
                started = time.perf_counter()
                call(client)
                times[label].append((time.perf_counter() - started) * 1000)
        paired = [b - d for d, b in zip(times["direct"], times["balancer"])]
        result[name] = {
            "n": n,
            "direct_p50_ms": statistics.median(times["direct"]),
            "balancer_p50_ms": statistics.median(times["balancer"]),
            "added_p50_ms": statistics.median(times["balancer"]) - statistics.median(times["direct"]),
            "paired_difference_median_ms": statistics.median(paired),
        }
    direct.close()
    balanced.close()
    cluster.balancer_command("set server grpc_replicas/replica-1 state ready")
    cluster.wait_all_up()
    return result


def throughput(cluster: ClusterProcess, expected, seconds: float, clients: int) -> dict:
    load = Load(cluster.grpc_url, IMAGE.read_bytes(), expected, clients=clients, retries=3).start()
    time.sleep(seconds / 4)  # warm-up, not counted
    counted_from = time.monotonic()
    time.sleep(seconds)
    counted_to = time.monotonic()
    signal_values = {r["metric"]["pod"]: float(r["value"][1]) for r in cluster.query(RULE)}
    outcomes = load.stop()
    done = [o for o in outcomes if not o.error and counted_from <= o.ended <= counted_to]
    return {
        "clients": clients,
        "images_per_s": len(done) / (counted_to - counted_from),
        "errors": sum(bool(o.error) for o in outcomes),
        "wrong": sum(not o.correct for o in outcomes),
        "recorded_metric_by_pod": signal_values,
    }


def idle_metric(cluster: ClusterProcess, timeout_s: float = 60.0) -> dict[str, float]:
    """The recorded metric per pod once Prometheus has recorded it for both replicas, before any load."""
    deadline = time.monotonic() + timeout_s
    while len(values := {r["metric"]["pod"]: float(r["value"][1]) for r in cluster.query(RULE)}) < 2:
        if time.monotonic() > deadline:
            break
        time.sleep(1)
    return values


def hpa_target() -> float:
    hpa = yaml.safe_load((BASE / "hpa.yaml").read_text()) if (BASE / "hpa.yaml").exists() else None
    if hpa is None:
        return 1.0
    return float(hpa["spec"]["metrics"][0]["pods"]["target"]["averageValue"])


def grafana_panels(cluster: ClusterProcess, dashboard: Path) -> dict | str:
    if not dashboard.exists():
        return f"{dashboard} is not in this checkout"
    panels = {}
    for panel in json.loads(dashboard.read_text())["panels"]:
        for target in panel.get("targets", []):
            series = cluster.query(target["expr"])
            panels[f"{panel['title']} [{target.get('refId', 'A')}]"] = len(series)
    return panels


def replicas_rss(cluster: ClusterProcess) -> list[int]:
    return [rss_bytes(group_pids(r["pgid"])) for r in cluster.replicas()]


def bytes_to_replicas(cluster: ClusterProcess) -> int:
    return sum(int(row["bin"]) for row in balancer_stats(cluster.state_dir) if row["svname"].startswith("replica-"))


def oversized(cluster: ClusterProcess, mib: int, concurrent: int) -> dict:
    """``concurrent`` gRPC requests of ``mib`` MiB at once, then one HTTP request; errors, times, RSS."""
    payload = b"\xff" * (mib * 2**20)
    idle_start = replicas_rss(cluster)
    time.sleep(5)  # the control: how much RSS moves without these requests (probe inferences run every 10 s)
    before, sent = replicas_rss(cluster), bytes_to_replicas(cluster)

    def grpc_call(_):
        client = grpcclient.InferenceServerClient(cluster.grpc_url)
        inputs = image_request(payload)
        started = time.perf_counter()
        try:
            client.infer("yolov8", inputs, client_timeout=60)
            return "OK?", time.perf_counter() - started
        except InferenceServerException as exc:
            return str(exc.status()), time.perf_counter() - started
        finally:
            client.close()

    with ThreadPoolExecutor(concurrent) as pool:
        grpc_results = list(pool.map(grpc_call, range(concurrent)))
    request = urllib.request.Request(f"{cluster.http_url}/v2/models/yolov8/infer", data=payload, method="POST")
    started = time.perf_counter()
    try:
        urllib.request.urlopen(request, timeout=60)
        http_status = 200
    except urllib.error.HTTPError as exc:
        http_status = exc.code
    http_s = time.perf_counter() - started
    time.sleep(1)
    after = replicas_rss(cluster)
    return {
        "bytes_to_replicas": bytes_to_replicas(cluster) - sent,
        "mib": mib,
        "grpc_concurrent": concurrent,
        "grpc_statuses": sorted({status for status, _ in grpc_results}),
        "grpc_max_s": max(seconds for _, seconds in grpc_results),
        "http_status": http_status,
        "http_s": http_s,
        "replica_rss_mib_idle_5s_earlier": [round(v / 2**20, 1) for v in idle_start],
        "replica_rss_mib_before": [round(v / 2**20, 1) for v in before],
        "replica_rss_mib_after": [round(v / 2**20, 1) for v in after],
    }


def failover(cluster: ClusterProcess, expected, clients: int) -> dict:
    victim = cluster.replicas()[0]
    load = Load(cluster.grpc_url, IMAGE.read_bytes(), expected, clients=clients, retries=3).start()
    time.sleep(10)
    killed_at = time.monotonic()
    os.killpg(victim["pgid"], signal.SIGKILL)
    while cluster.replicas()[0]["pgid"] == victim["pgid"]:
        time.sleep(0.1)
    cluster.wait_all_up()
    back_at = time.monotonic()
    time.sleep(5)
    outcomes = load.stop()
    before = [o for o in outcomes if o.ended < killed_at]
    return {
        "clients": clients,
        "requests": len(outcomes),
        "lost": sum(bool(o.error) for o in outcomes),
        "wrong": sum(not o.correct for o in outcomes),
        "retried": sum(o.attempts > 1 for o in outcomes),
        "longest_gap_before_kill_ms": round(longest_gap_s(before, 0.0) * 1000),
        "longest_gap_after_kill_ms": round(longest_gap_s(outcomes, killed_at - 1.0) * 1000),
        "replica_back_in_rotation_s": round(back_at - killed_at, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cluster", description=__doc__)
    parser.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY)
    parser.add_argument("--pairs", type=int, default=60, help="interleaved detection pairs for the latency")
    parser.add_argument("--seconds", type=float, default=30.0, help="each throughput measurement")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--oversized-mib", type=int, default=100)
    parser.add_argument("--dashboard", type=Path, default=BASE / "grafana-dashboard.json", help="Grafana JSON")
    args = parser.parse_args(argv)

    stamp = time.strftime("%Y%m%d-%H%M%S")
    cluster = ClusterProcess(args.repository.resolve(), PROJECT_ROOT / ".cache" / "cluster-bench" / stamp)
    report: dict = {"cpus": os.cpu_count()}
    try:
        cluster.wait_serving()
        with YoloTritonClient(cluster.grpc_url) as client:
            expected = client.detect(IMAGE)
            for _ in range(20):  # ONNX Runtime's arenas grow over the first requests
                client.detect(IMAGE)
        time.sleep(2)
        report["oversized"] = oversized(cluster, args.oversized_mib, concurrent=4)
        report["idle_recorded_metric"] = idle_metric(cluster)
        report["latency"] = added_latency(cluster, args.pairs)
        report["two_replicas"] = throughput(cluster, expected, args.seconds, args.clients)
        target = hpa_target()
        values = list(report["two_replicas"]["recorded_metric_by_pod"].values())
        average = sum(values) / len(values) if values else float("nan")
        report["hpa"] = {
            "target": target,
            "average": average,
            "desired_replicas": math.ceil(2 * average / target) if values else None,
        }
        report["grafana_panels_series"] = grafana_panels(cluster, args.dashboard)
        cluster.balancer_command("set server grpc_replicas/replica-1 state maint")
        report["one_replica"] = throughput(cluster, expected, args.seconds, args.clients)
        cluster.balancer_command("set server grpc_replicas/replica-1 state ready")
        cluster.wait_all_up()
        report["failover"] = failover(cluster, expected, clients=4)
    finally:
        if cluster.process.poll() is None:
            started = time.monotonic()
            cluster.process.send_signal(signal.SIGINT)
            cluster.process.wait(180)
            report["stop_s"] = round(time.monotonic() - started, 1)
    out = PROJECT_ROOT / "benchmarks" / "results" / f"cluster-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(summary(report))
    print(f"wrote {out.relative_to(PROJECT_ROOT)}")
    return 0


def summary(r: dict) -> str:
    two, one, hpa, big, fo = r["two_replicas"], r["one_replica"], r["hpa"], r["oversized"], r["failover"]
    det, ready = r["latency"]["detection"], r["latency"]["server_ready"]
    panels = r["grafana_panels_series"]
    panel_lines = (
        [f"  {title}: {n} series" for title, n in panels.items()] if isinstance(panels, dict) else [f"  {panels}"]
    )
    return "\n".join(
        [
            f"cluster benchmark on {r['cpus']} CPUs",
            f"balancer added p50, detection (n={det['n']} pairs): direct {det['direct_p50_ms']:.1f} ms, "
            f"through nginx+HAProxy {det['balancer_p50_ms']:.1f} ms: +{det['added_p50_ms']:.2f} ms "
            f"(median paired difference {det['paired_difference_median_ms']:.2f} ms)",
            f"balancer added p50, ServerReady (n={ready['n']}): direct {ready['direct_p50_ms']:.2f} ms, "
            f"through {ready['balancer_p50_ms']:.2f} ms: +{ready['added_p50_ms']:.2f} ms",
            f"throughput, {two['clients']} clients: 2 replicas {two['images_per_s']:.2f} images/s, "
            f"1 replica {one['images_per_s']:.2f} images/s (errors {two['errors']}/{one['errors']}, "
            f"wrong {two['wrong']}/{one['wrong']})",
            f"autoscaling signal ({RULE}): idle {r['idle_recorded_metric']}, "
            f"under load {two['recorded_metric_by_pod']}",
            f"HPA: ceil(2 * {hpa['average']:.3f} / {hpa['target']:g}) = {hpa['desired_replicas']} replicas",
            "Grafana panels, series returned by the local Prometheus:",
            *panel_lines,
            f"oversized {big['mib']} MiB: gRPC x{big['grpc_concurrent']} {big['grpc_statuses']} within "
            f"{big['grpc_max_s']:.2f} s (client serialization included), HTTP {big['http_status']} in "
            f"{big['http_s']:.2f} s; bytes to the replicas {big['bytes_to_replicas']}; "
            f"replica RSS MiB {big['replica_rss_mib_before']} -> {big['replica_rss_mib_after']} "
            f"(control, 5 s idle before: {big['replica_rss_mib_idle_5s_earlier']} -> {big['replica_rss_mib_before']})",
            f"failover (kill -9 of replica-0's group, {fo['clients']} clients retrying UNAVAILABLE): "
            f"{fo['requests']} requests, lost {fo['lost']}, wrong {fo['wrong']}, retried {fo['retried']}; "
            f"longest gap between successes {fo['longest_gap_after_kill_ms']} ms "
            f"(before the kill: {fo['longest_gap_before_kill_ms']} ms); replica back in rotation after "
            f"{fo['replica_back_in_rotation_s']} s",
            f"Ctrl-C to everything stopped: {r.get('stop_s')} s",
        ]
    )


if __name__ == "__main__":
    raise SystemExit(main())
