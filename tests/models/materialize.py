"""Rebuild a test model from its weightless graph and recipe (numpy and onnx only).

``tests/models/<name>.graph.onnx.gz`` is an Ultralytics ONNX export whose parameters (every
initializer named ``model.*``: the Conv weights and biases) are placeholders: name, dims and data
type, no data. Only the export's own constants (shapes, anchors, strides) keep their values.
``tests/models/<name>.recipe.json`` says how each placeholder is filled:

- ``uniform``: ``low + (high - low) * u`` with ``u`` in [0, 1) from PCG64(seed)'s raw 64-bit
  stream (``(raw >> 11) * 2**-53``), so every numpy version builds the same float32 tensor;
  the seed is the first 8 bytes of sha256(name), little-endian.
- ``fill``: every element the same value (e.g. a zero bias).
- ``arange``: 0, 1, 2, ... in order (the fixed weight of the DFL Conv that decodes box distances).
- ``copy``: the initializer of another ONNX model (the default model), by name.

Then ``adjust`` rescales (``scale``) or overwrites (``fill``) named initializers. Every filled
and adjusted tensor is checked against the sha256 of its float32 bytes recorded in the recipe, so
the reference generator and the tests build the same model or fail.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

MODELS = Path(__file__).resolve().parent
PARAMETER_PREFIX = "model."  # Ultralytics' parameter names; the graph keeps none of their data


def seed_of(name: str) -> int:
    """The generator seed of initializer ``name``: the first 8 bytes of sha256(name), little-endian."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")


def uniform(seed: int, low: float, high: float, shape: list[int]) -> np.ndarray:
    """float32 array of ``shape``, uniform in [low, high), from PCG64(seed)'s raw stream."""
    raw = np.random.PCG64(seed).random_raw(int(np.prod(shape)))
    unit = (raw >> np.uint64(11)).astype(np.float64) * 2.0**-53
    return (low + (high - low) * unit).astype(np.float32).reshape(shape)


def sha256_of(array: np.ndarray) -> str:
    """sha256 of the little-endian float32 bytes of ``array``."""
    return hashlib.sha256(np.ascontiguousarray(array, dtype="<f4").tobytes()).hexdigest()


def recipe_path(name: str) -> Path:
    return MODELS / f"{name}.recipe.json"


def load_recipe(name: str) -> dict:
    return json.loads(recipe_path(name).read_text())


def load_graph(recipe: dict) -> onnx.ModelProto:
    """The weightless graph the recipe names (placeholders without data)."""
    return onnx.load_from_string(gzip.decompress((MODELS / recipe["graph"]).read_bytes()))


def materialize(name: str, sources: dict[str, Path] | None = None) -> onnx.ModelProto:
    """The model ``name`` with every placeholder filled and every adjustment applied.

    ``sources`` maps a ``copy`` entry's ``source`` key (e.g. ``"default"``) to the ONNX file it copies from.
    """
    recipe = load_recipe(name)
    model = load_graph(recipe)
    initializers = {t.name: t for t in model.graph.initializer}
    copied = _copy_sources(recipe, sources or {})
    for entry in recipe["tensors"]:
        array = _fill(entry, copied)
        _check(entry, array)
        initializers[entry["name"]].CopyFrom(numpy_helper.from_array(array, entry["name"]))
    for entry in recipe.get("adjust", []):
        tensor = initializers[entry["name"]]
        array = numpy_helper.to_array(tensor).astype(np.float32)
        array = array * np.float32(entry["scale"]) if "scale" in entry else np.full_like(array, entry["fill"])
        _check(entry, array)
        tensor.CopyFrom(numpy_helper.from_array(array, entry["name"]))
    onnx.checker.check_model(model)
    return model


def write_model(name: str, out_dir: Path, sources: dict[str, Path] | None = None) -> Path:
    """Materialize ``name`` into ``out_dir/<name>.onnx`` and return its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.onnx"
    onnx.save(materialize(name, sources), str(path))
    return path


def _copy_sources(recipe: dict, sources: dict[str, Path]) -> dict[str, dict[str, onnx.TensorProto]]:
    needed = {entry["copy"]["source"] for entry in recipe["tensors"] if "copy" in entry}
    missing = needed - sources.keys()
    if missing:
        raise ValueError(f"{recipe['name']} copies from {sorted(missing)}: pass their ONNX paths as sources")
    return {key: {t.name: t for t in onnx.load(str(sources[key])).graph.initializer} for key in needed}


def _fill(entry: dict, copied: dict[str, dict[str, onnx.TensorProto]]) -> np.ndarray:
    if "uniform" in entry:
        spec = entry["uniform"]
        return uniform(spec["seed"], spec["low"], spec["high"], entry["shape"])
    if "fill" in entry:
        return np.full(entry["shape"], entry["fill"], np.float32)
    if "arange" in entry:
        return np.arange(int(np.prod(entry["shape"])), dtype=np.float32).reshape(entry["shape"])
    spec = entry["copy"]
    array = numpy_helper.to_array(copied[spec["source"]][spec["from"]]).astype(np.float32)
    if list(array.shape) != entry["shape"]:
        raise ValueError(f"{spec['from']} has shape {list(array.shape)}, {entry['name']} needs {entry['shape']}")
    return array


def _check(entry: dict, array: np.ndarray) -> None:
    if sha256_of(array) != entry["sha256"]:
        raise ValueError(f"{entry['name']}: the rebuilt tensor's sha256 differs from the recipe's")
