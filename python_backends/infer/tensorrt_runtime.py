"""TensorRT on the GPU: a deserialized engine, one CUDA stream, bindings pre-allocated for the profile's max batch.

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


@dataclass(frozen=True)
class TensorSpec:
    """One engine I/O tensor: ``shape`` has -1 for the dynamic batch dimension."""

    name: str
    is_input: bool
    shape: tuple[int, ...]
    dtype: np.dtype


def binding_shapes(tensors: list[TensorSpec], max_batch: int) -> dict[str, tuple[int, ...]]:
    """Shapes to pre-allocate: the dynamic batch dimension set to the profile's max batch.

    Only the batch (first) dimension may be dynamic: the input is (B, 3, H, W) and the head
    (B, 4 + num_classes, num_anchors) or, end-to-end, (B, max_det, 6). A graph installed with a fixed
    batch (NMS inside it for batch 1) has no dynamic dimension, and its profile's max batch is that batch.
    """
    shapes = {}
    for tensor in tensors:
        if any(d < 0 for d in tensor.shape[1:]):
            raise RuntimeUnavailable(f"engine tensor {tensor.name!r} has a dynamic non-batch dimension: {tensor.shape}")
        shapes[tensor.name] = (max_batch, *tensor.shape[1:])
    return shapes


class TensorRTRuntime:
    """Runs a serialized TensorRT engine.

    ``run`` takes float32 (B, 3, H, W) as NumPy (copied to the GPU) or as a CuPy array (copied
    device-to-device into the input binding) and returns float32 (B, *head)
    on the same side. Batches above the profile's max run in chunks.
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
            raise RuntimeUnavailable(
                f"TensorRT {trt.__version__} cannot deserialize {engine_path}: built by another TensorRT version or "
                f"for another GPU? delete it and rebuild with `python -m prepare --tensorrt`"
            )
        tensors = [self._spec(trt, self._engine.get_tensor_name(i)) for i in range(self._engine.num_io_tensors)]
        inputs = [t for t in tensors if t.is_input]
        outputs = [t for t in tensors if not t.is_input]
        if len(inputs) != 1 or len(outputs) != 1:
            raise RuntimeUnavailable(f"expected an engine with 1 input and 1 output, got {[t.name for t in tensors]}")
        self.input, self.output = inputs[0], outputs[0]
        fixed_batch = self.input.shape[0]  # > 0 for a graph installed with a fixed batch: no profile from trtexec
        self.max_batch_size = (
            fixed_batch if fixed_batch > 0 else int(self._engine.get_tensor_profile_shape(self.input.name, 0)[2][0])
        )
        self._context = self._engine.create_execution_context()
        self._stream = cp.cuda.Stream(non_blocking=True)
        shapes = binding_shapes(tensors, self.max_batch_size)
        self._buffers = {t.name: cp.empty(shapes[t.name], dtype=t.dtype) for t in tensors}
        for name, buffer in self._buffers.items():
            self._context.set_tensor_address(name, buffer.data.ptr)

    def _spec(self, trt: Any, name: str) -> TensorSpec:
        return TensorSpec(
            name=name,
            is_input=self._engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT,
            shape=tuple(self._engine.get_tensor_shape(name)),
            dtype=np.dtype(trt.nptype(self._engine.get_tensor_dtype(name))),
        )

    def run(self, images: Any) -> Any:
        """float32 (B, 3, H, W) → float32 (B, *head), host or device like the input."""
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
            self._context.set_input_shape(self.input.name, (count, *self.input.shape[1:]))
            if not self._context.execute_async_v3(self._stream.ptr):
                raise RuntimeError("TensorRT execute_async_v3 failed; see the server log")
            head = self._buffers[self.output.name][:count].astype(cp.float32, copy=True)  # bindings are reused
            result = head if on_device else cp.asnumpy(head, stream=self._stream)
        self._stream.synchronize()
        return result
