"""Configuration files for ``make cluster``: nginx in front, HAProxy behind it, Prometheus beside them.

nginx runs the Kubernetes gateway's own template (deploy/kubernetes/base/gateway-nginx.conf.template).

Requests go client → nginx (reads each whole request body, caps it) → HAProxy (per-request round robin,
active health checks, agent-check drain, retries) → a replica. HAProxy 2.6 cannot cap a streamed HTTP/2
body (gRPC sends no content-length); nginx's ``client_max_body_size`` can, and answers an oversized gRPC
call with RESOURCE_EXHAUSTED. nginx streams gRPC bodies on as they arrive (so the first 40 MiB of an
oversized one would reach a replica), unless the body is read first: a mirror with ``mirror_request_body``
does that (nginx's own tests use it for buffered gRPC); the mirror's subrequest answers 204 at once.
"""

from __future__ import annotations

import getpass
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from python_backends.paths import PROJECT_ROOT

KUBERNETES_BASE = PROJECT_ROOT / "deploy" / "kubernetes" / "base"
RULE_FILE = KUBERNETES_BASE / "prometheus-rule.yaml"
GATEWAY_TEMPLATE = KUBERNETES_BASE / "gateway-nginx.conf.template"  # one gateway config, here and there
# what the gateway refuses: the image byte limit plus room for protobuf framing and the other inputs
BODY_CAP_BYTES = int(re.search(r"^client_max_body_size (\d+)m;", GATEWAY_TEMPLATE.read_text(), re.M).group(1)) << 20
CHECK_INTERVAL_MS = 500  # health and agent checks; 2 failed checks take a replica out: about 1 s


@dataclass(frozen=True)
class ReplicaPorts:
    """One replica's loopback ports: Triton's gRPC, HTTP and metrics, and its supervisor's agent check."""

    grpc_port: int
    http_port: int
    metrics_port: int
    agent_port: int


@dataclass(frozen=True)
class FrontPorts:
    """What clients use (nginx), and HAProxy's loopback frontends behind it."""

    grpc_port: int
    http_port: int
    haproxy_grpc_port: int
    haproxy_http_port: int
    prometheus_port: int
    health_port: int  # the gateway's own /healthz


def haproxy_config(replicas: list[ReplicaPorts], front: FrontPorts, state_dir: Path) -> str:
    """haproxy.cfg: gRPC (h2 to the replicas) and HTTP backends over the same replicas.

    A replica is in rotation while ``GET /v2/health/ready`` answers 200 and its agent does not say
    ``drain``. A request whose connection failed, or whose replica closed without answering, is sent to
    another replica (when HAProxy still holds the whole request: bodies up to tune.bufsize).
    """
    servers = {"grpc": [], "http": []}
    for i, r in enumerate(replicas):
        checks = f"check port {r.http_port} check-proto h1 agent-check agent-port {r.agent_port}"
        servers["grpc"].append(f"    server replica-{i} 127.0.0.1:{r.grpc_port} proto h2 {checks}")
        servers["http"].append(f"    server replica-{i} 127.0.0.1:{r.http_port} {checks}")
    return "\n".join(
        [
            "global",
            "    maxconn 1024",
            "    tune.bufsize 262144",  # a request up to 256 KiB can be sent again to another replica
            f"    stats socket {state_dir / 'haproxy.sock'} mode 600 level admin",
            "defaults",
            "    mode http",
            "    timeout connect 1s",
            "    timeout client 300s",
            "    timeout server 300s",
            "    timeout check 1s",
            "    retries 2",
            "    option redispatch 1",
            "    retry-on conn-failure empty-response 503",
            "    option httpchk GET /v2/health/ready",
            "    http-check expect status 200",
            f"    default-server inter {CHECK_INTERVAL_MS}ms fall 2 rise 2 agent-inter {CHECK_INTERVAL_MS}ms",
            "frontend grpc_in",
            f"    bind 127.0.0.1:{front.haproxy_grpc_port} proto h2",
            "    default_backend grpc_replicas",
            "frontend http_in",
            f"    bind 127.0.0.1:{front.haproxy_http_port}",
            "    default_backend http_replicas",
            "backend grpc_replicas",
            "    balance roundrobin",
            *servers["grpc"],
            "backend http_replicas",
            "    balance roundrobin",
            "    option http-server-close",  # no idle connection to Triton: it waits for those when it stops
            *servers["http"],
            "",
        ]
    )


def fill_template(template: str, values: dict[str, str]) -> str:
    """What the nginx image's entrypoint does to a template: envsubst of the given variables only."""
    return re.sub(r"\$\{(\w+)\}", lambda m: values.get(m.group(1), m.group(0)), template)


def gateway_config(
    listen: dict[int, str], upstream_host: str, upstream_ports: dict[int, int], state_dir: Path, resolver: str
) -> str:
    """nginx.conf for the gateway: GATEWAY_TEMPLATE, the Kubernetes gateway's own server blocks, run locally.

    Args:
        listen: the template's listen port (8001 gRPC, 8000 HTTP, 8081 health) → the address to listen on.
        upstream_host: what TRITON_UPSTREAM names (the headless Service there, a loopback address here).
        upstream_ports: Triton's port in the template (8001, 8000) → the port behind ``upstream_host``.
        state_dir: nginx's pid and temp files go to ``state_dir/nginx``.
        resolver: NGINX_LOCAL_RESOLVERS.
    """
    servers = fill_template(
        GATEWAY_TEMPLATE.read_text(), {"NGINX_LOCAL_RESOLVERS": resolver, "TRITON_UPSTREAM": upstream_host}
    )
    for port, address in listen.items():
        servers = re.sub(rf"^(\s*listen) {port}\b", rf"\1 {address}", servers, flags=re.MULTILINE)
    for port, actual in upstream_ports.items():
        servers = servers.replace(f"$triton:{port};", f"$triton:{actual};")
    temp = state_dir / "nginx"
    temp_paths = "\n".join(
        f"    {kind}_temp_path {temp / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    # started as root, the workers would run as nobody and could not write the request bodies nginx buffers
    user = f"user {getpass.getuser()};\n" if os.geteuid() == 0 else ""
    return (
        f"{user}daemon off;\nworker_processes 1;\npid {temp / 'nginx.pid'};\nerror_log stderr error;\n"
        f"events {{ worker_connections 1024; }}\nhttp {{\n    access_log off;\n{temp_paths}\n{servers}}}\n"
    )


def nginx_config(front: FrontPorts, state_dir: Path) -> str:
    """The local cluster's gateway: client-facing listeners on loopback, HAProxy behind them."""
    listen = {8001: f"127.0.0.1:{front.grpc_port}", 8000: f"127.0.0.1:{front.http_port}"}
    listen[8081] = f"127.0.0.1:{front.health_port}"
    upstream = {8001: front.haproxy_grpc_port, 8000: front.haproxy_http_port}
    return gateway_config(listen, "127.0.0.1", upstream, state_dir, resolver="127.0.0.1")


def prometheus_config(targets_path: Path, rules_path: Path) -> str:
    """prometheus.yml: the replicas listed in ``targets_path`` (``prometheus_targets``; Prometheus reads it
    again whenever it changes), and the rules in ``rules_path``."""
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules_path)],
        "scrape_configs": [{"job_name": "triton", "file_sd_configs": [{"files": [str(targets_path)]}]}],
    }
    return yaml.safe_dump(config, sort_keys=False)


def prometheus_targets(replicas: list[ReplicaPorts]) -> str:
    """Every replica's metrics endpoint, labelled as Kubernetes would (namespace, pod): a file_sd targets file."""
    targets = [
        {"targets": [f"127.0.0.1:{r.metrics_port}"], "labels": {"namespace": "local", "pod": f"replica-{i}"}}
        for i, r in enumerate(replicas)
    ]
    return json.dumps(targets, indent=2) + "\n"


def prometheus_rules(rule_file: Path = RULE_FILE) -> str:
    """The PrometheusRule's ``spec.groups`` as a Prometheus rules file (the HPA's recording rule)."""
    rule = yaml.safe_load(rule_file.read_text())
    return yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False)
