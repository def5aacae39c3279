"""OpenVINO for yolov8_infer: Ultralytics parity for each CPU runtime through a real server, FP32, the
compile cache, streams, and what a model that OpenVINO cannot compile does to an explicit choice and to auto."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
from matching import CPU_PARITY, mismatches
from own_server import options, started

from client.api import YoloTritonClient
from prepare.repository import set_parameter
from python_backends.infer.onnxruntime_runtime import OnnxRuntimeSession
from python_backends.infer.openvino_runtime import OpenVinoRuntime
from serving.processes import stub_processes
from serving.server import ServerStartError, TritonServer

CPU_RUNTIMES = ("onnxruntime", "openvino")
REFUSED = "runtime 'openvino' is unavailable: cannot compile"


def _with_parameters(source: Path, target: Path, stages: tuple[str, ...], **params: str) -> Path:
    """Copy ``stages`` of a prepared repository, with yolov8_infer's parameters set to ``params``."""
    for stage in stages:
        shutil.copytree(source / stage, target / stage)
    config = target / "yolov8_infer" / "config.pbtxt"
    text = config.read_text()
    for key, value in params.items():
        text = set_parameter(text, key, value)
    config.write_text(text)
    return target


@pytest.fixture(scope="module", params=CPU_RUNTIMES)
def served(request, model_repository, triton, tmp_path_factory):
    """(runtime, server): the whole pipeline on ``runtime``.

    OpenVINO is what the session's server runs: its yolov8_infer config says ``auto``, with ``cpu_runtime``
    openvino, and its log says auto used it (test_the_infer_stubs_run_the_named_runtime also finds OpenVINO's
    library in its stubs). ONNX Runtime is named explicitly in a server of its own. An explicit ``openvino``
    is loaded by test_warmup's runtime tests, and refused with its reason below.
    """
    if request.param == "openvino":
        config = (model_repository / "yolov8_infer" / "config.pbtxt").read_text()
        assert '"runtime", value: { string_value: "auto" }' in config
        assert '"cpu_runtime", value: { string_value: "openvino" }' in config
        assert triton.log_path.read_text().count("; using openvino on CPU") == 2  # a line from each instance
        yield "openvino", triton
        return
    stages = tuple(p.name for p in model_repository.iterdir() if p.is_dir())
    tmp = tmp_path_factory.mktemp(request.param)
    repo = _with_parameters(model_repository, tmp / "repo", stages, runtime=request.param)
    with started(options(repo), tmp / "tritonserver.log") as server:
        yield request.param, server


@pytest.mark.parametrize("setting", ["conf=0.25,iou=0.7", "conf=0.05,iou=0.5"])
def test_served_detections_match_ultralytics(served, sample_images, reference, setting):
    """Every photo and variant, within 0.5 px per box coordinate and 1e-3 per score, on each CPU runtime."""
    _, server = served
    conf, iou = (float(part.split("=")[1]) for part in setting.split(","))
    with YoloTritonClient(server.grpc_url) as client:
        for name, want in reference["results"][setting].items():
            got = client.detect(sample_images[name], conf=conf, iou=iou)
            found = [d.__dict__ | {"box": list(d.box)} for d in got.detections]
            problems = mismatches(found, want["detections"], **CPU_PARITY)
            assert not problems, (name, problems)


def test_the_infer_stubs_run_the_named_runtime(served):
    """OpenVINO's library is mapped into every yolov8_infer stub when it runs, and into none otherwise."""
    runtime, server = served
    stubs = [s for s in stub_processes(server.process.pid) if s.model == "yolov8_infer"]
    assert len(stubs) == 2
    for stub in stubs:
        maps = Path(f"/proc/{stub.pid}/maps").read_text()
        assert ("libopenvino.so" in maps) == (runtime == "openvino"), stub


@pytest.fixture(scope="module")
def model_path(model_repository) -> str:
    return str(model_repository / "yolov8_infer" / "1" / "model.onnx")


@pytest.fixture(scope="module")
def images(sample_images) -> np.ndarray:
    """float32 (3, 3, 640, 640): three different real photos, preprocessed."""
    from python_backends.preprocess.preprocessor import Preprocessor

    pre = Preprocessor()
    return np.stack([pre.from_bytes(sample_images[n].read_bytes())[0] for n in ("bus.jpg", "zidane.jpg", "camera.png")])


@pytest.fixture(scope="module")
def onnxruntime_heads(model_path, images) -> np.ndarray:
    """float32 (3, 6, 8400): each photo alone on ONNX Runtime."""
    runtime = OnnxRuntimeSession(model_path)
    return np.concatenate([runtime.run(image[None]) for image in images])


def test_fp32_is_pinned_and_a_second_load_comes_from_the_cache(model_path, tmp_path):
    first = OpenVinoRuntime(model_path, cache_dir=tmp_path)
    assert str(first.compiled.get_property("INFERENCE_PRECISION_HINT")) == "<Type: 'float32'>"
    assert not first.compiled.get_property("LOADED_FROM_CACHE")
    assert list(tmp_path.glob("*.blob"))
    second = OpenVinoRuntime(model_path, cache_dir=tmp_path)
    assert second.compiled.get_property("LOADED_FROM_CACHE")


@pytest.mark.parametrize("batch", [1, 2, 3])
def test_streams_give_onnxruntimes_heads_in_order(model_path, images, onnxruntime_heads, batch, tmp_path):
    """Two streams: 2 images side by side, a third on all threads; FP32 keeps the head within 1e-2 of ORT's."""
    runtime = OpenVinoRuntime(model_path, streams=2, cache_dir=tmp_path)
    assert runtime.streamed.get_property("NUM_STREAMS") == 2
    head = runtime.run(images[:batch])
    assert head.shape == (batch, 6, 8400) and head.dtype == np.float32
    np.testing.assert_allclose(head, onnxruntime_heads[:batch], rtol=0, atol=1e-2)
    scores = head[:, 4:].max(axis=(1, 2))
    assert len(set(np.round(scores, 3))) == batch  # different photos: a shuffled order would not match above
    np.testing.assert_allclose(runtime.run_in_stream(images[:batch]), onnxruntime_heads[:batch], rtol=0, atol=1e-2)


@pytest.fixture(scope="module")
def unreadable_by_openvino(yolo11n_repository, tmp_path_factory) -> Path:
    """Only yolov8_infer of tests/models' YOLO11n (images [3, 320, 416], output0 [7, 2730]), its model saved in
    ONNX Runtime's own format (model.ort), which OpenVINO cannot read."""
    repo = tmp_path_factory.mktemp("ort_format") / "repo"
    source = yolo11n_repository / "yolov8_infer"
    shutil.copytree(source, repo / "yolov8_infer", ignore=shutil.ignore_patterns("*.onnx"))
    settings = ort.SessionOptions()
    settings.optimized_model_filepath = str(repo / "yolov8_infer" / "1" / "model.ort")
    settings.add_session_config_entry("session.save_model_format", "ORT")
    ort.InferenceSession(str(source / "1" / "model.onnx"), settings)
    return repo


def test_explicit_openvino_that_cannot_compile_fails_the_load_and_says_why(unreadable_by_openvino, tmp_path):
    repo = _with_parameters(unreadable_by_openvino, tmp_path / "repo", ("yolov8_infer",),
                            runtime="openvino", model_file="model.ort")  # fmt: skip
    log = tmp_path / "tritonserver.log"
    with pytest.raises(ServerStartError, match="exited"):
        TritonServer(options(repo), log).start(timeout_s=90)
    text = log.read_text()
    assert REFUSED in text and "Unable to read the model" in text


def test_auto_falls_back_to_onnxruntime_with_one_line_per_instance(unreadable_by_openvino, tmp_path):
    repo = _with_parameters(unreadable_by_openvino, tmp_path / "repo", ("yolov8_infer",),
                            runtime="auto", cpu_runtime="openvino", model_file="model.ort")  # fmt: skip
    log = tmp_path / "tritonserver.log"
    with started(options(repo), log) as server:
        client = grpcclient.InferenceServerClient(server.grpc_url)
        try:
            tensor = grpcclient.InferInput("pixels", [1, 3, 320, 416], "UINT8")
            tensor.set_data_from_numpy(np.zeros((1, 3, 320, 416), np.uint8))
            head = client.infer("yolov8_infer", [tensor]).as_numpy("output0")
        finally:
            client.close()
        fallbacks = [line for line in log.read_text().splitlines() if REFUSED in line]  # in the log while it runs
    assert head.shape == (1, 7, 2730)
    assert len(fallbacks) == 2, fallbacks  # one line from each instance
    assert all(line.startswith("runtime auto: ") and line.endswith("; using onnxruntime on CPU") for line in fallbacks)
