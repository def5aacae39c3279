"""HAProxy's runtime API on its stats socket (``<state dir>/haproxy.sock``, admin level): its statistics, and a
replica's servers moved to new ports."""

from __future__ import annotations

import socket
from pathlib import Path

from cluster.config import ReplicaPorts

BACKENDS = ("grpc_replicas", "http_replicas")


def runtime_command(state_dir: Path, command: str) -> str:
    """One command to HAProxy's runtime API; its answer. OSError when HAProxy does not answer."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(2)
        sock.connect(str(state_dir / "haproxy.sock"))
        sock.sendall(command.encode() + b"\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer.decode()


def balancer_stats(state_dir: Path) -> list[dict[str, str]]:
    """HAProxy's ``show stat`` rows (pxname, svname, status, bin, ...); [] if it is not up."""
    try:
        lines = runtime_command(state_dir, "show stat").splitlines()
    except OSError:
        return []
    header = lines[0].lstrip("# ").split(",")
    return [dict(zip(header, line.split(","))) for line in lines[1:] if line]


def balancer_states(state_dir: Path) -> dict[tuple[str, str], str]:
    """HAProxy's view: (backend, replica name) → status (UP, DOWN, DRAIN (agent), ...)."""
    rows = balancer_stats(state_dir)
    return {(row["pxname"], row["svname"]): row["status"] for row in rows if row["svname"].startswith("replica-")}


def move_replica(state_dir: Path, name: str, ports: ReplicaPorts) -> None:
    """Point both backends' server ``name`` at ``ports``: traffic, health check and agent check (as
    ``cluster.config.haproxy_config`` writes them). OSError when HAProxy does not answer; RuntimeError when it
    refuses a command."""
    traffic = {"grpc_replicas": ports.grpc_port, "http_replicas": ports.http_port}
    for backend in BACKENDS:
        server = f"{backend}/{name}"
        for command in (
            f"set server {server} addr 127.0.0.1 port {traffic[backend]}",
            f"set server {server} check-port {ports.http_port}",
            f"set server {server} agent-port {ports.agent_port}",
        ):
            answer = runtime_command(state_dir, command).strip()
            if answer and not answer.startswith(("IP changed", "no need to change")):
                raise RuntimeError(f"HAProxy refused '{command}': {answer}")
