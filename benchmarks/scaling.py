"""How each stage's cost grows with image resolution and with the number of detections.

    python -m benchmarks.scaling [--repeat 8]

Serves the default repository, sends bus.jpg scaled to VGA, 1 MP and 4K (concurrency 1), then
the 1 MP image at confidence thresholds that keep more and more detections, and prints per-stage
milliseconds from Triton's statistics (client/stage_stats.py).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import cv2

from client.api import YoloTritonClient
from client.stage_stats import STAGES, deltas, snapshot
from python_backends.paths import PROJECT_ROOT
from serving.processes import free_port
from serving.server import TritonServer
from serving.triton import ServerOptions

SIZES = {"VGA 640x480": (640, 480), "1 MP 1155x866": (1155, 866), "4K 3840x2160": (3840, 2160)}
CONFS = (0.25, 0.05, 0.001)


def stage_ms(client: YoloTritonClient, image: Path, repeat: int, conf: float | None = None) -> tuple[dict, float]:
    """({stage: mean ms per request}, mean detections) over ``repeat`` requests."""
    client.detect(image, conf=conf)  # warm-up
    before = snapshot(client.client, STAGES)
    found = sum(len(client.detect(image, conf=conf).detections) for _ in range(repeat))
    delta = deltas(snapshot(client.client, STAGES), before)
    return {m: sum(delta[m].mean_ms(p) for p in delta[m].ns) for m in STAGES}, found / repeat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=8)
    args = parser.parse_args()
    bus = cv2.imread(str(PROJECT_ROOT / ".cache" / "samples" / "bus.jpg"), cv2.IMREAD_COLOR)
    options = ServerOptions(http_port=free_port(), grpc_port=free_port(), metrics_port=free_port())
    with tempfile.TemporaryDirectory() as tmp, TritonServer(options, Path(tmp) / "triton.log") as server:
        images = {}
        for name, (w, h) in SIZES.items():
            images[name] = Path(tmp) / f"{w}x{h}.jpg"
            cv2.imwrite(str(images[name]), cv2.resize(bus, (w, h)), [cv2.IMWRITE_JPEG_QUALITY, 90])
        with YoloTritonClient(server.grpc_url) as client:
            print("| image (JPEG q90) | preprocess ms | infer ms | postprocess ms | bytes |")
            print("|---|---|---|---|---|")
            for name, path in images.items():
                ms, _ = stage_ms(client, path, args.repeat)
                print(f"| {name} | {ms[STAGES[0]]:.1f} | {ms[STAGES[1]]:.1f} | {ms[STAGES[2]]:.1f} | "
                      f"{path.stat().st_size:,} |")  # fmt: skip
            print("\n| conf threshold | detections | postprocess ms |")
            print("|---|---|---|")
            for conf in CONFS:
                ms, found = stage_ms(client, images["1 MP 1155x866"], args.repeat, conf)
                print(f"| {conf} | {found:.0f} | {ms[STAGES[2]]:.1f} |")


if __name__ == "__main__":
    main()
