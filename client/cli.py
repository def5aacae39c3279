"""``python -m client``: command-line access to the served ensemble."""

from __future__ import annotations

import argparse
import json
import sys

from tritonclient.utils import InferenceServerException

from client.api import DetectionResult, YoloTritonClient


def format_table(results: list[DetectionResult]) -> str:
    """A readable table, one block per image."""
    lines = []
    for result in results:
        lines.append(f"{result.image}  ({result.width}x{result.height}, {len(result.detections)} detections)")
        for d in result.detections:
            x1, y1, x2, y2 = d.box
            lines.append(f"  {d.class_name:<16} {d.score:6.3f}   [{x1:7.1f} {y1:7.1f} {x2:7.1f} {y2:7.1f}]")
    return "\n".join(lines)


def run_detect(args: argparse.Namespace) -> int:
    results, failed = [], 0
    with YoloTritonClient(args.url, timeout_s=args.timeout) as client:
        for image in args.images:
            try:
                results.append(client.detect(image, conf=args.conf, iou=args.iou))
            except OSError as exc:
                failed += 1
                print(f"error: {image}: {exc.strerror or exc}", file=sys.stderr)
            except InferenceServerException as exc:
                failed += 1
                print(f"error: {image}: {exc.message()}", file=sys.stderr)
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        print(format_table(results))
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m client", description="YOLOv8 on Triton: client tools")
    commands = parser.add_subparsers(dest="command", required=True)
    detect = commands.add_parser("detect", help="detect objects in images")
    detect.add_argument("images", nargs="+", metavar="IMAGE")
    detect.add_argument("--url", default="127.0.0.1:8001", help="Triton gRPC address (default %(default)s)")
    detect.add_argument("--conf", type=float, default=None, help="confidence threshold (server default 0.25)")
    detect.add_argument("--iou", type=float, default=None, help="NMS IoU threshold (server default 0.7)")
    detect.add_argument("--json", action="store_true", help="print a JSON list, one object per image")
    detect.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    detect.set_defaults(func=run_detect)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)
