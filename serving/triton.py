"""Locate the bundled tritonserver, build its Python backend folder, and form its command line."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

from python_backends.defaults import ADMIN_KEY_HEADER
from python_backends.infer.select import tensorrt_unavailable_reason
from python_backends.paths import DEFAULT_REPOSITORY, PROJECT_ROOT
from python_backends.preprocess.image_decode import DEFAULT_MAX_PIXELS
from python_backends.triton_helpers.gpu_arrays import gpu_count

BACKEND_CACHE = PROJECT_ROOT / ".cache" / "triton_backends"
MIB = 1024 * 1024
# Triton's CUDA memory pool per GPU (its default is 64 MB). GPU tensors between stages go through it; past
# it, Triton hands inputs over in host memory. A queue of batches of 640x640 FP32 images (4.9 MB each) needs
# far more than 64 MB; docker-compose.yml and the Kubernetes gpu overlay pass the same size.
CUDA_POOL_MIB = 512
# Admin APIs behind a key (``--grpc-restricted-protocol``/``--http-restricted-api``). Health, metadata,
# model-config, inference and statistics stay open: clients read class names and statistics. With
# allow_client_shm, shared-memory leaves the list: clients on this host register their regions without the key.
RESTRICTED_APIS = ("model-repository", "shared-memory", "trace", "logging")
# glibc keeps freed blocks up to 32 MiB in the heap (and up to 256 MiB of them free) instead of unmapping
# them: each request's decoded image, 4.9 MB tensor and Triton's output buffers are then reused, not
# page-faulted in again. That halved the preprocessing of a 1 MP JPEG (10 ms -> 5 ms). Read at process start.
MALLOC_ENVIRONMENT = {"MALLOC_MMAP_THRESHOLD_": str(32 * 1024 * 1024), "MALLOC_TRIM_THRESHOLD_": str(256 * 1024 * 1024)}


class TritonNotInstalled(RuntimeError):
    """nvidia-pytriton (which carries tritonserver) is not installed in this environment."""


def pytriton_root() -> Path:
    """The installed ``pytriton`` package folder (found without importing it)."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise TritonNotInstalled("nvidia-pytriton is not installed: run `make setup`")
    return Path(next(iter(spec.submodule_search_locations)))


def build_backend_dir(target: Path = BACKEND_CACHE) -> Path:
    """Assemble ``<target>/python/`` from the wheel: the backend library, its utils and this Python's stub."""
    server_dir = pytriton_root() / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    sources = {
        "libtriton_python.so": server_dir / "backends" / "python" / "libtriton_python.so",
        "triton_python_backend_utils.py": server_dir / "backends" / "python" / "triton_python_backend_utils.py",
        "triton_python_backend_stub": server_dir / "python_backend_stubs" / version / "triton_python_backend_stub",
    }
    python_dir = target / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    for name, source in sources.items():
        if not source.exists():
            raise TritonNotInstalled(f"{source} is missing: nvidia-pytriton has no stub for Python {version}?")
        dest = python_dir / name
        if not dest.exists() or dest.stat().st_size != source.stat().st_size:
            shutil.copy2(source, dest)
    return target


def stub_numpy_problem(version: str) -> str | None:
    """Why the bundled Python backend stub can't run with NumPy ``version`` (the stubs' NumPy is this
    interpreter's), or None.

    Triton 2.51's stub was built against NumPy 1.x. Under NumPy 2 it hands every BYTES input over
    corrupted: the stub dies in ``deserialize_bytes_tensor`` on the first image ("unpack_from requires a
    buffer of at least 3419130831 bytes"), so every request fails INTERNAL. Seen on a GPU host with
    NumPy 2.5.2, and reproduced on CPU by installing NumPy 2.5.2 into a Python 3.12 venv.
    """
    if int(version.split(".")[0]) < 2:
        return None
    return (
        f"NumPy {version} in {sys.executable}: the Python backend stub of tritonserver 2.51 (nvidia-pytriton) "
        f"needs NumPy 1.x and corrupts every image input under NumPy 2; install numpy<2 (requirements.txt pins it)"
    )


def server_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for tritonserver and its Python stubs.

    The stub's embedded interpreter finds packages through the first ``python3`` on PATH,
    so this interpreter's bin folder goes first; libpython and the wheel's bundled
    libraries go on LD_LIBRARY_PATH; the project root goes on PYTHONPATH for ``python_backends``;
    glibc's allocator gets ``MALLOC_ENVIRONMENT``.
    """
    env = dict(os.environ if base is None else base)
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")])
    libs = [sysconfig.get_config_var("LIBDIR") or "", str(pytriton_root().parent / "nvidia_pytriton.libs")]
    env["LD_LIBRARY_PATH"] = os.pathsep.join([*libs, env.get("LD_LIBRARY_PATH", "")]).rstrip(os.pathsep)
    env["PYTHONPATH"] = os.pathsep.join([str(PROJECT_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    # Second guard against decompression bombs in formats whose header we do not parse (read when cv2 loads).
    env.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(DEFAULT_MAX_PIXELS))
    for key, value in MALLOC_ENVIRONMENT.items():
        env.setdefault(key, value)
    return env


def default_cuda_pool_mib() -> int:
    """``CUDA_POOL_MIB`` on a machine with a CUDA GPU (seen through CuPy), else 0 (no flag)."""
    return CUDA_POOL_MIB if gpu_count() else 0


def default_config_name() -> str | None:
    """The ``--model-config-name`` for this machine: ``gpu`` where TensorRT can run, else None.

    With ``gpu``, yolov8_infer loads configs/gpu.pbtxt (one instance that batches); without it,
    every model loads its config.pbtxt (yolov8_infer's: two instances, one CPU image each).
    """
    return "gpu" if tensorrt_unavailable_reason() is None else None


@dataclass
class ServerOptions:
    """tritonserver settings; defaults keep everything on loopback."""

    repository: Path = DEFAULT_REPOSITORY
    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    metrics: bool = True
    shm_default_mib: int = 64  # each stub's pool: a batch of 8 640x640 FP32 tensors is 39 MiB
    shm_growth_mib: int = 64
    exit_timeout_s: int = 30
    log_verbose: int = 0
    admin_key: str | None = None  # restrict RESTRICTED_APIS to requests carrying this ADMIN_KEY_HEADER value
    # Clients may register system shared memory without the key (Triton 2.51 has no --allow-client-shm: the
    # key alone keeps them out; without an admin key nothing does)
    allow_client_shm: bool = False
    grpc_server_cert: Path | None = None  # PEM; with grpc_server_key, gRPC speaks TLS only
    grpc_server_key: Path | None = None
    grpc_root_cert: Path | None = None  # PEM CA; given, clients must present a certificate it signed (mutual TLS)
    # Where traces go once the trace API turns tracing on (it starts OFF): Triton 2.51 takes the file only at
    # start (the trace API answers UNIMPLEMENTED to a new trace_file), and writes ``<trace_file>.<n>``.
    trace_file: Path | None = None
    model_config_name: str | None = field(default_factory=default_config_name)  # --model-config-name
    cuda_pool_mib: int = field(default_factory=default_cuda_pool_mib)  # per GPU; 0: no GPU, no flag
    extra_args: list[str] = field(default_factory=list)


def server_command(options: ServerOptions, backend_dir: Path) -> list[str]:
    """The tritonserver command line for ``options``."""
    binary = pytriton_root() / "tritonserver" / "bin" / "tritonserver"
    cmd = [
        str(binary),
        f"--model-repository={options.repository}",
        f"--backend-directory={backend_dir}",
        "--model-control-mode=none",
        f"--http-address={options.host}",
        f"--http-port={options.http_port}",
        f"--grpc-address={options.host}",
        f"--grpc-port={options.grpc_port}",
        f"--allow-metrics={'true' if options.metrics else 'false'}",
        f"--backend-config=python,shm-default-byte-size={options.shm_default_mib * MIB}",
        f"--backend-config=python,shm-growth-byte-size={options.shm_growth_mib * MIB}",
        f"--exit-timeout-secs={options.exit_timeout_s}",
        f"--log-verbose={options.log_verbose}",
    ]
    if options.trace_file:
        cmd.append(f"--trace-config=triton,file={Path(options.trace_file).resolve()}")
    if options.model_config_name:
        cmd.append(f"--model-config-name={options.model_config_name}")
    if options.cuda_pool_mib:
        cmd += [f"--cuda-memory-pool-byte-size={gpu}:{options.cuda_pool_mib * MIB}" for gpu in range(gpu_count())]
    if options.metrics:
        cmd += [f"--metrics-address={options.host}", f"--metrics-port={options.metrics_port}"]
    if options.admin_key:
        apis = [api for api in RESTRICTED_APIS if not (options.allow_client_shm and api == "shared-memory")]
        restricted = f"{','.join(apis)}:{ADMIN_KEY_HEADER}={options.admin_key}"
        cmd += [f"--grpc-restricted-protocol={restricted}", f"--http-restricted-api={restricted}"]
    if options.grpc_server_cert:
        cmd += [f"--grpc-server-cert={options.grpc_server_cert}", f"--grpc-server-key={options.grpc_server_key}"]
        if options.grpc_root_cert:
            cmd += ["--grpc-use-ssl-mutual=true", f"--grpc-root-cert={options.grpc_root_cert}"]
        else:
            cmd += ["--grpc-use-ssl=true"]
    return cmd + options.extra_args
