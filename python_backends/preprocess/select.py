"""Pick the preprocessing device from the ``device`` config parameter of yolov8_preprocess."""

from __future__ import annotations

from typing import Any, Callable

from python_backends.preprocess.cvcuda_preprocessor import CvCudaPreprocessor, GpuPreprocessingUnavailable
from python_backends.preprocess.preprocessor import Preprocessor

DEVICES = ("auto", "cpu", "gpu")


def create_preprocessor(
    device: str,
    input_height: int = 640,
    input_width: int = 640,
    log: Callable[[str], None] = print,
    gpu_class: Callable[..., Any] = CvCudaPreprocessor,
    **limits: int,
) -> Any:
    """``Preprocessor`` (OpenCV) for ``cpu``, ``CvCudaPreprocessor`` for ``gpu``; ``auto`` takes the GPU when it can.

    ``limits`` (``max_pixels``, ``max_bytes``) go to either class. An explicit ``gpu`` that cannot be
    satisfied raises GpuPreprocessingUnavailable with the reason. ``auto`` falls back to OpenCV on any
    GPU initialisation error (a missing library, a CUDA error, an API a new release renamed), logging it.
    """
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    if device != "cpu":
        try:
            return gpu_class(input_height, input_width, **limits)
        except Exception as exc:  # whatever stops the GPU path, auto still serves on the CPU
            if device == "gpu":
                raise GpuPreprocessingUnavailable(f"device 'gpu' is unavailable: {type(exc).__name__}: {exc}") from exc
            log(f"device auto: GPU preprocessing unavailable ({type(exc).__name__}: {exc}); using OpenCV on CPU")
    return Preprocessor(input_height, input_width, **limits)
