"""Pick the preprocessing from yolov8_preprocess's config parameters ``device`` and ``transform``, at its size and
limits (``preprocessor_from_config``)."""

from __future__ import annotations

from typing import Any, Callable

from python_backends.preprocess.classify import ClassifyPreprocessor
from python_backends.preprocess.cvcuda_preprocessor import CvCudaPreprocessor, GpuPreprocessingUnavailable
from python_backends.preprocess.image_decode import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS
from python_backends.preprocess.preprocessor import Preprocessor
from python_backends.triton_helpers.config import int_parameter, parameters

DEVICES = ("auto", "cpu", "gpu")
TRANSFORMS = ("letterbox", "classify")  # detect, pose, obb | classify (Ultralytics' classify_transforms)


def create_preprocessor(
    device: str,
    input_height: int = 640,
    input_width: int = 640,
    log: Callable[[str], None] = print,
    gpu_class: Callable[..., Any] = CvCudaPreprocessor,
    transform: str = "letterbox",
    **limits: int,
) -> Any:
    """``Preprocessor`` (OpenCV) for ``cpu``, ``CvCudaPreprocessor`` for ``gpu``; ``auto`` takes the GPU when it can.

    ``limits`` (``max_pixels``, ``max_bytes``) go to either class. An explicit ``gpu`` that cannot be
    satisfied raises GpuPreprocessingUnavailable with the reason. ``auto`` falls back to OpenCV on any
    GPU initialisation error (a missing library, a CUDA error, an API a new release renamed), logging it.

    ``transform`` ``classify`` is ``ClassifyPreprocessor``, on the CPU only (Pillow's resize): ``auto`` takes
    it, saying so, and ``gpu`` raises GpuPreprocessingUnavailable.
    """
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    if transform not in TRANSFORMS:
        raise ValueError(f"transform must be one of {', '.join(TRANSFORMS)}, got {transform!r}")
    if transform == "classify":
        if device == "gpu":
            raise GpuPreprocessingUnavailable("device 'gpu': the classify transform runs on the CPU only (Pillow)")
        if device == "auto":
            log("device auto: the classify transform runs on the CPU (Pillow's resize, as Ultralytics')")
        return ClassifyPreprocessor(input_height, input_width, **limits)
    if device != "cpu":
        try:
            return gpu_class(input_height, input_width, **limits)
        except Exception as exc:  # whatever stops the GPU path, auto still serves on the CPU
            if device == "gpu":
                raise GpuPreprocessingUnavailable(f"device 'gpu' is unavailable: {type(exc).__name__}: {exc}") from exc
            log(f"device auto: GPU preprocessing unavailable ({type(exc).__name__}: {exc}); using OpenCV on CPU")
    return Preprocessor(input_height, input_width, **limits)


def preprocessor_from_config(config: dict[str, Any], device: str | None = None) -> Any:
    """The preprocessing of yolov8_preprocess's ``config`` (Triton's JSON, or ``prepare.pbtxt.triton_config``): its
    ``device`` (``device`` given here overrides it), ``transform``, ``input_height`` x ``input_width`` and
    ``max_image_pixels``/``max_image_bytes`` limits (``create_preprocessor``)."""
    params = parameters(config)
    return create_preprocessor(
        device or params.get("device", "auto"),
        transform=params.get("transform", "").strip() or "letterbox",
        input_height=int_parameter(params, "input_height", 640),
        input_width=int_parameter(params, "input_width", 640),
        max_pixels=int_parameter(params, "max_image_pixels", DEFAULT_MAX_PIXELS),
        max_bytes=int_parameter(params, "max_image_bytes", DEFAULT_MAX_BYTES),
    )
