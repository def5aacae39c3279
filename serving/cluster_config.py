"""Configuration files for ``make cluster``: nginx in front, HAProxy behind it, Prometheus beside them.

Requests go client → nginx (reads each whole request body, caps it) → HAProxy (per-request round robin,
active health checks, agent-check drain, retries) → a replica. HAProxy 2.6 cannot cap a streamed HTTP/2
body (gRPC sends no content-length); nginx's ``client_max_body_size`` can, and answers an oversized gRPC
call with RESOURCE_EXHAUSTED. nginx streams gRPC bodies on as they arrive (so the first 40 MiB of an
oversized one would reach a replica), unless the body is read first: a mirror with ``mirror_request_body``
does that (nginx's own tests use it for buffered gRPC); the mirror's subrequest answers 204 at once.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from pathlib import Path

import yaml

from python_backends.preprocess.image_decode import DEFAULT_MAX_BYTES

# protobuf framing, the threshold inputs and a batch's other fields ride on top of the image bytes
BODY_CAP_BYTES = DEFAULT_MAX_BYTES + 8 * 1024 * 1024  # 40 MiB, as the Kubernetes gateway
# tritonserver 2.51 segfaults on an HTTP body of 4 MiB or more that it parses as JSON (a valid 8 MiB JSON
# request too; 3 MiB is answered): a body without the binary-data extension's Inference-Header-Content-Length
# gets this cap. Images travel in the binary extension (measured: 30 MiB answered).
JSON_BODY_CAP_BYTES = 2 * 1024 * 1024
RULE_FILE = Path(__file__).resolve().parent.parent / "deploy" / "kubernetes" / "base" / "prometheus-rule.yaml"
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


def nginx_config(front: FrontPorts, state_dir: Path, body_cap: int = BODY_CAP_BYTES) -> str:
    """nginx.conf: the client-facing listeners; refuses bodies over ``body_cap`` before HAProxy sees them.

    HTTP bodies that Triton would parse whole as JSON (no Inference-Header-Content-Length, or a JSON part
    of a megabyte or more) are capped at JSON_BODY_CAP_BYTES; binary-extension requests at ``body_cap``.
    """
    temp = state_dir / "nginx"
    grpc_error = (
        "default_type application/grpc; "
        "add_header grpc-status 8 always; "
        f'add_header grpc-message "request body over {body_cap} bytes: refused by the load balancer" always; '
        "return 204;"
    )
    return f"""daemon off;
user {getpass.getuser()};  # started as root, the worker would run as nobody and could not read its temp files
worker_processes 1;
pid {temp / 'nginx.pid'};
error_log stderr error;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {temp / 'client_body'};
    proxy_temp_path {temp / 'proxy'};
    fastcgi_temp_path {temp / 'fastcgi'};
    uwsgi_temp_path {temp / 'uwsgi'};
    scgi_temp_path {temp / 'scgi'};
    client_max_body_size {body_cap};
    client_body_buffer_size 1m;
    map $http_inference_header_content_length $body_kind {{
        "~^[0-9]{{1,6}}$" binary;  # a JSON part under 1 MB, then the tensors' bytes
        default json;
    }}
    upstream haproxy_grpc {{ server 127.0.0.1:{front.haproxy_grpc_port}; keepalive 32; }}
    upstream haproxy_http {{ server 127.0.0.1:{front.haproxy_http_port}; keepalive 32; }}
    server {{
        listen 127.0.0.1:{front.grpc_port} http2;
        location / {{
            mirror /read-whole-body;  # the body is read (to a file over 1 MiB) before grpc_pass sends any of it
            mirror_request_body on;
            grpc_pass grpc://haproxy_grpc;
            grpc_read_timeout 300s;
            grpc_send_timeout 300s;
            error_page 413 = @too_large;
        }}
        location @too_large {{ {grpc_error} }}
        location = /read-whole-body {{ internal; return 204; }}
    }}
    server {{
        listen 127.0.0.1:{front.http_port};
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_read_timeout 300s;
        location / {{  # nginx checks a body's length against the limit where it first matches, then rewrites
            if ($body_kind = json) {{ rewrite ^(.*)$ /json-body$1 last; }}
            proxy_pass http://haproxy_http;
        }}
        location /json-body/ {{
            internal;
            client_max_body_size {JSON_BODY_CAP_BYTES};
            rewrite ^/json-body(/.*)$ $1 break;
            proxy_pass http://haproxy_http;
        }}
    }}
}}
"""


def prometheus_config(replicas: list[ReplicaPorts], rules_path: Path) -> str:
    """prometheus.yml: every replica's metrics, labelled as Kubernetes would (namespace, pod)."""
    targets = [
        {"targets": [f"127.0.0.1:{r.metrics_port}"], "labels": {"namespace": "local", "pod": f"replica-{i}"}}
        for i, r in enumerate(replicas)
    ]
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules_path)],
        "scrape_configs": [{"job_name": "triton", "static_configs": targets}],
    }
    return yaml.safe_dump(config, sort_keys=False)


def prometheus_rules(rule_file: Path = RULE_FILE) -> str:
    """The PrometheusRule's ``spec.groups`` as a Prometheus rules file (the HPA's recording rule)."""
    rule = yaml.safe_load(rule_file.read_text())
    return yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False)
