"""Read settings from a Triton model config (the JSON that ``initialize`` receives)."""

from __future__ import annotations

import json
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


def int_parameter(params: dict[str, str], key: str, default: int) -> int:
    """An integer parameter, or ``default`` when it is missing or empty."""
    raw = params.get(key, "").strip()
    return int(raw) if raw else default


def float_parameter(params: dict[str, str], key: str, default: float) -> float:
    """A float parameter, or ``default`` when it is missing or empty."""
    raw = params.get(key, "").strip()
    return float(raw) if raw else default
