"""GPU preprocessing with CV-CUDA: same letterbox as the CPU path, the result left in GPU memory.

Decode with nvImageCodec on the GPU when it is installed (RGB out), else with OpenCV on the CPU
(BGR out, uploaded); then resize (linear), pad with 114, BGR→RGB where needed, and NHWC→NCHW: uint8
pixels, as the CPU path's (the served model divides by 255). ``cvcuda``, ``nvimgcodec`` and ``cupy`` are
imported in the constructor only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from python_backends.preprocess.image_decode import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_PIXELS,
    ImageDecodeError,
    check_encoded,
    decode_image,
)
from python_backends.preprocess.letterbox import PAD_VALUE, box_mapping, letterbox_geometry
from python_backends.triton_helpers.gpu_arrays import GpuUnavailable, gpu_unavailable_reason, import_cupy


class GpuPreprocessingUnavailable(RuntimeError):
    """CV-CUDA, CuPy or a GPU is missing."""


@dataclass(frozen=True)
class LetterboxPlan:
    """The CV-CUDA calls for one (height, width) image: resize to ``resize_shape`` (None: already that
    size), then pad ``top``/``bottom``/``left``/``right`` pixels. ``resize_shape`` is NHWC (1, h, w, 3)."""

    resize_shape: tuple[int, int, int, int] | None
    top: int
    bottom: int
    left: int
    right: int


def letterbox_plan(height: int, width: int, new_height: int, new_width: int) -> LetterboxPlan:
    """The same geometry as the CPU ``letterbox`` (Ultralytics' rounding), as CV-CUDA arguments."""
    geo = letterbox_geometry(height, width, new_height, new_width)
    resize = None if (geo.resized_h, geo.resized_w) == (height, width) else (1, geo.resized_h, geo.resized_w, 3)
    return LetterboxPlan(resize, geo.top, geo.bottom, geo.left, geo.right)


def import_cvcuda() -> Any:
    try:
        import cvcuda
    except Exception as exc:  # ImportError, or libcuda missing
        raise GpuPreprocessingUnavailable(f"cvcuda is not importable ({exc})") from exc
    return cvcuda


def rgb_color_spec(codec: Any) -> Any:
    """nvImageCodec's RGB output colour spec: ``ColorSpec.SRGB`` from 0.7.0 on, ``ColorSpec.RGB`` before."""
    spec = getattr(codec.ColorSpec, "SRGB", None) or getattr(codec.ColorSpec, "RGB", None)
    if spec is None:
        raise GpuPreprocessingUnavailable(
            f"nvImageCodec {getattr(codec, '__version__', '?')} has no SRGB/RGB ColorSpec"
        )
    return spec


def import_nvimgcodec() -> Any | None:
    """``nvidia.nvimgcodec``, or None when it is not installed (decode then runs on the CPU)."""
    try:
        from nvidia import nvimgcodec
    except Exception:
        return None
    return nvimgcodec


class CvCudaPreprocessor:
    """Encoded bytes → uint8 (3, H, W) RGB pixels on the GPU, letterboxed like ``Preprocessor``.

    ``from_bytes``/``from_bgr`` return (CuPy uint8 (3, H, W), NumPy float32 (5,) mapping), finished.
    The ``*_batch`` forms queue a whole request on this preprocessor's stream; ``stack`` joins its tensors
    there and synchronizes once per request, so the batch can be handed to Triton through DLPack.
    """

    device = "gpu"

    def __init__(
        self,
        input_height: int = 640,
        input_width: int = 640,
        pad_value: int = PAD_VALUE,
        gpu_decode: bool = True,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ):
        reason = gpu_unavailable_reason()
        if reason:
            raise GpuPreprocessingUnavailable(reason)
        self._cvcuda = import_cvcuda()
        try:
            self._cp = import_cupy()
        except GpuUnavailable as exc:
            raise GpuPreprocessingUnavailable(str(exc)) from exc
        self.input_height, self.input_width, self.pad_value = input_height, input_width, pad_value
        self.max_pixels, self.max_bytes = max_pixels, max_bytes
        self._cv_stream = self._cvcuda.Stream()
        self._stream = self._cp.cuda.ExternalStream(self._cv_stream.handle)
        codec = import_nvimgcodec() if gpu_decode else None
        self._decoder = codec.Decoder() if codec else None
        self._decode_params = (
            codec.DecodeParams(apply_exif_orientation=True, color_spec=rgb_color_spec(codec), allow_any_depth=False)
            if codec
            else None
        )
        self.decoder_name = "nvimgcodec" if codec else "opencv"
        self._in_flight: list[Any] = []  # decoded images and CV-CUDA tensors that queued work still reads

    def from_bytes(self, data: bytes | np.ndarray) -> tuple[Any, np.ndarray]:
        """Decode and preprocess one image, finished (synchronized); raises ImageDecodeError for non-images."""
        tensor, mapping = self.from_bytes_batch([data])[0]
        self._finish()
        return tensor, mapping

    def from_bgr(self, image: np.ndarray) -> tuple[Any, np.ndarray]:
        """Preprocess one decoded uint8 (H, W, 3) BGR frame, finished (synchronized)."""
        tensor, mapping = self.from_bgr_batch([image])[0]
        self._finish()
        return tensor, mapping

    def from_bytes_batch(self, items: Any) -> list[tuple[Any, np.ndarray]]:
        """One request's encoded images: decoded in one nvImageCodec call (OpenCV: one by one), then letterboxed.

        The work is queued, not finished: join the tensors with ``stack``. Raises ImageDecodeError for
        the first item that is not an image (the request fails as a whole).
        """
        return [self._letterbox(image, is_rgb) for image, is_rgb in self._decode_all(items)]

    def from_bgr_batch(self, frames: Any) -> list[tuple[Any, np.ndarray]]:
        """One request's uint8 (H, W, 3) BGR frames, uploaded and letterboxed; queued like ``from_bytes_batch``."""
        with self._stream:
            return [self._letterbox(self._cp.asarray(frame), False) for frame in frames]

    def _decode_all(self, items: Any) -> list[tuple[Any, bool]]:
        """[(uint8 (H, W, 3) device array, True when RGB)]; nvImageCodec gives RGB, OpenCV BGR."""
        if self._decoder is None:
            with self._stream:
                return [
                    (self._cp.asarray(decode_image(data, self.max_pixels, self.max_bytes)), False) for data in items
                ]
        buffers = [check_encoded(data, self.max_pixels, self.max_bytes).tobytes() for data in items]
        try:
            images = self._decoder.decode(buffers, params=self._decode_params, cuda_stream=self._stream.ptr)
        except Exception as exc:  # nvImageCodec raises its own errors for corrupt input
            raise ImageDecodeError(f"cannot decode image: {exc}") from exc
        for buf, image in zip(buffers, images):
            if image is None:
                raise ImageDecodeError(f"cannot decode image ({len(buf)} bytes): not a supported or complete image")
        return [(self._cp.asarray(image), True) for image in images]

    def _letterbox(self, image: Any, is_rgb: bool) -> tuple[Any, np.ndarray]:
        """(uint8 (3, H, W) device tensor, float32 (5,) mapping) for a uint8 (h, w, 3) device image."""
        cv, cp = self._cvcuda, self._cp
        self._in_flight.append(image)
        mapping = box_mapping(int(image.shape[0]), int(image.shape[1]), self.input_height, self.input_width)
        plan = letterbox_plan(image.shape[0], image.shape[1], self.input_height, self.input_width)
        with self._stream:
            batch = as_tensor(cv, cp.ascontiguousarray(image)[None], "NHWC")
            if plan.resize_shape is not None:
                batch = cv.resize(batch, plan.resize_shape, cv.Interp.LINEAR, stream=self._cv_stream)
            batch = cv.copymakeborder(
                batch,
                border_mode=cv.Border.CONSTANT,
                border_value=[float(self.pad_value)] * 3,
                top=plan.top,
                bottom=plan.bottom,
                left=plan.left,
                right=plan.right,
                stream=self._cv_stream,
            )
            if not is_rgb:
                batch = cv.cvtcolor(batch, cv.ColorConversion.BGR2RGB, stream=self._cv_stream)
            batch = cv.reformat(batch, "NCHW", stream=self._cv_stream)
            self._in_flight.append(batch)
            return cp.asarray(batch.cuda())[0].copy(), mapping  # own memory, not CV-CUDA's buffer

    def stack(self, tensors: list[Any]) -> Any:
        """uint8 (B, 3, H, W) on the GPU from a request's (3, H, W) tensors; one synchronization per request."""
        with self._stream:
            batch = self._cp.stack(tensors)
        self._finish()
        return batch

    def _finish(self) -> None:
        """Wait for the queued work, then let go of what it read."""
        self._stream.synchronize()
        self._in_flight.clear()


def as_tensor(cvcuda: Any, array: Any, layout: str) -> Any:
    """Wrap a CuPy array as a CV-CUDA tensor (``cvcuda.as_tensor`` in new releases, ``nvcv.as_tensor`` before)."""
    wrap = getattr(cvcuda, "as_tensor", None)
    if wrap is None:
        import nvcv

        wrap = nvcv.as_tensor
    return wrap(array, layout)
