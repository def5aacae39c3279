"""Pose, OBB and segment models, prepared and served by a real tritonserver, equal Ultralytics' predict.

The models are Ultralytics 8.4.190 ONNX exports rebuilt from tests/models/ (make_task_models.py made
them and says exactly how): YOLOv8s pose, OBB and segment YAMLs with 2 classes, labels Normal (class 0)
and Fall (class 1), with the default fall detector's trained weights loaded, so their boxes and scores
follow the photos' people; only the task's own branches (keypoints, angle, mask coefficients and
prototypes) are seeded draws. Input 480x640.

- fall_pose: kpt_shape [17, 3], output [1, 57, 6300]; served with ``det_keypoints`` [300, 17, 3].
- fall_obb: output [1, 7, 6300], the angle last; served with ``det_obb`` [300, 5] and rotated NMS.
- fall_seg: output0 [1, 38, 6300] (32 mask coefficients last) and the prototypes output1 [1, 32, 120, 160];
  served with ``det_masks`` [300], each mask as COCO RLE at the photo's size.
- fall_pose_nms, fall_obb_nms, fall_seg_nms: the same models exported with nms=True, NMS inside the graph:
  outputs [1, 300, 57], [1, 300, 7] and [1, 300, 38] (with the prototypes), each row a box (an OBB's cx, cy,
  w, h), score, class, then the keypoints, the angle or the mask coefficients, as YOLO26's end-to-end heads
  are; served from the rows the model chose.

The reference is Ultralytics' predict on the same ONNX (tests/reference/task_models.json, made by
make_task_reference.py) with the served defaults conf 0.25, iou 0.7, max_det 300; for fall_seg
``retina_masks=True`` (masks at the photo's size).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from faster_coco_eval.core import mask as coco_mask
from matching import CPU_PARITY, box_iou, mismatches
from own_server import options, started
from sample_images import SAMPLES
from ultralytics_remote import load_triton_remote_model

from client.api import YoloTritonClient
from python_backends.paths import PROJECT_ROOT
from python_backends.postprocess.postprocessor import Postprocessor
from python_backends.preprocess.preprocessor import Preprocessor

REFERENCE = json.loads((PROJECT_ROOT / "tests" / "reference" / "task_models.json").read_text())
TASK_OUTPUT = {  # the task's output: name, dims, data type
    "fall_pose": ("det_keypoints", [300, 17, 3], "TYPE_FP32"),
    "fall_obb": ("det_obb", [300, 5], "TYPE_FP32"),
    "fall_seg": ("det_masks", [300], "TYPE_STRING"),
    "fall_pose_nms": ("det_keypoints", [300, 17, 3], "TYPE_FP32"),
    "fall_obb_nms": ("det_obb", [300, 5], "TYPE_FP32"),
    "fall_seg_nms": ("det_masks", [300], "TYPE_STRING"),
}
MAX_POINT_DIFF = 0.5  # pixels: keypoints' x and y, an OBB's cx, cy, w, h
MAX_VALUE_DIFF = 1e-3  # keypoint scores, and an OBB's angle in radians
MIN_MASK_IOU = 0.95  # a served mask against Ultralytics' retina mask


@pytest.fixture(scope="module", params=list(TASK_OUTPUT))
def served(request, tmp_path_factory, family_repository):
    """(name, server): the model rebuilt, prepared into its own repository and served."""
    name = request.param
    log = tmp_path_factory.mktemp(f"{name}_server") / "tritonserver.log"
    with started(options(family_repository(name)), log) as server:
        yield name, server


def _pairs(got: list[dict], expected: list[dict]) -> list[tuple[dict, dict]]:
    """Each expected detection with the served one of its class closest in score, then box."""
    unused, pairs = list(got), []
    for want in expected:
        same = [g for g in unused if g["class_id"] == want["class_id"]]
        best = min(same, key=lambda g: (round(abs(g["score"] - want["score"]), 4), -box_iou(g["box"], want["box"])))
        unused.remove(best)
        pairs.append((best, want))
    return pairs


def _mask_iou(first: dict, second: dict) -> float:
    """The IoU of two COCO RLE masks ({"size", "counts"}) of one image."""
    first, second = (coco_mask.decode({"size": m["size"], "counts": m["counts"].encode()}) > 0 for m in (first, second))
    return float((first & second).sum() / max((first | second).sum(), 1))


def _extra_problems(got: list[dict], expected: list[dict]) -> list[str]:
    problems = []
    for found, want in _pairs(got, expected):
        if "mask" in want:
            iou = _mask_iou(found["mask"], want["mask"])
            if found["mask"]["size"] != want["mask"]["size"] or iou < MIN_MASK_IOU:
                problems.append(f"mask of {want['box']}: IoU {iou:.4f}, size {found['mask']['size']}")
            continue
        key = "keypoints" if "keypoints" in want else "obb"
        diff = np.abs(np.asarray(found[key], np.float64) - np.asarray(want[key], np.float64))
        points, values = (diff[:, :2], diff[:, 2]) if key == "keypoints" else (diff[:4], diff[4:])
        if points.max() > MAX_POINT_DIFF or values.max() > MAX_VALUE_DIFF:
            problems.append(f"{key} of {want['box']}: off by {points.max():.3g} px, {values.max():.3g}")
    return problems


def test_the_ensembles_serve_the_tasks_output_and_no_other(served):
    """And only a segment model's yolov8_infer outputs its prototypes, output1, which yolov8_postprocess takes."""
    name, server = served
    output, dims, data_type = TASK_OUTPUT[name]
    other = {o for o, _, _ in TASK_OUTPUT.values()} - {output}
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        for model in ("yolov8", "yolov8_raw", "yolov8_postprocess"):
            outputs = {o["name"]: o for o in client.get_model_config(model, as_json=True)["config"]["output"]}
            assert [int(d) for d in outputs[output]["dims"]] == dims, model
            assert outputs[output]["data_type"] == data_type, model
            assert not other & outputs.keys(), model
        infer = client.get_model_config("yolov8_infer", as_json=True)["config"]["output"]
        post = client.get_model_config("yolov8_postprocess", as_json=True)["config"]["input"]
        prototypes = [[int(d) for d in o["dims"]] for o in (*infer, *post) if o["name"] == "output1"]
        assert prototypes == ([[32, 120, 160]] * 2 if output == "det_masks" else [])
    finally:
        client.close()


def test_served_detections_match_ultralytics(served):
    """Every sample photo, one request each: boxes, scores and the task's values within CPU parity."""
    name, server = served
    settings, expected = REFERENCE["settings"], REFERENCE["models"][name]["results"]
    with YoloTritonClient(server.grpc_url) as client:
        assert client.class_names == ["Normal", "Fall"]
        for photo, want in expected.items():
            result = client.detect(SAMPLES / photo, conf=settings["conf"], iou=settings["iou"])
            assert (result.width, result.height) == (want["width"], want["height"]), photo
            got = [d.to_dict() for d in result.detections]
            problems = mismatches(got, want["detections"], **CPU_PARITY) + _extra_problems(got, want["detections"])
            assert not problems, (photo, problems)


def test_a_batched_request_and_a_raw_frame_match_ultralytics(served):
    """Two photos in one request to yolov8 (one each where the graph's NMS runs one image at a time), and one
    decoded BGR frame to yolov8_raw: each its own values."""
    import cv2

    name, server = served
    settings = REFERENCE["settings"]
    expected = list(REFERENCE["models"][name]["results"].items())[:2]
    photos = [SAMPLES / photo for photo, _ in expected]
    with YoloTritonClient(server.grpc_url) as client:
        if client.client.get_model_config("yolov8", as_json=True)["config"]["max_batch_size"] > 1:
            batch = client.detect_batch(photos, conf=settings["conf"])
        else:
            batch = [client.detect(photo, conf=settings["conf"]) for photo in photos]
        frame = client.detect(cv2.imread(str(SAMPLES / expected[1][0])), conf=settings["conf"])
    for got, (photo, want) in zip([*batch, frame], [*expected, expected[1]], strict=True):
        found = [d.to_dict() for d in got.detections]
        problems = mismatches(found, want["detections"], **CPU_PARITY) + _extra_problems(found, want["detections"])
        assert not problems, (photo, problems)


def test_ultralytics_own_client_gets_the_task_and_the_exports_outputs(served):
    """``YOLO("grpc://…/yolov8_infer")``'s client (TritonRemoteModel): the served metadata names the task (and a
    pose model's kpt_shape), and a float32 image in [0, 1], as Ultralytics' predict sends it, gets the export's
    outputs in the export's order: the head, then a segment model's prototypes. Decoded by our stages, bus.jpg's
    head gives Ultralytics' boxes and scores."""
    name, server = served
    task = REFERENCE["models"][name]["task"]
    model = load_triton_remote_model()(f"grpc://{server.grpc_url}/yolov8_infer")
    assert (model.metadata["task"], model.metadata["names"]) == (task, {0: "Normal", 1: "Fall"})
    assert model.metadata.get("kpt_shape") == ([17, 3] if task == "pose" else None)
    height, width = model.metadata["imgsz"]
    pixels, mapping = Preprocessor(height, width).from_bytes((SAMPLES / "bus.jpg").read_bytes())
    outputs = model(np.divide(pixels[None], np.float32(255), dtype=np.float32))
    assert [o.shape[1:] for o in outputs[1:]] == ([(32, height // 4, width // 4)] if task == "segment" else [])
    head_kind = "end2end" if name.endswith("_nms") else "raw"
    postprocessor = Postprocessor(2, head_kind=head_kind, task=task, num_keypoints=17 if task == "pose" else 0)
    segment = {"prototypes": outputs[1][0]} if task == "segment" else {}
    found = postprocessor.detect(outputs[0][0], mapping, **segment)
    got = [
        {"box": [float(v) for v in box], "score": float(score), "class_id": int(c)}
        for box, score, c in zip(found.boxes, found.scores, found.class_ids)
    ]
    want = REFERENCE["models"][name]["results"]["bus.jpg"]["detections"]
    assert want and not mismatches(got, want, **CPU_PARITY)
