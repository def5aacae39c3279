"""Triton Python model: detections from the head, rescaled, or a classifier's probabilities and top 5.
Coordinates ``python_backends.postprocess``."""

import triton_python_backend_utils as pb_utils

from python_backends.defaults import CONF_THRESHOLD, IOU_THRESHOLD, MAX_DET
from python_backends.postprocess.classify import Classifier
from python_backends.postprocess.postprocessor import Postprocessor, ThresholdError
from python_backends.triton_helpers.config import float_parameter, int_parameter, load_config, parameters
from python_backends.triton_helpers.drain import DrainGate
from python_backends.triton_helpers.gpu_arrays import to_host
from python_backends.triton_helpers.stub_output import log_line_by_line
from python_backends.triton_helpers.tensors import input_array


def _optional(request, name, count):
    """A per-element optional input as a list of floats, or [None] * count when absent."""
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return [None] * count if tensor is None else [float(v) for v in to_host(input_array(tensor)).reshape(-1)]


def _keypoints(config):
    """K of a pose model's det_keypoints output [max_det, K, 3]; 0 when the config has no such output."""
    output = pb_utils.get_output_config_by_name(config, "det_keypoints")
    return int(output["dims"][1]) if output else 0


def _postprocessor(config, params):
    """A classifier's ``Classifier`` for task classify, else the detections' ``Postprocessor``."""
    task = params.get("task", "").strip() or "detect"
    if task == "classify":
        return Classifier(num_classes=int_parameter(params, "num_classes", 80))
    return Postprocessor(
        num_classes=int_parameter(params, "num_classes", 80),
        max_det=int_parameter(params, "max_det", MAX_DET),
        conf_threshold=float_parameter(params, "conf_threshold", CONF_THRESHOLD),
        iou_threshold=float_parameter(params, "iou_threshold", IOU_THRESHOLD),
        head_kind=params.get("head", "").strip() or "raw",
        task=task,
        num_keypoints=_keypoints(config),
    )


class TritonPythonModel:
    def initialize(self, args):
        log_line_by_line()
        config = load_config(args["model_config"])
        self.postprocessor = _postprocessor(config, parameters(config))
        self.gate = DrainGate.from_environment()  # counts requests leaving the pipeline
        self.dtypes = {
            name: pb_utils.triton_string_to_numpy(pb_utils.get_output_config_by_name(config, name)["data_type"])
            for name in self.postprocessor.outputs
        }

    def execute(self, requests):
        try:
            return [self._one(request) for request in requests]
        finally:
            self.gate.leave(len(requests))

    def _one(self, request):
        # CPU or GPU tensors (FORCE_CPU_ONLY_INPUT_TENSORS "no"): the head is small, it is decoded on the host
        heads = to_host(input_array(pb_utils.get_input_tensor_by_name(request, "output0")))
        mappings = to_host(input_array(pb_utils.get_input_tensor_by_name(request, "LETTERBOX")))
        confs = _optional(request, "CONF_THRESHOLD", len(heads))
        ious = _optional(request, "IOU_THRESHOLD", len(heads))
        prototypes = pb_utils.get_input_tensor_by_name(request, "output1")  # a segment model's
        segment = {} if prototypes is None else {"prototypes": to_host(input_array(prototypes))}
        try:
            outputs = self.postprocessor.batch(heads, mappings, confs, ious, **segment)
        except ThresholdError as exc:
            return pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc), pb_utils.TritonError.INVALID_ARG))
        tensors = [pb_utils.Tensor(name, outputs[name].astype(self.dtypes[name], copy=False)) for name in outputs]
        return pb_utils.InferenceResponse(output_tensors=tensors)
