"""Bad and unusual input through the real server: each bad request fails alone, clearly; the next succeeds."""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from bad_images import cmyk_jpeg, encode, hdr_bomb, jpeg_with_size, palette_png, pasted, png_bomb
from held_stage import pending_requests, stages_held, wait_until, waits_for_lock
from own_server import stub_count
from tritonclient.utils import InferenceServerException

from client.stage_stats import deltas, executions_by_batch_size, snapshot
from python_backends.preprocess.image_decode import declared_size
from serving.processes import listening_addresses

INVALID = "StatusCode.INVALID_ARGUMENT"
PREPROCESS = "yolov8_preprocess"


def infer(client, payload: bytes, conf: float | None = None, iou: float | None = None):
    image = grpcclient.InferInput("IMAGE", [1, 1], "BYTES")
    image.set_data_from_numpy(np.array([[payload]], dtype=object))
    inputs = [image]
    for name, value in (("CONF_THRESHOLD", conf), ("IOU_THRESHOLD", iou)):
        if value is not None:
            tensor = grpcclient.InferInput(name, [1, 1], "FP32")
            tensor.set_data_from_numpy(np.array([[value]], np.float32))
            inputs.append(tensor)
    return client.infer("yolov8", inputs, client_timeout=120)


def assert_good(client, sample_images):
    """A normal request right after a bad one still gets its detections."""
    reply = infer(client, sample_images["bus.jpg"].read_bytes())
    assert reply.as_numpy("num_dets")[0, 0] >= 1
    assert list(reply.as_numpy("image_size")[0]) == [810, 1080]


def bad_payloads(sample_images) -> dict[str, tuple[bytes, str]]:
    """Name → (payload, text the error must contain)."""
    jpeg = sample_images["bus.jpg"].read_bytes()
    noise = np.random.default_rng(6).integers(0, 256, 10_000, dtype=np.uint8).tobytes()
    return {
        "zero bytes": (b"", "empty image: the request carried 0 bytes"),
        "random bytes": (noise, "cannot decode image (10000 bytes)"),
        "truncated jpeg": (jpeg[: len(jpeg) // 2], "truncated JPEG"),
        "jpeg cut in its header": (jpeg[:300], "truncated JPEG header"),
        "png bomb 60000x60000": (png_bomb(), "image too large: its header declares 60000x60000"),
        "jpeg bomb 65000x65000": (jpeg_with_size(65000, 65000), "image too large: its header declares 65000x65000"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "zero bytes",
        "random bytes",
        "truncated jpeg",
        "jpeg cut in its header",
        "png bomb 60000x60000",
        "jpeg bomb 65000x65000",
    ],
)
def test_bad_image_fails_alone(grpc_client, sample_images, case):
    payload, message = bad_payloads(sample_images)[case]
    with pytest.raises(InferenceServerException) as error:
        infer(grpc_client, payload)
    assert error.value.status() == INVALID
    assert message in error.value.message()
    assert_good(grpc_client, sample_images)


@pytest.mark.parametrize("name", ["CONF_THRESHOLD", "IOU_THRESHOLD"])
@pytest.mark.parametrize("value", [float("nan"), -0.1, 1.5])
def test_bad_threshold_fails_alone(grpc_client, sample_images, name, value):
    setting = {"conf": value} if name == "CONF_THRESHOLD" else {"iou": value}
    with pytest.raises(InferenceServerException) as error:
        infer(grpc_client, sample_images["zidane.jpg"].read_bytes(), **setting)
    assert error.value.status() == INVALID
    assert f"{name.lower()} must be a number in [0, 1]" in error.value.message()
    assert_good(grpc_client, sample_images)


def unusual_images(sample_images) -> dict[str, bytes]:
    zidane = sample_images["zidane.jpg"].read_bytes()
    bus = cv2.imread(str(sample_images["bus.jpg"]), cv2.IMREAD_COLOR)  # 810x1080
    return {
        "1x1": encode(np.full((1, 1, 3), 90, np.uint8)),
        "4000x10": encode(cv2.resize(bus, (4000, 10), interpolation=cv2.INTER_AREA), ".jpg"),
        "10x4000": encode(cv2.resize(bus, (10, 4000), interpolation=cv2.INTER_AREA)),
        "bus in 4000x1080": encode(pasted(bus, 4000, 1080, 1600, 0)),
        "bus in 810x4000": encode(pasted(bus, 810, 4000, 0, 1500)),
        "grayscale jpeg": sample_images["bus_gray.jpg"].read_bytes(),
        "rgba png": sample_images["zidane_rgba.png"].read_bytes(),
        "16-bit png": sample_images["hopper_16bit.png"].read_bytes(),
        "palette png": palette_png(zidane),
        "cmyk jpeg": cmyk_jpeg(zidane),
    }


def ultralytics_letterbox(image: np.ndarray, size: int = 640) -> tuple[np.ndarray, float, tuple[int, int]]:
    """Ultralytics' LetterBox and scale_boxes geometry, transcribed: (size x size BGR image, gain, (pad_x, pad_y))."""
    height, width = image.shape[:2]
    gain = min(size / height, size / width)
    new_w, new_h = int(round(width * gain)), int(round(height * gain))
    if (new_w, new_h) != (width, height):
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    dw, dh = (size - new_w) / 2, (size - new_h) / 2
    top, bottom, left, right = (int(round(v)) for v in (dh - 0.1, dh + 0.1, dw - 0.1, dw + 0.1))
    padded = cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(114, 114, 114))
    pad = (round((size - width * gain) / 2 - 0.1), round((size - height * gain) / 2 - 0.1))
    return padded, gain, pad


def reply_detections(reply) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(boxes float32 (N, 4), scores float32 (N,), classes int32 (N,)) of the first image in ``reply``."""
    count = int(reply.as_numpy("num_dets")[0, 0])
    return tuple(reply.as_numpy(name)[0, :count] for name in ("det_boxes", "det_scores", "det_classes"))


@pytest.mark.parametrize(
    "case",
    [
        "1x1",
        "4000x10",
        "10x4000",
        "bus in 4000x1080",
        "bus in 810x4000",
        "grayscale jpeg",
        "rgba png",
        "16-bit png",
        "palette png",
        "cmyk jpeg",
    ],
)
def test_unusual_image_works(grpc_client, sample_images, case):
    payload = unusual_images(sample_images)[case]
    expected = cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_COLOR)
    reply = infer(grpc_client, payload)
    assert list(reply.as_numpy("image_size")[0]) == [expected.shape[1], expected.shape[0]]
    count = int(reply.as_numpy("num_dets")[0, 0])
    boxes = reply.as_numpy("det_boxes")[0, :count]
    assert (boxes >= 0).all() and (boxes[:, [0, 2]] <= expected.shape[1]).all()
    assert (boxes[:, [1, 3]] <= expected.shape[0]).all()
    # The same detections as for Ultralytics' letterbox of those pixels, sent as a 640x640 image (which the
    # server takes as it is), with the boxes taken back to the original image as Ultralytics' scale_boxes does.
    letterboxed, gain, (pad_x, pad_y) = ultralytics_letterbox(expected)
    want_boxes, want_scores, want_classes = reply_detections(infer(grpc_client, encode(letterboxed)))
    want_boxes = (want_boxes - [pad_x, pad_y, pad_x, pad_y]) / gain
    want_boxes = np.clip(want_boxes, 0, [expected.shape[1], expected.shape[0]] * 2)
    got_boxes, got_scores, got_classes = reply_detections(reply)
    assert list(got_classes) == list(want_classes), (got_classes, want_classes)
    np.testing.assert_allclose(got_scores, want_scores, atol=1e-3)
    np.testing.assert_allclose(got_boxes, want_boxes, atol=0.5)
    if case.startswith("bus in"):
        assert count >= 1  # a real photo in a canvas of extreme aspect ratio gives detections


def test_mixed_concurrent_requests(triton, grpc_client, sample_images):
    """Good and bad requests at once, batched together by yolov8_preprocess: every good one gets its result."""
    good = sample_images["bus.jpg"].read_bytes()
    bads = [payload for payload, _ in bad_payloads(sample_images).values()]
    payloads = [good if i % 2 == 0 else bads[(i // 2) % len(bads)] for i in range(12)]
    clients = [grpcclient.InferenceServerClient(triton.grpc_url) for _ in range(len(payloads) + 1)]

    def one(client, payload):
        try:
            return int(infer(client, payload).as_numpy("num_dets")[0, 0])
        except InferenceServerException as exc:
            return exc.status()
        finally:
            client.close()

    before, batches_before = snapshot(grpc_client, (PREPROCESS,)), executions_by_batch_size(grpc_client, PREPROCESS)
    (preprocess,) = [stub.pid for stub in triton.stubs if stub.model == PREPROCESS]
    with ThreadPoolExecutor(len(clients)) as pool:
        # while the test holds the stages' lock, a first request waits in preprocess's execute and the 12 queue;
        # let go, the stage takes all 12 in one execution
        with stages_held(triton.process.pid) as lock:
            first = pool.submit(one, clients[-1], good)
            wait_until(lambda: waits_for_lock(preprocess, lock), "the first request in preprocess's execute")
            mixed = [pool.submit(one, client, payload) for client, payload in zip(clients, payloads)]
            wait_until(lambda: pending_requests(triton.options.metrics_port, PREPROCESS) == 12, "the 12 queued")
        outcomes = [future.result() for future in mixed]
    assert len({outcomes[i] for i in range(0, 12, 2)}) == 1 and isinstance(outcomes[0], int) and outcomes[0] >= 1
    assert all(outcomes[i] == INVALID for i in range(1, 12, 2)), outcomes
    assert first.result() == outcomes[0], first.result()
    # 7 good images and 6 bad: an execution of 8 or more held both
    delta = deltas(snapshot(grpc_client, (PREPROCESS,)), before)[PREPROCESS]
    batches = executions_by_batch_size(grpc_client, PREPROCESS) - batches_before
    assert delta.inferences == 13 and delta.executions < delta.inferences, delta
    assert any(size >= 8 for size in batches), batches


def test_listens_on_loopback_only(triton):
    options = triton.options
    for port in (options.http_port, options.grpc_port, options.metrics_port):
        assert listening_addresses(port) == {"127.0.0.1"}, port


def test_stubs_run_with_the_opencv_pixel_limit(triton, grpc_client, sample_images):
    """The second guard, for formats whose header is not parsed: OpenCV's own limit in every stub."""
    assert len(triton.stubs) == stub_count(triton.grpc_url) >= 3
    for stub in triton.stubs:
        environment = Path(f"/proc/{stub.pid}/environ").read_bytes().split(b"\0")
        assert b"OPENCV_IO_MAX_IMAGE_PIXELS=40000000" in environment, stub
    bomb = hdr_bomb(10000, 10000)
    assert declared_size(bomb) is None  # Pillow cannot read it: OpenCV's limit is what refuses it
    with pytest.raises(InferenceServerException) as error:
        infer(grpc_client, bomb)
    assert error.value.status() == INVALID
    assert "pixels <= CV_IO_MAX_IMAGE_PIXELS" in error.value.message(), error.value.message()
    assert_good(grpc_client, sample_images)
