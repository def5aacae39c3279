"""Pick the postprocessing from yolov8_postprocess's config: a classifier's ``Classifier`` or the detections'
``Postprocessor`` of the task and head that ``prepare`` wrote there."""

from __future__ import annotations

from typing import Any

from python_backends.defaults import CONF_THRESHOLD, IOU_THRESHOLD, MAX_DET
from python_backends.postprocess.classify import Classifier
from python_backends.postprocess.postprocessor import Postprocessor
from python_backends.triton_helpers.config import float_parameter, int_parameter, parameters


def num_keypoints(config: dict[str, Any]) -> int:
    """K of a pose model's ``det_keypoints`` output [max_det, K, 3]; 0 when the config has no such output."""
    for tensor in config.get("output", []):
        if tensor.get("name") == "det_keypoints":
            return int(tensor["dims"][1])
    return 0


def config_task(config: dict[str, Any]) -> str:
    """The task ``prepare`` wrote into yolov8_postprocess's ``config`` (``detect`` where it names none)."""
    return parameters(config).get("task", "").strip() or "detect"


def create_postprocessor(config: dict[str, Any]) -> Classifier | Postprocessor:
    """The postprocessing of yolov8_postprocess's ``config`` (Triton's JSON, or ``prepare.pbtxt.triton_config``):
    ``Classifier`` for task ``classify``, else ``Postprocessor`` with the config's classes, head, task, K and
    default thresholds."""
    params, task = parameters(config), config_task(config)
    if task == "classify":
        return Classifier(num_classes=int_parameter(params, "num_classes", 80))
    return Postprocessor(
        num_classes=int_parameter(params, "num_classes", 80),
        max_det=int_parameter(params, "max_det", MAX_DET),
        conf_threshold=float_parameter(params, "conf_threshold", CONF_THRESHOLD),
        iou_threshold=float_parameter(params, "iou_threshold", IOU_THRESHOLD),
        head_kind=params.get("head", "").strip() or "raw",
        task=task,
        num_keypoints=num_keypoints(config),
    )
