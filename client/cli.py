"""``python -m client``: command-line access to the served ensembles."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TextIO

import cv2
from tqdm import tqdm

from client.annotate import annotate
from client.api import DetectionError, DetectionResult, YoloTritonClient
from client.sources import FrameItem, ImageItem, expand, video_fps, video_frames

URL_HELP = "Triton gRPC address; several: host1:8001,host2:8001 or dns:///name:8001, round robin (default %(default)s)"
CSV_FIELDS = ("image", "width", "height", "class_id", "class_name", "score", "x1", "y1", "x2", "y2")


def format_table(results: list[DetectionResult]) -> str:
    """A readable table, one block per image."""
    lines = []
    for result in results:
        lines.append(f"{result.image}  ({result.width}x{result.height}, {len(result.detections)} detections)")
        for d in result.detections:
            x1, y1, x2, y2 = d.box
            lines.append(f"  {d.class_name:<16} {d.score:6.3f}   [{x1:7.1f} {y1:7.1f} {x2:7.1f} {y2:7.1f}]")
    return "\n".join(lines)


def format_csv(results: list[DetectionResult]) -> str:
    """One row per detection (an image without detections gets one row with empty detection fields)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_FIELDS)
    for r in results:
        rows = [[d.class_id, d.class_name, f"{d.score:.5f}", *(f"{v:.2f}" for v in d.box)] for d in r.detections]
        for row in rows or [[""] * 7]:
            writer.writerow([r.image, r.width, r.height, *row])
    return buffer.getvalue()


def ordered_map(pool: ThreadPoolExecutor, fn: Callable, items: Iterable, window: int) -> Iterator[tuple]:
    """Yield (item, future) in input order with at most ``window`` calls in flight (items are read lazily)."""
    pending: deque[tuple[object, Future]] = deque()
    for item in items:
        pending.append((item, pool.submit(fn, item)))
        if len(pending) >= window:
            yield pending.popleft()
    while pending:
        yield pending.popleft()


class DetectRun:
    """One ``detect`` invocation: sources in, results, annotated files and a summary out."""

    def __init__(self, args: argparse.Namespace, client: YoloTritonClient):
        self.args, self.client = args, client
        self.results: list[DetectionResult] = []
        self.failed = 0
        self.save_dir = Path(args.save) if args.save else None

    def detect(self, item: ImageItem | FrameItem) -> DetectionResult:
        image = item.pixels if isinstance(item, FrameItem) else item.path
        result = self.client.detect(image, conf=self.args.conf, iou=self.args.iou)
        result.image = item.label
        return result

    def fail(self, label: str, why: str) -> None:
        self.failed += 1
        print(f"error: {label}: {why}", file=sys.stderr)

    def run(self, items: Iterable[ImageItem | FrameItem], progress: tqdm, on_result: Callable) -> None:
        with ThreadPoolExecutor(self.args.concurrency) as pool:
            for item, future in ordered_map(pool, self.detect, items, 2 * self.args.concurrency):
                try:
                    result = future.result()
                except OSError as exc:
                    self.fail(item.label, exc.strerror or str(exc))
                except DetectionError as exc:
                    self.fail(item.label, exc.message)
                else:
                    self.results.append(result)
                    on_result(item, result)
                progress.update()

    def save_image(self, item: ImageItem, result: DetectionResult) -> None:
        if self.save_dir is None:
            return
        pixels = cv2.imread(str(item.path), cv2.IMREAD_COLOR)
        target = self.save_dir / item.path.name
        if target.exists():  # same file name from another folder
            target = self.save_dir / f"{item.path.stem}_{len(self.results)}{item.path.suffix}"
        cv2.imwrite(str(target), annotate(pixels, result))

    def run_video(self, path: Path, progress: tqdm) -> None:
        writer = None
        try:
            frames = video_frames(path)
            if self.save_dir is not None:
                fps = video_fps(path)

                def write(item: FrameItem, result: DetectionResult) -> None:
                    nonlocal writer
                    if writer is None:
                        height, width = item.pixels.shape[:2]
                        target = str(self.save_dir / f"{path.stem}_annotated.mp4")
                        writer = cv2.VideoWriter(target, cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
                    writer.write(annotate(item.pixels, result))
            else:

                def write(item: FrameItem, result: DetectionResult) -> None:
                    return None

            self.run(frames, progress, write)
        except OSError as exc:
            self.fail(str(path), str(exc))
        finally:
            if writer is not None:
                writer.release()


def count_frames(path: Path) -> int:
    capture = cv2.VideoCapture(str(path))
    try:
        return max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT)))
    finally:
        capture.release()


def progress_bar(total: int, quiet: bool, stream: TextIO) -> tqdm:
    """A tqdm bar (count, img/s, ETA) on ``stream``; disabled with ``quiet``, for 3 items or fewer, or off a TTY."""
    return tqdm(total=total, unit="img", file=stream, disable=quiet or total <= 3 or not stream.isatty())


def tls_options(args: argparse.Namespace) -> dict:
    """YoloTritonClient's TLS keyword arguments from --tls-root-cert, --tls-key and --tls-cert."""
    return {"root_certificates": args.tls_root_cert, "private_key": args.tls_key, "certificate_chain": args.tls_cert}


def run_detect(args: argparse.Namespace) -> int:
    images, videos = expand(args.sources)
    total = len(images) + sum(count_frames(v) for v in videos)
    started = time.perf_counter()
    progress = progress_bar(total, args.quiet, sys.stderr)
    if args.save:
        Path(args.save).mkdir(parents=True, exist_ok=True)
    with YoloTritonClient(args.url, timeout_s=args.timeout, classes=args.classes, **tls_options(args)) as client:
        run = DetectRun(args, client)
        run.run((ImageItem(p) for p in images), progress, run.save_image)
        for video in videos:
            run.run_video(video, progress)
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
    classes = ", ".join(f"{name} {count}" for name, count in per_class.most_common()) or "none"
    rate = len(run.results) / seconds if seconds > 0 else 0.0
    print(
        f"summary: {len(run.results)} images, {run.failed} failed, detections: {classes}; "
        f"{rate:.2f} images/s over {seconds:.1f} s",
        file=sys.stderr,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="yolo-triton", description="YOLOv8 on Triton: client tools")
    commands = parser.add_subparsers(dest="command", required=True)
    detect = commands.add_parser("detect", help="detect objects in images, folders and videos")
    detect.add_argument("sources", nargs="+", metavar="SOURCE", help="image file, folder (recursive) or video")
    detect.add_argument("--url", default="127.0.0.1:8001", help=URL_HELP)
    detect.add_argument("--conf", type=float, default=None, help="confidence threshold (server default 0.25)")
    detect.add_argument("--iou", type=float, default=None, help="NMS IoU threshold (server default 0.7)")
    detect.add_argument("--classes", type=int, nargs="+", default=None, help="keep only these class ids")
    output = detect.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="a JSON list, one object per image")
    output.add_argument("--csv", action="store_true", help="CSV, one row per detection")
    detect.add_argument("--output", "-o", default=None, help="write results to this file instead of stdout")
    detect.add_argument("--save", default=None, metavar="DIR", help="write annotated images/videos here")
    add_request_options(detect)
    detect.set_defaults(func=run_detect)

    val = commands.add_parser("val", help="COCO mAP of the served model on a labelled dataset (Ultralytics layout)")
    val.add_argument("--data", required=True, metavar="DATA.yaml", help="Ultralytics dataset file: path, val, names")
    val.add_argument("--url", default="127.0.0.1:8001", help=URL_HELP)
    val.add_argument("--conf", type=float, default=0.001, help="confidence threshold (default %(default)s)")
    val.add_argument("--iou", type=float, default=0.7, help="NMS IoU threshold (default %(default)s)")
    val.add_argument("--json", default=None, metavar="OUT", help="also write the metrics to this JSON file")
    add_request_options(val)
    val.set_defaults(func=run_val, save=None)  # DetectRun writes no annotated images

    report = commands.add_parser("report", help="per-stage cost from the server's statistics")
    report.add_argument("--url", default="127.0.0.1:8001", help=URL_HELP)
    source = report.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", nargs="+", help="drive traffic with these images and time it")
    source.add_argument("--window", type=float, help="watch live traffic for this many seconds")
    report.add_argument("--concurrency", type=int, default=1, help="requests in flight when driving")
    report.add_argument("--repeat", type=int, default=4, help="passes over --images when driving")
    report.set_defaults(func=run_report)
    return parser


def add_request_options(parser: argparse.ArgumentParser) -> None:
    """Options of every command that sends images: concurrency, deadline, progress bar and TLS."""
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight (default %(default)s)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--tls-root-cert", default=None, help="CA certificate: use TLS")
    parser.add_argument("--tls-cert", default=None, help="client certificate (mutual TLS)")
    parser.add_argument("--tls-key", default=None, help="client private key (mutual TLS)")


def run_val(args: argparse.Namespace) -> int:
    from client.val import validate

    return validate(args)


def run_report(args: argparse.Namespace) -> int:
    from client.report import report

    print(report(args.url, [Path(i) for i in args.images or []], args.concurrency, args.repeat, args.window))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)
