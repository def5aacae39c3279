"""Loopback ports for the servers this project starts, and what holds a port that is taken (Linux).

``free_port`` picks from outside the kernel's ephemeral range (``/proc/sys/net/ipv4/ip_local_port_range``):
a client connection takes its local port from that range, so none can take a picked port between the pick and
the server's bind. Under pytest-xdist each worker picks from a block of its own (``PYTEST_XDIST_WORKER``), so two
workers never pick the same port; one process goes round its block, so it picks a port again only after all others.
"""

from __future__ import annotations

import functools
import os
import random
import socket
import threading
from pathlib import Path

from serving.processes import listening_pids

EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LINUX_EPHEMERAL_RANGE = (32768, 60999)  # the kernel's default, where the file can't be read
LOWEST_PORT = 10000  # below it: the ports services listen on (8000, 9090, ...)
_lock = threading.Lock()
_next = [-1]  # this process's next position in its block; -1: not chosen yet


def ephemeral_range() -> tuple[int, int]:
    """The kernel's range for the local ports of client connections (both ends included)."""
    try:
        low, high = (int(value) for value in EPHEMERAL_RANGE.read_text().split())
    except (OSError, ValueError):
        return LINUX_EPHEMERAL_RANGE
    return low, high


@functools.cache
def port_block() -> tuple[int, ...]:
    """The ports this process picks from: LOWEST_PORT to 65535 outside the ephemeral range; under pytest-xdist,
    this worker's share of them."""
    low, high = ephemeral_range()
    ports = tuple(p for p in range(LOWEST_PORT, 65536) if not low <= p <= high)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # gw0, gw1, ...
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if worker.startswith("gw") and workers > 1:
        size = len(ports) // workers
        index = int(worker[2:]) % workers
        ports = ports[index * size : (index + 1) * size]
    return ports


def bindable(port: int, host: str = "127.0.0.1") -> bool:
    """Nothing is bound to ``port`` on ``host``, nor on every address (no listener, no connection)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A loopback TCP port that nothing uses right now and that no client connection can take (see the module)."""
    block = port_block()
    with _lock:
        if _next[0] < 0:
            _next[0] = random.randrange(len(block))  # processes of one worker (a cluster and its test) start apart
        for step in range(len(block)):
            position = (_next[0] + step) % len(block)
            if bindable(block[position]):
                _next[0] = position + 1
                return block[position]
    raise OSError(f"no free port among {len(block)} outside the ephemeral range {ephemeral_range()}")


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Something listens on ``host``:``port`` (connections in TIME_WAIT don't count: servers bind over them)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def port_holder(port: int) -> str | None:
    """``pid N (command line)`` of a process listening on ``port``; None when /proc does not tell (another user's)."""
    for pid in sorted(listening_pids(port)):
        try:
            command = " ".join(Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split())
        except OSError:
            continue
        return f"pid {pid} ({command[:120]})"
    return None


def taken_port(ports: dict[str, int], host: str = "127.0.0.1") -> str | None:
    """Why a server cannot listen on ``ports`` (what it serves there → port): the first one taken and by whom."""
    for what, port in ports.items():
        if port_in_use(port, host):
            holder = port_holder(port)
            by = f" by {holder}" if holder else ""
            return f"port {port} ({what}) is already in use on {host}{by}: stop it, or choose another port"
    return None
