"""INT8 on CPU: ``prepare --int8`` quantizes the installed model with NNCF, calibrated on photos as served, and
the server runs it with OpenVINO; ``prepare`` alone goes back to FP32.

One quantization (20 flips and crops of the sample photos and an unreadable file) is served by a real
tritonserver for the module; the accuracy-controlled path quantizes on 2 photos.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from own_server import options, started
from sample_images import PHOTOS, SAMPLES
from test_warmup import RecordingSession

from benchmarks.calibration import write_calibration_photos
from client.api import YoloTritonClient
from evaluation.detection_match import agreement
from prepare.cli import main
from prepare.int8 import CalibrationError, head_decode_ops, read_calibration
from python_backends.infer.base import RuntimeUnavailable
from python_backends.infer.openvino_runtime import int8_model_path
from python_backends.infer.select import create_runtime
from python_backends.paths import PROJECT_ROOT
from serving.server import ServerStartError, TritonServer

CALIBRATION_IMAGES = 20  # 4 views of each sample photo: about 20 s of quantization on 2 cores
VAL_REFERENCE = PROJECT_ROOT / "tests" / "reference" / "ultralytics_val.json"
REFUSED = "runtime 'openvino' is unavailable: cannot compile"


def _prepare(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "prepare", "--cpu-runtime", "onnxruntime", *args]
    return subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600)


def _precisions(repository: Path) -> set[str]:
    """The cpu_precision of every yolov8_infer config (config.pbtxt and configs/*.pbtxt)."""
    configs = [repository / "yolov8_infer" / "config.pbtxt", *(repository / "yolov8_infer" / "configs").glob("*")]
    return {
        value
        for c in configs
        for value in re.findall(r'"cpu_precision", value: \{ string_value: "(\w+)"', c.read_text())
    }


@pytest.fixture(scope="module")
def calibration(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("calibration")
    write_calibration_photos(SAMPLES, folder, CALIBRATION_IMAGES)
    (folder / "broken.jpg").write_bytes(b"not an image")
    return folder


@pytest.fixture(scope="module")
def quantized(default_onnx, calibration, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """(repository, the prepare run) after ``prepare --int8`` into a repository of its own."""
    repository = tmp_path_factory.mktemp("int8") / "model_repository"
    run = _prepare("--onnx", str(default_onnx), "--repository", str(repository), "--int8", "--calibration",
                   str(calibration))  # fmt: skip
    assert run.returncode == 0, run.stderr
    return repository, run


@pytest.fixture(scope="module")
def served(quantized, tmp_path_factory):
    repository, _ = quantized
    log = tmp_path_factory.mktemp("int8_server") / "tritonserver.log"
    with started(options(repository), log) as server:
        yield server


def _detections(result) -> list[dict]:
    return [d.__dict__ | {"box": list(d.box)} for d in result.detections]


def test_prepare_writes_the_int8_model_and_serves_it(quantized):
    repository, run = quantized
    assert int8_model_path(repository / "yolov8_infer" / "1" / "model.onnx").exists()
    assert (repository / "yolov8_infer" / "1" / "model_int8.bin").exists()
    assert _precisions(repository) == {"int8"}
    assert f"INT8 model {repository / 'yolov8_infer' / '1' / 'model_int8.xml'} in " in run.stdout
    assert "INFO:nncf" not in run.stdout + run.stderr  # NNCF's progress lines stay out of prepare's output


def test_unreadable_calibration_files_are_skipped_and_counted(quantized, calibration):
    _, run = quantized
    expected = f"calibration: {CALIBRATION_IMAGES} images, 1 unreadable file(s) skipped ({calibration / 'broken.jpg'}: "
    assert expected in run.stdout


def test_fewer_photos_than_reliable_get_a_warning_with_the_count(quantized):
    _, run = quantized
    assert (
        f"warning: only {CALIBRATION_IMAGES} calibration images; 64 or more ordinary photos give reliable INT8 ranges"
        in run.stderr
    )


def test_served_int8_finds_the_fp32_detections(served, sample_images, reference):
    """Every photo and variant at conf 0.25: INT8 finds most of Ultralytics' FP32 detections (same class,
    IoU ≥ 0.5). 20 calibration images found 21 of 23 here; 40 found 22."""
    total = None
    with YoloTritonClient(served.grpc_url) as client:
        for name, want in reference["results"]["conf=0.25,iou=0.7"].items():
            found = agreement(_detections(client.detect(sample_images[name], conf=0.25, iou=0.7)), want["detections"])
            total = found if total is None else total + found
    assert total.expected == 23
    assert total.recall >= 0.85, total.summary()


def test_the_server_runs_the_int8_model(served, quantized, sample_images):
    """Served detections equal the INT8 model's run in this process (FP32 finds 4 on bus.jpg, INT8 5)."""
    from python_backends.infer.openvino_runtime import OpenVinoRuntime
    from python_backends.postprocess.postprocessor import Postprocessor
    from python_backends.preprocess.preprocessor import Preprocessor

    repository, _ = quantized
    model = str(int8_model_path(repository / "yolov8_infer" / "1" / "model.onnx"))
    tensor, mapping = Preprocessor().from_bytes(sample_images["bus.jpg"].read_bytes())
    local = Postprocessor(2).detect(OpenVinoRuntime(model).run(tensor[None])[0], mapping)
    with YoloTritonClient(served.grpc_url) as client:
        got = client.detect(sample_images["bus.jpg"], conf=0.25, iou=0.7).detections
    assert len(got) == len(local)
    np.testing.assert_allclose([d.score for d in got], local.scores, atol=1e-3)
    np.testing.assert_allclose([d.box for d in got], local.boxes, atol=0.5)


def test_the_head_decode_stays_in_float(quantized):
    """No op of the head's decode takes a FakeQuantize input in the saved IR; the convs before it do."""
    import openvino as ov

    repository, _ = quantized
    onnx = repository / "yolov8_infer" / "1" / "model.onnx"
    fed_by_quantizer = {
        op.get_friendly_name()
        for op in ov.Core().read_model(str(int8_model_path(onnx))).get_ops()
        if any(v.get_node().get_type_name() == "FakeQuantize" for v in op.input_values())
    }
    decode = set(head_decode_ops(ov.Core().read_model(str(onnx))))
    assert len(decode) == 12 and not decode & fed_by_quantizer
    assert "/model.22/cv2.0/cv2.0.0/conv/Conv/WithoutBiases" in fed_by_quantizer


@pytest.mark.parametrize("streams", [1, 2])
def test_the_int8_runtime_warms_each_of_its_paths(quantized, streams, tmp_path):
    """auto with cpu_precision int8 is OpenVINO on the INT8 model; its warm-up runs every path once."""
    repository, _ = quantized
    onnx = str(repository / "yolov8_infer" / "1" / "model.onnx")
    runtime = create_runtime("auto", onnx, cpu_streams=streams, cpu_precision="int8", openvino_cache_dir=tmp_path,
                             log=lambda line: None)  # fmt: skip
    precisions = {
        op.get_rt_info()["runtimePrecision"].astype(str) for op in runtime.compiled.get_runtime_model().get_ops()
    }
    assert runtime.name == "openvino" and {"i8", "u8"} & precisions
    paths = ("request", "stream_request") if streams > 1 else ("request",)
    recorders = {path: RecordingSession(getattr(runtime, path), "infer") for path in paths}
    for path, recorder in recorders.items():
        setattr(runtime, path, recorder)
    runtime.warm_up((3, 640, 640))
    assert {path: r.shapes for path, r in recorders.items()} == {path: [(1, 3, 640, 640)] for path in paths}


def test_int8_runs_on_openvino_only_and_needs_its_model(quantized, model_repository):
    repository, _ = quantized
    with pytest.raises(RuntimeUnavailable, match="cpu_precision 'int8' runs on OpenVINO"):
        create_runtime("onnxruntime", str(repository / "yolov8_infer" / "1" / "model.onnx"), cpu_precision="int8")
    fp32_only = str(model_repository / "yolov8_infer" / "1" / "model.onnx")
    with pytest.raises(RuntimeUnavailable, match="cpu_precision 'int8': no INT8 model at .*model_int8.xml; write it"):
        create_runtime("auto", fp32_only, cpu_precision="int8", log=lambda line: None)


def test_fp32_is_what_prepare_and_the_committed_configs_serve(model_repository):
    """auto never picks INT8 by itself: the committed configs and a plain prepare say fp32."""
    assert _precisions(PROJECT_ROOT / "model_repository") == {"fp32"}
    assert _precisions(model_repository) == {"fp32"}


def test_prepare_without_int8_goes_back_to_fp32(quantized, default_onnx, tmp_path, capsys):
    repository = tmp_path / "model_repository"
    shutil.copytree(quantized[0], repository)
    assert main(["--onnx", str(default_onnx), "--repository", str(repository), "--cpu-runtime", "onnxruntime"]) == 0
    assert not list((repository / "yolov8_infer" / "1").glob("model_int8.*"))
    assert _precisions(repository) == {"fp32"}


def test_an_int8_model_that_does_not_compile_fails_the_load_with_the_reason(quantized, tmp_path):
    """auto with cpu_precision int8 does not fall back to FP32: the load fails and the log says why."""
    repository = tmp_path / "model_repository"
    shutil.copytree(quantized[0] / "yolov8_infer", repository / "yolov8_infer")
    weights = repository / "yolov8_infer" / "1" / "model_int8.bin"
    weights.write_bytes(weights.read_bytes()[:1000])
    log = tmp_path / "tritonserver.log"
    with pytest.raises(ServerStartError, match="exited"):
        TritonServer(options(repository), log).start(timeout_s=90)
    text = log.read_text()
    assert f"{REFUSED} {repository / 'yolov8_infer' / '1' / 'model_int8.xml'}: " in text
    assert "using onnxruntime" not in text


def test_an_empty_calibration_folder_is_an_error_before_anything_changes(default_onnx, tmp_path, capsys):
    (tmp_path / "photos").mkdir()
    args = ["--onnx", str(default_onnx), "--repository", str(tmp_path / "repo"), "--int8", "--calibration"]
    assert main([*args, str(tmp_path / "photos")]) == 2
    assert capsys.readouterr().err == (
        f"error: calibration folder {tmp_path / 'photos'} holds no files: give it ordinary photos\n"
    )
    (tmp_path / "photos" / "notes.txt").write_text("no photo")
    assert main([*args, str(tmp_path / "photos")]) == 2
    assert "holds 1 file(s), none a readable image" in capsys.readouterr().err
    assert not (tmp_path / "repo").exists()


def test_accuracy_control_prints_fp32_and_int8_map(default_onnx, tmp_path):
    """--data scores the model as served: FP32 equals Ultralytics' mAP50-95 on val_set (tests/test_val.py)."""
    from val_set import build_val_set

    photos = tmp_path / "photos"
    photos.mkdir()
    for name in PHOTOS[:2]:
        shutil.copy(SAMPLES / name, photos / name)
    data = build_val_set(tmp_path / "val_set")
    run = _prepare("--onnx", str(default_onnx), "--repository", str(tmp_path / "repo"), "--int8", "--calibration",
                   str(photos), "--data", str(data), "--max-drop", "1.0")  # fmt: skip
    assert run.returncode == 0, run.stderr
    line = next(line for line in run.stdout.splitlines() if "mAP50-95 on 10 images: FP32 " in line)
    fp32, int8 = (float(v) for v in re.search(r"FP32 ([\d.]+), INT8 ([\d.]+) ", line).groups())
    assert fp32 == pytest.approx(json.loads(VAL_REFERENCE.read_text())["map50_95"], abs=0.002)
    assert 0 < int8 <= 1 and line.endswith(", at most 1.0)")


def test_calibration_reads_photos_as_served_and_counts_unreadable_files(tmp_path):
    from python_backends.preprocess.preprocessor import Preprocessor

    for name in PHOTOS[:2]:
        (tmp_path / name).write_bytes((SAMPLES / name).read_bytes())
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "truncated.jpg").write_bytes((SAMPLES / "bus.jpg").read_bytes()[:200])
    found = read_calibration(tmp_path, 640, 640)
    assert len(found.tensors) == 2 and len(found.skipped) == 2
    np.testing.assert_array_equal(found.tensors[0], Preprocessor().from_bytes((SAMPLES / PHOTOS[0]).read_bytes())[0])


def test_a_missing_folder_is_an_error(tmp_path):
    with pytest.raises(CalibrationError, match="does not exist"):
        read_calibration(tmp_path / "missing", 640, 640)
