"""``make bench``'s report: the printed summary, the stage chart (stages.png) and the per-concurrency CSV.

It reads the summary dict that ``benchmarks.bench.summarize`` builds and measures nothing itself.
"""

from __future__ import annotations

import csv
from pathlib import Path

from benchmarks.ceiling import format_ceilings
from benchmarks.cpu_usage import IDLE, OTHER, SERVER
from benchmarks.engine_baseline import REFERENCE
from benchmarks.fixed_cost import format_fixed_costs
from benchmarks.int8 import CALIBRATION_IMAGES, INT8_ROW
from benchmarks.int8 import TARGETS as INT8_TARGETS
from benchmarks.runtimes import FIRST_REQUEST_TARGET
from benchmarks.transport import format_transport
from client.stage_stats import STAGES

FASTDEPLOY_RATIO = 2.05  # 118 ms from Python / 57.7 ms engine statistics
PHASES = ("queue", "compute_input", "compute_infer", "compute_output")
TARGETS = {"overhead_ratio": ("<=", 0.90), "throughput_ratio": (">=", 1.15), "own_overhead_ratio": ("<=", 1.10)}


def stage_ms(composing: dict[str, dict[str, float]], model: str, phases: tuple[str, ...] = PHASES) -> float:
    """Server-side ms per request of one stage (by default queue + compute) from an ensemble run's composing
    models (µs)."""
    values = composing.get(model, {})
    return sum(values.get(k, 0.0) for k in phases) / 1e3


def format_ensemble(summary: dict) -> list[str]:
    """perf_analyzer on the ensemble at each concurrency: latency, each stage's phases, CPU per image."""
    lines = [
        f"ensemble `yolov8` serving {summary['served_runtime']}, 1 MP JPEG, perf_analyzer (ms per request; "
        "stage = queue + compute_input + compute_infer + compute_output)"
    ]
    head = f"{'conc':>4} {'img/s':>7} {'p50':>8} {'p99':>8} {'server':>8}"
    head += "".join(f" {m.replace('yolov8_', ''):>28}" for m in STAGES)
    lines.append(head)
    for c, e in summary["ensemble"].items():
        cells = ""
        for m in STAGES:
            s = e["stages"].get(m, {})
            q, ci, cf, co = (s.get(k, 0.0) / 1e3 for k in PHASES)
            cells += f" {q:6.1f}/{ci:5.1f}/{cf:6.1f}/{co:5.1f}".rjust(29)
        row = f"{c:>4} {e['throughput']:>7.2f} {e['client_p50_ms']:>8.1f} {e['client_p99_ms']:>8.1f}"
        lines.append(row + f" {e['server_ms']:>8.1f}" + cells)
    lines.append("  (stage cells: queue/compute_input/compute_infer/compute_output)")
    columns = (*STAGES, SERVER, OTHER, IDLE)
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
    lines = [f"repository {summary['repository']}"] if summary.get("repository") else []
    lines += format_ensemble(summary)
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
    if summary.get("transport"):
        lines += format_transport(summary["transport"])
    if summary.get("int8"):
        lines += format_int8(summary["int8"])
    if summary.get("int8_left_out"):
        lines += ["", f"INT8 left out: {summary['int8_left_out']}"]
    if summary.get("fixed_cost"):
        lines += ["", *format_fixed_costs(summary["fixed_cost"])]
    return "\n".join(lines)


def write_chart(summary: dict, path: Path) -> None:
    """Stacked bar per concurrency: each stage's queue (hatched) apart from its compute, plus client/network."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = list(summary["ensemble"])
    bottoms = [0.0] * len(levels)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for color, model in enumerate(STAGES):
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
                         *(f"{m}_{k}_ms" for m in STAGES for k in PHASES)])  # fmt: skip
        for c, e in summary["ensemble"].items():
            stages = [e["stages"].get(m, {}).get(k, 0.0) / 1e3 for m in STAGES for k in PHASES]
            writer.writerow([c, e["throughput"], e["client_p50_ms"], e["client_p99_ms"], e["server_ms"], *stages])
