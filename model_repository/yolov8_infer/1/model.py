"""Triton Python model: run the detector on a batch. Coordinates ``python_backends.infer``.

On CPU each instance is one ONNX Runtime or OpenVINO stream: an image alone in the pipeline runs on all
cores; while another stage or instance works (``python_backends.triton_helpers.cpu_activity``) each instance
runs its images on its share. The ensemble sends ``pixels`` (uint8); Ultralytics' own Triton client sends
``images`` (float32 in [0, 1]), taken back to pixels: the model divides by 255 itself.
"""

import os
from pathlib import Path

import triton_python_backend_utils as pb_utils

from python_backends.infer.base import pixels_of
from python_backends.infer.select import runtime_from_settings
from python_backends.infer.settings import runtime_settings
from python_backends.triton_helpers.config import input_dims, load_config, parameters
from python_backends.triton_helpers.cpu_activity import CpuActivity
from python_backends.triton_helpers.gpu_arrays import concatenate_on, create_cuda_context, gpu_count, to_host
from python_backends.triton_helpers.stub_output import log_line_by_line
from python_backends.triton_helpers.tensors import input_array, output_tensor


class TritonPythonModel:
    def initialize(self, args):
        log_line_by_line()
        config = load_config(args["model_config"])
        params = parameters(config)
        version_dir = os.path.join(args["model_repository"], args["model_version"])
        dims = input_dims(config, "images")
        self.runtime = runtime_from_settings(runtime_settings(config, Path(version_dir)))
        self.shares_cores = self.runtime.name in ("onnxruntime", "openvino") and self.runtime.streams > 1
        if self.shares_cores:  # two paths (all cores, a stream's share); model_warmup reaches only one
            self.runtime.warm_up(tuple(dims))
        gpu_inputs = params.get("FORCE_CPU_ONLY_INPUT_TENSORS", "yes").strip().lower() == "no"
        if self.runtime.device == "cpu" and gpu_inputs and gpu_count():
            create_cuda_context()  # CV-CUDA preprocessing sends GPU tensors; the first would pay for the context
        self.activity = CpuActivity.of_this_server()  # which stages are working right now
        # the head, and a segment model's prototypes (output1) where prepare configured them
        self.outputs = [name for name in ("output0", "output1") if pb_utils.get_output_config_by_name(config, name)]
        self.output_dtypes = [
            pb_utils.triton_string_to_numpy(pb_utils.get_output_config_by_name(config, name)["data_type"])
            for name in self.outputs
        ]
        if len(self.outputs) > 1 and not hasattr(self.runtime, "run_outputs"):
            raise pb_utils.TritonModelException(f"a segment model runs on the CPU runtimes, not {self.runtime.name}")

    def execute(self, requests):
        batches = [request_pixels(r) for r in requests]
        images = concatenate_on(batches, self.runtime.device)  # a batch may mix host and GPU inputs
        with self.activity.working_alone() as alone:
            in_stream = self.shares_cores and not alone
            if len(self.outputs) > 1:
                outputs = (self.runtime.run_outputs_in_stream if in_stream else self.runtime.run_outputs)(images)
            else:
                outputs = ((self.runtime.run_in_stream if in_stream else self.runtime.run)(images),)
            # to host memory: postprocess runs on the CPU, and a GPU tensor would cost its stub a CUDA context
            outputs = [to_host(o).astype(dtype, copy=False) for o, dtype in zip(outputs, self.output_dtypes)]
        responses, start = [], 0
        for batch in batches:
            stop = start + len(batch)
            tensors = [output_tensor(name, o[start:stop]) for name, o in zip(self.outputs, outputs)]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start = stop
        return responses


def request_pixels(request):
    """A request's uint8 (b, 3, H, W) pixels, NumPy or CuPy: its ``pixels``, else its ``images`` taken to the
    nearest pixel levels (Triton refuses a request without inputs)."""
    pixels = pb_utils.get_input_tensor_by_name(request, "pixels")
    if pixels is not None:
        return input_array(pixels)
    return pixels_of(input_array(pb_utils.get_input_tensor_by_name(request, "images")))
