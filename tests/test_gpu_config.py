"""yolov8_infer's GPU config variant (configs/gpu.pbtxt): the CPU config's twin, loaded by a real tritonserver."""

from __future__ import annotations

import re
from pathlib import Path

import tritonclient.grpc as grpcclient
from own_server import image_input, options, started

from python_backends.paths import PROJECT_ROOT
from serving.triton import server_command

INFER = PROJECT_ROOT / "model_repository" / "yolov8_infer"
SCHEDULING = ("preferred_batch_size", "instance_group", '{ name: "batch_')  # warm-up samples: the batch sizes run


def settings(path: Path) -> list[str]:
    """The config's lines without comments and blank lines, and without the scheduling that may differ."""
    lines = [line.split("#")[0].rstrip() for line in path.read_text().splitlines()]
    return [line for line in lines if line.strip() and not line.strip().startswith(SCHEDULING)]


def test_gpu_variant_differs_only_in_scheduling():
    assert settings(INFER / "configs" / "gpu.pbtxt") == settings(INFER / "config.pbtxt")
    gpu = (INFER / "configs" / "gpu.pbtxt").read_text()
    assert "preferred_batch_size" not in gpu and re.search(r"instance_group \[ \{ count: 1,", gpu)


def test_model_config_name_gpu_loads_one_batching_instance(triton, yolo11n_repository, sample_images, tmp_path):
    """What the server runner does where TensorRT runs, and docker-compose.yml always: on this CPU-only tritonserver.

    The variant warms up at batch 32, so it serves tests/models' YOLO11n (3 classes, 320x416) here, prepared as any
    export is: the default model's 32 warm-up images take 10 s on 2 CPU cores, YOLO11n's half a second.
    """
    client = grpcclient.InferenceServerClient(triton.grpc_url)
    default = client.get_model_config("yolov8_infer", as_json=True)["config"]  # the session's server: config.pbtxt
    client.close()
    assert default["instance_group"][0]["count"] == 2
    assert default["dynamic_batching"]["preferred_batch_size"] == [1]
    with started(options(yolo11n_repository, model_config_name="gpu"), tmp_path / "tritonserver.log") as server:
        assert "--model-config-name=gpu" in server_command(server.options, Path())
        client = grpcclient.InferenceServerClient(server.grpc_url)
        config = client.get_model_config("yolov8_infer", as_json=True)["config"]
        assert config["instance_group"][0]["count"] == 1
        batching = config["dynamic_batching"]  # Triton fills in max_batch_size: whatever is queued goes together
        assert batching.get("preferred_batch_size", [config["max_batch_size"]]) == [config["max_batch_size"]] == [32]
        assert [int(d) for d in config["input"][0]["dims"]] == [3, 320, 416]  # the prepared model's own config
        preprocess = client.get_model_config("yolov8_preprocess", as_json=True)["config"]
        assert preprocess["name"] == "yolov8_preprocess"  # the stages without a variant keep config.pbtxt
        reply = client.infer("yolov8", [image_input(sample_images["bus.jpg"].read_bytes())])
        assert reply.as_numpy("num_dets")[0, 0] >= 1
        client.close()
