"""A probe inference: one tiny image through the ensemble over HTTP, with the binary tensor extension."""

from __future__ import annotations

import json
import struct
import urllib.error
import urllib.request
from dataclasses import dataclass

import cv2
import numpy as np

HTTP_UNAVAILABLE = 503  # Triton's code for "queue full" / "request timeout expired": overload, not a fault


def tiny_png(size: int = 8) -> bytes:
    """An encoded ``size`` x ``size`` gray PNG."""
    return cv2.imencode(".png", np.full((size, size, 3), 114, np.uint8))[1].tobytes()


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    overloaded: bool  # the server shed the probe (503): busy, not broken
    detail: str


def probe_inference(http_url: str, model: str = "yolov8", image: bytes | None = None, timeout_s: float = 60.0):
    """Send one image to ``model`` and report whether a result came back.

    Args:
        http_url: ``http://host:port`` of Triton's HTTP endpoint.
        image: encoded image bytes; a tiny PNG by default.

    Returns:
        ProbeResult.
    """
    image = tiny_png() if image is None else image
    element = struct.pack("<I", len(image)) + image  # BYTES element: 4-byte length, then the bytes
    image_input = {"name": "IMAGE", "shape": [1, 1], "datatype": "BYTES"}
    image_input["parameters"] = {"binary_data_size": len(element)}
    outputs = [{"name": "num_dets", "parameters": {"binary_data": False}}]
    header = json.dumps({"inputs": [image_input], "outputs": outputs}).encode()
    request = urllib.request.Request(
        f"{http_url}/v2/models/{model}/infer",
        data=header + element,
        headers={"Inference-Header-Content-Length": str(len(header)), "Content-Type": "application/octet-stream"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as reply:
            return ProbeResult(reply.status == 200, False, f"HTTP {reply.status}")
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:500]
        return ProbeResult(False, exc.code == HTTP_UNAVAILABLE, f"HTTP {exc.code}: {detail}")
    except OSError as exc:  # refused, reset, timed out
        return ProbeResult(False, False, f"{type(exc).__name__}: {exc}")
