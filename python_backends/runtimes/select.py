"""Pick an inference runtime from the ``runtime`` config parameter."""

from __future__ import annotations

from python_backends.runtimes.base import InferenceRuntime, RuntimeUnavailable

RUNTIMES = ("auto", "onnxruntime")


def create_runtime(
    choice: str, onnx_path: str, intra_op_threads: int = 0, max_batch_size: int = 32
) -> InferenceRuntime:
    """Build the runtime named by ``choice`` (``auto`` picks the best one this machine can run)."""
    if choice not in RUNTIMES:
        raise RuntimeUnavailable(f"unknown runtime {choice!r}; expected one of {', '.join(RUNTIMES)}")
    from python_backends.runtimes.onnxruntime_runtime import OnnxRuntimeRuntime

    return OnnxRuntimeRuntime(onnx_path, intra_op_threads=intra_op_threads, max_batch_size=max_batch_size)
