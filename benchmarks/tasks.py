"""Each Ultralytics task served, against Ultralytics' own ``predict`` in-process on the same ONNX.

    python -m benchmarks.tasks [--models default fall_pose fall_obb fall_seg fall_cls] [--ultralytics-python PYTHON]
                               [--rounds 5] [--requests 20] [--image PATH] [--seconds 8]

For each model (``default``: the prepared repository; any other name: tests/models' model of that name,
rebuilt and prepared into a folder of the run) it starts a server and measures, on one photo:

- the client p50 at concurrency 1 (``YoloTritonClient.detect``, as a user calls it) and the peak images/s
  over concurrency 1, 2 and 4 (Little's law, ``paired.ensemble_throughput``);
- each stage's compute per request (Triton's statistics over the concurrency-1 requests);
- with ``--ultralytics-python`` (a Python with Ultralytics; the project never depends on it), Ultralytics'
  ``predict`` p50 in-process on the same ONNX (benchmarks/ultralytics_worker.py; ``retina_masks=True`` for
  segment). The two take turns, ``--rounds`` blocks of ``--requests`` each, and the ratio served p50 ÷
  predict p50 is the median of the rounds' ratios: this machine changes speed for minutes at a time.

Writes benchmarks/results/<time>/tasks.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.engine_baseline import input_hw
from benchmarks.paired import ensemble_throughput
from benchmarks.recipe_models import prepared_model
from client.api import YoloTritonClient
from client.stage_stats import STAGES, deltas, snapshot
from python_backends.paths import CACHE, PROJECT_ROOT
from python_backends.postprocess.select import config_task
from serving.processes import free_port
from serving.server import TritonServer
from serving.triton import ServerOptions

RESULTS = PROJECT_ROOT / "benchmarks" / "results"
WORKER = Path(__file__).resolve().parent / "ultralytics_worker.py"
TARGETS = {"segment": 0.80, "pose": 0.80}  # served p50 ÷ Ultralytics predict p50 (issue 29)
CONCURRENCIES = (1, 2, 4)


def served_task(client: YoloTritonClient) -> str:
    """The task in the config yolov8_postprocess was loaded with (``detect`` when it names none)."""
    return config_task(client.client.get_model_config("yolov8_postprocess", as_json=True)["config"])


class UltralyticsPredict:
    """Ultralytics' predict in a process of its own (benchmarks/ultralytics_worker.py), timed on request."""

    def __init__(self, python: str, model: Path, task: str, image: Path, hw: tuple[int, int]):
        command = [python, str(WORKER), str(model), task, str(image), str(hw[0]), str(hw[1])]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if "ready" not in json.loads(self.process.stdout.readline() or "{}"):
            raise RuntimeError(f"Ultralytics' predict did not start: {' '.join(command)}")

    def times_ms(self, count: int) -> list[float]:
        self.process.stdin.write(f"{count}\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=30)


def served_times_ms(client: YoloTritonClient, image: bytes, count: int) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        client.detect(image)
        times.append((time.perf_counter() - started) * 1e3)
    return times


def measure(name: str, repository: Path, export: Path, image: Path, args: argparse.Namespace) -> dict:
    """One model's row: served p50 and peak, stage compute, and predict's p50 and the paired ratio."""
    payload = image.read_bytes()
    options = ServerOptions(
        repository=repository, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port()
    )
    log = args.out / f"{name}_tritonserver.log"
    predict = None
    with TritonServer(options, log) as server, YoloTritonClient(server.grpc_url) as client:
        task = served_task(client)
        hw = input_hw(client.client.get_model_config("yolov8_infer", as_json=True)["config"])
        row: dict = {"task": task, "input_hw": list(hw)}
        served_times_ms(client, payload, 3)  # the first requests after ready
        before = snapshot(client.client, STAGES)
        served = served_times_ms(client, payload, args.requests)
        stages = deltas(snapshot(client.client, STAGES), before)
        row["stage_compute_ms"] = {s: round(c.mean_ms("compute_infer"), 2) for s, c in stages.items()}
        if args.ultralytics_python:
            predict = UltralyticsPredict(args.ultralytics_python, export, task, image, hw)
        rounds = []
        try:
            for _ in range(args.rounds):
                served_round = served_times_ms(client, payload, args.requests)
                served += served_round
                if predict:
                    predict_round = predict.times_ms(args.requests)
                    rounds.append((statistics.median(served_round), statistics.median(predict_round)))
        finally:
            if predict:
                predict.close()
        row["served_p50_ms"] = round(statistics.median(served), 2)
        row["peak_images_per_s"] = round(
            max(ensemble_throughput(server.grpc_url, payload, c, args.seconds) for c in CONCURRENCIES), 2
        )
    if rounds:
        row["predict_p50_ms"] = round(statistics.median(p for _, p in rounds), 2)
        row["served_over_predict"] = round(statistics.median(s / p for s, p in rounds), 3)
        if task in TARGETS:
            row["target"] = TARGETS[task]
    return row


def table(rows: dict[str, dict]) -> str:
    lines = [
        "model        task      served p50   peak img/s   pre / infer / post compute   predict p50   ratio",
    ]
    for name, r in rows.items():
        compute = " / ".join(f"{r['stage_compute_ms'][s]:.1f}" for s in STAGES)
        ratio = f"{r['served_over_predict']:.2f}" if "served_over_predict" in r else "not measured"
        target = f" (target <= {r['target']:.2f})" if "target" in r else ""
        predict = f"{r['predict_p50_ms']:.1f} ms" if "predict_p50_ms" in r else "-"
        lines.append(
            f"{name:<12} {r['task']:<9} {r['served_p50_ms']:>7.1f} ms {r['peak_images_per_s']:>11.1f}"
            f"   {compute:>27} ms   {predict:>11}   {ratio}{target}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["default", "fall_pose", "fall_obb", "fall_seg", "fall_cls"])
    parser.add_argument("--ultralytics-python", default=os.environ.get("ULTRALYTICS_PYTHON"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=8.0, help="each concurrency's throughput window")
    parser.add_argument("--image", type=Path, default=CACHE / "samples" / "bus.jpg")
    parser.add_argument("--out", type=Path, default=RESULTS / time.strftime("%Y%m%d-%H%M%S"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = {}
    with tempfile.TemporaryDirectory() as work:
        for name in args.models:
            rows[name] = measure(name, *prepared_model(name, Path(work) / name), args.image, args)
            print(f"{name}: {json.dumps(rows[name])}", flush=True)
    (args.out / "tasks.json").write_text(json.dumps({"image": str(args.image), "rows": rows}, indent=2))
    print(table(rows))
    if not args.ultralytics_python:
        print("Ultralytics' predict not measured: pass --ultralytics-python (a Python with Ultralytics)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
