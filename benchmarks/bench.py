"""``make bench``: where every millisecond goes, against the raw engine.

    python -m benchmarks.bench [--rounds 3] [--concurrency 1 2 4 8] [--interval-ms 3000] [--block-s 4]
                               [--runtimes onnxruntime openvino] [--no-int8]

Writes benchmarks/results/<timestamp>/ (perf_analyzer CSVs and logs, summary.json, summary.csv,
stages.png) and prints a summary in four parts:

1. Where the time goes: perf_analyzer on the `yolov8` ensemble at each concurrency with its
   composing models, on each stage alone, and ONNX Runtime in-process at batch 1..8.
2. The headline ratios against in-process ONNX Runtime (the engine a user would otherwise call), from
   ``--rounds`` rounds in which the engine and the ensemble take turns (benchmarks/paired.py; the client
   is ``YoloTritonClient``, timed from Python), and the served p50 against the served runtime's own
   in-process p50. Each ratio is the median over the rounds. perf_analyzer's own ratios from part 1
   are printed too, marked unpaired.
3. Each CPU runtime in-process and served (``--runtimes``; benchmarks/runtimes.py), with the first request
   after the server reported ready.
4. What the machine allows: the best each headline ratio could be if the server cost nothing around the
   engine (benchmarks/ceiling.py).
5. INT8 (``--no-int8`` leaves it out): the model quantized as ``prepare --int8`` does, into a copy of the
   repository (benchmarks/int8.py); its agreement with FP32 on the sample photos, parts 1, 2 and 4 for a
   server on it (its headline ratios still against in-process ONNX Runtime FP32, with their INT8 targets;
   stages_int8.png shows preprocessing's larger share), and its row in part 3's table.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import time
from pathlib import Path

import cv2

from benchmarks.ceiling import ceilings, format_ceilings
from benchmarks.cpu_usage import IDLE, OTHER, SERVER, cpu_ms_per_image, cpu_snapshot
from benchmarks.engine_baseline import (
    REFERENCE,
    engine_baseline,
    engine_runtime,
    input_hw,
    served_cpu_precision,
    served_cpu_runtime,
)
from benchmarks.int8 import CALIBRATION_IMAGES, INT8_PARAMETERS, INT8_ROW, fp32_agreement, int8_repository
from benchmarks.int8 import TARGETS as INT8_TARGETS
from benchmarks.paired import PairedLatency, PairedThroughput, paired_latency, paired_throughput
from benchmarks.perf_analyzer import PerfRun, run_perf_analyzer
from benchmarks.perf_data import STAGE_MODELS, stage_path, write_perf_data
from benchmarks.runtimes import FIRST_REQUEST_TARGET, runtime_rows, runtime_table
from client.api import YoloTritonClient
from client.stage_stats import deltas, snapshot
from python_backends import PROJECT_ROOT
from serving.processes import free_port
from serving.server import TritonServer
from serving.triton import DEFAULT_REPOSITORY, ServerOptions

RESULTS = PROJECT_ROOT / "benchmarks" / "results"
SAMPLES = PROJECT_ROOT / ".cache" / "samples"
SAMPLE = SAMPLES / "bus.jpg"
FASTDEPLOY_RATIO = 2.05  # 118 ms from Python / 57.7 ms engine statistics
PHASES = ("queue", "compute_input", "compute_infer", "compute_output")
TARGETS = {"overhead_ratio": ("<=", 0.90), "throughput_ratio": (">=", 1.15), "own_overhead_ratio": ("<=", 1.10)}


def one_megapixel_jpeg(out: Path) -> Path:
    """bus.jpg (810x1080) scaled to 866x1155 (1.0 MP), JPEG quality 90."""
    image = cv2.imread(str(SAMPLE), cv2.IMREAD_COLOR)
    path = out / "bus_1mp.jpg"
    cv2.imwrite(
        str(path), cv2.resize(image, (866, 1155), interpolation=cv2.INTER_LINEAR), [cv2.IMWRITE_JPEG_QUALITY, 90]
    )
    return path


def stage_ms(composing: dict[str, dict[str, float]], model: str, phases: tuple[str, ...] = PHASES) -> float:
    """Server-side ms per request of one stage (by default queue + compute) from an ensemble run's composing
    models (µs)."""
    values = composing.get(model, {})
    return sum(values.get(k, 0.0) for k in phases) / 1e3


def round_summary(latency: PairedLatency, throughput: list[PairedThroughput]) -> dict:
    """One round's ratios: overhead from the latency turns, throughput from the best concurrency's block pair."""
    best = max(throughput, key=lambda pair: pair.ratio)
    return {
        "overhead_ratio": latency.ratio,
        "own_overhead_ratio": latency.own_ratio,
        "engine_p50_ms": latency.engine_p50_ms,
        "own_p50_ms": latency.own_p50_ms,
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
    served_runtime: str = REFERENCE,
    runtimes: dict[str, dict[str, float]] | None = None,
    cores: int | None = None,
) -> dict:
    """Headline ratios (median over the paired rounds), then perf_analyzer's breakdown and its unpaired ratios,
    and under ``ceiling`` the best ratios that ``cores`` cores allow (``benchmarks.ceiling``; default: this process's).

    ``cpu`` holds, per concurrency, the core-ms per image of each process during its perf_analyzer run;
    ``runtimes`` the table of ``benchmarks.runtimes.runtime_table``.
    """
    at_one = ensemble[min(ensemble)]
    infer_ms = at_one.composing.get("yolov8_infer", {}).get("compute_infer", 0.0) / 1e3
    found = {
        "overhead_ratio": statistics.median(r["overhead_ratio"] for r in rounds),
        "throughput_ratio": statistics.median(r["throughput_ratio"] for r in rounds),
        "own_overhead_ratio": statistics.median(r["own_overhead_ratio"] for r in rounds),
        "served_runtime": served_runtime,
        "runtimes": runtimes or {},
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
    return found | {"ceiling": ceilings(found, cores)}


def format_ensemble(summary: dict) -> list[str]:
    """perf_analyzer on the ensemble at each concurrency: latency, each stage's phases, CPU per image."""
    lines = [
        f"ensemble `yolov8` serving {summary['served_runtime']}, 1 MP JPEG, perf_analyzer (ms per request; "
        "stage = queue + compute_input + compute_infer + compute_output)"
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
    return lines


def format_rounds(summary: dict, targets: dict = TARGETS) -> list[str]:
    """The paired rounds, then each headline ratio (their median) against its target."""
    served = summary["served_runtime"]
    lines = [
        f"\npaired rounds (engine = {REFERENCE} in-process, own = {served} in-process, and the ensemble serving "
        f"{served}, taking turns; client = YoloTritonClient from Python):"
    ]
    for i, r in enumerate(summary["rounds"], 1):
        best = r["throughput"][r["peak_concurrency"]]
        lines.append(
            f"  {i}: overhead {r['overhead_ratio']:.3f} ({r['client_p50_ms']:.1f} / {r['engine_p50_ms']:.1f} ms), "
            f"own {r['own_overhead_ratio']:.3f} (/ {r['own_p50_ms']:.1f} ms), "
            f"throughput {r['throughput_ratio']:.3f} ({best['ensemble_images_per_s']:.2f} img/s at concurrency "
            f"{r['peak_concurrency']} / {max(best['engine_images_per_s'].values()):.2f} img/s)"
        )
    explained = {
        "overhead_ratio": f"client p50 at concurrency 1 / {REFERENCE} p50 at batch 1; FastDeploy report: "
        f"{FASTDEPLOY_RATIO}",
        "throughput_ratio": f"peak ensemble img/s / peak {REFERENCE} img/s",
        "own_overhead_ratio": f"client p50 at concurrency 1 / {served} p50 at batch 1, in-process",
    }
    lines.append("")
    for key, text in explained.items():
        sign, target = targets[key]
        label = key.removesuffix("_ratio").replace("_", " ") + " ratio"
        lines.append(f"{label:<22} {summary[key]:.3f}  (target {sign} {target:.2f}; median of rounds: {text})")
    return lines


def format_int8(int8: dict) -> list[str]:
    """The INT8 part: how it was quantized, its agreement with FP32, its ensemble, rounds, ratios and ceiling."""
    sign, target = INT8_TARGETS["recall"]
    lines = [
        f"\n--- INT8: {INT8_ROW}, quantized here in {int8['quantize_s']:.0f} s on {CALIBRATION_IMAGES} flips and "
        "crops of the sample photos (prepare --int8) ---",
        f"agreement with FP32 on the sample photos and their mirror images (conf 0.25, IoU >= 0.5, same class): "
        f"{int8['agreement']['summary']}; recall target {sign} {target:.2f}",
        "",
        *format_ensemble(int8),
        *format_rounds(int8, INT8_TARGETS),
        "",
        *format_ceilings(int8["ceiling"], INT8_ROW, REFERENCE),
    ]
    return lines


def format_summary(summary: dict) -> str:
    lines = format_ensemble(summary)
    lines.append("\neach stage alone, concurrency 1:")
    for m, s in summary["stages_alone"].items():
        lines.append(f"  {m:<20} {s['throughput']:7.2f} req/s   p50 {s['client_p50_ms']:8.1f} ms")
    lines.append("\nONNX Runtime in-process (the infer stage's model file, threads and streams), just before:")
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
    if summary["runtimes"]:
        lines.append("\neach CPU runtime, in-process and served (measured one after the other, not paired):")
        head = f"  {'runtime':<13} {'in-process p50':>15} {'peak img/s':>11} {'served p50':>11} {'peak img/s':>11}"
        lines.append(head + f"{'':>17} first request after ready (target <= {FIRST_REQUEST_TARGET:.2f}x served p50)")
        for name, r in summary["runtimes"].items():
            lines.append(
                f"  {name:<13} {r['in_process_p50_ms']:>12.1f} ms {r['in_process_peak']:>11.2f} "
                f"{r['served_p50_ms']:>8.1f} ms {r['served_peak']:>11.2f} (concurrency {r['served_peak_concurrency']})"
                f" {r['first_ms']:>8.1f} ms = {r['first_ms'] / r['served_p50_ms']:.2f}x"
            )
    lines += format_rounds(summary)
    lines += ["", *format_ceilings(summary["ceiling"], summary["served_runtime"], REFERENCE)]
    if summary.get("int8"):
        lines += format_int8(summary["int8"])
    return "\n".join(lines)


def write_chart(summary: dict, path: Path) -> None:
    """Stacked bar per concurrency: each stage's queue (hatched) apart from its compute, plus client/network."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = list(summary["ensemble"])
    bottoms = [0.0] * len(levels)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for color, model in enumerate(STAGE_MODELS):
        for phases, style in ((PHASES[:1], {"hatch": "//", "alpha": 0.45}), (PHASES[1:], {})):
            values = [stage_ms(summary["ensemble"][c]["stages"], model, phases) for c in levels]
            label = f"{model} {'queue' if phases == PHASES[:1] else 'compute'}"
            ax.bar([str(c) for c in levels], values, bottom=bottoms, label=label, color=f"C{color}", **style)
            bottoms = [b + v for b, v in zip(bottoms, values)]
    overhead = [max(0.0, summary["ensemble"][c]["client_avg_ms"] - b) for c, b in zip(levels, bottoms)]
    ax.bar([str(c) for c in levels], overhead, bottom=bottoms, label="client/network overhead", color="0.7")
    ax.axhline(summary["engine"][1]["p50_ms"], color="k", linestyle="--", linewidth=1,
               label=f"{REFERENCE} in-process, batch 1")  # fmt: skip
    ax.set_xlabel("concurrency")
    ax.set_ylabel("ms per request (mean)")
    ax.set_title(f"yolov8 ensemble ({summary['served_runtime']}): where the time goes (1 MP JPEG, CPU)")
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


def ensemble_runs(server: TritonServer, inputs: Path, concurrencies: list[int], interval_ms: int, out: Path,
                  tag: str = "") -> tuple[dict[int, PerfRun], dict[int, dict[str, float]]]:  # fmt: skip
    """perf_analyzer on the ``yolov8`` ensemble at each concurrency, and the core-ms per image of each process."""
    ensemble, cpu = {}, {}
    with YoloTritonClient(server.grpc_url) as stats:
        for c in concurrencies:
            print(f"perf_analyzer yolov8{tag and f' ({tag})'}, concurrency {c} ...", flush=True)
            cpu_before, before = cpu_snapshot(server.process.pid), snapshot(stats.client, ("yolov8",))
            ensemble[c] = run_perf_analyzer("yolov8", server.grpc_url, inputs, c, out / f"yolov8{tag}_c{c}.csv",
                                            interval_ms)  # fmt: skip
            images = deltas(snapshot(stats.client, ("yolov8",)), before)["yolov8"].inferences
            cpu[c] = cpu_ms_per_image(cpu_before, cpu_snapshot(server.process.pid), images)
    return ensemble, cpu


def paired_rounds(runtime, own, server: TritonServer, payload: bytes, args: argparse.Namespace,
                  image_hw: tuple[int, int]) -> list[dict]:  # fmt: skip
    """``args.rounds`` rounds of the engine (``runtime``, and ``own`` when given) and the ensemble in turns."""
    rounds = []
    with YoloTritonClient(server.grpc_url) as client:
        for number in range(1, args.rounds + 1):
            print(f"paired round {number}: latency, then throughput at {args.concurrency} ...", flush=True)
            latency = paired_latency(runtime, client, payload, args.pairs, image_hw, own)
            throughput = paired_throughput(runtime, server.grpc_url, payload, args.concurrency, args.block_s,
                                           image_hw)  # fmt: skip
            rounds.append(round_summary(latency, throughput))
    return rounds


def server_options(repository: Path) -> ServerOptions:
    return ServerOptions(repository=repository, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="paired rounds; the headline ratios are their median")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--interval-ms", type=int, default=3000, help="perf_analyzer measurement window")
    parser.add_argument("--block-s", type=float, default=4.0, help="seconds of each ensemble throughput block")
    parser.add_argument("--pairs", type=int, default=20, help="engine/request turns per round for the latency")
    parser.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY)
    parser.add_argument("--runtimes", nargs="*", default=["onnxruntime", "openvino"],
                        help="CPU runtimes for the in-process/served table (none: skip it)")  # fmt: skip
    parser.add_argument("--int8", action=argparse.BooleanOptionalAction, default=True,
                        help="also quantize the model (prepare --int8, into a copy) and measure INT8")  # fmt: skip
    args = parser.parse_args(argv)
    out = RESULTS / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True)
    image = one_megapixel_jpeg(out)
    payload = image.read_bytes()
    print(f"results: {out}", flush=True)
    inputs = out / "input.json"
    write_perf_data([image], inputs, args.repository)
    with TritonServer(server_options(args.repository), out / "tritonserver.log") as server:
        with YoloTritonClient(server.grpc_url) as client:
            infer_config = client.client.get_model_config("yolov8_infer", as_json=True)["config"]
        image_hw, served = input_hw(infer_config), served_cpu_runtime(infer_config)
        runtime = engine_runtime(args.repository, infer_config, REFERENCE)
        own = None
        if (served, served_cpu_precision(infer_config)) != (REFERENCE, "fp32"):
            own = engine_runtime(args.repository, infer_config, served, served_cpu_precision(infer_config))
        print(f"{REFERENCE} in-process, batch 1, 2, 4, 8 ...", flush=True)
        engine = engine_baseline(runtime, image_hw)
        ensemble, cpu = ensemble_runs(server, inputs, args.concurrency, args.interval_ms, out)
        stages = {}
        for model in STAGE_MODELS:
            print(f"perf_analyzer {model} alone ...", flush=True)
            stages[model] = run_perf_analyzer(model, server.grpc_url, stage_path(inputs, model), 1,
                                              out / f"{model}_alone.csv", args.interval_ms)  # fmt: skip
        rounds = paired_rounds(runtime, own, server, payload, args, image_hw)
    del own
    rows = runtime_rows(args.runtimes, args.repository)
    if args.int8:
        print(f"INT8: quantizing on {CALIBRATION_IMAGES} flips and crops of the sample photos ...", flush=True)
        int8_repo, quantize_s = int8_repository(args.repository, SAMPLES, out)
        rows[INT8_ROW] = (int8_repo, INT8_PARAMETERS)
        with TritonServer(server_options(int8_repo), out / "tritonserver_int8.log") as server:
            own_int8 = engine_runtime(int8_repo, infer_config, "openvino", "int8")
            ensemble_int8, cpu_int8 = ensemble_runs(server, inputs, args.concurrency, args.interval_ms, out, "int8")
            rounds_int8 = paired_rounds(runtime, own_int8, server, payload, args, image_hw)
        del own_int8
        classes = int(next(t for t in infer_config["output"] if t["name"] == "output0")["dims"][0]) - 4
        found = fp32_agreement(int8_repo, SAMPLES, classes)
    del runtime
    table = runtime_table(rows, infer_config, payload, out, args.concurrency, args.block_s)
    summary = summarize(rounds, ensemble, engine, stages, cpu, served, table)
    if args.int8:
        summary["int8"] = summarize(rounds_int8, ensemble_int8, engine, {}, cpu_int8, INT8_ROW, table) | {
            "quantize_s": quantize_s,
            "agreement": {
                "recall": found.recall,
                "found": found.found,
                "expected": found.expected,
                "extra": found.extra,
                "summary": found.summary(),
            },  # fmt: skip
        }
        write_chart(summary["int8"], out / "stages_int8.png")
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    write_csv(summary, out / "summary.csv")
    write_chart(summary, out / "stages.png")
    text = format_summary(summary)
    (out / "summary.txt").write_text(text + "\n")
    print("\n" + text + f"\n\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
