"""Triton Python model: decode + letterbox, uint8 pixels out. Coordinates ``python_backends.preprocess``."""

from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from python_backends.preprocess.frames import FrameError, preprocess_inputs
from python_backends.preprocess.image_decode import ImageDecodeError
from python_backends.preprocess.select import preprocessor_from_config
from python_backends.triton_helpers.config import load_config, warmup_strings
from python_backends.triton_helpers.cpu_activity import CpuActivity
from python_backends.triton_helpers.drain import DrainGate
from python_backends.triton_helpers.stub_output import log_line_by_line
from python_backends.triton_helpers.tensors import output_tensor


class TritonPythonModel:
    def initialize(self, args):
        log_line_by_line()
        config = load_config(args["model_config"])
        self.preprocessor = preprocessor_from_config(config)
        self._check_warmup_images(config, Path(args["model_repository"]))
        self.gate = DrainGate.from_environment()  # closed while the server drains before stopping
        self.activity = CpuActivity.of_this_server()  # tells the infer stage that images are on their way
        self.images_dtype = pb_utils.triton_string_to_numpy(
            pb_utils.get_output_config_by_name(config, "images")["data_type"]
        )
        self.letterbox_dtype = pb_utils.triton_string_to_numpy(
            pb_utils.get_output_config_by_name(config, "LETTERBOX")["data_type"]
        )

    def _check_warmup_images(self, config, model_dir):
        """Fail the load here, with the reason, if a warm-up image can't be preprocessed. Failing in Triton's
        own warm-up instead crashed tritonserver 2.51 (SIGSEGV) in 9 loads of 40: a race in how its core
        stops the instance's backend thread after a failed warm-up (tests/test_warmup.py)."""
        for sample, images in warmup_strings(config, model_dir, "IMAGE").items():
            try:
                preprocess_inputs(self.preprocessor, np.array(images, dtype=object), None)
            except (ImageDecodeError, FrameError) as exc:
                raise ValueError(f"warm-up sample '{sample}': {exc}") from exc

    def execute(self, requests):
        if self.gate.is_closed():  # one error object per response: the backend frees each one
            refusal = "server is shutting down: retry later"
            return [
                pb_utils.InferenceResponse(error=pb_utils.TritonError(refusal, pb_utils.TritonError.UNAVAILABLE))
                for _ in requests
            ]
        self.gate.enter(len(requests))
        with self.activity.working():
            responses = [self._one(request) for request in requests]
        self.gate.leave(sum(response.has_error() for response in responses))  # failed here: gone already
        return responses

    def _one(self, request):
        encoded, frames = (pb_utils.get_input_tensor_by_name(request, name) for name in ("IMAGE", "FRAME"))
        try:
            results = preprocess_inputs(
                self.preprocessor,
                None if encoded is None else encoded.as_numpy(),
                None if frames is None else frames.as_numpy(),
            )
        except (ImageDecodeError, FrameError) as exc:
            return pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc), pb_utils.TritonError.INVALID_ARG))
        tensors = self.preprocessor.stack([tensor for tensor, _ in results]).astype(self.images_dtype, copy=False)
        mappings = np.stack([mapping for _, mapping in results]).astype(self.letterbox_dtype, copy=False)
        return pb_utils.InferenceResponse(
            output_tensors=[output_tensor("images", tensors), pb_utils.Tensor("LETTERBOX", mappings)]
        )
