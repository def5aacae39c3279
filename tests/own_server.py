"""Helpers for tests that need a tritonserver of their own (killed, overloaded, restarted, configured)."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from python_backends.triton_helpers.config import instance_count
from serving.processes import free_port
from serving.server import TritonServer
from serving.triton import ServerOptions


def free_ports() -> dict[str, int]:
    return {"http_port": free_port(), "grpc_port": free_port(), "metrics_port": free_port()}


def options(repository: Path, **changes) -> ServerOptions:
    return ServerOptions(**({"repository": repository, "exit_timeout_s": 10} | free_ports() | changes))


@contextlib.contextmanager
def started(settings: ServerOptions, log: Path, timeout_s: float = 120.0) -> Iterator[TritonServer]:
    """A started server, killed (not stopped) when the block ends, its stubs and shared memory cleaned up.

    Triton's own stop checks each stub's health with a one-second sleep before it finalizes it, which takes
    3.6 s for the default repository. A test that does not check the stop has no use for that wait; the
    stop itself is tested by test_resilience, test_drain_timeout, test_supervisor and test_cluster.
    """
    server = TritonServer(settings, log).start(timeout_s)
    try:
        yield server
    finally:
        server.kill()
        assert server.leftovers() == ([], []), server.leftovers()


def edited_repository(source: Path, target: Path, edits: dict[str, list[tuple[str, str]]]) -> Path:
    """Copy a prepared repository and replace text in the stages' config.pbtxt: {stage: [(old, new)]}."""
    shutil.copytree(source, target)
    for stage, replacements in edits.items():
        config = target / stage / "config.pbtxt"
        text = config.read_text()
        for old, new in replacements:
            assert old in text, (stage, old)
            text = text.replace(old, new)
        config.write_text(text)
    return target


def stub_count(grpc_url: str) -> int:
    """Python stubs the server at ``grpc_url`` runs: one per instance of each stage, as it loaded them."""
    client = grpcclient.InferenceServerClient(grpc_url)
    try:
        stages = ("yolov8_preprocess", "yolov8_infer", "yolov8_postprocess")
        return sum(instance_count(client.get_model_config(stage, as_json=True)["config"]) for stage in stages)
    finally:
        client.close()


def image_input(payload: bytes, batch: int = 1) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput("IMAGE", [batch, 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[payload]] * batch, dtype=object))
    return tensor


def ensemble_outcome(url: str, payload: bytes, batch: int = 1, timeout_s: float = 120.0):
    """One request of ``batch`` copies of an image through ``yolov8`` on its own connection: the first image's
    num_dets, or the error."""
    client = grpcclient.InferenceServerClient(url)
    try:
        reply = client.infer("yolov8", [image_input(payload, batch)], client_timeout=timeout_s)
        return int(reply.as_numpy("num_dets")[0, 0])
    except InferenceServerException as exc:
        return exc
    finally:
        client.close()
