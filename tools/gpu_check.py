"""``make gpu-check``, for a GPU machine: is the GPU path as accurate as the CPU path, and what does each stage cost?

    python -m tools.gpu_check [--out DIR] [--no-serve] [IMAGE ...]

It runs what this machine can run and records what it cannot, never a figure it did not measure:

1. CV-CUDA against OpenCV preprocessing: max |difference| of the uint8 pixel tensors, with OpenCV decode
   on both sides (the CV-CUDA ops alone) and with nvImageCodec decode where it is installed.
2. Detections with CV-CUDA preprocessing against the CPU path, both through ONNX Runtime.
3. TensorRT FP16 against ONNX Runtime FP32 detections, and the engine cache, where TensorRT is installed.
4. A tritonserver serving the ensemble with ``device: gpu`` preprocessing, then ``device: cpu``: the first
   request after ready against the p50 (warm-up), detections over gRPC against the CPU path, and per-stage
   costs from Triton's statistics under perf_analyzer at concurrency 1 and 8.

Writes ``benchmarks/gpu/<date>/``: nvidia-smi.txt, results.json, results.md and logs/. Exits 3 on a
machine without CuPy, a CUDA GPU and CV-CUDA; 1 when a check fails.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from benchmarks.perf_analyzer import PERF_ANALYZER, run_perf_analyzer
from benchmarks.runtimes import FIRST_REQUEST_TARGET, first_and_p50_ms
from client.perf_input import input_data
from client.stage_stats import PHASES, STAGES, deltas, snapshot
from evaluation.detection_match import mismatches
from prepare.repository import copy_with_parameters
from python_backends.infer.select import create_runtime, tensorrt_unavailable_reason
from python_backends.paths import DEFAULT_REPOSITORY, PROJECT_ROOT
from python_backends.postprocess.postprocessor import Postprocessor
from python_backends.preprocess.cvcuda_preprocessor import (
    CvCudaPreprocessor,
    GpuPreprocessingUnavailable,
    import_cvcuda,
)
from python_backends.preprocess.preprocessor import Preprocessor
from python_backends.triton_helpers.gpu_arrays import gpu_unavailable_reason, to_host

SAMPLES = PROJECT_ROOT / ".cache" / "samples"
DEFAULT_IMAGES = ("bus.jpg", "zidane.jpg", "grace_hopper.jpg", "astronaut.png", "camera.png")
DEFAULT_ONNX = DEFAULT_REPOSITORY / "yolov8_infer" / "1" / "model.onnx"
RESULTS = PROJECT_ROOT / "benchmarks" / "gpu"
MIN_IOU, MAX_SCORE_DIFF = 0.9, 0.02  # the GPU path's stated bounds against the CPU path
MAX_PREPROCESS_DIFF = 2 / 255  # linear-resize rounding may differ by a level or two
CONCURRENCIES = (1, 8)


def gpu_missing() -> str | None:
    """Why this machine cannot run the check at all (no CuPy, GPU or CV-CUDA), or None."""
    try:
        import_cvcuda()
    except GpuPreprocessingUnavailable as exc:
        return str(exc)
    return gpu_unavailable_reason()


def row(check: str, result: str, threshold: str, passed: bool) -> dict:
    return {"check": check, "result": result, "threshold": threshold, "pass": passed}


def as_dicts(found) -> list[dict]:
    """A ``Postprocessor.detect`` result as the dicts ``mismatches`` compares."""
    return [
        {"box": b.tolist(), "score": float(s), "class_id": int(c)}
        for b, s, c in zip(found.boxes, found.scores, found.class_ids)
    ]


def detect_all(runtime, pre, post: Postprocessor, images: list[Path]) -> dict[str, list[dict]]:
    """In-process detections per image name: ``pre`` (OpenCV or CV-CUDA), ``runtime``, then ``post``."""
    found = {}
    for image in images:
        tensor, mapping = pre.from_bytes(image.read_bytes())
        found[image.name] = as_dicts(post.detect(runtime.run(to_host(tensor)[None])[0], mapping))
    return found


def preprocessing_rows(images: list[Path]) -> list[dict]:
    """CV-CUDA against OpenCV: max |Δ| of the tensors, x255 (OpenCV decode; nvImageCodec decode)."""
    cpu, rows = Preprocessor(), []
    for gpu_decode in (False, True):
        gpu = CvCudaPreprocessor(gpu_decode=gpu_decode)
        if gpu_decode and gpu.decoder_name != "nvimgcodec":
            rows.append(
                row("nvImageCodec decode + CV-CUDA vs OpenCV", "not run: nvImageCodec not installed", "-", True)
            )
            continue
        worst = 0.0
        for image in images:
            data = image.read_bytes()
            (want, want_map), (got, got_map) = cpu.from_bytes(data), gpu.from_bytes(data)
            got = to_host(got)
            np.testing.assert_array_equal(got_map, want_map)
            worst = max(worst, float(np.abs(got.astype(np.int16) - want).max()) / 255)  # uint8 pixels
        judged = not gpu_decode  # another JPEG decoder (nvJPEG): reported, not judged
        rows.append(
            row(
                f"{gpu.decoder_name} decode + CV-CUDA vs OpenCV, max |Δ| x255",
                f"{worst * 255:.2f}",
                f"<= {MAX_PREPROCESS_DIFF * 255:.0f}" if judged else "reported",
                worst <= MAX_PREPROCESS_DIFF or not judged,
            )
        )
    return rows


def compare(label: str, got: dict[str, list[dict]], want: dict[str, list[dict]]) -> dict:
    problems = [f"{name}: {p}" for name in want for p in mismatches(got[name], want[name], MIN_IOU, MAX_SCORE_DIFF)]
    for problem in problems:
        print(f"  {label}: {problem}", file=sys.stderr)
    total = sum(len(d) for d in want.values())
    bounds = f"IoU >= {MIN_IOU}, |Δscore| <= {MAX_SCORE_DIFF}"
    return row(label, f"{total} CPU-path detections, {len(problems)} problems", bounds, not problems)


def tensorrt_rows(onnx: Path, images: list[Path], want: dict[str, list[dict]]) -> list[dict]:
    """TensorRT FP16 against the CPU path, twice: the second run must take the engine from the cache."""
    reason = tensorrt_unavailable_reason()
    if reason:
        return [row("TensorRT FP16 vs ONNX Runtime FP32 detections", f"not run: {reason}", "-", True)]
    import onnx as onnx_lib

    from prepare.onnx_model import read_model_info
    from python_backends.infer.tensorrt_engine import EngineOptions

    info = read_model_info(onnx_lib.load(str(onnx)))
    options = EngineOptions(info.input_height, info.input_width, fp16=True)
    logs: list[str] = []
    trt = create_runtime("tensorrt", str(onnx), engine_options=options, log=logs.append)
    create_runtime("tensorrt", str(onnx), engine_options=options, log=logs.append)
    pre, post = Preprocessor(info.input_height, info.input_width), Postprocessor(len(info.class_names))
    got = detect_all(trt, pre, post, images)
    cached = any(line.startswith("using cached TensorRT engine") for line in logs[1:])
    return [
        compare("TensorRT FP16 vs ONNX Runtime FP32 detections", got, want),
        row("TensorRT engine cache: second load reuses the engine", "yes" if cached else "no", "yes", cached),
    ]


def served(
    device: str, images: list[Path], want: dict[str, list[dict]], work: Path, logs: Path, server_args: list[str]
) -> tuple[list, dict]:
    """Serve with ``device`` preprocessing: detections over gRPC, and per-stage ms at each concurrency.

    A server that fails to start, or a stage that fails a request, gives a failed row naming the error.
    """
    from client.api import DetectionError
    from serving.server import ServerStartError

    try:
        return _served(device, images, want, work, logs, server_args)
    except (DetectionError, ServerStartError, RuntimeError) as exc:
        return [row(f"served, {device} preprocessing", f"failed: {exc}"[:300], "-", False)], {}


def _served(
    device: str, images: list[Path], want: dict[str, list[dict]], work: Path, logs: Path, server_args: list[str]
) -> tuple[list, dict]:
    import tritonclient.grpc as grpcclient

    from client.api import YoloTritonClient
    from serving.processes import free_port
    from serving.server import TritonServer
    from serving.triton import ServerOptions

    repository = copy_with_parameters(
        DEFAULT_REPOSITORY, work / f"repository-{device}", "yolov8_preprocess", device=device
    )
    options = ServerOptions(
        repository=repository, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port()
    )
    stages: dict[str, dict] = {}
    with TritonServer(options, logs / f"tritonserver-{device}.log") as server:
        with YoloTritonClient(server.grpc_url) as client:
            first = first_request_row(device, client, images[0])
            got = {
                image.name: [asdict(d) | {"box": list(d.box)} for d in client.detect(image).detections]
                for image in images
            }
        rows = [compare(f"served, {device} preprocessing: detections vs the CPU path", got, want), first]
        if not PERF_ANALYZER.exists():
            return rows + [row(f"served, {device}: per-stage costs", f"not run: no {PERF_ANALYZER}", "-", True)], {}
        data = work / "perf-input.json"
        data.write_text(json.dumps(input_data(images[:2])))
        stats_client = grpcclient.InferenceServerClient(server.grpc_url)
        for concurrency in CONCURRENCIES:
            before = snapshot(stats_client, ("yolov8", *STAGES))
            csv_path = logs / f"perf-{device}-c{concurrency}.csv"
            run = run_perf_analyzer("yolov8", server.grpc_url, data, concurrency, csv_path)
            delta = deltas(snapshot(stats_client, ("yolov8", *STAGES)), before)
            stages[str(concurrency)] = {
                "images_per_s": round(run.throughput, 1),
                "client_p50_ms": round(run.row["p50 latency"] / 1e3, 2),
                "unstable": bool(run.row["unstable"]),
                "stages": {
                    model: {
                        "requests": d.success,
                        "batches": d.executions,
                        **{p: round(d.mean_ms(p), 3) for p in PHASES},
                    }
                    for model, d in delta.items()
                },
            }
    return rows, stages


def first_request_row(device: str, client, image: Path, requests: int = 15) -> dict:
    """The first request after the server reported ready, against the p50 of the ``requests`` after it."""
    first, p50 = first_and_p50_ms(client, image, requests)
    return row(
        f"served, {device} preprocessing: first request after ready ({image.name}) / p50 of the next {requests}",
        f"{first:.1f} ms / {p50:.1f} ms = {first / p50:.2f}x",
        f"<= {FIRST_REQUEST_TARGET}x",
        first <= FIRST_REQUEST_TARGET * p50,
    )


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for module in ("numpy", "cupy", "cvcuda", "cv2", "onnxruntime", "tensorrt", "tritonclient"):
        try:
            found[module] = str(getattr(__import__(module), "__version__", "?"))
        except Exception as exc:  # not installed, or its libraries fail to load
            found[module] = f"not importable ({type(exc).__name__})"
    try:
        from nvidia import nvimgcodec

        found["nvimgcodec"] = str(getattr(nvimgcodec, "__version__", "?"))
    except Exception as exc:
        found["nvimgcodec"] = f"not importable ({type(exc).__name__})"
    return found


def markdown(results: dict) -> str:
    lines = [f"# GPU check, {results['date']}", "", f"GPU: {results['gpu']}", ""]
    lines += ["| check | result | threshold | pass |", "|---|---|---|---|"]
    lines += [
        f"| {r['check']} | {r['result']} | {r['threshold']} | {'yes' if r['pass'] else 'NO'} |"
        for r in results["checks"]
    ]
    for device, by_concurrency in results["stage_costs"].items():
        for concurrency, run in by_concurrency.items():
            title = f"{device} preprocessing, concurrency {concurrency}: {run['images_per_s']} images/s"
            lines += ["", f"## {title}, client p50 {run['client_p50_ms']} ms", ""]
            lines += ["| model | requests | batches | " + " | ".join(f"{p} ms" for p in PHASES) + " |"]
            lines += ["|---|---|---|" + "---|" * len(PHASES)]
            for model, s in run["stages"].items():
                lines.append(
                    f"| {model} | {s['requests']} | {s['batches']} | " + " | ".join(str(s[p]) for p in PHASES) + " |"
                )
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="*", type=Path)
    parser.add_argument("--onnx", type=Path, default=DEFAULT_ONNX, help="the prepared model.onnx")
    parser.add_argument("--out", type=Path, help=f"results folder (default {RESULTS}/<date>)")
    parser.add_argument("--no-serve", action="store_true", help="skip the tritonserver part")
    parser.add_argument("--server-arg", action="append", default=[], help="an extra tritonserver flag (repeatable)")
    args = parser.parse_args(argv)
    missing = gpu_missing()
    if missing:
        print(f"gpu-check needs an NVIDIA GPU with cupy and cvcuda; here: {missing}", file=sys.stderr)
        return 3

    started = time.monotonic()
    out = args.out or RESULTS / datetime.date.today().isoformat()
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    smi = subprocess.run(["nvidia-smi"], capture_output=True, text=True)
    (out / "nvidia-smi.txt").write_text(smi.stdout + smi.stderr)
    query = ["nvidia-smi", "--query-gpu=name,driver_version,compute_cap", "--format=csv,noheader"]
    gpu = subprocess.run(query, capture_output=True, text=True).stdout.strip()
    images = args.images or [SAMPLES / name for name in DEFAULT_IMAGES]
    num_classes = len((DEFAULT_REPOSITORY / "yolov8_postprocess" / "labels.txt").read_text().splitlines())
    ort, post = create_runtime("onnxruntime", str(args.onnx)), Postprocessor(num_classes)
    want = detect_all(ort, Preprocessor(), post, images)  # the CPU path
    checks = preprocessing_rows(images)
    got = detect_all(ort, CvCudaPreprocessor(), post, images)
    checks.append(compare("CV-CUDA preprocessing vs OpenCV, detections (ONNX Runtime)", got, want))
    checks += tensorrt_rows(args.onnx, images, want)
    stage_costs = {}
    if not args.no_serve:
        with tempfile.TemporaryDirectory() as tmp:
            for device in ("gpu", "cpu"):
                rows, stage_costs[device] = served(device, images, want, Path(tmp), logs, args.server_arg)
                checks += rows
    results = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "gpu": gpu or "unknown",
        "versions": versions(),
        "images": [image.name for image in images],
        "server_args": args.server_arg,
        "checks": checks,
        "stage_costs": stage_costs,
        "wall_s": round(time.monotonic() - started, 1),
    }
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    (out / "results.md").write_text(markdown(results))
    print(markdown(results))
    return 0 if all(r["pass"] for r in checks) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
