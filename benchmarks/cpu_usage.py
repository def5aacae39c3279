"""Where the CPU goes: core-milliseconds per image for tritonserver, each stage's stubs, the rest, and idle."""

from __future__ import annotations

from collections import defaultdict

from serving.processes import cpu_seconds, machine_cpu_seconds, stub_processes

IDLE, OTHER, SERVER, BUSY = "idle", "other", "tritonserver", "machine busy"


def cpu_snapshot(server_pid: int) -> dict[str, float]:
    """CPU seconds so far: tritonserver, each model's stubs (instances summed), and the machine's busy and idle."""
    found: dict[str, float] = defaultdict(float)
    found[SERVER] = cpu_seconds(server_pid)
    for stub in stub_processes(server_pid):
        found[stub.model] += cpu_seconds(stub.pid)
    found[BUSY], found[IDLE] = machine_cpu_seconds()
    return dict(found)


def cpu_ms_per_image(before: dict[str, float], after: dict[str, float], images: int) -> dict[str, float]:
    """Core-ms per image between two snapshots over ``images`` images.

    ``other`` is the machine's busy time outside the server (the load generator, the kernel, the rest);
    the values add up to cores x elapsed / images.
    """
    delta = {key: (after[key] - before.get(key, 0.0)) * 1e3 / images for key in after}
    busy = delta.pop(BUSY)
    delta[OTHER] = max(0.0, busy - sum(v for k, v in delta.items() if k != IDLE))
    return delta
