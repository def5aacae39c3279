"""TensorRT engine options, cache key and cache: the engine for a config, found or built once.

An engine only deserializes under the TensorRT version and GPU that built it, and only serves the
shapes of its optimization profile. The cache key therefore holds the TensorRT version, the GPU's name
and compute capability as CUDA sees the device in use (``CUDA_VISIBLE_DEVICES`` applied), the input
size, the batch profile, the precision and the ONNX file's SHA-256: change any of them and a new
engine is built. ``engine_options_from_config`` is the one reading of a yolov8_infer config into
options, for the server (``model.py``) and for ``python -m prepare.engine`` alike.

Replicas share the cache: a build holds ``NAME.lock`` (an fcntl lock, which NFS honours too), writes
``NAME.<pid>-<random>.partial`` and renames it to ``NAME``, so a second process waits and takes the
first's engine. A failed build leaves ``NAME.failed`` with its reason, and every later load with the
same key fails at once with that reason until the file is deleted. The build itself is
``tensorrt_build``. ``tensorrt`` and CUDA are touched only inside functions, never at import.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import json
import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from python_backends.paths import PROJECT_ROOT
from python_backends.triton_helpers.config import input_dims, parameters

DEFAULT_PROFILE = (1, 8, 32)  # min/opt/max batch; FastDeploy's YOLOv8 example used 1/1/40
ENGINE_DIR_ENV = "YOLOV8_ENGINE_DIR"

Builder = Callable[[Path, "EngineKey", Path, Callable[[str], None]], None]  # (onnx, key, out, log)


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
        """The (min, opt, max) NCHW shapes of the optimization profile: H and W fixed at the served size."""
        size = (3, self.input_height, self.input_width)
        return (self.min_batch, *size), (self.opt_batch, *size), (self.max_batch, *size)


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine depends on; ``digest`` names its file."""

    tensorrt_version: str
    gpu_name: str  # as CUDA names the device, e.g. "NVIDIA H100 80GB HBM3"
    compute_capability: str  # "9.0"
    onnx_sha256: str
    options: EngineOptions

    def digest(self) -> str:
        """16 hex characters of the SHA-256 of every field."""
        fields = {**asdict(self), "options": asdict(self.options)}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]

    def filename(self) -> str:
        precision = "fp16" if self.options.fp16 else "fp32"
        gpu = re.sub(r"[^A-Za-z0-9.]+", "-", self.gpu_name).strip("-") or "gpu"
        return f"yolov8-trt{self.tensorrt_version}-{gpu}-sm{self.compute_capability}-{precision}-{self.digest()}.engine"


def engine_options_from_config(config: dict[str, Any]) -> EngineOptions:
    """EngineOptions from a yolov8_infer config in the form Triton hands ``model.py`` (its JSON, parsed):
    the input ``images``' dims (3, H, W) and the parameters ``precision`` and ``trt_batch_profile``."""
    _, height, width = input_dims(config, "images")
    return options_from_parameters(parameters(config), height, width)


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


def gpu_identity() -> tuple[str, str]:
    """(name, compute capability such as ``"9.0"``) of this process's current CUDA device, as CUDA numbers
    the devices (``CUDA_VISIBLE_DEVICES`` applied); EngineBuildError without CuPy or a GPU."""
    from python_backends.triton_helpers.gpu_arrays import import_cupy

    try:
        cp = import_cupy()
        props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    except Exception as exc:  # GpuUnavailable, or CuPy's CUDARuntimeError without a driver or device
        raise EngineBuildError(f"no CUDA GPU is usable ({exc})") from exc
    name = props["name"]
    return (name.decode() if isinstance(name, bytes) else str(name)), f"{props['major']}.{props['minor']}"


def engine_key(onnx_path: Path, options: EngineOptions) -> EngineKey:
    """The key for ``onnx_path`` built with ``options`` on this machine's TensorRT and GPU."""
    version = import_tensorrt().__version__
    return EngineKey(version, *gpu_identity(), file_sha256(onnx_path), options)


def cached_engine(
    onnx_path: Path,
    key: EngineKey,
    engine_dir: Path,
    build: Builder,
    log: Callable[[str], None] = print,
    discard: os.stat_result | None = None,
) -> Path:
    """``engine_dir``'s engine for ``key``, built from ``onnx_path`` with ``build`` (``tensorrt_build.build_engine``
    where TensorRT builds it) by one process at a time; EngineBuildError when the build fails,
    now or in an earlier attempt with the same key."""
    path = engine_dir / key.filename()
    if discard is None and path.exists():  # a complete engine: files appear only by rename
        log(f"using cached TensorRT engine {path}")
        return path
    _refuse_failed(path)
    try:
        engine_dir.mkdir(parents=True, exist_ok=True)
        with _exclusive(path.with_name(path.name + ".lock"), log):
            if discard is not None and _same_file(path, discard):
                log(f"removing {path}, which does not deserialize")
                path.unlink()
            if path.exists():
                log(f"using TensorRT engine {path}")
                return path
            _refuse_failed(path)  # the process before us failed while we waited
            return _build(onnx_path, key, path, log, build)
    except OSError as exc:  # a read-only or full cache
        raise EngineBuildError(f"cannot build {path}: {exc}") from exc


def failure_marker(engine_path: Path) -> Path:
    """The file that records why the engine at ``engine_path`` could not be built."""
    return engine_path.with_name(engine_path.name + ".failed")


def _refuse_failed(path: Path) -> None:
    marker = failure_marker(path)
    if marker.exists():
        reason = json.loads(marker.read_text()).get("reason", "?")
        raise EngineBuildError(f"the last build of {path.name} failed ({reason}); delete {marker} to build it again")


def _build(onnx_path: Path, key: EngineKey, path: Path, log: Callable[[str], None], build: Builder) -> Path:
    """Build under the lock into a name of this process, then rename; a failure is recorded beside the engine."""
    for stale in path.parent.glob(f"{glob.escape(path.name)}.*.partial"):  # a builder killed while holding the lock
        stale.unlink(missing_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.partial")
    try:
        build(onnx_path, key, tmp, log)
        if not tmp.exists():
            raise EngineBuildError("the builder wrote no engine")
        tmp.replace(path)
    except OSError:
        raise
    except Exception as exc:  # EngineBuildError, or whatever TensorRT's Python builder raises
        reason = str(exc) if isinstance(exc, EngineBuildError) else repr(exc)
        with contextlib.suppress(OSError):
            failure_marker(path).write_text(json.dumps({"reason": reason, "key": asdict(key)}, indent=1))
        raise EngineBuildError(
            f"building {path.name} failed ({reason}); {failure_marker(path)} keeps the reason and later loads "
            f"with this key fail at once: delete it to build again"
        ) from exc
    finally:
        tmp.unlink(missing_ok=True)
    path.with_name(path.name + ".json").write_text(json.dumps({**asdict(key), "onnx": str(onnx_path)}, indent=1))
    log(f"engine ready: {path}")
    return path


@contextlib.contextmanager
def _exclusive(lock_path: Path, log: Callable[[str], None]) -> Iterator[None]:
    """Hold an exclusive fcntl lock on ``lock_path``, saying so when another process holds it first."""
    with open(lock_path, "a") as lock:
        try:
            fcntl.lockf(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            log(f"another process is building this engine ({lock_path} is locked); waiting for it")
            fcntl.lockf(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.lockf(lock, fcntl.LOCK_UN)


def _same_file(path: Path, seen: os.stat_result) -> bool:
    try:
        now = path.stat()
    except FileNotFoundError:
        return False
    return (now.st_ino, now.st_size, now.st_mtime_ns) == (seen.st_ino, seen.st_size, seen.st_mtime_ns)
