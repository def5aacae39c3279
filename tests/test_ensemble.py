"""The ensemble on a real tritonserver: Ultralytics parity, statistics, batching, bad input."""

import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from matching import CPU_PARITY, mismatches
from tritonclient.utils import InferenceServerException

from client.api import YoloTritonClient
from client.stage_stats import STAGES, counted_deltas, snapshot
from python_backends.paths import PROJECT_ROOT


def quiet_snapshot(client, models, still_s=0.2, timeout_s=10.0):
    """Statistics once no count has moved for ``still_s``: the previous test's last request can be
    recorded a few ms after its reply, and would otherwise land in this test's deltas."""
    deadline = time.monotonic() + timeout_s
    last = snapshot(client, models)
    while True:
        time.sleep(still_s)
        now = snapshot(client, models)
        if now == last or time.monotonic() > deadline:
            return now
        last = now


def image_input(payload: bytes) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput("IMAGE", [1, 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[payload]], dtype=object))
    return tensor


@pytest.mark.parametrize("setting", ["conf=0.25,iou=0.7", "conf=0.05,iou=0.5"])
def test_detections_match_ultralytics(triton, sample_images, reference, setting):
    conf, iou = (float(part.split("=")[1]) for part in setting.split(","))
    expected = reference["results"][setting]
    with YoloTritonClient(triton.grpc_url) as client:
        for name, want in expected.items():
            got = client.detect(sample_images[name], conf=conf, iou=iou)
            assert (got.width, got.height) == (want["width"], want["height"]), name
            found = [d.__dict__ | {"box": list(d.box)} for d in got.detections]
            problems = mismatches(found, want["detections"], **CPU_PARITY)
            assert not problems, (name, problems)


def test_server_defaults_are_ultralytics_defaults(grpc_client, sample_images, reference):
    reply = grpc_client.infer("yolov8", [image_input(sample_images["bus.jpg"].read_bytes())])
    count = int(reply.as_numpy("num_dets")[0, 0])
    assert count == len(reference["results"]["conf=0.25,iou=0.7"]["bus.jpg"]["detections"])
    assert reply.as_numpy("det_boxes").shape == (1, 300, 4)
    assert not reply.as_numpy("det_scores")[0, count:].any()  # rows past num_dets are zero


def test_batched_request_keeps_order(triton, sample_images):
    names = ["zidane.jpg", "bus.jpg", "camera.png"]
    with YoloTritonClient(triton.grpc_url) as client:
        batch = client.detect_batch([sample_images[n] for n in names])
        single = [client.detect(sample_images[n]) for n in names]
    assert [(r.width, r.height) for r in batch] == [(r.width, r.height) for r in single]
    for b, s in zip(batch, single):
        assert not mismatches(
            [d.__dict__ | {"box": list(d.box)} for d in b.detections],
            [d.__dict__ | {"box": list(d.box)} for d in s.detections],
            **CPU_PARITY,
        )


def test_statistics_count_every_stage(grpc_client, sample_images):
    models = (*STAGES, "yolov8")
    before = quiet_snapshot(grpc_client, models)
    for _ in range(3):
        grpc_client.infer("yolov8", [image_input(sample_images["zidane.jpg"].read_bytes())])
    delta = counted_deltas(grpc_client, before, 3)
    for model in models:
        assert delta[model].success == 3, model
        assert delta[model].ns["compute_infer"] > 0, model


def test_concurrent_requests_are_batched(grpc_client, triton, sample_images):
    before = quiet_snapshot(grpc_client, STAGES)
    payload = sample_images["bus.jpg"].read_bytes()

    def one(_):
        client = grpcclient.InferenceServerClient(triton.grpc_url)
        try:
            return int(client.infer("yolov8", [image_input(payload)]).as_numpy("num_dets")[0, 0])
        finally:
            client.close()

    with ThreadPoolExecutor(8) as pool:
        counts = list(pool.map(one, range(8)))
    assert len(set(counts)) == 1
    delta = counted_deltas(grpc_client, before, 8)
    assert all(delta[m].inferences == 8 for m in STAGES)
    assert any(delta[m].executions < delta[m].inferences for m in STAGES), {m: delta[m] for m in STAGES}


def test_undecodable_bytes_fail_alone(grpc_client, sample_images):
    with pytest.raises(InferenceServerException) as error:
        grpc_client.infer("yolov8", [image_input(b"\x00definitely not an image")])
    assert error.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "cannot decode image" in error.value.message()
    reply = grpc_client.infer("yolov8", [image_input(sample_images["camera.png"].read_bytes())])
    assert reply.as_numpy("num_dets")[0, 0] >= 1


def test_bad_threshold_is_refused(grpc_client, sample_images):
    conf = grpcclient.InferInput("CONF_THRESHOLD", [1, 1], "FP32")
    conf.set_data_from_numpy(np.array([[1.5]], np.float32))
    with pytest.raises(InferenceServerException, match=r"conf_threshold must be a number in \[0, 1\]"):
        grpc_client.infer("yolov8", [image_input(sample_images["camera.png"].read_bytes()), conf])


def test_infer_takes_the_pipelines_pixels_and_ultralytics_float_images_alike(grpc_client, sample_images):
    """yolov8_infer (default model: YOLOv8s fall detection, 2 classes) gives the same head for bus.jpg's uint8 pixels,
    as yolov8_preprocess hands them on, and for the float32 pixels / 255 that Ultralytics' own Triton client
    sends."""
    pixels = grpc_client.infer("yolov8_preprocess", [image_input(sample_images["bus.jpg"].read_bytes())]).as_numpy(
        "images"
    )
    assert pixels.dtype == np.uint8
    heads = []
    for name, array, kind in (
        ("pixels", pixels, "UINT8"),
        ("images", np.divide(pixels, np.float32(255), dtype=np.float32), "FP32"),
    ):
        tensor = grpcclient.InferInput(name, list(array.shape), kind)
        tensor.set_data_from_numpy(array)
        heads.append(grpc_client.infer("yolov8_infer", [tensor]).as_numpy("output0"))
    np.testing.assert_array_equal(heads[0], heads[1])
    assert heads[0][0, 4:].max() > 0.25  # the bus photo's people: a real head, not zeros


def test_cli_json_schema(triton, sample_images, tmp_path):
    paths = [str(sample_images["zidane.jpg"]), str(sample_images["camera.png"])]
    done = subprocess.run(
        [sys.executable, "-m", "client", "detect", "--url", triton.grpc_url, "--json", *paths],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    results = json.loads(done.stdout)
    assert [r["image"] for r in results] == paths
    assert set(results[0]) == {"image", "width", "height", "detections"}
    assert (results[0]["width"], results[0]["height"]) == (1280, 720)
    detection = results[0]["detections"][0]
    assert set(detection) == {"box", "score", "class_id", "class_name"}
    assert detection["class_name"] == "Normal" and len(detection["box"]) == 4
