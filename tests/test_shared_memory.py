"""Images through the clients' system shared memory, against real servers: the same detections as over gRPC, the
refusal of a server without --allow-client-shm, a bad region's error on its own request, nothing left in /dev/shm.

The servers serve tests/models' YOLO11n (conftest's yolo11n_repository; classes red, green, blue; seeded random
weights that find tens of boxes in each photo): the subject is how the images travel, not the model.
"""

from __future__ import annotations

import asyncio
import gc
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.utils.shared_memory as shm
from own_server import options, started
from tritonclient.utils import InferenceServerException

from client.api import YoloTritonClient
from client.async_api import AsyncYoloTritonClient
from client.errors import SharedMemoryRefused
from client.shared_memory import unregister
from python_backends.defaults import GRPC_ADMIN_KEY_HEADER
from python_backends.paths import PROJECT_ROOT
from serving.processes import CLIENT_SHM, shm_files

KEY = "test-admin-key"
ADMIN = {GRPC_ADMIN_KEY_HEADER: KEY}


@pytest.fixture(scope="module")
def open_server(yolo11n_repository, tmp_path_factory):
    """Admin key, and client shared memory allowed (python -m serving --allow-client-shm)."""
    settings = options(yolo11n_repository, admin_key=KEY, allow_client_shm=True)
    with started(settings, tmp_path_factory.mktemp("open") / "tritonserver.log") as server:
        yield server


@pytest.fixture(scope="module")
def frames(sample_images) -> dict[str, np.ndarray]:
    """BGR frames of three sizes: 1080x810 (bus), 720x1280 (zidane), 512x512 (camera)."""
    return {
        name: cv2.imread(str(sample_images[name]), cv2.IMREAD_COLOR) for name in ("bus.jpg", "zidane.jpg", "camera.png")
    }


def summary(result):
    return [(d.class_id, round(d.score, 4), tuple(round(v, 1) for v in d.box)) for d in result.detections]


def registered(server) -> dict[str, int]:
    """The server's registered system shared-memory regions: name -> byte size."""
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        status = client.get_system_shared_memory_status(headers=ADMIN, as_json=True)
        return {region["name"]: int(region["byte_size"]) for region in status.get("regions", {}).values()}
    finally:
        client.close()


def test_frames_and_encoded_images_give_the_detections_of_grpc(open_server, frames, sample_images):
    with (
        YoloTritonClient(open_server.grpc_url) as wire,
        YoloTritonClient(open_server.grpc_url, shared_memory=True) as yolo,
    ):
        region = Path(f"/dev/shm/{yolo.frames.name}")
        for name, frame in frames.items():  # bus, then zidane: more bytes, so the region grows and registers again
            by_wire, by_shm = wire.detect(frame), yolo.detect(frame)
            assert by_shm.detections and summary(by_shm) == summary(by_wire), name
            assert (by_shm.width, by_shm.height) == (frame.shape[1], frame.shape[0])
        zidane = frames["zidane.jpg"].nbytes
        assert yolo.frames.slots == 1 and zidane <= yolo.frames.slot_bytes < zidane + 2**20
        assert registered(open_server) == {yolo.frames.name: yolo.frames.slot_bytes}
        assert region.stat().st_size == yolo.frames.slot_bytes

        batch = [frames["bus.jpg"], frames["bus.jpg"][::-1].copy()]  # one request of two frames in one slot
        assert [summary(r) for r in yolo.detect_batch(batch)] == [summary(r) for r in wire.detect_batch(batch)]
        for name in ("bus.jpg", "astronaut.png"):  # encoded images through yolov8
            assert summary(yolo.detect(sample_images[name], conf=0.4)) == summary(
                wire.detect(sample_images[name], conf=0.4)
            )
    assert registered(open_server) == {} and not region.exists()


def test_async_client_keeps_a_slot_per_request_in_flight(open_server, frames):
    images = list(frames.values()) * 3

    async def run():
        async with AsyncYoloTritonClient(open_server.grpc_url, shared_memory=True) as yolo:
            found = await yolo.detect_many(images, concurrency=3)
            return found, yolo.frames.slots, yolo.frames.name

    found, slots, name = asyncio.run(run())
    with YoloTritonClient(open_server.grpc_url) as wire:
        expected = {name: summary(wire.detect(frame)) for name, frame in frames.items()}
    assert [summary(r) for r in found] == list(expected.values()) * 3
    assert 1 <= slots <= 3
    assert registered(open_server) == {} and not Path(f"/dev/shm/{name}").exists()


def test_garbage_collection_unregisters_and_removes_the_region(open_server, frames):
    yolo = YoloTritonClient(open_server.grpc_url, shared_memory=True)
    assert yolo.detect(frames["camera.png"]).detections
    name = yolo.frames.name
    assert list(registered(open_server)) == [name]
    del yolo
    gc.collect()
    assert registered(open_server) == {} and not Path(f"/dev/shm/{name}").exists()


def run_cli(server, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "client", "detect", "--url", server.grpc_url, "--quiet", "--json", *map(str, args)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_sends_video_frames_and_images_through_shared_memory(open_server, frames, sample_images, tmp_path):
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 5, (640, 480))
    for frame in frames.values():
        writer.write(cv2.resize(frame, (640, 480)))
    writer.release()
    sources = [sample_images["zidane.jpg"], video]
    through_shm = run_cli(open_server, *sources, "--shared-memory", "--concurrency", "2")
    assert through_shm.returncode == 0, through_shm.stderr
    over_grpc = run_cli(open_server, *sources)
    results = json.loads(through_shm.stdout)
    assert len(results) == 4 and all(r["detections"] for r in results)
    assert results == json.loads(over_grpc.stdout)


def test_a_server_without_allow_client_shm_refuses_and_says_how(yolo11n_repository, frames, tmp_path):
    before = shm_files(CLIENT_SHM)
    with started(options(yolo11n_repository, admin_key=KEY), tmp_path / "tritonserver.log") as server:
        with YoloTritonClient(server.grpc_url, shared_memory=True, retries=0) as yolo:
            with pytest.raises(SharedMemoryRefused) as refused:
                yolo.detect(frames["camera.png"])
            assert refused.value.status == "StatusCode.UNAVAILABLE"
            assert "restricted" in refused.value.message and "--allow-client-shm" in refused.value.message
            assert shm_files(CLIENT_SHM) == before  # the region made for the registration is gone
        with YoloTritonClient(server.grpc_url) as wire:
            assert wire.detect(frames["camera.png"]).detections  # the same frame over gRPC is served
        done = run_cli(server, PROJECT_ROOT / ".cache" / "samples" / "bus.jpg", "--shared-memory")
        assert done.returncode == 2 and "start it with --allow-client-shm" in done.stderr, done.stderr
        assert registered(server) == {}
    assert shm_files(CLIENT_SHM) == before


@pytest.fixture
def stranger(open_server):
    """Another client's region of 1 MiB, registered as ``stranger`` with the open server; removed afterwards."""
    client = grpcclient.InferenceServerClient(open_server.grpc_url)
    handle = shm.create_shared_memory_region("stranger", f"/{Path(CLIENT_SHM).name}stranger", 2**20)
    client.register_system_shared_memory("stranger", f"/{Path(CLIENT_SHM).name}stranger", 2**20)
    yield client
    unregister(client, "stranger")
    shm.destroy_shared_memory_region(handle)
    client.close()


def frame_input(region: str, frame: np.ndarray) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput("IMAGE", [1, *frame.shape], "UINT8")
    tensor.set_shared_memory(region, frame.nbytes)
    return tensor


def refusal(client, region: str, frame: np.ndarray) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as refused:
        client.infer("yolov8_raw", [frame_input(region, frame)])
    return refused.value


def test_a_bad_region_fails_its_own_request_only(open_server, stranger, frames):
    bus, camera = frames["bus.jpg"], frames["camera.png"]  # 2.6 MB, more than the stranger's 1 MiB; 0.8 MB
    with YoloTritonClient(open_server.grpc_url, shared_memory=True) as yolo:
        expected = summary(yolo.detect(bus))
        too_small = refusal(stranger, "stranger", bus)
        assert too_small.status() == "StatusCode.INVALID_ARGUMENT", too_small
        assert "Invalid offset + byte size for shared memory region: 'stranger'" in too_small.message()

        gone = refusal(stranger, "never-registered", camera)
        assert gone.status() == "StatusCode.NOT_FOUND", gone
        assert "Unable to find shared memory region: 'never-registered'" in gone.message()

        with pytest.raises(InferenceServerException) as taken:  # another client's name is not anyone else's
            stranger.register_system_shared_memory(yolo.frames.name, "/elsewhere", 4096)
        assert f"shared memory region '{yolo.frames.name}' already in manager" in taken.value.message()

        assert summary(yolo.detect(bus)) == expected  # this client's region is untouched, and still works
        assert registered(open_server) == {"stranger": 2**20, yolo.frames.name: yolo.frames.slot_bytes}


def test_a_client_registers_its_region_again_when_the_server_lost_it(open_server, stranger, frames):
    """A restarted server knows no region: the client's request that hears so registers its region again and is
    sent once more (here another client unregisters it, as a restart would forget it)."""
    with YoloTritonClient(open_server.grpc_url, shared_memory=True) as yolo:
        expected = summary(yolo.detect(frames["camera.png"]))
        unregister(stranger, yolo.frames.name)  # "in use" until Triton releases the request
        assert yolo.frames.name not in registered(open_server)
        assert summary(yolo.detect(frames["camera.png"])) == expected
        assert registered(open_server)[yolo.frames.name] == yolo.frames.slot_bytes
