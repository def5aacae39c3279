"""One home for the serving defaults: the committed configs and the stages' fallbacks agree with
``python_backends.defaults``."""

from __future__ import annotations

import inspect
from pathlib import Path

from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2

from python_backends import defaults
from python_backends.infer.select import CPU_PRECISIONS
from python_backends.paths import DEFAULT_REPOSITORY
from python_backends.postprocess.end2end import end2end_detections
from python_backends.postprocess.nms import non_max_suppression
from python_backends.postprocess.postprocessor import Postprocessor
from python_backends.triton_helpers.config import parameters


def read_config(path: Path) -> dict:
    """A config.pbtxt as the JSON dict that a stage's ``initialize`` receives."""
    config = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
    return json_format.MessageToDict(config, preserving_proto_field_name=True)


def test_postprocess_configs_hold_the_defaults():
    for path in sorted((DEFAULT_REPOSITORY / "yolov8_postprocess").rglob("*.pbtxt")):
        params = parameters(read_config(path))
        assert float(params["conf_threshold"]) == defaults.CONF_THRESHOLD, path
        assert float(params["iou_threshold"]) == defaults.IOU_THRESHOLD, path
        assert int(params["max_det"]) == defaults.MAX_DET, path


def test_infer_configs_hold_the_default_precision():
    for path in sorted((DEFAULT_REPOSITORY / "yolov8_infer").rglob("*.pbtxt")):
        assert parameters(read_config(path))["cpu_precision"] == defaults.CPU_PRECISION, path
    assert CPU_PRECISIONS is defaults.CPU_PRECISIONS


def test_the_stages_fall_back_to_the_defaults():
    signature = inspect.signature(Postprocessor).parameters
    assert signature["conf_threshold"].default == defaults.CONF_THRESHOLD
    assert signature["iou_threshold"].default == defaults.IOU_THRESHOLD
    assert signature["max_det"].default == defaults.MAX_DET
    nms = inspect.signature(non_max_suppression).parameters
    assert (nms["conf_threshold"].default, nms["iou_threshold"].default, nms["max_det"].default) == (
        defaults.CONF_THRESHOLD,
        defaults.IOU_THRESHOLD,
        defaults.MAX_DET,
    )
    end2end = inspect.signature(end2end_detections).parameters
    assert (end2end["conf_threshold"].default, end2end["max_det"].default) == (
        defaults.CONF_THRESHOLD,
        defaults.MAX_DET,
    )
