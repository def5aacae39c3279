"""Through a real tritonserver: explicit GPU choices without a GPU fail the model's load and say why."""

from __future__ import annotations

import shutil

import pytest
from own_server import options, started

from prepare.repository import set_parameter
from python_backends.infer.select import tensorrt_unavailable_reason
from serving.server import ServerStartError, TritonServer

pytestmark = pytest.mark.skipif(
    tensorrt_unavailable_reason() is None, reason="this machine has a GPU with TensorRT: the model would load"
)
EXPECTED = "runtime 'tensorrt' is unavailable"


def _single_stage_repository(model_repository, tmp_path, stage, key, value):
    """A repository with only ``stage``, its parameter ``key`` set to ``value``."""
    repo = tmp_path / "repo"
    shutil.copytree(model_repository / stage, repo / stage)
    config = repo / stage / "config.pbtxt"
    config.write_text(set_parameter(config.read_text(), key, value))
    return repo


@pytest.fixture
def tensorrt_repository(model_repository, tmp_path):
    """Only yolov8_infer, its config asking for TensorRT."""
    return _single_stage_repository(model_repository, tmp_path, "yolov8_infer", "runtime", "tensorrt")


@pytest.mark.parametrize(
    ("stage", "key", "value", "expected"),
    [
        ("yolov8_infer", "runtime", "tensorrt", EXPECTED),
        ("yolov8_preprocess", "device", "gpu", "device 'gpu' is unavailable"),
    ],
)
def test_server_refuses_to_start_and_logs_why(model_repository, tmp_path, stage, key, value, expected):
    repo = _single_stage_repository(model_repository, tmp_path, stage, key, value)
    log = tmp_path / "tritonserver.log"
    server = TritonServer(options(repo), log)
    with pytest.raises(ServerStartError, match="exited"):
        server.start(timeout_s=90)
    text = log.read_text()
    assert stage in text and expected in text


def test_model_is_unavailable_with_the_reason(tensorrt_repository, tmp_path):
    import tritonclient.grpc as grpcclient

    extra = ["--exit-on-error=false", "--strict-readiness=false"]
    with started(options(tensorrt_repository, extra_args=extra), tmp_path / "tritonserver.log") as server:
        client = grpcclient.InferenceServerClient(server.grpc_url)
        try:
            assert not client.is_model_ready("yolov8_infer")
            (entry,) = client.get_model_repository_index().models
            assert entry.name == "yolov8_infer" and entry.state == "UNAVAILABLE"
            assert EXPECTED in entry.reason
        finally:
            client.close()
