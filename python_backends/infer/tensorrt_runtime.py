"""TensorRT on the GPU: a deserialized engine, one CUDA stream, bindings pre-allocated for the profile's max shapes.

``tensorrt`` and ``cupy`` are imported in the constructor, never at module import.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from python_backends.infer.base import RuntimeUnavailable
from python_backends.infer.tensorrt_engine import EngineBuildError, import_tensorrt
from python_backends.triton_helpers.gpu_arrays import (
    GpuUnavailable,
    import_cupy,
    is_device_array,
    stream_waits_for_current,
)


class EngineUnreadable(RuntimeUnavailable):
    """The engine file does not deserialize here (another TensorRT or GPU built it, or it is damaged)."""


@dataclass(frozen=True)
class TensorSpec:
    """One engine I/O tensor: ``shape`` has -1 for each dynamic dimension (batch; H and W of a dynamic export)."""

    name: str
    is_input: bool
    shape: tuple[int, ...]
    dtype: np.dtype


def profile_input_shapes(
    spec: TensorSpec, profile: tuple[tuple[int, ...], ...] | None
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The input's (min, max) shapes: the optimization profile's (B, 3, H, W) where the engine has one,
    else (a graph of fixed batch and size, built without a profile) its own shape both times."""
    if all(d >= 0 for d in spec.shape):
        return spec.shape, spec.shape
    if profile is None:
        raise RuntimeUnavailable(f"engine input {spec.name!r} {spec.shape} is dynamic but the engine has no profile")
    low, _, high = (tuple(int(d) for d in shape) for shape in profile)
    return low, high


def resolved_shape(name: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    """``shape`` as the execution context reports it for the max input; RuntimeUnavailable if still dynamic."""
    if any(d < 0 for d in shape):
        raise RuntimeUnavailable(f"engine tensor {name!r} is {shape} even at the profile's max input shape")
    return shape


def run_batch(count: int, min_batch: int) -> int:
    """The batch an engine runs for ``count`` images: at least the profile's ``min_batch`` (padded)."""
    return max(count, min_batch)


class TensorRTRuntime:
    """Runs a serialized TensorRT engine.

    ``run`` takes the engine's input, uint8 (B, 3, H, W) pixels for a prepared model, as NumPy (copied to the
    GPU) or as a CuPy array (copied device-to-device into the input binding) and returns float32 (B, *head) on
    the same side.
    Batches above the profile's max run in chunks; below its min, padded with the binding's spare rows.
    """

    name = "tensorrt"
    device = "gpu"

    def __init__(self, engine_path: Path, device_id: int = 0):
        try:
            trt = import_tensorrt()
            cp = import_cupy()
        except (EngineBuildError, GpuUnavailable) as exc:
            raise RuntimeUnavailable(f"runtime 'tensorrt' is unavailable: {exc}") from exc
        cp.cuda.Device(device_id).use()
        self._cp = cp
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._trt_runtime = trt.Runtime(self._logger)  # must outlive the engine
        self._engine = self._trt_runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self._engine is None:
            raise EngineUnreadable(
                f"runtime 'tensorrt' is unavailable: TensorRT {trt.__version__} cannot deserialize {engine_path} "
                f"(built by another TensorRT version or for another GPU, or damaged)"
            )
        tensors = [self._spec(trt, self._engine.get_tensor_name(i)) for i in range(self._engine.num_io_tensors)]
        inputs = [t for t in tensors if t.is_input]
        outputs = [t for t in tensors if not t.is_input]
        if len(inputs) != 1 or len(outputs) != 1:
            raise RuntimeUnavailable(f"expected an engine with 1 input and 1 output, got {[t.name for t in tensors]}")
        self.input, self.output = inputs[0], outputs[0]
        dynamic = any(d < 0 for d in self.input.shape)
        profile = self._engine.get_tensor_profile_shape(self.input.name, 0) if dynamic else None
        low, high = profile_input_shapes(self.input, profile)
        self.min_batch, self.max_batch_size, self._image_shape = low[0], high[0], high[1:]
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise RuntimeUnavailable(
                "runtime 'tensorrt' is unavailable: TensorRT created no execution context (out of GPU memory?)"
            )
        self._set_input_shape(high)
        shapes = {self.input.name: high, self.output.name: resolved_shape(self.output.name, self._context_shape())}
        try:
            self._buffers = {t.name: cp.empty(shapes[t.name], dtype=t.dtype) for t in tensors}
        except cp.cuda.memory.OutOfMemoryError as exc:
            reason = f"no GPU memory for the bindings ({exc})"
            raise RuntimeUnavailable(f"runtime 'tensorrt' is unavailable: {reason}") from exc
        self._stream = cp.cuda.Stream(non_blocking=True)
        for name, buffer in self._buffers.items():
            self._context.set_tensor_address(name, buffer.data.ptr)

    def _spec(self, trt: Any, name: str) -> TensorSpec:
        return TensorSpec(
            name=name,
            is_input=self._engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT,
            shape=tuple(self._engine.get_tensor_shape(name)),
            dtype=np.dtype(trt.nptype(self._engine.get_tensor_dtype(name))),
        )

    def _context_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self._context.get_tensor_shape(self.output.name))

    def _set_input_shape(self, shape: tuple[int, ...]) -> None:
        if not self._context.set_input_shape(self.input.name, shape):
            raise RuntimeError(f"TensorRT refused input shape {shape} for {self.input.name!r} (outside the profile?)")

    def run(self, images: Any) -> Any:
        """uint8 (B, 3, H, W) pixels → float32 (B, *head), host or device like the input."""
        on_device = is_device_array(images)
        chunks = [
            self._run_chunk(images[start : start + self.max_batch_size], on_device)
            for start in range(0, len(images), self.max_batch_size)
        ]
        if len(chunks) == 1:
            return chunks[0]
        return self._cp.concatenate(chunks) if on_device else np.concatenate(chunks)

    def _run_chunk(self, images: Any, on_device: bool) -> Any:
        cp, count = self._cp, len(images)
        if on_device:  # the batch was joined on the caller's stream: wait for it, without blocking the host
            stream_waits_for_current(cp, self._stream)
        with self._stream:
            self._buffers[self.input.name][:count] = cp.asarray(images, dtype=self.input.dtype)
            self._set_input_shape((run_batch(count, self.min_batch), *self._image_shape))
            if not self._context.execute_async_v3(self._stream.ptr):
                raise RuntimeError("TensorRT execute_async_v3 failed; see the server log")
            head = self._buffers[self.output.name][:count].astype(cp.float32, copy=True)  # bindings are reused
            result = head if on_device else cp.asnumpy(head, stream=self._stream)
        self._stream.synchronize()
        return result
