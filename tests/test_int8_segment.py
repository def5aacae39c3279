"""``prepare --int8`` on a segment model: its mAP check passes the prototypes to the postprocessing, and the INT8
model keeps its masks.

The model is tests/models' fall_seg (YOLOv8s segment, labels Normal and Fall: the default fall detector's boxes,
seeded mask coefficient and prototype branches), input 480x640. The set is tests/data/seg_set (the five photos,
9 polygon labels); its box mAP50-95 reference is pycocotools' scoring of Ultralytics' predict on the same ONNX
(tests/reference/ultralytics_seg_val.json, as tests/test_val_seg.py).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import onnx
import pytest
from models.materialize import write_model
from sample_images import SAMPLES
from val_set import build_seg_set

from benchmarks.calibration import write_calibration_photos
from evaluation.dataset import load_dataset
from prepare.cli import main
from prepare.int8_accuracy import served_map, served_postprocessor, validation_images
from prepare.onnx_model import read_model_info
from python_backends.paths import PROJECT_ROOT

REFERENCE = json.loads((PROJECT_ROOT / "tests" / "reference" / "ultralytics_seg_val.json").read_text())["box"]
TOLERANCE = 0.002


@pytest.fixture(scope="module")
def fall_seg(tmp_path_factory, default_onnx) -> Path:
    return write_model("fall_seg", tmp_path_factory.mktemp("fall_seg"), {"default": default_onnx})


def test_the_fp32_box_map_of_the_accuracy_check_equals_ultralytics(fall_seg, family_repository, tmp_path):
    """The check's FP32 score (OpenVINO, each detection's mask from the prototypes, an empty one dropped) is the
    box mAP50-95 that Ultralytics' predict scores."""
    dataset = load_dataset(build_seg_set(tmp_path / "seg_set"))
    images, skipped = validation_images(dataset, 480, 640)
    assert len(images) == 5 and not skipped
    postprocessor = served_postprocessor(read_model_info(onnx.load(str(fall_seg))))
    installed = family_repository("fall_seg") / "yolov8_infer" / "1" / "model.onnx"
    assert served_map(installed, images, dataset, postprocessor) == pytest.approx(REFERENCE["map50_95"], abs=TOLERANCE)


def test_int8_with_data_keeps_the_masks(fall_seg, tmp_path, capsys):
    """``prepare --int8 --data``: FP32 scores Ultralytics' box mAP and INT8 stays near it. With the mask branches'
    activations quantized, the INT8 prototypes were all zero: every detection lost its mask and was dropped
    (INT8 mAP 0)."""
    calibration = tmp_path / "calibration"
    write_calibration_photos(SAMPLES, calibration, 10)
    data = build_seg_set(tmp_path / "seg_set")
    args = ["--onnx", str(fall_seg), "--repository", str(tmp_path / "repository"), "--cpu-runtime", "onnxruntime",
            "--int8", "--calibration", str(calibration), "--data", str(data), "--max-drop", "0.5"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    fp32, int8 = (float(v) for v in re.search(r"FP32 ([\d.]+), INT8 ([\d.]+) \(drop", out).groups())
    assert fp32 == pytest.approx(REFERENCE["map50_95"], abs=TOLERANCE)
    assert int8 >= fp32 - 0.1, out
