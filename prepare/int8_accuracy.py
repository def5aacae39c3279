"""mAP50-95 of an OpenVINO model on a labelled dataset, and INT8 quantization that keeps its drop within a bound.

Images are preprocessed as served (``python_backends.preprocess``) and the head is decoded as
yolov8_postprocess decodes it (``python_backends.postprocess``: a raw grid of the model's classes with NMS,
or the rows of an end-to-end head or of NMS inside the graph) at the thresholds of ``python -m client val``
(conf 0.001, IoU 0.7, 300 detections; a segment model's prototypes passed through); ``evaluation`` scores
their boxes. NNCF's accuracy-controlled quantization
(``nncf.quantize_with_accuracy_control``) quantizes, measures the drop with that score and returns layers
to float, the most harmful first, until the drop is at most ``max_drop``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evaluation.coco import Prediction, evaluate
from evaluation.dataset import Dataset
from prepare.int8 import CalibrationSet, float_scope
from prepare.onnx_model import YoloModelInfo
from prepare.repository import served_max_det
from python_backends.defaults import IOU_THRESHOLD, MAX_DET, VAL_CONF_THRESHOLD
from python_backends.infer.onnxruntime_runtime import usable_cores
from python_backends.infer.openvino_runtime import compile_options
from python_backends.postprocess.postprocessor import Postprocessor
from python_backends.preprocess.image_decode import ImageDecodeError
from python_backends.preprocess.preprocessor import Preprocessor


@dataclass(frozen=True)
class ValidationImage:
    """One dataset image as served: ``tensor`` uint8 (3, H, W), ``mapping`` float32 (5,) LETTERBOX."""

    path: Path
    tensor: np.ndarray
    mapping: np.ndarray


def validation_images(dataset: Dataset, height: int, width: int) -> tuple[list[ValidationImage], list[str]]:
    """The dataset's images preprocessed as served, and "path: reason" for each that could not be read."""
    preprocessor = Preprocessor(height, width)
    images, skipped = [], []
    for path in dataset.images:
        try:
            tensor, mapping = preprocessor.from_bytes(path.read_bytes())
        except (ImageDecodeError, OSError) as exc:
            skipped.append(f"{path}: {exc}")
            continue
        images.append(ValidationImage(path, tensor, mapping))
    return images, skipped


def served_postprocessor(info: YoloModelInfo) -> Postprocessor:
    """The postprocessing yolov8_postprocess runs for this model (its class count, head and task), at val's
    thresholds."""
    return Postprocessor(
        len(info.class_names),
        served_max_det(info, MAX_DET),
        VAL_CONF_THRESHOLD,
        IOU_THRESHOLD,
        head_kind=info.head,
        task=info.task,
        num_keypoints=info.kpt_shape[0] if info.kpt_shape else 0,
    )


def dataset_fits(dataset: Dataset, info: YoloModelInfo) -> None:
    """ValueError when a label of ``dataset`` has a class id the model does not have."""
    highest = max((int(labels[:, 0].max()) for labels in dataset.normalised.values() if len(labels)), default=-1)
    if highest >= len(info.class_names):
        raise ValueError(
            f"--data: the labels use class id {highest}, the model has {len(info.class_names)} classes "
            f"(0..{len(info.class_names) - 1}): give a dataset of the model's classes"
        )


def map50_95(compiled, images, dataset: Dataset, postprocessor: Postprocessor) -> float:
    """COCO box mAP50-95 of ``compiled`` (an ov.CompiledModel) on ``images`` (ValidationImage), decoded by
    ``postprocessor`` (a segment model's prototypes, its second output, passed through as served: a detection
    whose mask is empty is dropped); 0.0 without labels."""
    predictions = {}
    for image in images:
        outputs = compiled(image.tensor[None])
        prototypes = outputs[1][0] if postprocessor.task == "segment" else None  # a segment model's output1
        found = postprocessor.detect(outputs[0][0], image.mapping, prototypes=prototypes)
        width, height = (int(v) for v in image.mapping[3:5])  # the image as decoded, upright
        predictions[image.path] = Prediction(found.boxes, found.scores, found.class_ids, size=(width, height))
    return evaluate(dataset, predictions).map50_95 or 0.0


def served_map(model, images: list[ValidationImage], dataset: Dataset, postprocessor: Postprocessor) -> float:
    """mAP50-95 of ``model`` (a path or an ov.Model) compiled as served: OpenVINO on CPU, FP32 where not INT8."""
    import openvino as ov

    compiled = ov.Core().compile_model(model if isinstance(model, ov.Model) else str(model), "CPU",
                                       compile_options(usable_cores()))  # fmt: skip
    return map50_95(compiled, images, dataset, postprocessor)


def quantize_within(
    onnx_path: Path,
    calibration: CalibrationSet,
    images: list[ValidationImage],
    dataset: Dataset,
    postprocessor: Postprocessor,
    max_drop: float,
    subset_size: int | None = None,
):
    """The ONNX at ``onnx_path`` quantized as ``int8.quantize`` does, with layers returned to float until the
    mAP50-95 on ``images`` drops by at most ``max_drop`` (absolute): an ov.Model."""
    import nncf
    import openvino as ov

    model = ov.Core().read_model(str(onnx_path))
    return nncf.quantize_with_accuracy_control(
        model,
        nncf.Dataset(calibration.tensors, lambda tensor: tensor[None]),
        nncf.Dataset(images, lambda image: image.tensor[None]),
        lambda compiled, items: map50_95(compiled, list(items), dataset, postprocessor),
        max_drop=max_drop,
        drop_type=nncf.DropType.ABSOLUTE,
        preset=nncf.QuantizationPreset.MIXED,
        subset_size=subset_size or len(calibration.tensors),
        ignored_scope=nncf.IgnoredScope(names=float_scope(model)),
    )
