"""``make gpu-check``, for a GPU machine: is the GPU path as accurate as the CPU path, and how fast is it?

    python -m serving.gpu_check [--onnx MODEL] [--url HOST:GRPC_PORT] [IMAGE ...]

1. CV-CUDA against OpenCV preprocessing: max |difference| of the float32 tensors, with OpenCV
   decode on both sides (the CV-CUDA ops alone) and with nvImageCodec decode when installed.
2. TensorRT FP16 against ONNX Runtime FP32 detections on the sample photos: each detection must
   pair with one of the same class at IoU >= 0.9 and |Δscore| <= 0.02.
3. A short perf_analyzer run on the ensemble (``--url``, else a tritonserver started here),
   when perf_analyzer is on PATH.

Prints a Markdown table for benchmarks/README.md. Exits 3 on a machine without a usable GPU,
1 when a parity check fails.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from client.perf_input import input_data
from python_backends.postprocess.detection_match import mismatches
from python_backends.postprocess.postprocessor import Postprocessor
from python_backends.preprocess.preprocessor import Preprocessor
from python_backends.triton_helpers.gpu_arrays import to_host
from serving.triton import PROJECT_ROOT

SAMPLES = PROJECT_ROOT / ".cache" / "samples"
DEFAULT_IMAGES = ("bus.jpg", "zidane.jpg", "grace_hopper.jpg", "astronaut.png", "camera.png")
DEFAULT_ONNX = PROJECT_ROOT / "model_repository" / "yolov8_infer" / "1" / "model.onnx"
MIN_IOU, MAX_SCORE_DIFF = 0.9, 0.02
MAX_PREPROCESS_DIFF = 2 / 255  # linear-resize rounding may differ by a level or two


def gpu_missing() -> str | None:
    """Why this machine cannot run the check, or None."""
    from python_backends.infer.select import tensorrt_unavailable_reason
    from python_backends.preprocess.cvcuda_preprocessor import GpuPreprocessingUnavailable, import_cvcuda

    reasons = [tensorrt_unavailable_reason()]
    try:
        import_cvcuda()
    except GpuPreprocessingUnavailable as exc:
        reasons.append(str(exc))
    return "; ".join(r for r in reasons if r) or None


def preprocessing_rows(images: list[Path]) -> list[tuple[str, str, str, bool]]:
    """(check, result, threshold, passed) for CV-CUDA against OpenCV."""
    from python_backends.preprocess.cvcuda_preprocessor import CvCudaPreprocessor

    cpu = Preprocessor()
    rows = []
    for gpu_decode in (False, True):
        gpu = CvCudaPreprocessor(gpu_decode=gpu_decode)
        if gpu_decode and gpu.decoder_name != "nvimgcodec":
            rows.append(("nvImageCodec + CV-CUDA vs OpenCV", "nvImageCodec not installed", "-", True))
            continue
        worst = 0.0
        for image in images:
            data = image.read_bytes()
            (want, want_map), (got, got_map) = cpu.from_bytes(data), gpu.from_bytes(data)
            np.testing.assert_array_equal(got_map, want_map)
            worst = max(worst, float(np.abs(to_host(got) - want).max()))
        label = f"{gpu.decoder_name} decode + CV-CUDA vs OpenCV, max |Δ| (x255)"
        passed = worst <= MAX_PREPROCESS_DIFF or gpu_decode  # another JPEG decoder: reported, not judged
        rows.append(
            (label, f"{worst * 255:.2f}", f"<= {MAX_PREPROCESS_DIFF * 255:.0f}" if not gpu_decode else "-", passed)
        )
    return rows


def detection_rows(onnx: Path, images: list[Path]) -> tuple[list[tuple[str, str, str, bool]], str]:
    """TensorRT FP16 against ONNX Runtime FP32 on CPU-preprocessed images; also the TensorRT version."""
    import onnx as onnx_lib
    import tensorrt

    from python_backends.infer.select import create_runtime
    from python_backends.infer.tensorrt_engine import EngineOptions
    from python_backends.prepare.onnx_model import read_model_info

    info = read_model_info(onnx_lib.load(str(onnx)))
    options = EngineOptions(info.input_height, info.input_width, fp16=True)
    trt = create_runtime("tensorrt", str(onnx), engine_options=options)
    ort = create_runtime("onnxruntime", str(onnx))
    pre, post = Preprocessor(info.input_height, info.input_width), Postprocessor(len(info.class_names))
    problems, total = [], 0
    for image in images:
        tensor, mapping = pre.from_bytes(image.read_bytes())
        batch = tensor[None]
        found = [post.detect(runtime.run(batch)[0], mapping) for runtime in (ort, trt)]
        dicts = [
            [
                {"box": b.tolist(), "score": float(s), "class_id": int(c)}
                for b, s, c in zip(d.boxes, d.scores, d.class_ids)
            ]
            for d in found
        ]
        total += len(dicts[0])
        problems += [f"{image.name}: {p}" for p in mismatches(dicts[1], dicts[0], MIN_IOU, MAX_SCORE_DIFF)]
    for problem in problems:
        print(f"  mismatch: {problem}", file=sys.stderr)
    row = (
        "TensorRT FP16 vs ONNX Runtime FP32 detections",
        f"{total} reference detections, {len(problems)} problems",
        f"IoU >= {MIN_IOU}, |Δscore| <= {MAX_SCORE_DIFF}",
        not problems,
    )
    return [row], tensorrt.__version__


def perf_rows(url: str | None, images: list[Path]) -> list[tuple[str, str, str, bool]]:
    """A short perf_analyzer run on the ensemble (skipped without perf_analyzer)."""
    binary = shutil.which("perf_analyzer")
    if binary is None:
        return [("perf_analyzer", "skipped: not on PATH (docker compose --profile bench run --rm perf)", "-", True)]
    with tempfile.TemporaryDirectory() as tmp:
        data, out = Path(tmp) / "input.json", Path(tmp) / "perf.csv"
        data.write_text(json.dumps(input_data(images[:2])))
        if url is None:
            from serving.server import TritonServer, free_port
            from serving.triton import ServerOptions

            options = ServerOptions(http_port=free_port(), grpc_port=free_port(), metrics_port=free_port())
            with TritonServer(options, Path(tmp) / "tritonserver.log") as server:
                _perf(binary, server.grpc_url, data, out)
        else:
            _perf(binary, url, data, out)
        with open(out) as f:
            return [
                (
                    f"ensemble, concurrency {row['Concurrency']}",
                    f"{float(row['Inferences/Second']):.1f} img/s, p95 {float(row['p95 latency']) / 1e3:.1f} ms",
                    "-",
                    True,
                )
                for row in csv.DictReader(f)
            ]


def _perf(binary: str, url: str, data: Path, out: Path) -> None:
    cmd = [binary, "-m", "yolov8", "-u", url, "-i", "grpc", "--input-data", str(data)]
    cmd += ["--concurrency-range", "1:8:7", "--measurement-interval", "3000", "--percentile", "95", "-f", str(out)]
    subprocess.run(cmd, check=True, timeout=300)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="*", type=Path)
    parser.add_argument("--onnx", type=Path, default=DEFAULT_ONNX, help="the prepared model.onnx")
    parser.add_argument("--url", help="a running server's gRPC address for perf_analyzer (default: start one)")
    args = parser.parse_args(argv)
    missing = gpu_missing()
    if missing:
        print(f"gpu-check needs an NVIDIA GPU with cupy, tensorrt and cvcuda; here: {missing}", file=sys.stderr)
        return 3
    images = args.images or [SAMPLES / name for name in DEFAULT_IMAGES]
    gpu = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True)
    rows = preprocessing_rows(images)
    detections, trt_version = detection_rows(args.onnx, images)
    rows += detections + perf_rows(args.url, images)
    names = ", ".join(i.name for i in images)
    print(f"\nGPU: {gpu.stdout.strip() or 'unknown'}; TensorRT {trt_version}; images: {names}\n")
    print("| check | result | threshold | pass |\n|---|---|---|---|")
    for check, result, threshold, passed in rows:
        print(f"| {check} | {result} | {threshold} | {'yes' if passed else 'NO'} |")
    return 0 if all(row[3] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
