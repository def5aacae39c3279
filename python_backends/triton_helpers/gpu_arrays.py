"""Device arrays (CuPy) next to host arrays (NumPy), imported lazily so this module loads without a GPU.

Nothing here touches CUDA at import time: CuPy is imported, and the driver queried, only when a
function is called.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class GpuUnavailable(RuntimeError):
    """No CUDA device, or no CuPy to reach it."""


def import_cupy() -> Any:
    """The ``cupy`` module, or GpuUnavailable saying why it cannot be used."""
    try:
        import cupy
    except Exception as exc:  # ImportError, or a CUDA library that fails to load
        raise GpuUnavailable(f"cupy is not importable ({exc})") from exc
    return cupy


def gpu_count() -> int:
    """How many CUDA devices CuPy sees (0 without CuPy, a driver or a device)."""
    try:
        return int(import_cupy().cuda.runtime.getDeviceCount())
    except Exception:  # GpuUnavailable, or cupy's CUDARuntimeError without a driver
        return 0


def gpu_unavailable_reason() -> str | None:
    """None when a CUDA device can be used through CuPy, else why not."""
    try:
        import_cupy()
    except GpuUnavailable as exc:
        return f"no GPU support: {exc}"
    return None if gpu_count() else "no CUDA GPU is visible"


def create_cuda_context() -> None:
    """Create this process's CUDA context on the current device now, with CuPy's first allocation and copy
    to host.

    A Python stub otherwise creates it when its first GPU tensor arrives, on that request: 125-135 ms on an H100.
    """
    cupy = import_cupy()
    cupy.asnumpy(cupy.zeros(1))


def is_device_array(array: Any) -> bool:
    """True for arrays that live in GPU memory (anything exposing ``__cuda_array_interface__``)."""
    return not isinstance(array, np.ndarray) and hasattr(array, "__cuda_array_interface__")


def to_host(array: Any) -> np.ndarray:
    """A NumPy copy of a device array; NumPy arrays are returned as they are."""
    return import_cupy().asnumpy(array) if is_device_array(array) else np.asarray(array)


def concatenate_on(arrays: list[Any], device: str) -> Any:
    """Concatenate along axis 0 on ``device`` (``"cpu"``: NumPy, ``"gpu"``: CuPy), moving each part there first.

    Triton hands a batch's inputs over partly in host memory once its CUDA memory pool is full, so one
    batch may mix NumPy and CuPy arrays. A single array on the right device is returned as it is.
    """
    if device == "gpu":
        cp = import_cupy()
        parts = [cp.asarray(array) for array in arrays]
        return parts[0] if len(parts) == 1 else cp.concatenate(parts)
    parts = [to_host(array) for array in arrays]
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def stream_waits_for_current(cupy: Any, stream: Any) -> None:
    """Make ``stream`` wait for the work queued so far on the current stream (a CUDA event, no host sync).

    Data produced on one stream (a CuPy concatenation on the default stream) and read on another
    (TensorRT's non-blocking stream) is otherwise read while still being written.
    """
    stream.wait_event(cupy.cuda.get_current_stream().record())
