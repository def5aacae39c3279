"""``serving.processes``: servers' ports outside the kernel's ephemeral range, a block per pytest-xdist worker, and
a taken port named with what holds it."""

from __future__ import annotations

import os
import socket

import pytest

from serving.processes import bindable, ephemeral_range, free_port, port_block, taken_port


def test_free_ports_are_outside_the_ephemeral_range_and_each_picked_once():
    low, high = ephemeral_range()
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == 50
    assert not [port for port in ports if low <= port <= high]
    assert all(bindable(port) for port in ports)


@pytest.fixture
def worker_blocks(monkeypatch):
    """Worker name → the block port_block() gives it under two workers."""
    blocks = {}
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
    for worker in ("gw0", "gw1"):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
        port_block.cache_clear()
        blocks[worker] = set(port_block())
    yield blocks
    port_block.cache_clear()  # the next pick reads this process's own environment again


def test_two_workers_pick_from_disjoint_blocks(worker_blocks):
    low, high = ephemeral_range()
    assert worker_blocks["gw0"] and worker_blocks["gw1"]
    assert not worker_blocks["gw0"] & worker_blocks["gw1"]
    assert not [port for port in worker_blocks["gw0"] | worker_blocks["gw1"] if low <= port <= high]


def test_a_taken_port_is_named_with_its_holder():
    with socket.create_server(("127.0.0.1", free_port())) as server:
        port = server.getsockname()[1]
        problem = taken_port({"HTTP": free_port(), "gRPC": port})
        assert problem is not None and problem.startswith(f"port {port} (gRPC) is already in use on 127.0.0.1")
        assert f"by pid {os.getpid()} (" in problem
    assert taken_port({"gRPC": port}) is None
