"""``python -m serving``: tritonserver on the model repository, under our supervisor (loopback by default).

The supervisor restarts the server when a stage dies and stops it cleanly on SIGTERM/SIGINT
(see ``serving.supervisor``). Admin APIs (model repository, shared memory, trace, logging) need
the admin key in the HTTP header ``admin-key`` (gRPC metadata ``triton-grpc-protocol-admin-key``);
without ``--admin-key`` a new key is made for each run and written to ``.cache/admin_key`` (mode 0600).
``--allow-client-shm`` opens the shared-memory API: clients on this host then send their images through
system shared memory without the key (loopback only).
Tracing is off; the trace API turns it on (``yolo-triton trace``) and Triton writes the traces to
``--trace-file``'s ``.<n>`` files: beside ``--log-file`` by default, else in ``.cache/traces/``.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import secrets
import sys
from pathlib import Path

from python_backends.defaults import ADMIN_KEY_FILE, ADMIN_KEY_HEADER, GRPC_ADMIN_KEY_HEADER
from python_backends.paths import CACHE, DEFAULT_REPOSITORY
from serving.supervisor import Supervisor
from serving.triton import ServerOptions

log = logging.getLogger("supervisor")


def admin_key(text: str) -> str:
    """``--admin-key``'s value: refused when empty or blank, which would leave the admin APIs behind no key."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty: give a secret, or leave --admin-key out for a new one")
    return text


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = ServerOptions()
    parser = argparse.ArgumentParser(prog="python -m serving", description=__doc__)
    parser.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY)
    parser.add_argument("--host", default=defaults.host, help="address to bind; anything but loopback is exposed")
    parser.add_argument("--http-port", type=int, default=defaults.http_port)
    parser.add_argument("--grpc-port", type=int, default=defaults.grpc_port)
    parser.add_argument("--metrics-port", type=int, default=defaults.metrics_port)
    parser.add_argument("--no-metrics", action="store_true", help="do not serve Prometheus metrics")
    parser.add_argument("--shm-mib", type=int, default=defaults.shm_default_mib, help="Python backend pool per stub")
    parser.add_argument("--exit-timeout", type=int, default=defaults.exit_timeout_s, help="seconds to drain on stop")
    parser.add_argument(
        "--admin-key", type=admin_key, help=f"value of the {ADMIN_KEY_HEADER} header the admin APIs need (not empty)"
    )
    parser.add_argument(
        "--allow-client-shm",
        action="store_true",
        help="clients on this host may register system shared memory for their images without the admin key",
    )
    parser.add_argument("--grpc-use-ssl", action="store_true", help="gRPC over TLS (needs the server cert and key)")
    parser.add_argument("--grpc-server-cert", type=Path, help="PEM certificate of the server")
    parser.add_argument("--grpc-server-key", type=Path, help="PEM private key of the server")
    parser.add_argument("--grpc-root-cert", type=Path, help="PEM CA: clients must present a cert it signed (mTLS)")
    parser.add_argument(
        "--model-config-name",
        default=defaults.model_config_name or "",
        help="load configs/NAME.pbtxt where a model has one ('' = config.pbtxt; default: gpu where TensorRT runs)",
    )
    parser.add_argument("--log-file", type=Path, help="tritonserver's log (default: this terminal)")
    parser.add_argument(
        "--trace-file",
        type=Path,
        help="prefix of the trace files, written while tracing is on "
        "(default: LOG.trace.json beside --log-file, else .cache/traces/trace-GRPC_PORT.json)",
    )
    parser.add_argument(
        "--one-process-group",
        action="store_true",
        help="tritonserver and its stubs join this process's group (make cluster kills a replica as one group)",
    )
    parser.add_argument("--lb-agent-port", type=int, help="answer HAProxy's agent check here (make cluster)")
    parser.add_argument(
        "--drain-delay", type=float, default=0.0, help="seconds the agent check answers drain before draining"
    )
    parser.add_argument("--probe-interval", type=float, default=10.0, help="seconds between probe inferences, 0=off")
    args = parser.parse_args(argv)
    if args.allow_client_shm and not is_loopback(args.host):
        parser.error("--allow-client-shm needs a loopback --host: anyone who reaches it may map this host's /dev/shm")
    if args.grpc_use_ssl and not (args.grpc_server_cert and args.grpc_server_key):
        parser.error("--grpc-use-ssl needs --grpc-server-cert and --grpc-server-key")
    if not args.grpc_use_ssl and (args.grpc_server_cert or args.grpc_server_key or args.grpc_root_cert):
        parser.error("--grpc-server-cert/--grpc-server-key/--grpc-root-cert need --grpc-use-ssl")
    return args


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def warn_if_exposed(host: str) -> None:
    if not is_loopback(host):
        log.warning("!" * 78)
        log.warning("binding %s: Triton 2.51 is reachable from the network and has unfixed CVEs", host)
        log.warning("(see README, Security). Use NVIDIA's container 26.06+ behind a firewall for that.")
        log.warning("!" * 78)


def server_options(args: argparse.Namespace) -> ServerOptions:
    return ServerOptions(
        repository=args.repository,
        host=args.host,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        metrics=not args.no_metrics,
        shm_default_mib=args.shm_mib,
        shm_growth_mib=args.shm_mib,
        exit_timeout_s=args.exit_timeout,
        admin_key=args.admin_key or new_admin_key(),
        allow_client_shm=args.allow_client_shm,
        grpc_server_cert=args.grpc_server_cert,
        grpc_server_key=args.grpc_server_key,
        grpc_root_cert=args.grpc_root_cert,
        model_config_name=args.model_config_name or None,
        trace_file=args.trace_file or default_trace_file(args.log_file, args.grpc_port),
    )


def default_trace_file(log_file: Path | None, grpc_port: int) -> Path:
    """Beside the server's log (``x.log`` -> ``x.trace.json``), else one per gRPC port under ``.cache/traces``."""
    if log_file is not None:
        return log_file.with_suffix(".trace.json")
    return CACHE / "traces" / f"trace-{grpc_port}.json"


def new_admin_key() -> str:
    """A random key for this run, written to ADMIN_KEY_FILE, readable by this user only."""
    key, path = secrets.token_urlsafe(24), ADMIN_KEY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(key + "\n")
    log.info("admin APIs need header %s (gRPC: %s); key in %s", ADMIN_KEY_HEADER, GRPC_ADMIN_KEY_HEADER, path)
    return key


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    args = parse_args(argv)
    warn_if_exposed(args.host)
    options = server_options(args)
    tls = "gRPC over TLS" + (" (mutual)" if options.grpc_root_cert else "") if args.grpc_use_ssl else "gRPC plaintext"
    log.info(
        "serving %s on %s (HTTP %d, %s %d)", options.repository, options.host, options.http_port, tls, options.grpc_port
    )
    supervisor = Supervisor(
        options,
        args.log_file,
        probe_interval_s=args.probe_interval,
        own_process_group=not args.one_process_group,
        agent_port=args.lb_agent_port,
        drain_delay_s=args.drain_delay,
    )
    return supervisor.run()


if __name__ == "__main__":
    sys.exit(main())
