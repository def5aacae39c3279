"""INT8 of every head ``prepare`` serves: NMS inside the graph (fall_nms), a raw grid of another class count
(YOLO11n), and accuracy control returning ops to float (a small detector on its own detections); ``prepare --int8``
changes the repository only when the whole run succeeds.

The models are tests/models' (see tests/test_model_families.py); the FP32 detections are Ultralytics' predict on
the same ONNX (tests/reference/model_families.json).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from models.materialize import write_model
from own_server import options, started
from sample_images import SAMPLES

from benchmarks.calibration import write_calibration_photos
from client.api import YoloTritonClient
from evaluation.detection_match import agreement
from prepare.cli import main
from python_backends.infer.openvino_runtime import int8_model_path
from python_backends.paths import PROJECT_ROOT

CALIBRATION_IMAGES = 20  # 4 views of each sample photo, as test_int8
REFERENCE = json.loads((PROJECT_ROOT / "tests" / "reference" / "model_families.json").read_text())["models"]


def _prepare(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "prepare", "--cpu-runtime", "onnxruntime", *args]
    return subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def calibration(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("calibration")
    write_calibration_photos(SAMPLES, folder, CALIBRATION_IMAGES)
    return folder


@pytest.fixture(scope="module")
def model(tmp_path_factory, default_onnx):
    """name → tests/models' ONNX ``name``, written once per module."""
    folder = tmp_path_factory.mktemp("models")
    return lambda name: write_model(name, folder, {"default": default_onnx})


@pytest.fixture(scope="module")
def quantized(model, calibration, tmp_path_factory):
    """name → a repository after ``prepare --int8`` of tests/models' ``name``."""

    def repository(name: str) -> Path:
        path = tmp_path_factory.mktemp(f"{name}_int8") / "repository"
        run = _prepare("--onnx", str(model(name)), "--repository", str(path), "--int8", "--calibration",
                       str(calibration))  # fmt: skip
        assert run.returncode == 0, run.stderr
        return path

    return repository


def _ops_fed_by_quantizers(xml: Path) -> set[str]:
    import openvino as ov

    return {
        op.get_friendly_name()
        for op in ov.Core().read_model(str(xml)).get_ops()
        if any(v.get_node().get_type_name() == "FakeQuantize" for v in op.input_values())
    }


@pytest.mark.parametrize("name", ["fall_nms"])
def test_served_int8_finds_the_fp32_detections(name, quantized, tmp_path):
    """A real server on the INT8 model finds most of Ultralytics' FP32 detections on the sample photos (same
    class, IoU ≥ 0.5) through the model's own head (fall_nms: NMS inside). YOLO11n's seeded random weights do not
    survive INT8: its class scores fall from 0.78 to 0.03 on bus.jpg, so it is not compared here."""
    repository = quantized(name)
    assert int8_model_path(repository / "yolov8_infer" / "1" / "model.onnx").exists()
    total = None
    with started(options(repository), tmp_path / "tritonserver.log") as server, YoloTritonClient(server.grpc_url) as c:
        for photo, want in REFERENCE[name]["results"].items():
            found = agreement([d.__dict__ | {"box": list(d.box)} for d in c.detect(SAMPLES / photo).detections],
                              want["detections"])  # fmt: skip
            total = found if total is None else total + found
    assert total.expected == sum(len(r["detections"]) for r in REFERENCE[name]["results"].values())
    assert total.recall >= 0.85, total.summary()


def test_the_arithmetic_that_feeds_nms_inside_stays_in_float(quantized):
    """fall_nms: the box conversion and the class offset before NonMaxSuppression take no quantized input."""
    import openvino as ov

    from prepare.int8 import after_head_ops

    onnx_path = quantized("fall_nms") / "yolov8_infer" / "1" / "model.onnx"
    after_head = set(after_head_ops(ov.Core().read_model(str(onnx_path))))
    assert after_head == {"/Div", "/Mul", "/Mul_2", "/Add"}  # xywh → xyxy; class id x max_wh, added to the boxes
    fed = _ops_fed_by_quantizers(int8_model_path(onnx_path))
    assert not after_head & fed
    assert "/model/model.22/cv2.0/cv2.0.0/conv/Conv/WithoutBiases" in fed


def self_labelled_set(model: Path, out: Path) -> Path:
    """The test set's images labelled with ``model``'s own FP32 detections (ONNX Runtime, preprocessed and decoded
    as served, conf 0.25): FP32 scores well on it, and INT8's error shows as a drop. Returns its data.yaml."""
    import onnxruntime as ort
    from val_set import build_val_set

    from python_backends.postprocess.postprocessor import Postprocessor
    from python_backends.preprocess.preprocessor import Preprocessor

    data = build_val_set(out)
    session = ort.InferenceSession(str(model))
    _, _, height, width = session.get_inputs()[0].shape
    preprocessor, postprocessor = Preprocessor(height, width), Postprocessor(2)
    for image in sorted((out / "images").iterdir()):
        pixels, mapping = preprocessor.from_bytes(image.read_bytes())
        export_input = np.divide(pixels[None], np.float32(255), dtype=np.float32)  # the export takes float in [0, 1]
        found = postprocessor.detect(session.run(None, {"images": export_input})[0][0], mapping)
        size = np.array([mapping[3], mapping[4]] * 2, np.float32)
        boxes = found.boxes / size  # x1, y1, x2, y2 normalised
        rows = [
            f"{c} {(x1 + x2) / 2:.6f} {(y1 + y2) / 2:.6f} {x2 - x1:.6f} {y2 - y1:.6f}"
            for (x1, y1, x2, y2), c in zip(boxes, found.class_ids)
        ]
        (out / "labels" / f"{image.stem}.txt").write_text("\n".join(rows) + "\n")
    return data


def test_accuracy_control_returns_ops_to_float_until_the_drop_is_within_max_drop(tmp_path):
    """A small detector on its own FP32 detections: INT8 loses 0.035 mAP50-95 there, more than --max-drop 0.025,
    so accuracy control returns ops to float, and the saved model (INT8 still) measures a drop within 0.025."""
    import onnx
    from tiny_models import tiny_detector

    model = tmp_path / "detector.onnx"
    onnx.save(tiny_detector(), model)
    data = self_labelled_set(model, tmp_path / "set")
    photos = tmp_path / "photos"
    photos.mkdir()
    for image in sorted((tmp_path / "set" / "images").iterdir())[:6]:
        (photos / image.name).write_bytes(image.read_bytes())
    repository = tmp_path / "repository"
    run = _prepare("--onnx", str(model), "--repository", str(repository), "--int8", "--calibration", str(photos),
                   "--data", str(data), "--max-drop", "0.025")  # fmt: skip
    assert run.returncode == 0, run.stderr
    fp32, int8, drop = (
        float(v) for v in re.search(r"FP32 ([\d.]+), INT8 ([\d.]+) \(drop (-?[\d.]+),", run.stdout).groups()
    )
    assert fp32 > 0.5 and 0 < drop <= 0.025 and fp32 - int8 == pytest.approx(drop, abs=1e-4)
    reverted = re.findall(r"Reverted (\d+) operations to the floating-point precision", run.stdout + run.stderr)
    assert reverted and int(reverted[0]) >= 1, run.stdout[-3000:]
    saved = int8_model_path(repository / "yolov8_infer" / "1" / "model.onnx").read_text()
    assert "FakeQuantize" in saved  # what was not returned to float is still INT8


def test_a_dataset_of_classes_the_model_lacks_is_refused_before_anything_changes(model, tmp_path, capsys):
    """YOLO11n has 3 classes: labels of class 3 are refused (exit 2) before the repository exists."""
    images, labels = tmp_path / "data" / "images", tmp_path / "data" / "labels"
    images.mkdir(parents=True)
    labels.mkdir()
    (images / "bus.jpg").write_bytes((SAMPLES / "bus.jpg").read_bytes())
    (labels / "bus.txt").write_text("3 0.5 0.5 0.2 0.2\n")
    (tmp_path / "data" / "data.yaml").write_text("path: .\nval: images\nnames: [a, b, c, d]\n")
    repository = tmp_path / "repository"
    args = ["--onnx", str(model("yolo11n")), "--repository", str(repository), "--int8", "--calibration",
            str(images), "--data", str(tmp_path / "data" / "data.yaml")]  # fmt: skip
    assert main(args) == 2
    assert capsys.readouterr().err == (
        "error: --data: the labels use class id 3, the model has 3 classes (0..2): give a dataset of the model's "
        "classes\n"
    )
    assert not repository.exists()


def test_a_failed_run_leaves_the_earlier_int8_model(model, calibration, tmp_path, capsys):
    """A run that fails after prepare would have installed the model (--data with no readable image) leaves
    the earlier INT8 model served, and no staging folder beside the repository."""
    repository = tmp_path / "repository"
    args = ["--onnx", str(model("yolo11n")), "--repository", str(repository), "--cpu-runtime", "onnxruntime",
            "--int8", "--calibration", str(calibration)]  # fmt: skip
    assert main(args) == 0
    xml = int8_model_path(repository / "yolov8_infer" / "1" / "model.onnx")
    before = {path: path.read_bytes() for path in repository.rglob("*") if path.is_file()}
    for folder in ("images", "labels"):
        (tmp_path / "data" / folder).mkdir(parents=True)
    (tmp_path / "data" / "images" / "broken.jpg").write_bytes(b"not an image")
    (tmp_path / "data" / "labels" / "broken.txt").write_text("0 0.5 0.5 0.2 0.2\n")  # the dataset reads
    (tmp_path / "data" / "data.yaml").write_text("path: .\nval: images\nnames: [red, green, blue]\n")
    capsys.readouterr()
    assert main([*args, "--data", str(tmp_path / "data" / "data.yaml")]) == 2
    assert capsys.readouterr().err.endswith("error: --data: no readable image to measure mAP on\n")
    assert xml in before
    assert {path: path.read_bytes() for path in repository.rglob("*") if path.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "repository"]
