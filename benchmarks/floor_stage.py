"""A Triton Python model that answers like its real stage without doing its work: the floor of the fixed cost.

``benchmarks.fixed_cost`` copies it over each stage's ``model.py`` in a copy of the repository, the real one
kept beside it as ``real_model.py``. The real stage answers the first calls (the config's ``floor_real_calls``:
the bench's first warm-up requests); every later request gets the outputs of the last real answer, after the
stage has kept a core busy for the config's ``floor_wait_ms`` (0: none). The server, the ensemble, the inputs
Triton copies into each stub and the outputs each stub sends back are the real pipeline's; only the stages'
own work is gone. A client's time on such a server, less the waits, is what the Python backend costs around
three stages that take that long and do nothing.
"""

import importlib.util
import json
import time
from pathlib import Path

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        version_dir = Path(args["model_repository"]) / args["model_version"]
        spec = importlib.util.spec_from_file_location("real_model", version_dir / "real_model.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        self.real = module.TritonPythonModel()
        self.real.initialize(args)
        params = json.loads(args["model_config"]).get("parameters", {})
        self.real_calls = int(params["floor_real_calls"]["string_value"])
        self.wait_s = float(params["floor_wait_ms"]["string_value"]) / 1e3
        self.calls, self.outputs = 0, []

    def execute(self, requests):
        if self.calls < self.real_calls:
            self.calls += 1
            responses = self.real.execute(requests)
            self.outputs = [(t.name(), t.as_numpy().copy()) for t in responses[-1].output_tensors()]
            return responses
        until = time.perf_counter() + self.wait_s
        while time.perf_counter() < until:  # busy, as the stage's own compute keeps a core
            pass
        return [
            pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(name, array) for name, array in self.outputs])
            for _ in requests
        ]
