"""tests/models' models for the benchmarks, prepared as ``python -m prepare`` prepares them.

A model is rebuilt from its recipe (tests/models/materialize.py: numpy and onnx only) from the default model's
export, prepared into a folder with the checkout's repository as the template, and served with the CPU
runtime ``prepare`` measures fastest for it (``prepare.cli.set_cpu_runtime``), not the template's, which was
measured on the default model: for tests/models' classifier ONNX Runtime is the faster, for its pose model
OpenVINO.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from prepare.cli import set_cpu_runtime
from prepare.prepare_model import prepare
from python_backends.paths import DEFAULT_REPOSITORY, PROJECT_ROOT

MATERIALIZE = PROJECT_ROOT / "tests" / "models" / "materialize.py"  # rebuilds a test model from its recipe
DEFAULT_ONNX = PROJECT_ROOT / ".cache" / "models" / "yolov8s-fall-detection.onnx"  # the recipes copy from it
MODELS = ("default", "yolo11n")  # the fixed cost's and the transport's: the bench's model, and a fast one


def prepared_model(name: str, folder: Path, default: Path = DEFAULT_REPOSITORY) -> tuple[Path, Path]:
    """(the repository to serve, the export it was prepared from): ``default`` and the default model's export
    for ``name`` ``default``; else tests/models' ``name`` rebuilt and prepared in ``folder``."""
    if name == "default":
        return default, DEFAULT_ONNX
    spec = importlib.util.spec_from_file_location("materialize", MATERIALIZE)
    materialize = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(materialize)
    folder.mkdir(parents=True, exist_ok=True)
    model = materialize.write_model(name, folder, {"default": DEFAULT_ONNX})
    prepare(model, folder / "repository", template=DEFAULT_REPOSITORY)
    print(set_cpu_runtime(folder / "repository", "measure"), flush=True)
    return folder / "repository", model


def prepared_repositories(names: tuple[str, ...], folder: Path, default: Path = DEFAULT_REPOSITORY) -> dict[str, Path]:
    """{name: the repository to serve} for each of ``names`` (``prepared_model``), each prepared once in ``folder``."""
    return {name: prepared_model(name, folder / name, default)[0] for name in names}
