"""INT8 in ``make bench``: the installed model quantized as ``prepare --int8`` does, and how it agrees with FP32.

The bench quantizes into a copy of the repository (the user's own stays as it is), calibrated on
``CALIBRATION_IMAGES`` flips and crops of the sample photos (``benchmarks.calibration``). Agreement: on each
sample photo, preprocessed and decoded as served at conf 0.25, how many of ONNX Runtime's FP32 detections the
INT8 model finds (same class, IoU ≥ 0.5), and the same on each photo mirrored.
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2

from benchmarks.calibration import SAMPLE_PHOTOS, write_calibration_photos
from evaluation.detection_match import Agreement, agreement
from prepare.int8 import quantize, read_calibration, save_int8
from prepare.repository import copy_with_parameters
from python_backends.infer.onnxruntime_runtime import OnnxRuntimeSession
from python_backends.infer.openvino_runtime import OpenVinoRuntime, int8_model_path
from python_backends.postprocess.postprocessor import Postprocessor
from python_backends.preprocess.preprocessor import Preprocessor

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


def fp32_agreement(repository: Path, samples: Path, num_classes: int) -> Agreement:
    """How many FP32 (ONNX Runtime) detections the INT8 model finds on the sample photos and their mirror images,
    preprocessed and decoded as served, at conf 0.25."""
    onnx_path = repository / "yolov8_infer" / "1" / "model.onnx"
    fp32, int8 = OnnxRuntimeSession(str(onnx_path)), OpenVinoRuntime(str(int8_model_path(onnx_path)))
    height, width = fp32.session.get_inputs()[0].shape[2:]
    preprocessor, postprocessor = Preprocessor(height, width), Postprocessor(num_classes)

    def detections(runtime, tensor, mapping) -> list[dict]:
        found = postprocessor.detect(runtime.run(tensor[None])[0], mapping)
        return [{"class_id": int(c), "score": float(s), "box": [float(v) for v in b]}
                for b, s, c in zip(found.boxes, found.scores, found.class_ids)]  # fmt: skip

    total = Agreement(0, 0, 0, (), ())
    for name in SAMPLE_PHOTOS:
        photo = cv2.imread(str(samples / name), cv2.IMREAD_COLOR)
        for image in (photo, cv2.flip(photo, 1)):
            tensor, mapping = preprocessor.from_bgr(image)
            total += agreement(detections(int8, tensor, mapping), detections(fp32, tensor, mapping))
    return total
