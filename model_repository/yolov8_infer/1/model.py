"""Triton Python model: run the detector on a batch. Coordinates ``python_backends.runtimes``."""

import os

import numpy as np
import triton_python_backend_utils as pb_utils

from python_backends.runtimes.select import create_runtime
from python_backends.triton_config import int_parameter, load_config, parameters


class TritonPythonModel:
    def initialize(self, args):
        config = load_config(args["model_config"])
        params = parameters(config)
        version_dir = os.path.join(args["model_repository"], args["model_version"])
        self.runtime = create_runtime(
            params.get("runtime", "auto"),
            os.path.join(version_dir, params.get("model_file", "model.onnx")),
            intra_op_threads=int_parameter(params, "intra_op_threads", 0),
            max_batch_size=max(1, int(config.get("max_batch_size", 1))),
        )
        self.output_dtype = pb_utils.triton_string_to_numpy(
            pb_utils.get_output_config_by_name(config, "output0")["data_type"]
        )

    def execute(self, requests):
        batches = [pb_utils.get_input_tensor_by_name(r, "images").as_numpy() for r in requests]
        head = self.runtime.run(np.concatenate(batches) if len(batches) > 1 else batches[0]).astype(
            self.output_dtype, copy=False
        )
        responses, start = [], 0
        for batch in batches:
            stop = start + len(batch)
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("output0", head[start:stop])]))
            start = stop
        return responses
