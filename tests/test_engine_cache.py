"""The TensorRT engine's options, key and shared cache, on any machine: real configs, files, locks and processes.

TensorRT itself is absent here, so a builder function stands in for it where a build must succeed; the
trtexec that times out is a real process. What only TensorRT can tell is marked gpu.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import onnx
import pytest
from google.protobuf import json_format, text_format
from onnx import TensorProto, helper
from test_end2end_prepare import nms_yolo, prepared
from tritonclient.grpc import model_config_pb2

from prepare.engine import infer_config, served_settings
from prepare.pbtxt import triton_config
from prepare.repository import config_files
from python_backends.infer.tensorrt_build import TRTEXEC_TIMEOUT_ENV, _enable_fp16, build_engine, trtexec_command
from python_backends.infer.tensorrt_engine import (
    EngineBuildError,
    EngineKey,
    EngineOptions,
    cached_engine,
    engine_options_from_config,
    failure_marker,
    file_sha256,
)
from python_backends.infer.tensorrt_runtime import run_batch
from python_backends.paths import PROJECT_ROOT
from python_backends.triton_helpers.gpu_arrays import gpu_unavailable_reason

KEY = EngineKey("10.13.0.35", "NVIDIA L4", "8.9", "ab" * 32, EngineOptions(fp16=False))


def triton_json(path: Path) -> dict:
    """The config as Triton hands it to model.py: the text parsed with ModelConfig's schema, printed as JSON."""
    message = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


# --- one config, one engine: the setup service and the server ----------------------------------------


@pytest.mark.parametrize("model", ["yolo11n", "nms_batch_4"])
def test_setup_and_the_server_compute_the_same_engine_from_one_repository(model, family_repository, tmp_path):
    """compose's setup (python -m prepare.engine, reading gpu.pbtxt's text) and model.py (Triton's JSON of the
    same file) ask for one engine: the same options, ONNX and so key; neither is the 640/1,8,32/FP16 default."""
    if model == "yolo11n":
        repository = family_repository("yolo11n")  # 320x416
    else:
        repository, _ = prepared(tmp_path, nms_yolo(batch=4, dynamic=True))
    server = engine_options_from_config(triton_json(repository / "yolov8_infer" / "configs" / "gpu.pbtxt"))
    settings = served_settings(repository, infer_config(repository, "gpu"))
    onnx_path, setup = settings.model_file, settings.engine_options
    assert setup == server
    assert onnx_path == repository / "yolov8_infer" / "1" / "model.onnx"
    want = {
        "yolo11n": EngineOptions(320, 416, 1, 8, 32, fp16=True),
        "nms_batch_4": EngineOptions(64, 64, 1, 4, 4, fp16=False),
    }[model]
    assert server == want
    keys = [EngineKey("10.13.0.35", "NVIDIA L4", "8.9", file_sha256(onnx_path), o) for o in (setup, server)]
    assert keys[0].filename() == keys[1].filename()


def test_the_config_reader_sees_what_tritons_parser_sees_in_every_committed_config():
    for stage in ("yolov8", "yolov8_raw", "yolov8_preprocess", "yolov8_infer", "yolov8_postprocess"):
        for path in config_files(PROJECT_ROOT / "model_repository" / stage):
            ours, triton = triton_config(path.read_text()), triton_json(path)
            assert ours["name"] == triton["name"] and ours["max_batch_size"] == int(triton.get("max_batch_size", 0))
            for side in ("input", "output"):
                want = [(t["name"], t["data_type"], [int(d) for d in t.get("dims", [])]) for t in triton.get(side, [])]
                assert [(t["name"], t["data_type"], t["dims"]) for t in ours[side]] == want, (path, side)
            want = {k: v.get("string_value", "") for k, v in triton.get("parameters", {}).items()}
            assert {k: v["string_value"] for k, v in ours["parameters"].items()} == want, path


def test_setup_asks_for_the_config_the_server_loads():
    """The setup script's config name is the triton service's --model-config-name, and it builds with prepare.engine."""
    import yaml

    script = (PROJECT_ROOT / "scripts" / "gpu_container_setup.sh").read_text()
    command = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())["services"]["triton"]["command"]
    (flag,) = [c for c in command if c.startswith("--model-config-name=")]
    assert f"CONFIG_NAME=${{CONFIG_NAME:-{flag.split('=', 1)[1]}}}" in script
    assert 'python3 -m prepare.engine --repository "$REPOSITORY" --config-name "$CONFIG_NAME"' in script
    assert "INPUT_HEIGHT" not in script and "TRT_BATCH_PROFILE" not in script


def test_prepare_engine_imports_nothing_heavy():
    """The serving image runs it: no onnx, numpy, OpenCV or runtimes at import."""
    code = "import sys, prepare.engine; print(sorted({m.split('.')[0] for m in sys.modules}))"
    reply = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=60)
    loaded = set(eval(reply.stdout))
    assert not loaded & {"onnx", "numpy", "cv2", "onnxruntime", "openvino", "tensorrt", "cupy", "evaluation"}


# --- NMS inside the graph is built FP32 ---------------------------------------------------------------


def test_a_head_with_nms_inside_is_written_fp32_and_any_other_fp16(family_repository, tmp_path):
    repositories = {
        "fall_nms": (family_repository("fall_nms"), "fp32"),
        "nms_yolo": (prepared(tmp_path, nms_yolo())[0], "fp32"),
        "yolo11n": (family_repository("yolo11n"), "fp16"),
    }
    for name, (repository, precision) in repositories.items():
        for path in config_files(repository / "yolov8_infer"):
            assert triton_config(path.read_text())["parameters"]["precision"]["string_value"] == precision, (name, path)


# --- the GPU in the key is the one CUDA uses ----------------------------------------------------------


@pytest.mark.skipif(gpu_unavailable_reason() is None, reason="this machine has a CUDA GPU and CuPy")
def test_the_key_does_not_take_the_gpu_from_nvidia_smi(tmp_path):
    """nvidia-smi lists GPUs in PCI order, whatever CUDA_VISIBLE_DEVICES says: the key asks CUDA."""
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 8.9\n")
    smi.chmod(0o755)
    code = "from python_backends.infer.tensorrt_engine import gpu_identity; print(gpu_identity())"
    env = {**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"}
    reply = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=PROJECT_ROOT, env=env, timeout=60
    )
    assert reply.returncode != 0 and "EngineBuildError: no CUDA GPU is usable" in reply.stderr


# --- builds shared between processes ------------------------------------------------------------------

BUILDER_PROCESS = """
import os, sys, time
from pathlib import Path
from python_backends.infer.tensorrt_engine import EngineKey, EngineOptions, cached_engine

engine_dir, builds, go = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])

def build(onnx_path, key, out, log):
    with open(builds, "a") as f:
        f.write(f"{os.getpid()} {out.name}\\n")
    time.sleep(1.5)
    out.write_bytes(b"engine of %d" % os.getpid())

print("ready", flush=True)
while not go.exists():
    time.sleep(0.01)
key = EngineKey("10.13.0.35", "NVIDIA L4", "8.9", "ab" * 32, EngineOptions(fp16=False))
path = cached_engine(Path("model.onnx"), key, engine_dir, log=lambda m: print(m, file=sys.stderr), build=build)
print(path, flush=True)
"""


def test_two_processes_building_at_once_leave_one_engine_built_once(tmp_path):
    engine_dir, builds, go = tmp_path / "engines", tmp_path / "builds.txt", tmp_path / "go"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", BUILDER_PROCESS, str(engine_dir), str(builds), str(go)],
            cwd=PROJECT_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for process in processes:
        assert process.stdout.readline().strip() == "ready"
    go.touch()  # both call cached_engine now
    outcomes = [process.communicate(timeout=60) for process in processes]
    assert [p.returncode for p in processes] == [0, 0], outcomes
    paths = {out.strip() for out, _ in outcomes}
    (path,) = paths
    (built,) = builds.read_text().splitlines()  # one build, into a name of its own process
    builder_pid, temp_name = built.split()
    assert temp_name.startswith(f"{KEY.filename()}.{builder_pid}-") and temp_name.endswith(".partial")
    assert Path(path).read_bytes() == b"engine of " + builder_pid.encode()
    assert any("another process is building this engine" in err for _, err in outcomes)
    assert sorted(p.name for p in engine_dir.iterdir()) == sorted(
        [KEY.filename(), f"{KEY.filename()}.json", f"{KEY.filename()}.lock"]
    )


def test_an_engine_that_does_not_deserialize_is_built_again_once(tmp_path):
    builds = []

    def build(onnx_path, key, out, log):
        builds.append(out.name)
        out.write_bytes(b"good engine %d" % len(builds))

    path = tmp_path / KEY.filename()
    path.write_bytes(b"garbage")
    stale = path.stat()
    (tmp_path / f"{KEY.filename()}.4242-deadbeef.partial").write_bytes(b"left by a killed builder")
    assert cached_engine(Path("model.onnx"), KEY, tmp_path, log=print, build=build) == path  # as cached
    assert builds == []
    assert cached_engine(Path("model.onnx"), KEY, tmp_path, log=print, build=build, discard=stale) == path
    assert path.read_bytes() == b"good engine 1" and len(builds) == 1
    assert not list(tmp_path.glob("*.partial"))
    # another replica that read the same garbage finds it already replaced: it keeps the new engine
    assert cached_engine(Path("model.onnx"), KEY, tmp_path, log=print, build=build, discard=stale) == path
    assert len(builds) == 1


def test_a_failed_build_is_remembered_until_the_key_changes_and_leaves_no_partial_file(tmp_path):
    calls = []

    def failing(onnx_path, key, out, log):
        calls.append(key)
        out.write_bytes(b"half an engine")
        raise EngineBuildError("TensorRT returned no engine")

    with pytest.raises(EngineBuildError, match="TensorRT returned no engine.*delete it to build again"):
        cached_engine(Path("model.onnx"), KEY, tmp_path, log=print, build=failing)
    marker = failure_marker(tmp_path / KEY.filename())
    assert "TensorRT returned no engine" in marker.read_text()
    assert not list(tmp_path.glob("*.partial")) and not (tmp_path / KEY.filename()).exists()
    with pytest.raises(EngineBuildError, match=f"last build of {KEY.filename()} failed .*delete {marker}"):
        cached_engine(Path("model.onnx"), KEY, tmp_path, log=print, build=failing)
    assert len(calls) == 1  # the second load did not spend minutes on the same failure
    other = EngineKey("10.13.0.35", "NVIDIA L4", "8.9", "cd" * 32, KEY.options)  # a new ONNX
    with pytest.raises(EngineBuildError):
        cached_engine(Path("model.onnx"), other, tmp_path, log=print, build=failing)
    assert len(calls) == 2
    marker.unlink()  # how to retry
    with pytest.raises(EngineBuildError, match="TensorRT returned no engine"):
        cached_engine(Path("model.onnx"), KEY, tmp_path, log=print, build=failing)
    assert len(calls) == 3


def test_a_trtexec_that_hangs_is_stopped_the_failure_recorded_and_its_partial_file_removed(
    tmp_path, default_onnx, monkeypatch
):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    trtexec = bin_dir / "trtexec"
    trtexec.write_text(
        '#!/bin/sh\nfor a in "$@"; do case "$a" in --saveEngine=*) echo partial > "${a#--saveEngine=}";; esac; done\n'
        "exec sleep 60\n"
    )
    trtexec.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv(TRTEXEC_TIMEOUT_ENV, "2")
    engines = tmp_path / "engines"
    started = time.monotonic()
    with pytest.raises(EngineBuildError, match="trtexec ran past 2 s"):
        cached_engine(default_onnx, KEY, engines, log=print, build=build_engine)
    assert time.monotonic() - started < 30
    assert "ran past 2 s" in failure_marker(engines / KEY.filename()).read_text()
    assert not list(engines.glob("*.partial"))


def test_modelopt_failing_is_a_build_error(tmp_path, monkeypatch, default_onnx):
    """TensorRT 11 builds FP16 from ModelOpt's FP16 ONNX: whatever ModelOpt raises fails the build with the reason."""
    package = tmp_path / "modelopt" / "onnx" / "autocast"
    package.mkdir(parents=True)
    for folder in (package.parent.parent, package.parent):
        (folder / "__init__.py").write_text("")
    (package / "__init__.py").write_text(
        "def convert_to_mixed_precision(**kwargs):\n    raise KeyError('Cast node without a type')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))

    class TensorRT11:  # TensorRT 11 has no FP16 builder flag
        __version__ = "11.4.0.106"

        class BuilderFlag:
            pass

    with pytest.raises(EngineBuildError, match="ModelOpt AutoCast cannot convert .*Cast node without a type"):
        _enable_fp16(TensorRT11, None, default_onnx, default_onnx.read_bytes())


# --- shapes: dynamic H and W, batches below the profile's min -------------------------------------------


def test_the_build_profile_gives_the_served_height_and_width_of_a_dynamic_export(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Identity", ["images"], ["output0"])],
        "dynamic",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
    )
    path = tmp_path / "dynamic.onnx"
    onnx.save(helper.make_model(graph), path)
    command = trtexec_command("trtexec", path, EngineOptions(480, 640, 1, 8, 32, fp16=False), tmp_path / "e")
    assert command[3:] == [
        "--minShapes=images:1x3x480x640",
        "--optShapes=images:8x3x480x640",
        "--maxShapes=images:32x3x480x640",
    ]


def test_a_batch_below_the_profiles_min_is_padded_to_it():
    assert run_batch(1, 4) == 4
    assert run_batch(4, 4) == 4
    assert run_batch(7, 4) == 7
