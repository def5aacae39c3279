"""``python -m client``: command-line access to the served ensembles."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import time
from collections import Counter
from pathlib import Path

import cv2

from client.api import DetectionResult, YoloTritonClient
from client.detect_run import DetectRun, client_options, progress_bar
from client.errors import SharedMemoryRefused
from client.sources import ImageItem, expand
from client.val import validate
from python_backends.defaults import CONF_THRESHOLD, IOU_THRESHOLD, VAL_CONF_THRESHOLD

URL_HELP = "Triton gRPC address; several: host1:8001,host2:8001 or dns:///name:8001, round robin (default %(default)s)"
CSV_FIELDS = ("image", "width", "height", "class_id", "class_name", "score", "x1", "y1", "x2", "y2")
CLASSIFY_CSV_FIELDS = ("image", "width", "height", "top1_class_id", "top1_class_name", "top1_score",
                       "top5_class_ids", "top5_class_names", "top5_scores")  # fmt: skip


def format_table(results: list[DetectionResult]) -> str:
    """A readable table, one block per image: its detections, or a classifier's top 5."""
    lines = []
    for result in results:
        if result.classification is not None:
            lines.append(f"{result.image}  ({result.width}x{result.height}, top 5)")
            lines += [f"  {name:<16} {score:6.3f}" for name, score in result.classification.top5]
            continue
        lines.append(f"{result.image}  ({result.width}x{result.height}, {len(result.detections)} detections)")
        for d in result.detections:
            x1, y1, x2, y2 = d.box
            lines.append(f"  {d.class_name:<16} {d.score:6.3f}   [{x1:7.1f} {y1:7.1f} {x2:7.1f} {y2:7.1f}]")
    return "\n".join(lines)


def format_csv(results: list[DetectionResult]) -> str:
    """One row per detection (an image without detections gets one row with empty detection fields); a
    classifier's results one row per image (``format_classify_csv``)."""
    if results and results[0].classification is not None:
        return format_classify_csv(results)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_FIELDS)
    for r in results:
        rows = [[d.class_id, d.class_name, f"{d.score:.5f}", *(f"{v:.2f}" for v in d.box)] for d in r.detections]
        for row in rows or [[""] * 7]:
            writer.writerow([r.image, r.width, r.height, *row])
    return buffer.getvalue()


def format_classify_csv(results: list[DetectionResult]) -> str:
    """One row per image: its top-1 class and score, and its top 5's ids, names and scores joined by ';'."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CLASSIFY_CSV_FIELDS)
    for r in results:
        found = r.classification
        names, scores = [n for n, _ in found.top5], [f"{s:.5f}" for _, s in found.top5]
        top1 = [found.top5_ids[0], names[0], scores[0]]
        top5 = [";".join(map(str, found.top5_ids)), ";".join(names), ";".join(scores)]
        writer.writerow([r.image, r.width, r.height, *top1, *top5])
    return buffer.getvalue()


def count_frames(path: Path) -> int:
    capture = cv2.VideoCapture(str(path))
    try:
        return max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT)))
    finally:
        capture.release()


def run_detect(args: argparse.Namespace) -> int:
    images, videos = expand(args.sources)
    total = len(images) + sum(count_frames(v) for v in videos)
    started = time.perf_counter()
    progress = progress_bar(total, args.quiet, sys.stderr)
    if args.save:
        Path(args.save).mkdir(parents=True, exist_ok=True)
    try:
        with YoloTritonClient(args.url, timeout_s=args.timeout, classes=args.classes, **client_options(args)) as yolo:
            run = DetectRun(args, yolo)
            run.run((ImageItem(p) for p in images), progress, run.save_image)
            for video in videos:
                run.run_video(video, progress)
    except SharedMemoryRefused as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    finally:
        progress.close()
    if args.json:
        text = json.dumps([r.to_dict() for r in run.results], indent=2) + "\n"
    elif args.csv:
        text = format_csv(run.results)
    else:
        text = format_table(run.results) + "\n"
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    print_summary(run, time.perf_counter() - started)
    return 1 if run.failed else 0


def print_summary(run: DetectRun, seconds: float) -> None:
    per_class = Counter(d.class_name for r in run.results for d in r.detections)
    top1 = Counter(r.classification.top5[0][0] for r in run.results if r.classification is not None)
    kind = "top-1" if top1 else "detections"
    classes = ", ".join(f"{name} {count}" for name, count in (top1 or per_class).most_common()) or "none"
    rate = len(run.results) / seconds if seconds > 0 else 0.0
    print(
        f"summary: {len(run.results)} images, {run.failed} failed, {kind}: {classes}; "
        f"{rate:.2f} images/s over {seconds:.1f} s",
        file=sys.stderr,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="yolo-triton", description="YOLOv8 on Triton: client tools")
    commands = parser.add_subparsers(dest="command", required=True)
    detect = commands.add_parser("detect", help="detect objects in images, folders and videos")
    detect.add_argument("sources", nargs="+", metavar="SOURCE", help="image file, folder (recursive) or video")
    detect.add_argument("--url", default="127.0.0.1:8001", help=URL_HELP)
    detect.add_argument(
        "--conf", type=float, default=None, help=f"confidence threshold (server default {CONF_THRESHOLD})"
    )
    detect.add_argument("--iou", type=float, default=None, help=f"NMS IoU threshold (server default {IOU_THRESHOLD})")
    detect.add_argument("--classes", type=int, nargs="+", default=None, help="keep only these class ids")
    output = detect.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="a JSON list, one object per image")
    output.add_argument("--csv", action="store_true", help="CSV, one row per detection (a classifier: per image)")
    detect.add_argument("--output", "-o", default=None, help="write results to this file instead of stdout")
    detect.add_argument("--save", default=None, metavar="DIR", help="write annotated images/videos here")
    add_request_options(detect)
    detect.set_defaults(func=run_detect)

    val = commands.add_parser(
        "val", help="COCO mAP (or a classifier's top-1/top-5 accuracy) on a labelled dataset (Ultralytics layout)"
    )
    val.add_argument(
        "--data",
        required=True,
        metavar="DATA.yaml",
        help="Ultralytics dataset file: path, val, names; or a classification folder: root/{val,test}/<class>/*.jpg",
    )
    val.add_argument("--url", default="127.0.0.1:8001", help=URL_HELP)
    val.add_argument(
        "--conf", type=float, default=VAL_CONF_THRESHOLD, help="confidence threshold (default %(default)s)"
    )
    val.add_argument("--iou", type=float, default=IOU_THRESHOLD, help="NMS IoU threshold (default %(default)s)")
    val.add_argument("--json", default=None, metavar="OUT", help="also write the metrics to this JSON file")
    add_request_options(val)
    val.set_defaults(func=validate, save=None)  # DetectRun writes no annotated images

    report = commands.add_parser("report", help="per-stage cost from the server's statistics")
    report.add_argument("--url", default="127.0.0.1:8001", help=URL_HELP)
    source = report.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", nargs="+", help="drive traffic with these images and time it")
    source.add_argument("--window", type=float, help="watch live traffic for this many seconds")
    report.add_argument("--concurrency", type=int, default=1, help="requests in flight when driving")
    report.add_argument("--repeat", type=int, default=4, help="passes over --images when driving")
    report.set_defaults(func=run_report)

    trace = commands.add_parser("trace", help="each request's time per stage, from the server's request traces")
    trace.add_argument("--url", default="127.0.0.1:8001", help="Triton gRPC address of one server on this host")
    trace.add_argument("--images", nargs="+", help="drive traffic with these images (default: sample live traffic)")
    trace.add_argument("--requests", type=positive, default=200, help="requests to trace (default %(default)s)")
    trace.add_argument("--rate", type=positive, default=1, help="trace one request in RATE (default %(default)s)")
    trace.add_argument("--concurrency", type=positive, default=1, help="requests in flight when driving")
    trace.add_argument("--window", type=float, default=60.0, help="seconds to sample live traffic at most")
    trace.add_argument("--admin-key", help="the server's admin key (default: .cache/admin_key, if any)")
    trace.add_argument("--json", metavar="FILE", help="also write the figures to this JSON file")
    trace.add_argument("--png", metavar="FILE", help="draw the p50 and p99 requests' waterfall here")
    trace.set_defaults(func=run_trace)
    return parser


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def add_request_options(parser: argparse.ArgumentParser) -> None:
    """Options of every command that sends images: concurrency, deadline, progress bar, TLS and shared memory."""
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight (default %(default)s)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--tls-root-cert", default=None, help="CA certificate: use TLS")
    parser.add_argument("--tls-cert", default=None, help="client certificate (mutual TLS)")
    parser.add_argument("--tls-key", default=None, help="client private key (mutual TLS)")
    parser.add_argument(
        "--shared-memory",
        action="store_true",
        help="images through system shared memory: one server on this host, started with --allow-client-shm",
    )


def run_report(args: argparse.Namespace) -> int:
    from client.report import report

    print(report(args.url, [Path(i) for i in args.images or []], args.concurrency, args.repeat, args.window))
    return 0


def run_trace(args: argparse.Namespace) -> int:
    from tritonclient.utils import InferenceServerException

    from client.trace import TraceError, trace
    from client.trace_stats import slowest_share, summary, table

    images = [Path(i) for i in args.images or []]
    try:
        traces = trace(args.url, images, args.requests, args.concurrency, args.rate, args.window, args.admin_key)
    except (TraceError, InferenceServerException) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: tracing is off", file=sys.stderr)
        return 130
    if not traces:
        print("no request was traced", file=sys.stderr)
        return 1
    result = summary(traces)
    print(table(result))
    print(slowest_share(traces))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    if args.png:
        from client.trace_plot import write_waterfall

        write_waterfall(traces, Path(args.png))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)
