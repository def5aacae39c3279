"""Triton Python model: detections from the head, rescaled, or a classifier's probabilities and top 5.
Coordinates ``python_backends.postprocess``."""

import triton_python_backend_utils as pb_utils

from python_backends.postprocess.postprocessor import ThresholdError
from python_backends.postprocess.select import create_postprocessor
from python_backends.triton_helpers.config import load_config
from python_backends.triton_helpers.drain import DrainGate
from python_backends.triton_helpers.gpu_arrays import to_host
from python_backends.triton_helpers.stub_output import log_line_by_line
from python_backends.triton_helpers.tensors import input_array


def _optional(request, name, count):
    """A per-element optional input as a list of floats, or [None] * count when absent."""
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return [None] * count if tensor is None else [float(v) for v in to_host(input_array(tensor)).reshape(-1)]


class TritonPythonModel:
    def initialize(self, args):
        log_line_by_line()
        config = load_config(args["model_config"])
        self.postprocessor = create_postprocessor(config)
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
