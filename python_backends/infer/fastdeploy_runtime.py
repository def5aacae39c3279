"""FastDeploy's Runtime with its TensorRT backend, used only when ``fastdeploy`` imports.

The PyPI ``fastdeploy-gpu-python`` is a placeholder that raises on import; any import failure
makes this runtime unavailable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from python_backends.infer.base import RuntimeUnavailable
from python_backends.infer.tensorrt_build import onnx_input_name
from python_backends.infer.tensorrt_engine import EngineOptions


def import_fastdeploy() -> Any:
    try:
        import fastdeploy
    except Exception as exc:  # ImportError, or the placeholder package's own exception
        raise RuntimeUnavailable(f"runtime 'fastdeploy' is unavailable: fastdeploy does not import ({exc})") from exc
    return fastdeploy


class FastDeployRuntime:
    """``fd.Runtime`` on GPU ``device_id`` with the TensorRT backend, its engine cached in ``cache_file``.

    ``run`` takes uint8 (B, 3, H, W) pixels (a prepared model's input) as NumPy and returns float32 (B, *head).
    """

    name = "fastdeploy"
    device = "cpu"  # fd.Runtime.infer takes and returns host arrays

    def __init__(self, onnx_path: Path, options: EngineOptions, cache_file: Path, device_id: int = 0):
        fd = import_fastdeploy()
        option = fd.RuntimeOption()
        option.set_model_path(str(onnx_path), "", fd.ModelFormat.ONNX)
        option.use_gpu(device_id)
        option.use_trt_backend()
        name = onnx_input_name(onnx_path)
        low, opt, high = (list(s) for s in options.input_shapes())
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        if hasattr(option, "trt_option"):  # FastDeploy >= 1.0.4
            option.trt_option.set_shape(name, low, opt, high)
            option.trt_option.enable_fp16 = options.fp16
            option.trt_option.serialize_file = str(cache_file)
        else:
            option.set_trt_input_shape(name, low, opt, high)
            if options.fp16:
                option.enable_trt_fp16()
            option.set_trt_cache_file(str(cache_file))
        self._runtime = fd.Runtime(option)
        self._input_name = name
        self.max_batch_size = options.max_batch

    def run(self, images: np.ndarray) -> np.ndarray:
        """uint8 (B, 3, H, W) pixels → float32 (B, *head)."""
        chunks = [
            self._runtime.infer({self._input_name: np.ascontiguousarray(images[s : s + self.max_batch_size])})[0]
            for s in range(0, len(images), self.max_batch_size)
        ]
        return np.asarray(chunks[0] if len(chunks) == 1 else np.concatenate(chunks), dtype=np.float32)
