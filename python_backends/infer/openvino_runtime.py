"""OpenVINO on CPU, FP32 pinned, its compiled model cached on disk (``CACHE_DIR``)."""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from python_backends.infer.base import Outputs, RuntimeUnavailable, model_input, run_in_chunks, side_by_side_count
from python_backends.infer.onnxruntime_runtime import usable_cores
from python_backends.paths import PROJECT_ROOT

CACHE_DIR_ENV = "YOLOV8_OPENVINO_CACHE"


def default_cache_dir() -> Path:
    """``$YOLOV8_OPENVINO_CACHE``, else ``.cache/openvino`` in the project (the repository may be read-only)."""
    return Path(os.environ.get(CACHE_DIR_ENV) or PROJECT_ROOT / ".cache" / "openvino")


def int8_model_path(model_path: str | Path) -> Path:
    """The OpenVINO INT8 IR that ``prepare --int8`` writes beside the model: model.onnx → model_int8.xml (+ .bin)."""
    model_path = Path(model_path)
    return model_path.with_name(f"{model_path.stem}_int8.xml")


def compile_options(threads: int, streams: int = 1) -> dict[str, object]:
    """CPU plugin settings: FP32 (some CPUs would pick bf16 by themselves: up to 6.7 off on the raw head here),
    the LATENCY hint for one stream or ``streams`` streams sharing ``threads`` threads (0 = every core), and no
    pinning of threads to cores, which the other stages' processes share.
    """
    options: dict[str, object] = {
        "INFERENCE_PRECISION_HINT": "f32",
        "ENABLE_CPU_PINNING": False,
        "INFERENCE_NUM_THREADS": threads,
    }
    if streams > 1:
        options |= {"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": streams}
    else:
        options["PERFORMANCE_HINT"] = "LATENCY"
    return options


@contextmanager
def cache_lock(cache_dir: Path):
    """Hold ``cache_dir/.lock`` exclusively: instances that compile at once would write the same blob, and
    OpenVINO 2026.4 then fails in one of them ("cannot set permissions: No such file or directory")."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def openvino_reason(exc: Exception) -> str:
    """OpenVINO's message without its "Exception from src/...cpp:N:" trace lines, on one line."""
    lines = [line.strip() for line in str(exc).splitlines()]
    reason = " ".join(line for line in lines if line and not line.startswith("Exception from "))
    return reason or type(exc).__name__


class OpenVinoRuntime:
    """Runs the model with OpenVINO's CPU plugin, all cores for one caller or a stream's share of them.

    The same contract as ``OnnxRuntimeSession`` (``input_dtype`` included):

    - ``run``: one image, or what is left of a batch, in one inference on ``intra_op_threads`` threads
      (0 = every usable core); with ``streams`` > 1, a batch's images run side by side, ``streams`` at a time.
    - ``run_in_stream``: the images in one inference on one stream, that is ``threads // streams`` threads,
      for when ``streams`` callers (the infer stage's instances) run at once.

    The compiled models go to ``cache_dir`` (OpenVINO's ``CACHE_DIR``), so a restart loads them instead of
    compiling again. A model OpenVINO cannot read or compile raises ``RuntimeUnavailable`` with its reason.
    """

    name = "openvino"
    device = "cpu"

    def __init__(
        self,
        model_path: str,
        intra_op_threads: int = 0,
        max_batch_size: int = 32,
        streams: int = 1,
        cache_dir: Path | None = None,
    ):
        try:
            import openvino as ov
        except ImportError as exc:
            raise RuntimeUnavailable(f"runtime 'openvino' is unavailable: {exc}") from exc
        cache_dir = Path(cache_dir or default_cache_dir())
        core = ov.Core()
        core.set_property({"CACHE_DIR": str(cache_dir)})
        threads = intra_op_threads or usable_cores()
        self.streams = max(1, streams)
        try:
            with cache_lock(cache_dir):
                self.compiled = core.compile_model(model_path, "CPU", compile_options(threads))
                self.streamed = (
                    core.compile_model(model_path, "CPU", compile_options(threads, self.streams))
                    if self.streams > 1
                    else self.compiled
                )
        except RuntimeError as exc:
            raise RuntimeUnavailable(
                f"runtime 'openvino' is unavailable: cannot compile {model_path}: {openvino_reason(exc)}"
            ) from exc
        static_batch = self.compiled.input(0).get_partial_shape()[0]
        self.max_batch_size = static_batch.get_length() if static_batch.is_static else max_batch_size
        self.input_dtype = self.compiled.input(0).get_element_type().to_dtype().type
        self.request = self.compiled.create_infer_request()
        self.stream_request = self.streamed.create_infer_request()
        self.side_by_side = ov.AsyncInferQueue(self.streamed, self.streams) if self.streams > 1 else None

    def warm_up(self, image_shape: tuple[int, int, int]) -> None:
        """One zero image of (3, H, W) ``image_shape`` through each compiled model: all threads, and the streams'.

        Triton's model_warmup reaches only the one that the infer stage picks at that moment.
        """
        zeros = np.zeros((1, *image_shape), self.input_dtype)
        for request in (self.request, self.stream_request) if self.streams > 1 else (self.request,):
            request.infer({0: zeros})

    def run(self, images: np.ndarray) -> np.ndarray:
        """``input_dtype`` (B, 3, H, W) → float32 (B, *head): ``run_outputs``' first."""
        return self.run_outputs(images)[0]

    def run_in_stream(self, images: np.ndarray) -> np.ndarray:
        """``input_dtype`` (B, 3, H, W) → float32 (B, *head): ``run_outputs_in_stream``'s first."""
        return self.run_outputs_in_stream(images)[0]

    def run_outputs(self, images: np.ndarray) -> Outputs:
        """``input_dtype`` (B, 3, H, W) → every output of the model, float32 (B, ...) each, the head first.

        The first B - B % streams images run side by side (when streams > 1), the rest in one inference
        on all threads.
        """
        images = model_input(images, self.input_dtype)
        side = side_by_side_count(len(images), self.streams)
        done = [self._side_by_side(images[:side])] if side else []
        return self._run_batches(self.request, images[side:], done)

    def run_outputs_in_stream(self, images: np.ndarray) -> Outputs:
        """``run_outputs`` on one stream's share of the cores."""
        return self._run_batches(self.stream_request, model_input(images, self.input_dtype), [])

    def _side_by_side(self, images: np.ndarray) -> Outputs:
        """``input_dtype`` (B, 3, H, W), one image per stream at a time → its outputs, float32 (B, ...) each."""
        outputs: list[Outputs | None] = [None] * len(images)

        def keep(request, index: int) -> None:
            outputs[index] = _outputs(request)

        self.side_by_side.set_callback(keep)
        for index, image in enumerate(images):
            self.side_by_side.start_async({0: image[None]}, index)
        self.side_by_side.wait_all()
        return tuple(np.concatenate(parts) for parts in zip(*outputs))

    def _run_batches(self, request, images: np.ndarray, done: list[Outputs]) -> Outputs:
        """``done``, then the outputs of ``images`` in runs of at most max_batch_size; all of them, joined."""

        def infer(batch: np.ndarray) -> Outputs:
            request.infer({0: batch})
            return _outputs(request)

        return run_in_chunks(infer, images, self.max_batch_size, done)


def _outputs(request) -> Outputs:
    """Copies of an infer request's outputs, in the model's order."""
    return tuple(request.get_output_tensor(i).data.copy() for i in range(len(request.model_outputs)))
