"""INT8 in ``make bench``: the installed model quantized as ``prepare --int8`` does, and how it agrees with FP32.

The bench quantizes into a copy of the repository (the user's own stays as it is), calibrated on
``CALIBRATION_IMAGES`` flips and crops of the sample photos (``benchmarks.calibration``). Agreement: on each
sample photo, preprocessed and postprocessed as served (any detecting task: pose, OBB and segment too), how many
of ONNX Runtime's FP32 detections the INT8 model finds (same class, IoU ≥ 0.5), and the same on each photo
mirrored. A classifier is left out (``int8_left_out``).
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np

from benchmarks.calibration import SAMPLE_PHOTOS, write_calibration_photos
from benchmarks.stages import Stages, stage_configs
from evaluation.detection_match import Agreement, agreement
from prepare.int8 import quantize, read_calibration, save_int8
from prepare.repository import copy_with_parameters
from python_backends.infer.onnxruntime_runtime import OnnxRuntimeSession
from python_backends.infer.openvino_runtime import int8_model_path
from python_backends.postprocess.select import config_task

INT8_ROW = "openvino-int8"  # the runtime table's row, and the INT8 rounds' served runtime
INT8_PARAMETERS = {"runtime": "openvino", "cpu_precision": "int8"}
CALIBRATION_IMAGES = 40  # 8 views of each of the 5 sample photos: 22 of 23 detections found here, 20 found 21
TARGETS = {
    "overhead_ratio": ("<=", 0.50),
    "throughput_ratio": (">=", 2.0),
    "own_overhead_ratio": ("<=", 1.20),
    "recall": (">=", 0.95),
}


def int8_repository(repository: Path, samples: Path, out: Path) -> tuple[Path, float]:
    """(a copy of ``repository`` serving an INT8 model quantized here, seconds the quantization took)."""
    repo = copy_with_parameters(repository, out / "repository_int8_model", "yolov8_infer", **INT8_PARAMETERS)
    onnx_path = repo / "yolov8_infer" / "1" / "model.onnx"
    for linked in (int8_model_path(onnx_path), int8_model_path(onnx_path).with_suffix(".bin")):
        linked.unlink(missing_ok=True)  # the user's own INT8 model, linked: never written through
    write_calibration_photos(samples, out / "calibration", CALIBRATION_IMAGES)
    size = OnnxRuntimeSession(str(onnx_path)).session.get_inputs()[0].shape[2:]
    calibration = read_calibration(out / "calibration", *size)
    started = time.perf_counter()
    save_int8(quantize(onnx_path, calibration), onnx_path)
    return repo, time.perf_counter() - started


def int8_left_out(repository: Path) -> str | None:
    """Why the bench cannot quantize ``repository``'s model as ``prepare --int8`` does, or None when it can: a
    classifier (``prepare --int8`` quantizes detectors: letterboxed calibration, detections to agree on)."""
    if config_task(stage_configs(repository)["yolov8_postprocess"]) == "classify":
        return "a classifier: prepare --int8 quantizes detectors (letterboxed calibration, mAP); served in FP32 only"
    return None


def detections(stages: Stages, tensor: np.ndarray, mapping: np.ndarray) -> list[dict]:
    """One image's detections as served (``stages.postprocess`` at the config's thresholds): class_id, score and
    box (x1, y1, x2, y2; an OBB's axis-aligned bounds) each. ``tensor``: uint8 (3, H, W); ``mapping``: (5,)."""
    found = stages.postprocess(stages.infer(tensor[None]), mapping[None])
    count = int(found["num_dets"][0, 0])
    rows = zip(found["det_boxes"][0, :count], found["det_scores"][0, :count], found["det_classes"][0, :count])
    return [{"class_id": int(c), "score": float(s), "box": [float(v) for v in b]} for b, s, c in rows]


def fp32_agreement(repository: Path, samples: Path) -> Agreement:
    """How many FP32 (ONNX Runtime) detections the INT8 model finds on the sample photos and their mirror images,
    preprocessed and postprocessed as ``repository`` serves them (its task and head, conf 0.25 by default)."""
    configs = stage_configs(repository)
    fp32, int8 = Stages.of(repository, configs), Stages.of(repository, configs, "openvino", "int8")
    total = Agreement(0, 0, 0, (), ())
    for name in SAMPLE_PHOTOS:
        photo = cv2.imread(str(samples / name), cv2.IMREAD_COLOR)
        for image in (photo, cv2.flip(photo, 1)):
            tensor, mapping = fp32.preprocessor.from_bgr(image)
            total += agreement(detections(int8, tensor, mapping), detections(fp32, tensor, mapping))
    return total
