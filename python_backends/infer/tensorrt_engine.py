"""Build and cache TensorRT engines for the prepared ONNX, keyed so a stale engine is never loaded.

The engine is the ONNX graph as it is: no NMS plugin (EfficientNMS) is added. A raw head is decoded,
NMS included, in yolov8_postprocess; an end-to-end head (top-k or NMS inside the graph) already has its
(batch, max_det, 6) rows, which yolov8_postprocess only thresholds and rescales.

An engine only deserializes under the TensorRT version and GPU architecture that built it, and
only serves the shapes of its optimization profile. The cache key therefore covers the TensorRT
version, the GPU's compute capability, the input size, the batch profile, the precision and the
ONNX file's hash: change any of them and a new engine is built.

``tensorrt`` and CUDA are touched only inside functions, never at import.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from python_backends.paths import PROJECT_ROOT

DEFAULT_PROFILE = (1, 8, 32)  # min/opt/max batch; FastDeploy's YOLOv8 example used 1/1/40
ENGINE_DIR_ENV = "YOLOV8_ENGINE_DIR"
PROGRESS_EVERY_S = 15.0


class EngineBuildError(RuntimeError):
    """TensorRT (or a GPU) is missing, or the engine cannot be built."""


@dataclass(frozen=True)
class EngineOptions:
    """What the user chooses: input size, batch profile and precision."""

    input_height: int = 640
    input_width: int = 640
    min_batch: int = DEFAULT_PROFILE[0]
    opt_batch: int = DEFAULT_PROFILE[1]
    max_batch: int = DEFAULT_PROFILE[2]
    fp16: bool = True

    def __post_init__(self):
        if not 1 <= self.min_batch <= self.opt_batch <= self.max_batch:
            raise ValueError(
                f"batch profile must satisfy 1 <= min <= opt <= max, got "
                f"{self.min_batch}/{self.opt_batch}/{self.max_batch}"
            )

    def input_shapes(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """The (min, opt, max) NCHW shapes of the optimization profile."""
        size = (3, self.input_height, self.input_width)
        return (self.min_batch, *size), (self.opt_batch, *size), (self.max_batch, *size)


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine depends on; ``digest`` names its file."""

    tensorrt_version: str
    compute_capability: str
    onnx_sha256: str
    options: EngineOptions

    def digest(self) -> str:
        """16 hex characters of the SHA-256 of every field."""
        fields = {**asdict(self), "options": asdict(self.options)}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]

    def filename(self) -> str:
        precision = "fp16" if self.options.fp16 else "fp32"
        return f"yolov8-trt{self.tensorrt_version}-sm{self.compute_capability}-{precision}-{self.digest()}.engine"


def options_from_parameters(params: dict[str, str], input_height: int, input_width: int) -> EngineOptions:
    """EngineOptions from yolov8_infer's config parameters ``precision`` and ``trt_batch_profile``."""
    precision = params.get("precision", "fp16").strip() or "fp16"
    if precision not in ("fp16", "fp32"):
        raise ValueError(f"precision must be fp16 or fp32, got {precision!r}")
    low, opt, high = parse_profile(params.get("trt_batch_profile", "").strip() or ",".join(map(str, DEFAULT_PROFILE)))
    return EngineOptions(input_height, input_width, low, opt, high, fp16=precision == "fp16")


def parse_profile(text: str) -> tuple[int, int, int]:
    """``"1,8,32"`` → (1, 8, 32)."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ValueError(f"batch profile must be three integers MIN,OPT,MAX, got {text!r}")
    return int(parts[0]), int(parts[1]), int(parts[2])


def clamp_profile(profile: tuple[int, int, int], max_batch: int | None) -> tuple[int, int, int]:
    """``profile`` (min, opt, max) with no batch above ``max_batch``, the most the graph handles (None: no limit)."""
    if max_batch is None:
        return profile
    low, opt, high = (min(b, max_batch) for b in profile)
    return low, opt, high


def default_engine_dir() -> Path:
    """``$YOLOV8_ENGINE_DIR``, else ``.cache/engines`` in the project (the repository may be read-only)."""
    return Path(os.environ.get(ENGINE_DIR_ENV) or PROJECT_ROOT / ".cache" / "engines")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def import_tensorrt() -> Any:
    """The ``tensorrt`` module, or EngineBuildError saying why not."""
    try:
        import tensorrt
    except Exception as exc:  # ImportError, or libnvinfer failing to load
        raise EngineBuildError(
            f"the tensorrt Python package is not importable ({exc}); install the wheel matching your "
            f"TensorRT libraries (inside NVIDIA's Triton container: the container's own version)"
        ) from exc
    return tensorrt


def compute_capability() -> str:
    """The first GPU's compute capability as ``"8.9"``, from nvidia-smi or CuPy; EngineBuildError without a GPU."""
    smi = shutil.which("nvidia-smi")
    if smi:
        reply = subprocess.run(
            [smi, "--query-gpu=compute_cap", "--format=csv,noheader"], capture_output=True, text=True, timeout=30
        )
        lines = reply.stdout.split()
        if reply.returncode == 0 and lines:
            return lines[0]
    from python_backends.triton_helpers.gpu_arrays import gpu_count, import_cupy

    if gpu_count() == 0:
        raise EngineBuildError("no CUDA GPU is visible (nvidia-smi and CuPy find none)")
    return dotted_capability(import_cupy().cuda.Device(0).compute_capability)


def dotted_capability(digits: str) -> str:
    """CuPy's compute capability digits as nvidia-smi writes them: ``"89"`` -> ``"8.9"``, ``"100"`` -> ``"10.0"``."""
    return f"{digits[:-1]}.{digits[-1]}"


def engine_key(onnx_path: Path, options: EngineOptions) -> EngineKey:
    """The key for ``onnx_path`` built with ``options`` on this machine's TensorRT and GPU."""
    version = import_tensorrt().__version__
    return EngineKey(version, compute_capability(), file_sha256(onnx_path), options)


def build_engine(onnx_path: Path, key: EngineKey, engine_path: Path, log: Callable[[str], None] = print) -> Path:
    """Build the engine for ``key`` into ``engine_path`` (trtexec when on PATH, else the Python builder)."""
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = engine_path.with_suffix(".partial")
    trtexec = shutil.which("trtexec") if trtexec_can_build(key.tensorrt_version, key.options.fp16) else None
    log(
        f"building TensorRT {key.tensorrt_version} engine for sm{key.compute_capability} "
        f"({'FP16' if key.options.fp16 else 'FP32'}, batch {key.options.min_batch}/{key.options.opt_batch}/"
        f"{key.options.max_batch}, {key.options.input_height}x{key.options.input_width}) with "
        f"{trtexec or 'the tensorrt Python builder'}; this takes minutes"
    )
    started = time.monotonic()
    done = threading.Event()
    ticker = threading.Thread(target=_report_progress, args=(done, started, log), daemon=True)
    ticker.start()
    try:
        if trtexec:
            _build_with_trtexec(trtexec, onnx_path, key.options, tmp)
        else:
            _build_with_python(onnx_path, key.options, tmp)
    finally:
        done.set()
    tmp.replace(engine_path)
    engine_path.with_suffix(".json").write_text(json.dumps({**asdict(key), "onnx": str(onnx_path)}, indent=1))
    log(f"engine ready after {time.monotonic() - started:.0f} s: {engine_path}")
    return engine_path


def _report_progress(done: threading.Event, started: float, log: Callable[[str], None]) -> None:
    while not done.wait(PROGRESS_EVERY_S):
        log(f"... still building the TensorRT engine ({time.monotonic() - started:.0f} s)")


def trtexec_can_build(tensorrt_version: str, fp16: bool) -> bool:
    """False for FP16 on TensorRT 11 and later: its trtexec has no precision flags (``--fp16`` fails the build),
    so FP16 goes through the Python builder with ModelOpt's FP16 ONNX (see ``_enable_fp16``)."""
    return not fp16 or int(tensorrt_version.split(".")[0]) < 11


def trtexec_command(trtexec: str, onnx_path: Path, options: EngineOptions, out: Path) -> list[str]:
    """The trtexec command line that builds ``onnx_path`` into ``out``: the graph as it is, no plugin
    library (no EfficientNMS, whatever the head), and the profile's input shapes, except for a graph
    whose input is all fixed (NMS inside it for batch 1), for which trtexec refuses any shape flag."""
    cmd = [trtexec, f"--onnx={onnx_path}", f"--saveEngine={out}"]
    name = onnx_input_name(onnx_path)
    if not onnx_input_is_static(onnx_path):
        shapes = ["x".join(map(str, s)) for s in options.input_shapes()]
        cmd += [f"--minShapes={name}:{shapes[0]}", f"--optShapes={name}:{shapes[1]}", f"--maxShapes={name}:{shapes[2]}"]
    if options.fp16:
        cmd.append("--fp16")
    return cmd


def _build_with_trtexec(trtexec: str, onnx_path: Path, options: EngineOptions, out: Path) -> None:
    reply = subprocess.run(trtexec_command(trtexec, onnx_path, options, out), capture_output=True, text=True)
    if reply.returncode != 0 or not out.exists():
        raise EngineBuildError(f"trtexec failed ({reply.returncode}): {reply.stdout[-2000:]}{reply.stderr[-2000:]}")


def _build_with_python(onnx_path: Path, options: EngineOptions, out: Path) -> None:
    trt = import_tensorrt()
    onnx_bytes = onnx_path.read_bytes()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10+
    parser = trt.OnnxParser(network, logger)
    config = builder.create_builder_config()
    if options.fp16:
        onnx_bytes = _enable_fp16(trt, config, onnx_path, onnx_bytes)
    if not parser.parse(onnx_bytes):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineBuildError(f"TensorRT cannot parse {onnx_path}: {errors}")
    if any(d < 0 for d in network.get_input(0).shape):  # a graph of a fixed batch takes no profile
        profile = builder.create_optimization_profile()
        low, opt, high = options.input_shapes()
        profile.set_shape(network.get_input(0).name, low, opt, high)
        config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError("TensorRT returned no engine; see its log above")
    out.write_bytes(bytes(serialized))


def _enable_fp16(trt: Any, config: Any, onnx_path: Path, onnx_bytes: bytes) -> bytes:
    """TensorRT 10: the FP16 builder flag. TensorRT 11 removed it: convert the ONNX with ModelOpt AutoCast."""
    if hasattr(trt.BuilderFlag, "FP16"):
        config.set_flag(trt.BuilderFlag.FP16)
        return onnx_bytes
    try:
        from modelopt.onnx.autocast import convert_to_mixed_precision
    except Exception as exc:
        raise EngineBuildError(
            f"TensorRT {trt.__version__} builds FP16 only from an FP16 ONNX and ModelOpt is not importable "
            f"({exc}): install nvidia-modelopt[onnx], or build with --fp32"
        ) from exc
    model = convert_to_mixed_precision(onnx_path=str(onnx_path), low_precision_type="fp16", keep_io_types=True)
    return model.SerializeToString()


def onnx_input_name(onnx_path: Path) -> str:
    import onnx

    return onnx.load(str(onnx_path), load_external_data=False).graph.input[0].name


def onnx_input_is_static(onnx_path: Path) -> bool:
    """Whether every dimension of the ONNX input is fixed."""
    import onnx

    dims = onnx.load(str(onnx_path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim
    return all(dim.HasField("dim_value") for dim in dims)


def onnx_fixed_batch(onnx_path: Path) -> int | None:
    """The ONNX input's batch dimension when it is fixed, else None.

    ``prepare`` makes the batch dynamic, except in a graph whose NMS handles batch 1 only, which it
    installs as exported (batch 1): no engine profile may go past it.
    """
    import onnx

    dim = onnx.load(str(onnx_path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim[0]
    return dim.dim_value if dim.HasField("dim_value") else None


def ensure_engine(
    onnx_path: Path, options: EngineOptions, engine_dir: Path | None = None, log: Callable[[str], None] = print
) -> Path:
    """The cached engine for this ONNX, options, TensorRT and GPU; built first when missing."""
    key = engine_key(onnx_path, options)
    path = (engine_dir or default_engine_dir()) / key.filename()
    if path.exists():
        log(f"using cached TensorRT engine {path}")
        return path
    try:
        return build_engine(onnx_path, key, path, log)
    except (OSError, subprocess.SubprocessError) as exc:  # a read-only cache, trtexec hanging, ...
        raise EngineBuildError(f"cannot build {path}: {exc}") from exc


def main(argv: list[str] | None = None) -> int:
    """``python -m python_backends.infer.tensorrt_engine --onnx MODEL``: build or find the engine (used in containers,
    where the repository is read-only and ``prepare`` cannot rewrite configs)."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--onnx", required=True, type=Path, help="the prepared (batch-dynamic) model.onnx")
    parser.add_argument("--input-size", type=int, nargs=2, default=(640, 640), metavar=("H", "W"))
    parser.add_argument(
        "--batch-profile",
        default=",".join(map(str, DEFAULT_PROFILE)),
        help="min,opt,max batch (none above a fixed batch of the ONNX: NMS in the graph for batch 1)",
    )
    parser.add_argument("--no-fp16", dest="fp16", action="store_false", help="build an FP32 engine")
    parser.add_argument("--engine-dir", type=Path, help="default $YOLOV8_ENGINE_DIR or .cache/engines")
    args = parser.parse_args(argv)
    try:
        profile = clamp_profile(parse_profile(args.batch_profile), onnx_fixed_batch(args.onnx))
        options = EngineOptions(*args.input_size, *profile, fp16=args.fp16)
        print(ensure_engine(args.onnx, options, args.engine_dir))
    except (EngineBuildError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
