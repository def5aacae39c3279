"""Read settings from a Triton model config (the JSON that ``initialize`` receives)."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any


def load_config(model_config: str | dict[str, Any]) -> dict[str, Any]:
    """Parse ``args["model_config"]`` (a JSON string) into a dict."""
    return json.loads(model_config) if isinstance(model_config, str) else model_config


def parameters(model_config: dict[str, Any]) -> dict[str, str]:
    """The ``parameters`` block as plain key → string value (gRPC's JSON leaves empty values out)."""
    return {key: value.get("string_value", "") for key, value in model_config.get("parameters", {}).items()}


def instance_count(model_config: dict[str, Any]) -> int:
    """How many instances of the model Triton runs (the sum over ``instance_group``; 1 when absent)."""
    return sum(int(group.get("count", 1)) for group in model_config.get("instance_group", [])) or 1


def input_dims(model_config: dict[str, Any], name: str) -> list[int]:
    """The ``dims`` of input ``name`` (without the batch dimension); KeyError when there is no such input."""
    for tensor in model_config.get("input", []):
        if tensor.get("name") == name:
            return [int(d) for d in tensor["dims"]]
    raise KeyError(f"the config has no input {name!r}")


def int_parameter(params: dict[str, str], key: str, default: int) -> int:
    """An integer parameter, or ``default`` when it is missing or empty."""
    raw = params.get(key, "").strip()
    return int(raw) if raw else default


def float_parameter(params: dict[str, str], key: str, default: float) -> float:
    """A float parameter, or ``default`` when it is missing or empty."""
    raw = params.get(key, "").strip()
    return float(raw) if raw else default


def string_elements(data: bytes, source: str) -> list[bytes]:
    """Split Triton's serialized TYPE_STRING tensor: each element a 4-byte little-endian length, then its bytes.

    Raises ValueError naming ``source`` when ``data`` ends inside an element.
    """
    elements, offset = [], 0
    while offset < len(data):
        length = struct.unpack_from("<I", data, offset)[0] if len(data) - offset >= 4 else None
        element = data[offset + 4 : offset + 4 + (length or 0)]
        if length is None or len(element) != length:
            raise ValueError(f"{source} ends inside element {len(elements)}")
        elements.append(element)
        offset += 4 + length
    return elements


def warmup_strings(model_config: dict[str, Any], model_dir: Path, input_name: str) -> dict[str, list[bytes]]:
    """Each ``model_warmup`` sample's TYPE_STRING input ``input_name`` that comes from a file: name -> elements.

    Triton reads ``input_data_file`` from ``<model_dir>/warmup/``. Samples of zero or random data are left
    out. Raises ValueError for a file that ends inside an element.
    """
    samples = {}
    for sample in model_config.get("model_warmup", []):
        file_name = sample.get("inputs", {}).get(input_name, {}).get("input_data_file")
        if file_name:
            path = model_dir / "warmup" / file_name
            samples[sample["name"]] = string_elements(path.read_bytes(), f"warm-up file {path}")
    return samples
