"""Where the project's files are: the checkout, its caches and the model repository that Triton serves.

The stages use it for their caches (OpenVINO's compiled models, TensorRT engines) when no environment
variable names another place; serving, prepare, the cluster, the tools and the benchmarks for the rest.
"""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent  # the checkout: model_repository/, .cache/
CACHE = PROJECT_ROOT / ".cache"  # made by make setup, never committed: models, samples, engines, logs
SAMPLES = CACHE / "samples"  # the sample photos of make setup
DEFAULT_REPOSITORY = PROJECT_ROOT / "model_repository"  # the committed configs; prepare installs the model here
