"""``make bench``: where every millisecond goes, against the raw engine.

    python -m benchmarks.bench [--rounds 3] [--concurrency 1 2 4 8] [--interval-ms 3000] [--block-s 4]

Writes benchmarks/results/<timestamp>/ (perf_analyzer CSVs and logs, summary.json, summary.csv,
stages.png) and prints a summary in two parts:

1. Where the time goes: perf_analyzer on the `yolov8` ensemble at each concurrency with its
   composing models, on each stage alone, and the infer stage's ONNX Runtime in-process at batch 1..8.
2. The two headline ratios, from ``--rounds`` rounds in which the engine and the ensemble take turns
   (benchmarks/paired.py; the client is ``YoloTritonClient``, timed from Python). Each ratio is the
   median over the rounds. perf_analyzer's own ratios from part 1 are printed too, marked unpaired.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import time
from pathlib import Path

import cv2

from benchmarks.cpu_usage import IDLE, OTHER, SERVER, cpu_ms_per_image, cpu_snapshot
from benchmarks.engine_baseline import engine_baseline, engine_runtime
from benchmarks.paired import PairedLatency, PairedThroughput, paired_latency, paired_throughput
from benchmarks.perf_analyzer import PerfRun, run_perf_analyzer
from client.api import YoloTritonClient
from client.perf_data import STAGE_MODELS, stage_path, write_perf_data
from client.stage_stats import deltas, snapshot
from serving.server import TritonServer, free_port
from serving.triton import DEFAULT_REPOSITORY, PROJECT_ROOT, ServerOptions

RESULTS = PROJECT_ROOT / "benchmarks" / "results"
SAMPLE = PROJECT_ROOT / ".cache" / "samples" / "bus.jpg"
FASTDEPLOY_RATIO = 2.05  # 118 ms from Python / 57.7 ms engine statistics
PHASES = ("queue", "compute_input", "compute_infer", "compute_output")


def one_megapixel_jpeg(out: Path) -> Path:
    """bus.jpg (810x1080) scaled to 866x1155 (1.0 MP), JPEG quality 90."""
    image = cv2.imread(str(SAMPLE), cv2.IMREAD_COLOR)
    path = out / "bus_1mp.jpg"
    cv2.imwrite(
        str(path), cv2.resize(image, (866, 1155), interpolation=cv2.INTER_LINEAR), [cv2.IMWRITE_JPEG_QUALITY, 90]
    )
    return path


def stage_ms(composing: dict[str, dict[str, float]], model: str) -> float:
    """Server-side ms per request of one stage (queue + compute) from an ensemble run's composing models (µs)."""
    values = composing.get(model, {})
    return sum(values.get(k, 0.0) for k in PHASES) / 1e3


def round_summary(latency: PairedLatency, throughput: list[PairedThroughput]) -> dict:
    """One round's ratios: overhead from the latency turns, throughput from the best concurrency's block pair."""
    best = max(throughput, key=lambda pair: pair.ratio)
    return {
        "overhead_ratio": latency.ratio,
        "engine_p50_ms": latency.engine_p50_ms,
        "client_p50_ms": latency.client_p50_ms,
        "throughput_ratio": best.ratio,
        "peak_concurrency": best.concurrency,
        "throughput": {
            pair.concurrency: {"ensemble_images_per_s": pair.ensemble, "engine_images_per_s": pair.engine}
            for pair in throughput
        },
    }


def summarize(
    rounds: list[dict],
    ensemble: dict[int, PerfRun],
    engine: dict[int, dict],
    stages: dict[str, PerfRun],
    cpu: dict[int, dict[str, float]] | None = None,
) -> dict:
    """Headline ratios (median over the paired rounds), then perf_analyzer's breakdown and its unpaired ratios.

    ``cpu`` holds, per concurrency, the core-ms per image of each process during its perf_analyzer run.
    """
    at_one = ensemble[min(ensemble)]
    infer_ms = at_one.composing.get("yolov8_infer", {}).get("compute_infer", 0.0) / 1e3
    return {
        "overhead_ratio": statistics.median(r["overhead_ratio"] for r in rounds),
        "throughput_ratio": statistics.median(r["throughput_ratio"] for r in rounds),
        "fastdeploy_overhead_ratio": FASTDEPLOY_RATIO,
        "rounds": rounds,
        "unpaired": {
            "overhead_ratio": at_one.row["p50 latency"] / 1e3 / engine[1]["p50_ms"],
            "throughput_ratio": max(r.throughput for r in ensemble.values())
            / max(b["images_per_s"] for b in engine.values()),
            "added_ms": at_one.row["Avg latency"] / 1e3 - infer_ms,  # around the engine, in the same requests
        },
        "engine": engine,
        "ensemble": {
            c: {
                "throughput": run.throughput,
                "client_p50_ms": run.row["p50 latency"] / 1e3,
                "client_p99_ms": run.row["p99 latency"] / 1e3,
                "client_avg_ms": run.row["Avg latency"] / 1e3,
                "server_ms": sum(stage_ms(run.composing, m) for m in STAGE_MODELS),
                "stages": run.composing,
                "cpu_ms_per_image": (cpu or {}).get(c, {}),
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
        "ensemble `yolov8`, 1 MP JPEG, perf_analyzer (ms per request; stage = queue + compute_input + "
        "compute_infer + compute_output)"
    ]
    head = f"{'conc':>4} {'img/s':>7} {'p50':>8} {'p99':>8} {'server':>8}"
    head += "".join(f" {m.replace('yolov8_', ''):>28}" for m in STAGE_MODELS)
    lines.append(head)
    for c, e in summary["ensemble"].items():
        cells = ""
        for m in STAGE_MODELS:
            s = e["stages"].get(m, {})
            q, ci, cf, co = (s.get(k, 0.0) / 1e3 for k in PHASES)
            cells += f" {q:6.1f}/{ci:5.1f}/{cf:6.1f}/{co:5.1f}".rjust(29)
        row = f"{c:>4} {e['throughput']:>7.2f} {e['client_p50_ms']:>8.1f} {e['client_p99_ms']:>8.1f}"
        lines.append(row + f" {e['server_ms']:>8.1f}" + cells)
    lines.append("  (stage cells: queue/compute_input/compute_infer/compute_output)")
    columns = (*STAGE_MODELS, SERVER, OTHER, IDLE)
    lines.append("\nCPU per image (core-ms, both cores; `other` = perf_analyzer, kernel and the rest):")
    lines.append(f"{'conc':>4}" + "".join(f" {m.replace('yolov8_', ''):>12}" for m in columns))
    for c, e in summary["ensemble"].items():
        if e["cpu_ms_per_image"]:
            lines.append(f"{c:>4}" + "".join(f" {e['cpu_ms_per_image'].get(m, 0.0):>12.1f}" for m in columns))
    lines.append("\neach stage alone, concurrency 1:")
    for m, s in summary["stages_alone"].items():
        lines.append(f"  {m:<20} {s['throughput']:7.2f} req/s   p50 {s['client_p50_ms']:8.1f} ms")
    lines.append("\nthe infer stage's ONNX Runtime in-process (same model file, threads and streams), just before:")
    for b, e in summary["engine"].items():
        lines.append(
            f"  batch {b}: p50 {e['p50_ms']:8.1f} ms   {e['images_per_s']:6.2f} images/s   "
            f"{e['cpu_ms_per_image']:6.1f} core-ms per image"
        )
    unpaired = summary["unpaired"]
    lines.append(
        f"perf_analyzer's ratios, unpaired (engine and ensemble measured up to a minute apart): overhead "
        f"{unpaired['overhead_ratio']:.3f}, throughput {unpaired['throughput_ratio']:.3f}; at concurrency 1 the "
        f"pipeline adds {unpaired['added_ms']:.1f} ms around the engine's own run in the same requests"
    )
    lines.append("\npaired rounds (engine and ensemble taking turns; client = YoloTritonClient from Python):")
    for i, r in enumerate(summary["rounds"], 1):
        best = r["throughput"][r["peak_concurrency"]]
        lines.append(
            f"  {i}: overhead {r['overhead_ratio']:.3f} ({r['client_p50_ms']:.1f} / {r['engine_p50_ms']:.1f} ms), "
            f"throughput {r['throughput_ratio']:.3f} ({best['ensemble_images_per_s']:.2f} img/s at concurrency "
            f"{r['peak_concurrency']} / {max(best['engine_images_per_s'].values()):.2f} img/s)"
        )
    lines.append(
        f"\noverhead ratio   {summary['overhead_ratio']:.3f}  (median of rounds: client p50 at concurrency 1 / "
        f"engine p50 at batch 1; FastDeploy report: {FASTDEPLOY_RATIO})"
    )
    lines.append(
        f"throughput ratio {summary['throughput_ratio']:.3f}  "
        "(median of rounds: peak ensemble img/s / peak engine img/s)"
    )
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
        values = [stage_ms(summary["ensemble"][c]["stages"], model) for c in levels]
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
                         *(f"{m}_{k}_ms" for m in STAGE_MODELS for k in PHASES)])  # fmt: skip
        for c, e in summary["ensemble"].items():
            stages = [e["stages"].get(m, {}).get(k, 0.0) / 1e3 for m in STAGE_MODELS for k in PHASES]
            writer.writerow([c, e["throughput"], e["client_p50_ms"], e["client_p99_ms"], e["server_ms"], *stages])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="paired rounds; the headline ratios are their median")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--interval-ms", type=int, default=3000, help="perf_analyzer measurement window")
    parser.add_argument("--block-s", type=float, default=4.0, help="seconds of each ensemble throughput block")
    parser.add_argument("--pairs", type=int, default=20, help="engine/request turns per round for the latency")
    parser.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY)
    args = parser.parse_args(argv)
    out = RESULTS / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True)
    image = one_megapixel_jpeg(out)
    print(f"results: {out}", flush=True)
    inputs = out / "input.json"
    write_perf_data([image], inputs, args.repository)
    options = ServerOptions(repository=args.repository, http_port=free_port(), grpc_port=free_port(),
                            metrics_port=free_port())  # fmt: skip
    with TritonServer(options, out / "tritonserver.log") as server:
        with YoloTritonClient(server.grpc_url) as client:
            infer_config = client.client.get_model_config("yolov8_infer", as_json=True)["config"]
        runtime = engine_runtime(args.repository, infer_config)
        print("engine in-process, batch 1, 2, 4, 8 ...", flush=True)
        engine = engine_baseline(runtime)
        ensemble, cpu = {}, {}
        with YoloTritonClient(server.grpc_url) as stats:
            for c in args.concurrency:
                print(f"perf_analyzer yolov8, concurrency {c} ...", flush=True)
                cpu_before, before = cpu_snapshot(server.process.pid), snapshot(stats.client, ("yolov8",))
                ensemble[c] = run_perf_analyzer("yolov8", server.grpc_url, inputs, c, out / f"yolov8_c{c}.csv",
                                                args.interval_ms)  # fmt: skip
                images = deltas(snapshot(stats.client, ("yolov8",)), before)["yolov8"].inferences
                cpu[c] = cpu_ms_per_image(cpu_before, cpu_snapshot(server.process.pid), images)
        stages = {}
        for model in STAGE_MODELS:
            print(f"perf_analyzer {model} alone ...", flush=True)
            stages[model] = run_perf_analyzer(model, server.grpc_url, stage_path(inputs, model), 1,
                                              out / f"{model}_alone.csv", args.interval_ms)  # fmt: skip
        rounds = []
        payload = image.read_bytes()
        with YoloTritonClient(server.grpc_url) as client:
            for number in range(1, args.rounds + 1):
                print(f"paired round {number}: latency, then throughput at {args.concurrency} ...", flush=True)
                latency = paired_latency(runtime, client, payload, args.pairs)
                throughput = paired_throughput(runtime, server.grpc_url, payload, args.concurrency, args.block_s)
                rounds.append(round_summary(latency, throughput))
    summary = summarize(rounds, ensemble, engine, stages, cpu)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    write_csv(summary, out / "summary.csv")
    write_chart(summary, out / "stages.png")
    text = format_summary(summary)
    (out / "summary.txt").write_text(text + "\n")
    print("\n" + text + f"\n\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
