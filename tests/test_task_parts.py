"""The pieces of pose, OBB and segment serving that need no server: rotated NMS, the configs prepare writes, its
refusals, the client's values and drawing. The mask library is tests/test_masks.py's.

Served parity with Ultralytics is tests/test_tasks.py's.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
from faster_coco_eval.core import mask as coco_mask
from onnx import helper, numpy_helper
from tiny_models import tiny_yolo

from client.annotate import annotate
from client.api import Detection, DetectionResult
from prepare.errors import UnsupportedModelError
from prepare.onnx_model import read_model_info
from prepare.prepare_model import prepare
from python_backends.paths import PROJECT_ROOT
from python_backends.postprocess.rotated import batch_probiou, fast_nms
from python_backends.postprocess.tasks import rbox_bounds

STAGES_WITH_OUTPUTS = ("yolov8", "yolov8_raw", "yolov8_postprocess")


def test_probiou_is_one_for_the_same_rotated_box_in_either_spelling_and_zero_far_apart():
    box = np.array([[100, 100, 60, 20, 0.3]], np.float32)
    turned = np.array([[100, 100, 20, 60, 0.3 + math.pi / 2]], np.float32)  # w and h swapped, a quarter turn on
    far = np.array([[500, 500, 60, 20, 0.3]], np.float32)
    assert batch_probiou(box, box)[0, 0] > 0.999
    assert batch_probiou(box, turned)[0, 0] > 0.999
    assert batch_probiou(box, far)[0, 0] < 1e-3


def test_rotated_nms_is_fast_nms_a_suppressed_box_still_suppresses():
    """A overlaps B and B overlaps C, A and C barely: greedy NMS would keep A and C, Ultralytics' Fast-NMS keeps A."""
    rboxes = np.array([[100, 100, 40, 40, 0], [112, 100, 40, 40, 0], [124, 100, 40, 40, 0]], np.float32)
    ious = batch_probiou(rboxes, rboxes)
    assert ious[0, 1] > 0.5 and ious[1, 2] > 0.5 and ious[0, 2] < 0.5
    assert fast_nms(rboxes, np.array([0.9, 0.8, 0.7], np.float32), 0.5).tolist() == [0]
    assert fast_nms(rboxes, np.array([0.9, 0.7, 0.8], np.float32), 0.5).tolist() == [0, 2]  # B below C: C stays


def test_an_obbs_box_is_its_rotated_corners_bounds():
    square = np.array([[100, 50, 20, 20, math.pi / 4]], np.float32)
    r = 10 * math.sqrt(2)  # half the diagonal
    np.testing.assert_allclose(rbox_bounds(square)[0], [100 - r, 50 - r, 100 + r, 50 + r], atol=1e-4)


def _prepared_configs(model: onnx.ModelProto, folder, repository) -> dict[str, str]:
    onnx.save(model, str(folder / "model.onnx"))
    prepare(folder / "model.onnx", repository, template=PROJECT_ROOT / "model_repository")
    return {stage: (repository / stage / "config.pbtxt").read_text() for stage in STAGES_WITH_OUTPUTS}


def _pose_model() -> onnx.ModelProto:
    model = tiny_yolo(task="pose", out_channels=7 + 5 * 3)
    model.metadata_props.add(key="kpt_shape", value="[5, 3]")
    return model


def _segment_model(prototypes: bool = True) -> onnx.ModelProto:
    """tiny_yolo's 64x64 head of 3 classes with 32 mask coefficients, and (``prototypes``) output1 (1, 32, 16, 16):
    the image pooled to a quarter and a 1x1 Conv to 32 channels."""
    model = tiny_yolo(task="segment", out_channels=7 + 32)
    if prototypes:
        weight = np.random.default_rng(2).standard_normal((32, 3, 1, 1)).astype(np.float32)
        model.graph.initializer.append(numpy_helper.from_array(weight, "proto_w"))
        model.graph.node.extend(
            [
                helper.make_node("AveragePool", ["images"], ["quarter"], kernel_shape=[4, 4], strides=[4, 4]),
                helper.make_node("Conv", ["quarter", "proto_w"], ["output1"]),
            ]
        )
        model.graph.output.append(helper.make_tensor_value_info("output1", onnx.TensorProto.FLOAT, [1, 32, 16, 16]))
    return model


def test_a_segment_export_without_its_prototype_output_is_refused():
    with pytest.raises(UnsupportedModelError, match="a segment model without its prototype output"):
        read_model_info(_segment_model(prototypes=False))
    info = read_model_info(_segment_model())
    assert (info.task, info.head_dims(), info.prototype_dims()) == ("segment", [39, 84], [32, 16, 16])


def test_prepare_serves_a_segment_models_prototypes_and_masks_and_a_detector_over_it_gets_todays_configs(tmp_path):
    fresh = _prepared_configs(tiny_yolo(), tmp_path, tmp_path / "fresh")
    infer = lambda repository: (repository / "yolov8_infer" / "config.pbtxt").read_text()  # noqa: E731
    repository = tmp_path / "repository"
    segment = _prepared_configs(_segment_model(), tmp_path, repository)
    for stage in STAGES_WITH_OUTPUTS:
        assert 'name: "det_masks", data_type: TYPE_STRING, dims: [ 300 ]' in segment[stage], stage
    prototypes = 'name: "output1", data_type: TYPE_FP32, dims: [ 32, 16, 16 ]'
    assert prototypes in infer(repository) and prototypes in segment["yolov8_postprocess"]
    assert (
        'key: "output1", value: { data_type: TYPE_FP32, dims: [ 32, 16, 16 ], zero_data: true }'
        in (segment["yolov8_postprocess"])
    )  # the warm-up's
    for ensemble in ("yolov8", "yolov8_raw"):
        assert segment[ensemble].count('output_map { key: "output1", value: "prototypes" }') == 1
        assert segment[ensemble].count('input_map { key: "output1", value: "prototypes" }') == 1
    assert 'key: "task", value: { string_value: "segment" }' in segment["yolov8_postprocess"]
    assert _prepared_configs(tiny_yolo(), tmp_path, repository) == fresh
    assert infer(repository) == infer(tmp_path / "fresh")


def test_prepare_writes_the_tasks_outputs_and_a_detector_over_them_gets_todays_configs(tmp_path):
    fresh = _prepared_configs(tiny_yolo(), tmp_path, tmp_path / "fresh")
    repository = tmp_path / "repository"
    pose = _prepared_configs(_pose_model(), tmp_path, repository)
    for stage in STAGES_WITH_OUTPUTS:
        assert 'name: "det_keypoints", data_type: TYPE_FP32, dims: [ 300, 5, 3 ]' in pose[stage], stage
        assert 'name: "det_obb"' not in pose[stage] and 'name: "det_keypoints"' not in fresh[stage], stage
    assert pose["yolov8"].count('output_map { key: "det_keypoints", value: "det_keypoints" }') == 1
    assert 'key: "task", value: { string_value: "pose" }' in pose["yolov8_postprocess"]
    obb = _prepared_configs(tiny_yolo(task="obb", out_channels=8), tmp_path, repository)
    assert all('name: "det_obb"' in obb[s] and 'name: "det_keypoints"' not in obb[s] for s in STAGES_WITH_OUTPUTS)
    assert _prepared_configs(tiny_yolo(), tmp_path, repository) == fresh


def test_a_detectors_detection_has_todays_json_and_a_pose_or_obb_one_adds_its_values():
    plain = Detection((1.0, 2.0, 3.0, 4.0), 0.5, 1, "Fall")
    assert plain.to_dict() == {"box": [1.0, 2.0, 3.0, 4.0], "score": 0.5, "class_id": 1, "class_name": "Fall"}
    pose = Detection((1.0, 2.0, 3.0, 4.0), 0.5, 1, "Fall", keypoints=[[1.0, 2.0, 0.9]])
    assert pose.to_dict()["keypoints"] == [[1.0, 2.0, 0.9]] and "obb" not in pose.to_dict()
    assert Detection((0, 0, 1, 1), 0.5, 0, "a", obb=(1.0, 2.0, 3.0, 4.0, 0.5)).to_dict()["obb"] == [1, 2, 3, 4, 0.5]


def test_a_segment_detection_keeps_its_rle_and_decodes_its_mask_and_outline_when_asked():
    square = np.zeros((40, 60), np.uint8)
    square[10:20, 30:50] = 1
    rle = {"size": [40, 60], "counts": coco_mask.encode(np.asfortranarray(square))["counts"].decode()}
    det = Detection((30.0, 10.0, 50.0, 20.0), 0.9, 0, "a", rle=rle)
    assert det.to_dict()["mask"] == rle and "mask" not in Detection((0, 0, 1, 1), 0.5, 0, "a").to_dict()
    assert det.mask.dtype == bool and (det.mask == square.astype(bool)).all()
    assert sorted(det.polygon) == [(30.0, 10.0), (30.0, 19.0), (49.0, 10.0), (49.0, 19.0)]  # the corners
    assert Detection((0, 0, 1, 1), 0.5, 0, "a").mask is None


def test_save_tints_a_masks_pixels_and_no_others():
    blank = np.zeros((40, 60, 3), np.uint8)
    square = np.zeros((40, 60), np.uint8)
    square[10:20, 30:50] = 1
    rle = {"size": [40, 60], "counts": coco_mask.encode(np.asfortranarray(square))["counts"].decode()}
    drawn = annotate(blank, DetectionResult("x", 60, 40, [Detection((0.0, 0.0, 59.0, 39.0), 0.9, 0, "a", rle=rle)]))
    assert drawn[15, 40].any()  # inside the mask
    assert not drawn[30, 20].any()  # inside the box, outside the mask


def test_save_draws_an_obb_rotated_and_a_17_point_skeleton():
    blank = np.zeros((200, 200, 3), np.uint8)
    diamond = Detection((50.0, 50.0, 150.0, 150.0), 0.9, 0, "a", obb=(100.0, 100.0, 70.0, 70.0, math.pi / 4))
    drawn = annotate(blank, DetectionResult("x", 200, 200, [diamond]))
    assert drawn[100, 52:56].any()  # the diamond's left corner, on the box's left edge's middle
    assert not drawn[148:152, 48:53].any()  # the bounds' bottom-left corner: no axis-aligned rectangle there

    points = [[0.0, 0.0, 0.0]] * 17
    points[5], points[7] = [40.0, 60.0, 0.9], [140.0, 60.0, 0.9]  # left shoulder, left elbow: a limb
    points[9] = [140.0, 160.0, 0.1]  # left wrist, scored below the drawing threshold
    person = Detection((0.0, 0.0, 1.0, 1.0), 0.9, 0, "a", keypoints=points)
    drawn = annotate(blank, DetectionResult("x", 200, 200, [person]))
    assert drawn[60, 90].any()  # on the limb between them
    assert not drawn[110, 140].any()  # the elbow-wrist limb is not drawn
