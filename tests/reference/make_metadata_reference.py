"""Generate tests/reference/ultralytics_metadata.json: what Ultralytics makes of yolov8_infer's served metadata.

Run once, in the environment that has Ultralytics (the project never depends on it), with the
project's own venv in .venv for the server:

    /work/ulvenv/bin/pip install --no-deps tritonclient==2.49.0 grpcio==1.67.1 python-rapidjson==1.25
    /work/ulvenv/bin/python tests/reference/make_metadata_reference.py

(``--no-deps``: tritonclient 2.49.0 asks for numpy<2 and protobuf<5, which would downgrade the
venv's NumPy 2.4 and protobuf 7 under Ultralytics and torch; fetching a model config needs neither.)

For each case the ONNX is prepared by ``python -m prepare`` and served by
``python -m serving`` (the project's venv, free loopback ports); then Ultralytics' own code reads
the served ``yolov8_infer`` over gRPC: ``TritonRemoteModel`` (its client, which literal_evals the
``metadata`` config parameter) and ``AutoBackend`` (which converts stride/batch/channels and
imgsz/names/args and sets them as attributes), exactly as ``YOLO("grpc://host:port/yolov8_infer")``
does on its first predict. Recorded per case:

- ``metadata_string``: the ``metadata`` parameter as Ultralytics' client fetched it, verbatim;
- ``client_metadata``: ``TritonRemoteModel(url).metadata``, a copy taken before AutoBackend
  converts it in place;
- ``autobackend``: ``AutoBackend(url)``'s names, stride, imgsz, task, batch, channels, end2end,
  dynamic and its whole ``metadata``.

JSON has no int keys and no key order of its own, so every dict is written as
``{"pairs": [[key, value], ...]}`` in its order, keys with their types; lists, strings, numbers,
booleans and None are plain JSON. Any other type is refused rather than written lossily.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import onnx

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parent.parent)]  # tests/ and the checkout

from tiny_models import names_only, tiny_yolo  # noqa: E402

from python_backends.paths import PROJECT_ROOT  # noqa: E402
from serving.processes import free_port  # noqa: E402

PROJECT_PYTHON = PROJECT_ROOT / ".venv" / "bin" / "python"
DEFAULT_ONNX = PROJECT_ROOT / ".cache" / "models" / "yolov8s-fall-detection.onnx"
ATTRIBUTES = ("names", "stride", "imgsz", "task", "batch", "channels", "end2end", "dynamic", "metadata")


def cases(tmp: Path) -> dict[str, dict]:
    """Case name → its description, the ONNX to prepare and the --input-size (None: the export's imgsz)."""
    dynamic = tmp / "dynamic_hw.onnx"
    onnx.save(tiny_yolo(num_classes=2, size=64, dynamic_size=True, names={0: "a", 1: "b"}), dynamic)
    names = tmp / "names_only.onnx"
    onnx.save(names_only(tiny_yolo(num_classes=1, size=32)), names)
    return {
        "default": {
            "description": ".cache/models/yolov8s-fall-detection.onnx at its imgsz, 640x640",
            "onnx": DEFAULT_ONNX,
            "input_size": None,
        },
        "dynamic_hw_96x128": {
            "description": 'tiny_yolo(num_classes=2, size=64, dynamic_size=True, names={0: "a", 1: "b"}) at 96x128',
            "onnx": dynamic,
            "input_size": "96x128",
        },
        "names_only": {
            "description": "names_only(tiny_yolo(num_classes=1, size=32)): no stride, task, batch or imgsz",
            "onnx": names,
            "input_size": None,
        },
    }


def encode(value: object) -> object:
    """``value`` as JSON that keeps dict key types and order: dicts become {"pairs": [[key, value], ...]}."""
    if isinstance(value, dict):
        return {"pairs": [[encode(k), encode(v)] for k, v in value.items()]}
    if isinstance(value, list):
        return [encode(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"{type(value).__name__} {value!r} has no lossless JSON form here")


def prepare(case: dict, repository: Path) -> None:
    command = [str(PROJECT_PYTHON), "-m", "prepare", "--onnx", str(case["onnx"])]
    command += ["--repository", str(repository), "--cpu-runtime", "onnxruntime"]
    if case["input_size"]:
        command += ["--input-size", case["input_size"]]
    subprocess.run(command, cwd=PROJECT_ROOT, check=True)


def serve(repository: Path, log: Path, grpc_port: int) -> subprocess.Popen:
    """``python -m serving`` on ``repository``, once its gRPC endpoint says the server is ready."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    command = [str(PROJECT_PYTHON), "-m", "serving", "--repository", str(repository), "--no-metrics"]
    command += ["--http-port", str(free_port()), "--grpc-port", str(grpc_port), "--metrics-port", str(free_port())]
    command += ["--admin-key", os.urandom(16).hex(), "--probe-interval", "0", "--exit-timeout", "5"]
    command += ["--log-file", str(log)]
    server = subprocess.Popen(command, cwd=PROJECT_ROOT)
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise RuntimeError(f"python -m serving exited with {server.returncode}; see {log}")
            try:
                if client.is_server_ready():
                    return server
            except InferenceServerException:
                pass  # not listening yet
            time.sleep(0.5)
    finally:
        client.close()
    stop(server)
    raise RuntimeError(f"the server was not ready within 300 s; see {log}")


def stop(server: subprocess.Popen) -> None:
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=60)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def read_with_ultralytics(url: str) -> dict:
    """What Ultralytics' Triton client and AutoBackend make of the served yolov8_infer."""
    from ultralytics.nn.autobackend import AutoBackend
    from ultralytics.utils.triton import TritonRemoteModel

    client = TritonRemoteModel(url)
    config = client.triton_client.get_model_config(client.endpoint, as_json=True)["config"]
    backend = AutoBackend(url)
    return {
        "metadata_string": config["parameters"]["metadata"]["string_value"],
        "client_metadata": encode(copy.deepcopy(client.metadata)),
        "autobackend": encode({name: getattr(backend, name) for name in ATTRIBUTES}),
    }


def main() -> None:
    from importlib.metadata import version

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, case in cases(Path(tmp)).items():
            repository = Path(tmp) / name
            prepare(case, repository)
            port = free_port()
            server = serve(repository, Path(tmp) / f"{name}.log", port)
            try:
                results[name] = {
                    "description": case["description"],
                    **read_with_ultralytics(f"grpc://127.0.0.1:{port}/yolov8_infer"),
                }
            finally:
                stop(server)
    out = {
        "generator": "tests/reference/make_metadata_reference.py",
        "ultralytics_version": version("ultralytics"),
        "tritonclient_version": version("tritonclient"),
        "encoding": 'every dict is {"pairs": [[key, value], ...]}, in its order, keys with their types',
        "cases": results,
    }
    (HERE / "ultralytics_metadata.json").write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    for name, result in results.items():
        print(f"{name}: {result['metadata_string'][:100]}...")


if __name__ == "__main__":
    main()
