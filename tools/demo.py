"""``make demo``: serve the ensemble, detect on sample photos, show where the time went, stop.

python -m tools.demo [IMAGE ...]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import cv2

from client.annotate import annotate, read_image
from client.api import YoloTritonClient
from client.cli import format_table
from client.stage_stats import STAGES, deltas, snapshot, stage_table
from python_backends.paths import PROJECT_ROOT
from serving.processes import free_port
from serving.server import TritonServer
from serving.triton import ServerOptions

SAMPLES = PROJECT_ROOT / ".cache" / "samples"
ANNOTATED = PROJECT_ROOT / ".cache" / "demo"
DEFAULT_IMAGES = ("bus.jpg", "zidane.jpg", "grace_hopper.jpg", "astronaut.png", "camera.png")


def main(argv: list[str]) -> int:
    images = [Path(a) for a in argv] or [SAMPLES / name for name in DEFAULT_IMAGES]
    options = ServerOptions(http_port=free_port(), grpc_port=free_port(), metrics_port=free_port())
    log = PROJECT_ROOT / ".cache" / "logs" / "demo-tritonserver.log"
    print(f"starting tritonserver on {options.host} (gRPC {options.grpc_port}); log: {log}", flush=True)
    started = time.monotonic()
    with TritonServer(options, log) as server, YoloTritonClient(server.grpc_url) as client:
        print(f"ready in {time.monotonic() - started:.1f} s; model classes: {client.class_names}\n")
        client.detect(images[0])  # first call pays one-off costs (ONNX Runtime allocations); not counted
        models = (*STAGES, "yolov8")
        before = snapshot(client.client, models)
        results, latencies = [], []
        for image in images:
            t0 = time.perf_counter()
            results.append(client.detect(image))
            latencies.append((time.perf_counter() - t0) * 1e3)
        delta = deltas(snapshot(client.client, models), before)
    print(format_table(results))
    ANNOTATED.mkdir(parents=True, exist_ok=True)
    pixels = [read_image(image) for image in images]
    for image, picture, result in zip(images, pixels, results):
        cv2.imwrite(str(ANNOTATED / image.name), annotate(picture, result))
    print(f"\nannotated images: {ANNOTATED}/")
    print(f"\nclient latency per image: mean {sum(latencies) / len(latencies):.1f} ms over {len(latencies)} images")
    print("\nwhere the time went (Triton per-model statistics, mean ms per request):")
    print(stage_table(delta))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
