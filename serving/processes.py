"""What a running tritonserver owns, read from /proc: its Python stubs, shared memory, memory, sockets (Linux); and
the ports a server can take.

``free_port`` picks from outside the kernel's ephemeral range (``/proc/sys/net/ipv4/ip_local_port_range``):
a client connection takes its local port from that range, so none can take a picked port between the pick and
the server's bind. Under pytest-xdist each worker picks from a block of its own (``PYTEST_XDIST_WORKER``), so two
workers never pick the same port; one process goes round its block, so it picks a port again only after all others.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import os
import random
import socket
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from python_backends.defaults import CLIENT_SHM_PREFIX

STUB_BINARY = "triton_python_backend_stub"
SHM_PREFIX = "/dev/shm/triton_python_backend_shm_region_"
CLIENT_SHM = f"/dev/shm/{CLIENT_SHM_PREFIX}"  # a client's region for its images (client.shared_memory)
TCP_LISTEN = "0A"


@dataclass(frozen=True)
class StubProcess:
    """One Python-backend stub: ``instance`` is the model instance name, e.g. ``yolov8_infer_0_0``."""

    pid: int
    model: str
    instance: str


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state, ppid, pgrp, ...), or None when gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def is_alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) that ``pid`` has used so far; 0 when it is gone."""
    fields = _stat_fields(pid)
    return 0.0 if fields is None else (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, idle) CPU seconds of the whole machine since boot, all cores together, from /proc/stat."""
    user, nice, system, idle, iowait, irq, softirq, steal = (
        int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    )
    ticks = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq + steal) / ticks, (idle + iowait) / ticks


def child_pids(pid: int) -> list[int]:
    """Direct children of ``pid``."""
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None and fields[1] == str(pid):
                children.append(int(entry))
    return children


def stub_processes(server_pid: int) -> list[StubProcess]:
    """The live Python stubs that ``server_pid`` started.

    A stub's argv is: stub binary, model.py path, shm region, sizes, parent pid, backend dir, ..., instance name.
    """
    stubs = []
    for pid in child_pids(server_pid):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].decode().endswith(STUB_BINARY) and len(argv) > 8 and is_alive(pid):
            model = Path(argv[1].decode()).parent.parent.name
            stubs.append(StubProcess(pid, model, argv[8].decode()))
    return stubs


def shm_regions(pids: list[int], prefix: str = SHM_PREFIX) -> set[Path]:
    """Shared-memory files mapped by any of ``pids``: the Python backend's, or those under ``prefix``."""
    regions = set()
    for pid in pids:
        try:
            maps = Path(f"/proc/{pid}/maps").read_text()
        except OSError:
            continue
        for line in maps.splitlines():
            fields = line.split(maxsplit=5)  # address, perms, offset, device, inode, path
            if len(fields) == 6 and fields[5].startswith(prefix):
                regions.add(Path(fields[5].removesuffix(" (deleted)")))
    return regions


def shm_files(prefix: str = SHM_PREFIX) -> set[Path]:
    """Every Python-backend shared-memory file in /dev/shm (or every one under ``prefix``), whoever made it."""
    return set(Path(prefix).parent.glob(Path(prefix).name + "*"))


def held_shm_files() -> set[Path]:
    """Python-backend shared-memory files that a live process maps or holds open."""
    held = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        held |= shm_regions([int(entry)])
        held |= {Path(t.removesuffix(" (deleted)")) for t in open_files(int(entry)) if t.startswith(SHM_PREFIX)}
    return held


def open_files(pid: int) -> list[str]:
    """What the file descriptors of ``pid`` point at (paths, ``socket:[inode]``, ...); [] where /proc does not
    tell (the process is gone, or another user's)."""
    targets = []
    with contextlib.suppress(OSError):
        for fd in os.scandir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                targets.append(os.readlink(fd.path))
    return targets


def orphaned_shm_files(before: set[Path], settle_s: float = 2.0) -> set[Path]:
    """Shared-memory files made since ``before`` that no process maps or holds open, ``settle_s`` after they were
    made: a server killed between creating a stub's region and mapping it leaves such a file (empty). A region
    of another server that is being set up right now is held, or younger than ``settle_s``, and stays."""
    candidates = shm_files() - before
    if candidates:
        candidates -= held_shm_files()
    ages = {}
    for path in candidates:
        with contextlib.suppress(OSError):
            ages[path] = time.time() - path.stat().st_mtime
    if not ages:
        return set()
    time.sleep(max(0.0, settle_s - min(ages.values())))
    return {p for p in set(ages) - held_shm_files() if p.exists()}


def rss_bytes(pids: list[int]) -> int:
    """Summed resident memory of ``pids`` (gone ones count 0)."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def _listening_sockets(port: int) -> list[tuple[str, int]]:
    """(IP address, socket inode) of each TCP socket listening on ``port`` (IPv4 and IPv6), from /proc/net/tcp*.

    IPv4-mapped IPv6 addresses are given as IPv4.
    """
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            address, hex_port = fields[1].split(":")
            if fields[3] == TCP_LISTEN and int(hex_port, 16) == port:
                raw = bytes.fromhex(address)
                words = struct.unpack(f"<{len(raw) // 4}I", raw)  # the kernel prints 32-bit words in host order
                ip = ipaddress.ip_address(struct.pack(f">{len(words)}I", *words))
                found.append((str(getattr(ip, "ipv4_mapped", None) or ip), int(fields[9])))  # ::ffff:127.0.0.1 → v4
    return found


def listening_addresses(port: int) -> set[str]:
    """IP addresses with a TCP socket listening on ``port`` (IPv4 and IPv6)."""
    return {address for address, _ in _listening_sockets(port)}


def listening_pids(port: int, pids: list[int] | None = None) -> set[int]:
    """Processes (of ``pids``; default: all) holding a socket that listens on ``port``, as far as /proc shows them
    (another user's file descriptors are not readable)."""
    inodes = {f"socket:[{inode}]" for _, inode in _listening_sockets(port)}
    if pids is None:
        pids = [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]
    return {pid for pid in (pids if inodes else []) if inodes.intersection(open_files(pid))}


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


def bindable(port: int, host: str = "127.0.0.1", reuse_address: bool = False) -> bool:
    """Nothing is bound to ``port`` on ``host``, nor on every address (no listener, no connection); with
    ``reuse_address``, connections in TIME_WAIT don't count, as servers bind over them."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        if reuse_address:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
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
    return not bindable(port, host, reuse_address=True)


def port_holder(port: int) -> str | None:
    """``pid N (command line)`` of a process listening on ``port``; None when /proc does not tell (another user's)."""
    for pid in sorted(listening_pids(port)):
        try:
            command = " ".join(Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split())
        except OSError:
            continue
        return f"pid {pid} ({command[:120]})"
    return None


def port_taken_lines(log: Path, start: int = 0) -> list[str]:
    """The lines of ``log`` written after byte ``start`` that say a port was taken (Triton's bind, the supervisor's
    check, the agent's): ``already in use``. [] when there is no log."""
    try:
        with open(log, "rb") as text:
            text.seek(start)
            lines = text.read().decode(errors="replace").splitlines()
    except FileNotFoundError:
        return []
    return [line.strip() for line in lines if "already in use" in line]


def taken_port(ports: dict[str, int], host: str = "127.0.0.1") -> str | None:
    """Why a server cannot listen on ``ports`` (what it serves there → port): the first one taken and by whom."""
    for what, port in ports.items():
        if port_in_use(port, host):
            holder = port_holder(port)
            by = f" by {holder}" if holder else ""
            return f"port {port} ({what}) is already in use on {host}{by}: stop it, or choose another port"
    return None
