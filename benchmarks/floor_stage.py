"""A Triton Python model that answers like its real stage at no cost: the floor of the fixed cost.

``benchmarks.fixed_cost`` copies it over each stage's ``model.py`` in a copy of the repository, the real one
kept beside it as ``real_model.py``. The real stage answers the first calls (the config's ``floor_real_calls``:
the bench's first warm-up requests); every later request gets the outputs of the last real answer. The server,
the ensemble, the inputs Triton copies into each stub and the outputs each stub sends back are the real
pipeline's; only the stages' own work is gone. A client's time on such a server is what the Python backend
costs around three stages that do nothing.
"""

import importlib.util
import json
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
        self.calls, self.outputs = 0, []

    def execute(self, requests):
        if self.calls < self.real_calls:
            self.calls += 1
            responses = self.real.execute(requests)
            self.outputs = [(t.name(), t.as_numpy().copy()) for t in responses[-1].output_tensors()]
            return responses
        return [
            pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(name, array) for name, array in self.outputs])
            for _ in requests
        ]
