"""What a running tritonserver owns, read from /proc: its Python stubs, shared memory, memory, sockets (Linux)."""

from __future__ import annotations

import ipaddress
import os
import struct
from dataclasses import dataclass
from pathlib import Path

STUB_BINARY = "triton_python_backend_stub"
SHM_PREFIX = "/dev/shm/triton_python_backend_shm_region_"
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


def shm_regions(pids: list[int]) -> set[Path]:
    """Python-backend shared-memory files mapped by any of ``pids``."""
    regions = set()
    for pid in pids:
        try:
            maps = Path(f"/proc/{pid}/maps").read_text()
        except OSError:
            continue
        for line in maps.splitlines():
            fields = line.split(maxsplit=5)  # address, perms, offset, device, inode, path
            if len(fields) == 6 and fields[5].startswith(SHM_PREFIX):
                regions.add(Path(fields[5].removesuffix(" (deleted)")))
    return regions


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
    found = set()
    for pid in pids if inodes else []:
        try:
            descriptors = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in descriptors:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                    found.add(pid)
                    break
            except OSError:
                continue
    return found
