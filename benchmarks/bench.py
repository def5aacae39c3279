"""``make bench``: where every millisecond goes, against the raw engine.

    python -m benchmarks.bench [--repository model_repository] [--rounds 3] [--concurrency 1 2 4 8]
                               [--interval-ms 3000] [--block-s 4] [--pairs 20] [--runtimes onnxruntime openvino]
                               [--no-int8] [--fixed-cost-requests 200]

It measures the repository ``--repository`` names (the checkout's model_repository by default), prepared from
a model of any task ``prepare`` serves: detect, pose, OBB, segment or classify, with a grid or an end-to-end
head. Each stage alone gets that task's tensors (benchmarks/perf_data.py), and every in-process run sets the
stages up from the repository's configs (benchmarks/stages.py).

Writes benchmarks/results/<timestamp>/ (perf_analyzer CSVs and logs, summary.json, summary.csv,
stages.png; the report is benchmarks/report.py) and prints a summary in seven parts:

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
5. How a 1080p frame travels at concurrency 1: over gRPC, through the client's shared memory, and as a JPEG
   over gRPC, in paired rounds (benchmarks/transport.py; ``python -m benchmarks.transport`` runs it alone).
6. INT8 (``--no-int8`` leaves it out, and so does a classifier's repository, saying why): the model quantized
   as ``prepare --int8`` does, into a copy of the repository (benchmarks/int8.py); its agreement with FP32 on
   the sample photos, parts 1, 2 and 4 for a server on it (its headline ratios still against in-process ONNX
   Runtime FP32, with their INT8 targets; stages_int8.png shows preprocessing's larger share), and its row in
   part 3's table.
7. The fixed cost (``--fixed-cost-requests 0`` leaves it out): what the served pipeline adds at concurrency 1
   around the stages' own compute, part by part, on the repository's model and tests/models' YOLO11n, from the
   traces (benchmarks/fixed_cost.py; ``python -m benchmarks.fixed_cost`` runs it alone).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.ceiling import ceilings
from benchmarks.cpu_usage import cpu_ms_per_image, cpu_snapshot
from benchmarks.engine_baseline import (
    REFERENCE,
    engine_baseline,
    engine_runtime,
    input_hw,
    served_cpu_precision,
    served_cpu_runtime,
)
from benchmarks.fixed_cost import fixed_costs
from benchmarks.int8 import (
    CALIBRATION_IMAGES,
    INT8_PARAMETERS,
    INT8_ROW,
    fp32_agreement,
    int8_left_out,
    int8_repository,
)
from benchmarks.paired import PairedLatency, PairedThroughput, paired_latency, paired_throughput
from benchmarks.perf_analyzer import PerfRun, run_perf_analyzer
from benchmarks.perf_data import stage_path, write_perf_data
from benchmarks.recipe_models import MODELS, prepared_repositories
from benchmarks.report import FASTDEPLOY_RATIO, format_summary, stage_ms, write_chart, write_csv
from benchmarks.runtimes import runtime_rows, runtime_table
from benchmarks.sample_image import RESULTS, SAMPLES, one_megapixel_jpeg
from benchmarks.transport import transports
from client.api import YoloTritonClient
from client.stage_stats import STAGES, deltas, snapshot
from python_backends.paths import DEFAULT_REPOSITORY
from serving.processes import free_port
from serving.server import TritonServer
from serving.triton import ServerOptions


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
                "server_ms": sum(stage_ms(run.composing, m) for m in STAGES),
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
    """Free ports."""
    return ServerOptions(repository=repository, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="paired rounds; the headline ratios are their median")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--interval-ms", type=int, default=3000, help="perf_analyzer measurement window")
    parser.add_argument("--block-s", type=float, default=4.0, help="seconds of each ensemble throughput block")
    parser.add_argument("--pairs", type=int, default=20, help="engine/request turns per round for the latency")
    parser.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY,
                        help="a prepared repository, any task (default: the checkout's model_repository)")  # fmt: skip
    parser.add_argument("--runtimes", nargs="*", default=["onnxruntime", "openvino"],
                        help="CPU runtimes for the in-process/served table (none: skip it)")  # fmt: skip
    parser.add_argument("--int8", action=argparse.BooleanOptionalAction, default=True,
                        help="also quantize the model (prepare --int8, into a copy) and measure INT8")  # fmt: skip
    parser.add_argument("--fixed-cost-requests", type=int, default=200,
                        help="requests per model for the fixed cost, half of them traced (0: skip it)")  # fmt: skip
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
        for model in STAGES:
            print(f"perf_analyzer {model} alone ...", flush=True)
            stages[model] = run_perf_analyzer(model, server.grpc_url, stage_path(inputs, model), 1,
                                              out / f"{model}_alone.csv", args.interval_ms)  # fmt: skip
        rounds = paired_rounds(runtime, own, server, payload, args, image_hw)
    del own
    with tempfile.TemporaryDirectory(prefix="bench_models_") as folder:  # each prepared once, for both parts
        repositories = prepared_repositories(MODELS, Path(folder), args.repository)
        fixed = fixed_costs(image, args.fixed_cost_requests, out, repositories) if args.fixed_cost_requests else {}
        moved = transports(args.rounds, args.pairs, out, repositories)
    rows = runtime_rows(args.runtimes, args.repository)
    int8_reason = int8_left_out(args.repository) if args.int8 else None
    if int8_reason:
        print(f"INT8 left out: {int8_reason}", flush=True)
    if args.int8 and not int8_reason:
        print(f"INT8: quantizing on {CALIBRATION_IMAGES} flips and crops of the sample photos ...", flush=True)
        int8_repo, quantize_s = int8_repository(args.repository, SAMPLES, out)
        rows[INT8_ROW] = (int8_repo, INT8_PARAMETERS)
        with TritonServer(server_options(int8_repo), out / "tritonserver_int8.log") as server:
            own_int8 = engine_runtime(int8_repo, infer_config, "openvino", "int8")
            ensemble_int8, cpu_int8 = ensemble_runs(server, inputs, args.concurrency, args.interval_ms, out, "int8")
            rounds_int8 = paired_rounds(runtime, own_int8, server, payload, args, image_hw)
        del own_int8
        found = fp32_agreement(int8_repo, SAMPLES)
    del runtime
    table = runtime_table(rows, infer_config, payload, out, args.concurrency, args.block_s)
    summary = summarize(rounds, ensemble, engine, stages, cpu, served, table) | {
        "repository": str(args.repository),
        "fixed_cost": fixed,
        "transport": moved,
        "int8_left_out": int8_reason,
    }
    if args.int8 and not int8_reason:
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
