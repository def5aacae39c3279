"""INT8 for OpenVINO on CPU: NNCF post-training quantization of the installed model, calibrated on photos.

The calibration photos go through the served preprocessing (``python_backends.preprocess``: decode, letterbox,
normalise), so the quantizer sees the activations that serving produces. Preset MIXED (symmetric weights,
asymmetric activations). The head's decode stays in floating point, as Ultralytics' OpenVINO INT8 export keeps
it: the Add/Sub/Mul/Div directly in the head module, its DFL and its class Sigmoid (``head_decode_ops``). So does
the float arithmetic after the head (``after_head_ops``): in an export with NMS inside, the box conversion and the
class offset that feed NonMaxSuppression, which Ultralytics' exporter notes are INT8-sensitive. So do the
activations of a segment head's mask branches (``mask_branch_ops``). The result is an OpenVINO IR beside the ONNX
(``int8_model_path``), its float parts kept in FP32.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from python_backends.infer.openvino_runtime import int8_model_path
from python_backends.preprocess.image_decode import ImageDecodeError
from python_backends.preprocess.preprocessor import Preprocessor

RELIABLE_CALIBRATION_IMAGES = 64  # fewer warn; 40 flips/crops of 5 photos found 22 of 23 FP32 detections, 20 found 21
MAX_CALIBRATION_IMAGES = 300  # NNCF's default subset_size; each image is 4.9 MB in memory at 640x640
DECODE_TYPES = ("Add", "Subtract", "Multiply", "Divide", "Sigmoid")  # OpenVINO op types of the head's decode


class CalibrationError(ValueError):
    """The calibration folder is missing or holds no image that can be read."""


@dataclass(frozen=True)
class CalibrationSet:
    """Preprocessed calibration images and the files that could not be read.

    ``tensors``: uint8 (3, H, W) each, RGB pixels, letterboxed as served;
    ``skipped``: "path: reason" for each unreadable file.
    """

    tensors: list[np.ndarray]
    skipped: list[str]

    def summary(self) -> str:
        """One line: how many images calibrate, how many files were skipped (the first few named)."""
        line = f"calibration: {len(self.tensors)} images"
        if self.skipped:
            named = "; ".join(self.skipped[:3]) + ("; ..." if len(self.skipped) > 3 else "")
            line += f", {len(self.skipped)} unreadable file(s) skipped ({named})"
        return line

    def warning(self) -> str | None:
        """A warning when there are fewer images than RELIABLE_CALIBRATION_IMAGES, else None."""
        if len(self.tensors) >= RELIABLE_CALIBRATION_IMAGES:
            return None
        return (
            f"warning: only {len(self.tensors)} calibration images; {RELIABLE_CALIBRATION_IMAGES} or more ordinary "
            f"photos give reliable INT8 ranges"
        )


def read_calibration(folder: Path, height: int, width: int, limit: int = MAX_CALIBRATION_IMAGES) -> CalibrationSet:
    """Preprocess the files of ``folder`` (recursively, sorted) as served, up to ``limit`` readable images.

    Files that are not images OpenCV decodes are skipped and counted. CalibrationError when ``folder`` is not a
    folder or no file in it is a readable image.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CalibrationError(f"calibration folder {folder} does not exist")
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    preprocessor = Preprocessor(height, width)
    tensors, skipped = [], []
    for path in files:
        if len(tensors) == limit:
            break
        try:
            tensors.append(preprocessor.from_bytes(path.read_bytes())[0])
        except (ImageDecodeError, OSError) as exc:
            skipped.append(f"{path}: {exc}")
    if not tensors:
        found = f"{len(files)} file(s), none a readable image" if files else "no files"
        raise CalibrationError(f"calibration folder {folder} holds {found}: give it ordinary photos")
    return CalibrationSet(tensors, skipped)


def head_module(model) -> str:
    """The module path (``/model.22``) of the nearest op above the output of ``model`` (an ov.Model) that has one.

    The op that makes the output is named after the output tensor, so the search goes up from it.
    """
    queue, seen = [model.output(0).get_node()], set()
    while queue:
        node = queue.pop(0)
        name = node.get_friendly_name()
        if name.startswith("/") and name.count("/") >= 2:
            return name.rsplit("/", 1)[0]
        for source in (value.get_node() for value in node.input_values()):
            if source.get_friendly_name() not in seen:
                seen.add(source.get_friendly_name())
                queue.append(source)
    raise ValueError("cannot find the detection head: no op above the output is named by its module")


def head_decode_ops(model) -> list[str]:
    """Names of the ops of ``model`` (an ov.Model) that decode the head: they stay in floating point.

    The head is the module that makes the output (``/model.22`` in YOLOv8's ONNX export). Its decode ops
    are the Add/Subtract/Multiply/Divide/Sigmoid directly in it, not inside its conv blocks, and every op
    of its DFL.
    """
    head = head_module(model)
    direct = re.compile(re.escape(head) + r"/[^/]+$")
    names = []
    for op in model.get_ops():
        name, kind = op.get_friendly_name(), op.get_type_name()
        in_dfl = name.startswith(f"{head}/dfl/") and kind != "Constant"
        if in_dfl or (direct.match(name) and kind in DECODE_TYPES):
            names.append(name)
    return names


def after_head_ops(model) -> list[str]:
    """Names of the float Add/Subtract/Multiply/Divide/Sigmoid of ``model`` (an ov.Model) that take the head's
    output, directly or through other ops: the arithmetic an export with NMS inside runs before and after
    NonMaxSuppression (none in a raw head's graph, whose output is the head's)."""
    import openvino as ov

    head = head_module(model) + "/"
    fed, names = set(), []
    for op in model.get_ordered_ops():
        name = op.get_friendly_name()
        if name.startswith(head):
            fed.add(name)
        elif any(value.get_node().get_friendly_name() in fed for value in op.input_values()):
            fed.add(name)
            if op.get_type_name() in DECODE_TYPES and op.get_output_element_type(0) == ov.Type.f32:
                names.append(name)
    return names


def mask_branch_ops(model) -> list[str]:
    """Names of the Add/Subtract/Multiply/Divide/Sigmoid of a segment head's mask branches in ``model`` (an
    ov.Model): its prototypes (``proto``) and its mask coefficients (``cv4``); none without prototypes.

    Their convolutions stay INT8 and their activations float, as Ultralytics' INT8 export keeps every such op
    of the head: quantized, OpenVINO 2026.4's CPU plugin returned all-zero prototypes and coefficients for
    tests/models' fall_seg, and so no masks, which drops every detection.
    """
    head = head_module(model)
    if not any(op.get_friendly_name().startswith(f"{head}/proto/") for op in model.get_ops()):
        return []
    branch = re.compile(re.escape(head) + r"/(proto|\w*cv4[\w.]*)/")
    return [op.get_friendly_name() for op in model.get_ops()
            if branch.match(op.get_friendly_name()) and op.get_type_name() in DECODE_TYPES]  # fmt: skip


def float_scope(model) -> list[str]:
    """Names of the ops of ``model`` (an ov.Model) that stay in floating point: the head's decode, a segment
    head's mask branches' activations and the arithmetic after the head."""
    return head_decode_ops(model) + mask_branch_ops(model) + after_head_ops(model)


def quantize(onnx_path: Path, calibration: CalibrationSet, subset_size: int | None = None):
    """The ONNX at ``onnx_path`` quantized with NNCF (preset MIXED, ``float_scope`` in float): an ov.Model.

    ``subset_size``: how many calibration images NNCF uses (default all of them).
    """
    import logging

    import nncf
    import openvino as ov

    nncf.set_log_level(logging.WARNING)  # its INFO lines (statistics, bias correction) say nothing to act on
    model = ov.Core().read_model(str(onnx_path))
    return nncf.quantize(
        model,
        nncf.Dataset(calibration.tensors, lambda tensor: tensor[None]),
        preset=nncf.QuantizationPreset.MIXED,
        subset_size=subset_size or len(calibration.tensors),
        ignored_scope=nncf.IgnoredScope(names=float_scope(model)),
    )


def save_int8(model, onnx_path: Path) -> Path:
    """Write ``model`` (an ov.Model) as the IR beside ``onnx_path`` (FP32 where not INT8); returns the .xml path."""
    import openvino as ov

    path = int8_model_path(onnx_path)
    ov.save_model(model, str(path), compress_to_fp16=False)
    return path
