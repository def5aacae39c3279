"""The client API and CLI against the real server: paths, bytes, arrays, async, CLI outputs, video."""

import asyncio
import csv
import io
import json
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from client.annotate import layout
from client.api import Detection, DetectionError, DetectionResult, YoloTritonClient
from client.async_api import AsyncYoloTritonClient
from python_backends.paths import PROJECT_ROOT


def detection(d: dict) -> Detection:
    return Detection(tuple(d["box"]), d["score"], d["class_id"], d["class_name"])


def summary(result):
    return [(d.class_id, round(d.score, 4), tuple(round(v, 1) for v in d.box)) for d in result.detections]


@pytest.fixture
def yolo(triton):
    with YoloTritonClient(triton.grpc_url) as client:
        client.wait_until_ready(30)
        yield client


def test_paths_bytes_and_arrays_agree(yolo, sample_images):
    png = sample_images["astronaut.png"]  # lossless: the array is exactly what the server decodes
    by_path = yolo.detect(png)
    by_bytes = yolo.detect(png.read_bytes())
    by_array = yolo.detect(cv2.imread(str(png), cv2.IMREAD_COLOR))
    assert by_path.detections and summary(by_path) == summary(by_bytes) == summary(by_array)
    assert (by_array.width, by_array.height) == (512, 512)
    assert by_path.detections[0].class_name == "Normal"


def test_array_batch_and_encoded_batch(yolo, sample_images):
    frames = [cv2.imread(str(sample_images[n]), cv2.IMREAD_COLOR) for n in ("astronaut.png", "camera.png")]
    from_arrays = yolo.detect_batch(frames)
    from_files = yolo.detect_batch([sample_images["astronaut.png"], sample_images["camera.png"]])
    assert [summary(r) for r in from_arrays] == [summary(r) for r in from_files]


def test_thresholds_and_class_filter(yolo, sample_images):
    bus = sample_images["bus.jpg"]
    loose, strict = yolo.detect(bus, conf=0.05), yolo.detect(bus, conf=0.6)
    assert len(loose.detections) > len(strict.detections) >= 1
    assert all(d.score > 0.6 for d in strict.detections)
    assert yolo.detect(bus, classes=[1]).detections == []  # "Fall": nobody falls in bus.jpg
    assert len(yolo.detect(bus, classes=[0]).detections) == len(yolo.detect(bus).detections)


def test_invalid_argument_is_raised_at_once_without_retry(yolo):
    with pytest.raises(DetectionError) as error:
        yolo.detect(b"not an image at all")
    assert error.value.status == "StatusCode.INVALID_ARGUMENT"
    assert "cannot decode image" in error.value.message
    assert yolo.last_attempts == 1


def test_unavailable_is_retried():
    client = YoloTritonClient("127.0.0.1:1", timeout_s=2, retries=2, backoff_s=0.01)  # nothing listens on port 1
    with pytest.raises(DetectionError) as error:
        client.detect(b"\x89PNG")
    assert error.value.status == "StatusCode.UNAVAILABLE"
    assert client.last_attempts == 3


class TimedAsyncClient(AsyncYoloTritonClient):
    """The asyncio client, recording each ``detect``'s (start, end) in ``spans`` (time.monotonic())."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.spans: list[tuple[float, float]] = []

    async def detect(self, *args, **kwargs):
        start = time.monotonic()
        try:
            return await super().detect(*args, **kwargs)
        finally:
            self.spans.append((start, time.monotonic()))


def most_at_once(spans: list[tuple[float, float]]) -> int:
    """The largest number of (start, end) intervals that were open at the same moment."""
    return max(sum(start <= moment < end for start, end in spans) for moment, _ in spans)


def test_async_keeps_requests_in_flight(triton, sample_images):
    images = [sample_images[n] for n in ("bus.jpg", "zidane.jpg", "camera.png", "astronaut.png")] * 2
    images.append(b"broken")

    async def run():
        async with TimedAsyncClient(triton.grpc_url) as client:
            return await client.detect_many(images, concurrency=4), client.spans

    results, spans = asyncio.run(run())
    assert len(results) == len(images)
    assert isinstance(results[-1], DetectionError) and results[-1].status == "StatusCode.INVALID_ARGUMENT"
    with YoloTritonClient(triton.grpc_url) as sync:
        assert summary(results[0]) == summary(sync.detect(images[0]))
    assert summary(results[0]) == summary(results[4])
    # one request per image, 4 of them in flight together, never more
    assert len(spans) == len(images) and most_at_once(spans) == 4, spans


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (np.zeros((0, 10, 3), np.uint8), "FRAME is empty"),
        (np.zeros((10, 10, 4), np.uint8), None),  # Triton refuses a channel count other than 3
        (np.zeros((10, 10), np.uint8), None),  # and a wrong rank
    ],
)
def test_bad_raw_frames_are_refused(grpc_client, frame, message, sample_images):
    tensor = grpcclient.InferInput("IMAGE", [1, *frame.shape], "UINT8")
    tensor.set_data_from_numpy(frame[None])
    with pytest.raises(InferenceServerException) as error:
        grpc_client.infer("yolov8_raw", [tensor])
    assert error.value.status() == "StatusCode.INVALID_ARGUMENT"
    if message:
        assert message in error.value.message()
    good = grpcclient.InferInput("IMAGE", [1, 512, 512, 3], "UINT8")
    good.set_data_from_numpy(cv2.imread(str(sample_images["camera.png"]), cv2.IMREAD_COLOR)[None])
    assert grpc_client.infer("yolov8_raw", [good]).as_numpy("num_dets")[0, 0] >= 1


def test_raw_frame_of_wrong_dtype_is_refused(grpc_client):
    tensor = grpcclient.InferInput("IMAGE", [1, 8, 8, 3], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 8, 8, 3), np.float32))
    with pytest.raises(InferenceServerException, match="(?i)data-type|datatype|dtype"):
        grpc_client.infer("yolov8_raw", [tensor])


def run_cli(triton, *args):
    return subprocess.run(
        [sys.executable, "-m", "client", "detect", "--url", triton.grpc_url, "--quiet", *map(str, args)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def photo_folder(tmp_path, sample_images):
    folder = tmp_path / "photos"
    (folder / "nested").mkdir(parents=True)
    for name in ("bus.jpg", "zidane.jpg"):
        (folder / name).write_bytes(sample_images[name].read_bytes())
    (folder / "nested" / "camera.png").write_bytes(sample_images["camera.png"].read_bytes())
    (folder / "astronaut.png").write_bytes(sample_images["astronaut.png"].read_bytes())  # libpng warns on it
    (folder / "nested" / "corrupt.jpg").write_bytes(b"\xff\xd8 this is not really a jpeg")
    return folder


def test_cli_folder_json_csv_and_save(triton, photo_folder, tmp_path):
    saved = tmp_path / "annotated"
    done = run_cli(triton, photo_folder, "--json", "--save", saved, "--concurrency", "3")
    assert done.returncode == 1  # the corrupt file failed ...
    assert "corrupt.jpg" in done.stderr and "summary: 4 images, 1 failed" in done.stderr
    assert "libpng" not in done.stderr  # --save reads astronaut.png's colour profile without a warning
    results = json.loads(done.stdout)  # ... and the run went on
    names = sorted(r["image"].rsplit("/", 1)[1] for r in results)
    assert names == ["astronaut.png", "bus.jpg", "camera.png", "zidane.jpg"]
    for result in results:
        original = cv2.imread(result["image"], cv2.IMREAD_COLOR)
        drawn = cv2.imread(str(saved / result["image"].rsplit("/", 1)[1]), cv2.IMREAD_COLOR)
        changed = np.any(np.abs(original.astype(int) - drawn.astype(int)) > 40, axis=2)  # past JPEG noise
        drawn_on = np.zeros_like(changed)  # box outlines (plus line width and JPEG ringing) and labels
        for mark in layout(
            *original.shape[:2], DetectionResult("", 0, 0, [detection(d) for d in result["detections"]])
        ):
            x1, y1, x2, y2 = mark.box
            ring = np.zeros_like(changed)
            ring[max(0, y1 - 12) : y2 + 12, max(0, x1 - 12) : x2 + 12] = True
            ring[max(0, y1 + 12) : y2 - 12, max(0, x1 + 12) : x2 - 12] = False  # the inside stays as it was
            drawn_on |= ring
            left, top, right, bottom = mark.label_box
            drawn_on[max(0, top - 8) : bottom + 8, max(0, left - 8) : right + 8] = True
        assert changed.any() == bool(result["detections"])
        assert not (changed & ~drawn_on).any(), result["image"]

    out_csv = tmp_path / "out.csv"
    done = run_cli(triton, photo_folder / "bus.jpg", photo_folder / "nested", "--csv", "--output", out_csv)
    rows = list(csv.DictReader(io.StringIO(out_csv.read_text())))
    assert {r["image"].rsplit("/", 1)[1] for r in rows} == {"bus.jpg", "camera.png"}
    assert all(r["class_name"] == "Normal" and float(r["score"]) > 0.25 for r in rows)


def test_cli_video_through_raw_frames(triton, sample_images, tmp_path):
    video = tmp_path / "clip.mp4"
    size = (640, 480)
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 5, size)
    for name in ("bus.jpg", "zidane.jpg", "camera.png", "bus.jpg", "zidane.jpg"):
        writer.write(cv2.resize(cv2.imread(str(sample_images[name])), size))
    writer.release()
    saved = tmp_path / "out"
    done = run_cli(triton, video, "--json", "--save", saved)
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    assert [r["image"] for r in results] == [f"{video}#frame={i}" for i in range(5)]
    assert all(r["width"] == 640 and r["height"] == 480 and r["detections"] for r in results)
    annotated = cv2.VideoCapture(str(saved / "clip_annotated.mp4"))
    assert int(annotated.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    annotated.release()
