"""``make bench``: where every millisecond goes, against the raw engine.

    python -m benchmarks.bench [--concurrency 1 2 4 8] [--interval-ms 3000]

Writes benchmarks/results/<timestamp>/ (perf_analyzer CSVs and logs, summary.json, summary.csv,
stages.png) and prints a summary: perf_analyzer on the `yolov8` ensemble at each concurrency with
its composing models, on each stage alone, and ONNX Runtime in-process at batch 1..8.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import cv2

from benchmarks.engine_baseline import engine_baseline
from benchmarks.perf_analyzer import PerfRun, run_perf_analyzer
from client.perf_data import STAGE_MODELS, stage_path, write_perf_data
from serving.server import TritonServer, free_port
from serving.triton import DEFAULT_REPOSITORY, PROJECT_ROOT, ServerOptions

RESULTS = PROJECT_ROOT / "benchmarks" / "results"
SAMPLE = PROJECT_ROOT / ".cache" / "samples" / "bus.jpg"
FASTDEPLOY_RATIO = 2.05  # 118 ms from Python / 57.7 ms engine statistics


def one_megapixel_jpeg(out: Path) -> Path:
    """bus.jpg (810x1080) scaled to 866x1155 (1.0 MP), JPEG quality 90."""
    image = cv2.imread(str(SAMPLE), cv2.IMREAD_COLOR)
    path = out / "bus_1mp.jpg"
    cv2.imwrite(
        str(path), cv2.resize(image, (866, 1155), interpolation=cv2.INTER_LINEAR), [cv2.IMWRITE_JPEG_QUALITY, 90]
    )
    return path


def stage_ms(run: PerfRun, model: str) -> float:
    """Server-side ms per request of one stage (queue + compute) in an ensemble run."""
    values = run.composing.get(model, {})
    return sum(values.get(k, 0.0) for k in ("queue", "compute_input", "compute_infer", "compute_output")) / 1e3


def summarize(ensemble: dict[int, PerfRun], stages: dict[str, PerfRun], engine: dict[int, dict]) -> dict:
    at_one = ensemble[min(ensemble)]
    peak_ensemble = max(run.throughput for run in ensemble.values())
    peak_engine = max(b["images_per_s"] for b in engine.values())
    return {
        "overhead_ratio": at_one.row["p50 latency"] / 1e3 / engine[1]["p50_ms"],
        "throughput_ratio": peak_ensemble / peak_engine,
        "fastdeploy_overhead_ratio": FASTDEPLOY_RATIO,
        "engine": engine,
        "ensemble": {
            c: {
                "throughput": run.throughput,
                "client_p50_ms": run.row["p50 latency"] / 1e3,
                "client_p99_ms": run.row["p99 latency"] / 1e3,
                "client_avg_ms": run.row["Avg latency"] / 1e3,
                "server_ms": sum(stage_ms(run, m) for m in STAGE_MODELS),
                "stages": run.composing,
            }
            for c, run in ensemble.items()
        },
        "stages_alone": {
            m: {"throughput": r.throughput, "client_p50_ms": r.row["p50 latency"] / 1e3, "server": r.composing or r.row}
            for m, r in stages.items()
        },
    }


def format_summary(summary: dict) -> str:
    lines = [
        "ensemble `yolov8`, 1 MP JPEG (ms per request; stage = queue + compute_input + compute_infer + compute_output)"
    ]
    head = f"{'conc':>4} {'img/s':>7} {'p50':>8} {'p99':>8} {'server':>8}"
    head += "".join(f" {m.replace('yolov8_', ''):>28}" for m in STAGE_MODELS)
    lines.append(head)
    for c, e in summary["ensemble"].items():
        cells = ""
        for m in STAGE_MODELS:
            s = e["stages"].get(m, {})
            q, ci, cf, co = (s.get(k, 0.0) / 1e3 for k in ("queue", "compute_input", "compute_infer", "compute_output"))
            cells += f" {q:6.1f}/{ci:5.1f}/{cf:6.1f}/{co:5.1f}".rjust(29)
        row = f"{c:>4} {e['throughput']:>7.2f} {e['client_p50_ms']:>8.1f} {e['client_p99_ms']:>8.1f}"
        lines.append(row + f" {e['server_ms']:>8.1f}" + cells)
    lines.append("  (stage cells: queue/compute_input/compute_infer/compute_output)")
    lines.append("\neach stage alone, concurrency 1:")
    for m, s in summary["stages_alone"].items():
        lines.append(f"  {m:<20} {s['throughput']:7.2f} req/s   p50 {s['client_p50_ms']:8.1f} ms")
    lines.append("\nONNX Runtime in-process (same model file and session options):")
    for b, e in summary["engine"].items():
        lines.append(f"  batch {b}: p50 {e['p50_ms']:8.1f} ms   {e['images_per_s']:6.2f} images/s")
    lines.append(
        f"\noverhead ratio   {summary['overhead_ratio']:.2f}  (client p50 at concurrency 1 / engine p50 at batch 1; "
        f"FastDeploy report: {FASTDEPLOY_RATIO})"
    )
    lines.append(f"throughput ratio {summary['throughput_ratio']:.2f}  (peak ensemble img/s / peak engine img/s)")
    return "\n".join(lines)


def write_chart(summary: dict, path: Path) -> None:
    """Stacked bar per concurrency: one segment per stage, plus client/network overhead."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = list(summary["ensemble"])
    bottoms = [0.0] * len(levels)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for model in STAGE_MODELS:
        values = [
            sum(summary["ensemble"][c]["stages"].get(model, {}).get(k, 0.0) for k in
                ("queue", "compute_input", "compute_infer", "compute_output")) / 1e3
            for c in levels
        ]  # fmt: skip
        ax.bar([str(c) for c in levels], values, bottom=bottoms, label=model)
        bottoms = [b + v for b, v in zip(bottoms, values)]
    overhead = [max(0.0, summary["ensemble"][c]["client_avg_ms"] - b) for c, b in zip(levels, bottoms)]
    ax.bar([str(c) for c in levels], overhead, bottom=bottoms, label="client/network overhead", color="0.7")
    ax.axhline(summary["engine"][1]["p50_ms"], color="k", linestyle="--", linewidth=1, label="engine alone, batch 1")
    ax.set_xlabel("concurrency")
    ax.set_ylabel("ms per request (mean)")
    ax.set_title("yolov8 ensemble: where the time goes (1 MP JPEG, CPU)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_csv(summary: dict, path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["concurrency", "images_per_s", "client_p50_ms", "client_p99_ms", "server_ms",
                         *(f"{m}_{k}_ms" for m in STAGE_MODELS for k in ("queue", "compute_input", "compute_infer",
                                                                          "compute_output"))])  # fmt: skip
        for c, e in summary["ensemble"].items():
            stages = [e["stages"].get(m, {}).get(k, 0.0) / 1e3 for m in STAGE_MODELS
                      for k in ("queue", "compute_input", "compute_infer", "compute_output")]  # fmt: skip
            writer.writerow([c, e["throughput"], e["client_p50_ms"], e["client_p99_ms"], e["server_ms"], *stages])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--interval-ms", type=int, default=3000, help="perf_analyzer measurement window")
    parser.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY)
    args = parser.parse_args(argv)
    out = RESULTS / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True)
    image = one_megapixel_jpeg(out)
    print(f"results: {out}", flush=True)
    print("engine baseline: ONNX Runtime in-process, batch 1, 2, 4, 8 ...", flush=True)
    engine = engine_baseline(str(args.repository / "yolov8_infer" / "1" / "model.onnx"))
    inputs = out / "input.json"
    write_perf_data([image], inputs, args.repository)
    options = ServerOptions(repository=args.repository, http_port=free_port(), grpc_port=free_port(),
                            metrics_port=free_port())  # fmt: skip
    with TritonServer(options, out / "tritonserver.log") as server:
        ensemble = {}
        for c in args.concurrency:
            print(f"perf_analyzer yolov8, concurrency {c} ...", flush=True)
            ensemble[c] = run_perf_analyzer("yolov8", server.grpc_url, inputs, c, out / f"yolov8_c{c}.csv",
                                            args.interval_ms)  # fmt: skip
        stages = {}
        for model in STAGE_MODELS:
            print(f"perf_analyzer {model} alone ...", flush=True)
            stages[model] = run_perf_analyzer(model, server.grpc_url, stage_path(inputs, model), 1,
                                              out / f"{model}_alone.csv", args.interval_ms)  # fmt: skip
    summary = summarize(ensemble, stages, engine)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    write_csv(summary, out / "summary.csv")
    write_chart(summary, out / "stages.png")
    text = format_summary(summary)
    (out / "summary.txt").write_text(text + "\n")
    print("\n" + text + f"\n\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
