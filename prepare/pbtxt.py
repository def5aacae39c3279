"""Read a Triton config.pbtxt (protobuf text format) into the dict that Triton hands ``model.py``.

The serving image has no ModelConfig schema to parse with, so this reads the text format itself:
every field is collected as a list (the schema would say which are repeated), and ``triton_config``
picks out what ``python_backends`` reads, in the shape of Triton's JSON: ``max_batch_size``,
``input``/``output`` (name, data_type, dims) and ``parameters`` ({key: {"string_value": ...}}).
"""

from __future__ import annotations

import ast
import re
from typing import Any

_TOKEN = re.compile(
    r"""\s+|\#[^\n]*|(?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')|(?P<word>[A-Za-z0-9_.+-]+)|(?P<punct>[{}\[\]:,;<>])"""
)

Fields = dict[str, list[Any]]


def tokens(text: str) -> list[tuple[str, str]]:
    """(kind, text) of each token: ``string`` (unquoted), ``word`` or ``punct``; comments dropped."""
    found, position = [], 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match:
            raise ValueError(f"cannot read the config at {text[position : position + 30]!r}")
        position = match.end()
        kind = match.lastgroup
        if kind == "string":
            found.append(("string", ast.literal_eval(match.group(kind))))
        elif kind:
            found.append((kind, match.group(kind)))
    return found


def parse(text: str) -> Fields:
    """Every top-level field of the text, name → its values in order (a message's value is Fields)."""
    fields, _ = _fields(tokens(text), 0, closing=None)
    return fields


def _fields(stream: list[tuple[str, str]], position: int, closing: str | None) -> tuple[Fields, int]:
    fields: Fields = {}
    while position < len(stream):
        kind, name = stream[position]
        if kind == "punct" and name == closing:
            return fields, position + 1
        if kind != "word":
            raise ValueError(f"expected a field name, got {name!r}")
        position += 1
        if stream[position] == ("punct", ":"):
            position += 1
        if stream[position] == ("punct", "["):
            position += 1
            while stream[position] != ("punct", "]"):
                value, position = _value(stream, position)
                fields.setdefault(name, []).append(value)
                if stream[position] == ("punct", ","):
                    position += 1
            position += 1
        else:
            value, position = _value(stream, position)
            fields.setdefault(name, []).append(value)
        if position < len(stream) and stream[position] in (("punct", ","), ("punct", ";")):
            position += 1
    if closing is not None:
        raise ValueError(f"the config ends inside a message (no {closing!r})")
    return fields, position


def _value(stream: list[tuple[str, str]], position: int) -> tuple[Any, int]:
    kind, text = stream[position]
    if (kind, text) in (("punct", "{"), ("punct", "<")):
        return _fields(stream, position + 1, "}" if text == "{" else ">")
    if kind == "string":  # adjacent strings join, as in protobuf
        parts = []
        while position < len(stream) and stream[position][0] == "string":
            parts.append(stream[position][1])
            position += 1
        return "".join(parts), position
    return text, position + 1


def triton_config(text: str) -> dict[str, Any]:
    """The parts of a model config that ``python_backends`` reads, as Triton's JSON has them."""
    fields = parse(text)
    tensors = {side: [_tensor(t) for t in fields.get(side, [])] for side in ("input", "output")}
    params = {
        _one(entry, "key", ""): {"string_value": _one(_one(entry, "value", {}), "string_value", "")}
        for entry in fields.get("parameters", [])
    }
    return {
        "name": _one(fields, "name", ""),
        "max_batch_size": int(_one(fields, "max_batch_size", "0")),
        **tensors,
        "parameters": params,
    }


def _tensor(fields: Fields) -> dict[str, Any]:
    return {
        "name": _one(fields, "name", ""),
        "data_type": _one(fields, "data_type", ""),
        "dims": [int(d) for d in fields.get("dims", [])],
    }


def _one(fields: Fields, name: str, default: Any) -> Any:
    """The last value of a field (protobuf's rule for a non-repeated field given twice)."""
    values = fields.get(name)
    return values[-1] if values else default
