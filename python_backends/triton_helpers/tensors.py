"""Move tensors between Triton's Python backend and NumPy/CuPy arrays without extra copies.

With ``FORCE_CPU_ONLY_INPUT_TENSORS: "no"`` an input may arrive in GPU memory; it is then
wrapped by CuPy through DLPack (no copy). Device outputs leave through ``Tensor.from_dlpack``
(no copy); host outputs as ordinary tensors. ``triton_python_backend_utils`` is imported
inside the functions: it exists only inside a Triton stub.
"""

from __future__ import annotations

from typing import Any

from python_backends.triton_helpers.gpu_arrays import import_cupy, is_device_array


def input_array(tensor: Any) -> Any:
    """A ``pb_utils.Tensor`` as a NumPy array (CPU tensor) or a CuPy array sharing its GPU memory."""
    if tensor.is_cpu():
        return tensor.as_numpy()
    return import_cupy().from_dlpack(tensor)  # Tensor implements __dlpack__


def output_tensor(name: str, array: Any) -> Any:
    """A ``pb_utils.Tensor`` named ``name``: from DLPack for a device array, else from NumPy."""
    import triton_python_backend_utils as pb_utils

    if is_device_array(array):
        return pb_utils.Tensor.from_dlpack(name, import_cupy().ascontiguousarray(array))
    return pb_utils.Tensor(name, array)
