"""Warm-up before ready: every composing model runs its ``model_warmup`` samples before the server reports
ready, at the batch sizes its config runs, and a sample that fails keeps the server from reporting ready."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from google.protobuf import text_format
from own_server import options, started
from tritonclient.grpc import model_config_pb2

from prepare.prepare_model import write_engine_settings
from prepare.warmup import HEAD_FILE, IMAGE_FILE, LETTERBOX_FILE
from python_backends.infer.tensorrt_engine import EngineOptions, parse_profile
from python_backends.paths import PROJECT_ROOT
from python_backends.triton_helpers.config import warmup_strings
from python_backends.triton_helpers.gpu_arrays import gpu_unavailable_reason

COMPOSING = ("yolov8_preprocess", "yolov8_infer", "yolov8_postprocess")
NO_GPU = gpu_unavailable_reason()


def _config(path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def _parameter(config: model_config_pb2.ModelConfig, key: str) -> str:
    return config.parameters[key].string_value


def test_each_config_warms_up_at_the_batch_sizes_it_runs(model_repository):
    """CPU infer: its preferred_batch_size; gpu.pbtxt: the TensorRT profile's sizes; pre/postprocess: one image."""
    infer = _config(model_repository / "yolov8_infer" / "config.pbtxt")
    assert [w.batch_size for w in infer.model_warmup] == list(infer.dynamic_batching.preferred_batch_size) == [1]
    gpu = _config(model_repository / "yolov8_infer" / "configs" / "gpu.pbtxt")
    profile = sorted(set(parse_profile(_parameter(gpu, "trt_batch_profile"))))
    assert [w.batch_size for w in gpu.model_warmup] == profile == [1, 8, 32]
    for stage in ("yolov8_preprocess", "yolov8_postprocess"):
        assert [w.batch_size for w in _config(model_repository / stage / "config.pbtxt").model_warmup] == [1]
    counts = [_config(model_repository / s / "config.pbtxt").model_warmup[0].count for s in COMPOSING[::2]]
    assert counts[0] == counts[1]  # the drain counts requests entering preprocess and leaving postprocess


def test_a_new_engine_profile_moves_the_gpu_warmup_only(model_repository, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(model_repository / "yolov8_infer", repo / "yolov8_infer", ignore=shutil.ignore_patterns("*.onnx"))
    write_engine_settings(repo, EngineOptions(640, 640, 2, 4, 16, fp16=False))
    assert [w.batch_size for w in _config(repo / "yolov8_infer" / "configs" / "gpu.pbtxt").model_warmup] == [2, 4, 16]
    assert [w.batch_size for w in _config(repo / "yolov8_infer" / "config.pbtxt").model_warmup] == [1]


def test_prepare_writes_warmup_data_that_fits_the_model(model_repository):
    """The head file is the postprocess's output0 (float32, 4 + classes by anchors); the image is a JPEG."""
    post = _config(model_repository / "yolov8_postprocess" / "config.pbtxt")
    (sample,) = post.model_warmup
    dims = list(sample.inputs["output0"].dims)
    assert dims == list(next(i.dims for i in post.input if i.name == "output0")) == [6, 8400]
    head = np.fromfile(model_repository / "yolov8_postprocess" / "warmup" / HEAD_FILE, np.float32)
    assert head.size == np.prod(dims) and (head.reshape(dims)[4:] > 0.25).sum() > 1  # boxes for NMS
    letterbox = np.fromfile(model_repository / "yolov8_postprocess" / "warmup" / LETTERBOX_FILE, np.float32)
    assert letterbox.tolist() == [1, 0, 0, 640, 640]
    image = (model_repository / "yolov8_preprocess" / "warmup" / IMAGE_FILE).read_bytes()
    assert struct.unpack("<I", image[:4])[0] == len(image) - 4 and image[4:6] == b"\xff\xd8"
    decoded = cv2.imdecode(np.frombuffer(image[4:], np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (600, 800, 3)  # larger than the 640 input: warm-up resizes, as a photo needs


@pytest.fixture(scope="module")
def fresh_server(yolo11n_repository, tmp_path_factory):
    """A server of its own, so that no other test's requests are counted (tests/models' YOLO11n: the subject is
    the warm-up's path through the stages, which every prepared model takes)."""
    with started(options(yolo11n_repository), tmp_path_factory.mktemp("warm") / "tritonserver.log") as server:
        yield server


def test_warmup_ran_through_the_stages_before_ready(fresh_server, sample_images):
    """Before any request: preprocess's warm-up images entered the drain count, postprocess's left it (2 each)."""
    entered, left = (fresh_server.gate.directory / name for name in ("entered", "left"))
    assert entered.stat().st_size == left.stat().st_size == 2
    assert fresh_server.gate.in_flight() == 0
    client = grpcclient.InferenceServerClient(fresh_server.grpc_url)
    try:
        statistics = client.get_inference_statistics("yolov8").model_stats[0]
        assert statistics.inference_count == 0  # nothing but the warm-up has run
        tensor = grpcclient.InferInput("IMAGE", [1, 1], "BYTES")
        tensor.set_data_from_numpy(np.array([[sample_images["bus.jpg"].read_bytes()]], dtype=object))
        assert client.infer("yolov8", [tensor]).as_numpy("num_dets")[0, 0] > 0
    finally:
        client.close()


def test_a_failing_warmup_leaves_the_model_and_the_pipeline_unavailable(yolo11n_repository, tmp_path):
    """Preprocess warms up on bytes that are no image: its load fails with the reason, and neither it nor the
    ensembles on it report ready. (Kept running with --exit-on-error=false to ask it; by default the server
    exits instead of ever reporting ready.)

    The reason comes from preprocess's ``initialize``, which checks its warm-up images: left to Triton's own
    warm-up ("failed to run warmup sample ..."), the failure crashed tritonserver 2.51 (SIGSEGV in its
    ``StopBackendThread``) in 9 loads of 40 here."""
    repo = tmp_path / "repo"
    shutil.copytree(yolo11n_repository, repo)
    junk = b"not an image at all"
    (repo / "yolov8_preprocess" / "warmup" / IMAGE_FILE).write_bytes(struct.pack("<I", len(junk)) + junk)
    extra = ["--exit-on-error=false", "--strict-readiness=false"]
    with started(options(repo, extra_args=extra), tmp_path / "tritonserver.log") as server:
        client = grpcclient.InferenceServerClient(server.grpc_url)
        try:
            assert not any(client.is_model_ready(m) for m in ("yolov8_preprocess", "yolov8", "yolov8_raw"))
            assert client.is_model_ready("yolov8_infer") and client.is_model_ready("yolov8_postprocess")
            (entry,) = [m for m in client.get_model_repository_index().models if m.name == "yolov8_preprocess"]
            assert entry.state == "UNAVAILABLE"
            assert "warm-up sample 'batch_1': cannot decode image (19 bytes)" in entry.reason
        finally:
            client.close()


def test_warmup_strings_reads_each_sample_file_and_refuses_a_truncated_one(tmp_path):
    (tmp_path / "warmup").mkdir()
    (tmp_path / "warmup" / "two.bin").write_bytes(struct.pack("<I", 3) + b"abc" + struct.pack("<I", 0))
    (tmp_path / "warmup" / "cut.bin").write_bytes(struct.pack("<I", 9) + b"abc")
    config = {
        "model_warmup": [
            {"name": "batch_2", "inputs": {"IMAGE": {"input_data_file": "two.bin"}}},
            {"name": "zeros", "inputs": {"IMAGE": {"zero_data": True}}},
        ]
    }
    assert warmup_strings(config, tmp_path, "IMAGE") == {"batch_2": [b"abc", b""]}
    config["model_warmup"].append({"name": "cut", "inputs": {"IMAGE": {"input_data_file": "cut.bin"}}})
    with pytest.raises(ValueError, match="cut.bin ends inside element 0"):
        warmup_strings(config, tmp_path, "IMAGE")


def test_warmup_data_and_dims_follow_another_model(tmp_path):
    """A 64x64 model with 3 classes: (7, 84) heads, 64x64 images, in the warm-up data and in every config."""
    import onnx
    from tiny_models import tiny_yolo

    from prepare.prepare_model import prepare
    from python_backends.paths import PROJECT_ROOT

    onnx.save(tiny_yolo(num_classes=3, size=64), tmp_path / "tiny.onnx")
    repo = tmp_path / "repo"
    prepare(tmp_path / "tiny.onnx", repo, template=PROJECT_ROOT / "model_repository")
    post = _config(repo / "yolov8_postprocess" / "config.pbtxt")
    assert list(post.model_warmup[0].inputs["output0"].dims) == [7, 84]
    warmup = repo / "yolov8_postprocess" / "warmup"
    assert np.fromfile(warmup / HEAD_FILE, np.float32).size == 7 * 84
    assert np.fromfile(warmup / LETTERBOX_FILE, np.float32).tolist() == [1, 0, 0, 64, 64]
    for config in ("config.pbtxt", "configs/gpu.pbtxt"):
        for sample in _config(repo / "yolov8_infer" / config).model_warmup:
            assert list(sample.inputs["pixels"].dims) == [3, 64, 64], config  # the ensembles' uint8 input


def test_setup_prepares_again_when_a_named_warmup_file_is_missing(model_repository, tmp_path):
    """A checkout from before warm-up has model.onnx but no warmup/ files: ``make setup`` must run prepare again."""
    script = (Path(__file__).resolve().parent.parent / "scripts" / "setup.sh").read_text()
    function = re.search(r"^missing_warmup\(\) \{.*?^\}$", script, re.S | re.M).group(0)
    shutil.copytree(model_repository, tmp_path / "model_repository", ignore=shutil.ignore_patterns("*.onnx"))

    def missing() -> bool:
        return subprocess.run(["bash", "-c", f"{function}\nmissing_warmup"], cwd=tmp_path).returncode == 0

    assert not missing()  # as prepare left it
    (tmp_path / "model_repository" / "yolov8_postprocess" / "warmup" / LETTERBOX_FILE).unlink()
    assert missing()


class RecordingSession:
    """An engine session or request that records the batch shapes it runs, then runs them for real."""

    def __init__(self, real, method: str):
        self.real, self.shapes = real, []
        setattr(self, method, self._record(getattr(real, method)))

    def _record(self, call):
        def run(*args):
            feeds = args[-1]
            self.shapes.extend(tuple(a.shape) for a in feeds.values())
            return call(*args)

        return run


@pytest.mark.parametrize(
    ("name", "paths", "method"),
    [("onnxruntime", ("session", "stream_session"), "run"), ("openvino", ("request", "stream_request"), "infer")],
)
@pytest.mark.parametrize("streams", [1, 2])
def test_a_cpu_runtime_warms_each_of_its_paths_at_load(model_repository, name, paths, method, streams, tmp_path):
    """model_warmup goes through one path, the one execute picks then; the runtime's own warm-up runs each once."""
    from python_backends.infer.select import create_runtime

    cache = {"openvino_cache_dir": tmp_path} if name == "openvino" else {}
    runtime = create_runtime(name, str(model_repository / "yolov8_infer" / "1" / "model.onnx"), cpu_streams=streams,
                             **cache)  # fmt: skip
    used = paths if streams > 1 else paths[:1]
    recorders = {path: RecordingSession(getattr(runtime, path), method) for path in used}
    for path, recorder in recorders.items():
        setattr(runtime, path, recorder)
    runtime.warm_up((3, 640, 640))
    assert {path: r.shapes for path, r in recorders.items()} == {path: [(1, 3, 640, 640)] for path in used}


@pytest.mark.gpu
@pytest.mark.skipif(NO_GPU is not None, reason=f"needs a CUDA GPU and CuPy: {NO_GPU}")
def test_the_infer_stage_can_create_its_cuda_context_before_the_first_gpu_input():
    """On an H100 the first GPU tensor into a CPU-engine infer stub cost 125-135 ms when it made the context."""
    code = (
        "import cupy\n"
        "from python_backends.triton_helpers.gpu_arrays import create_cuda_context\n"
        "def current():\n"
        "    try:\n"
        "        return cupy.cuda.driver.ctxGetCurrent()\n"
        "    except cupy.cuda.driver.CUDADriverError:  # CUDA_ERROR_NOT_INITIALIZED: no CUDA call yet\n"
        "        return 0\n"
        "assert current() == 0, 'a context before the call'\n"
        "create_cuda_context()\n"
        "assert current() != 0, 'no context after the call'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=PROJECT_ROOT)
