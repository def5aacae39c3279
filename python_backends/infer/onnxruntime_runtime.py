"""ONNX Runtime on CPU."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnxruntime as ort

from python_backends.infer.base import Outputs, model_input, run_in_chunks, side_by_side_count


def session_options(intra_op_threads: int = 0, inter_op_threads: int = 1) -> ort.SessionOptions:
    """Session options shared by the served model and the in-process benchmark (0 = ORT's default).

    ONNX Runtime's pool threads spin between operators (fast) and, by default, for about 30 ms
    after a run too, burning a core that the other stages need on a small machine;
    ``session.force_spinning_stop`` ends the spinning with the run.
    """
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = inter_op_threads
    options.add_session_config_entry("session.force_spinning_stop", "1")
    return options


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, which containers narrow)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class OnnxRuntimeSession:
    """Runs the model with onnxruntime's CPUExecutionProvider, all cores for one caller or a share of them.

    - ``run``, when nothing else needs the cores: one image, or what is left of a batch, in one
      run with ``intra_op_threads`` threads (all cores by default), the lowest latency; with
      ``streams`` > 1, a batch's images run side by side, ``streams`` at a time.
    - ``run_in_stream``, when ``streams`` callers (the infer stage's instances) run at once:
      the images in one run on this caller's share of the cores.

    A stream's session has ``intra_op_threads // streams`` threads (at least 1; 0 threads counts
    every usable core). Threads that share an operator wait for each other whenever another stage
    takes a core; streams with an image each do not, so images that arrive under load lose less
    to the other stages' work on the same cores.

    ``input_dtype`` is the model's input type: uint8 pixels for a prepared model (it divides by 255 itself),
    float32 in [0, 1] for an export as Ultralytics wrote it. A model whose batch dimension is fixed (not
    prepared) is run one image at a time.
    """

    name = "onnxruntime"
    device = "cpu"

    def __init__(self, model_path: str, intra_op_threads: int = 0, max_batch_size: int = 32, streams: int = 1):
        self.session = ort.InferenceSession(
            model_path, sess_options=session_options(intra_op_threads), providers=["CPUExecutionProvider"]
        )
        first_input = self.session.get_inputs()[0]
        self.input_name = first_input.name
        self.output_names = [output.name for output in self.session.get_outputs()]  # the head first
        self.input_dtype = np.uint8 if first_input.type == "tensor(uint8)" else np.float32
        static_batch = first_input.shape[0]
        self.max_batch_size = static_batch if isinstance(static_batch, int) else max_batch_size
        self.streams = max(1, streams)
        if self.streams > 1:  # one session with a stream's share of the threads; each stream runs it at once
            self.stream_threads = max(1, (intra_op_threads or usable_cores()) // self.streams)
            self.stream_session = ort.InferenceSession(
                model_path,
                sess_options=session_options(self.stream_threads),
                providers=["CPUExecutionProvider"],
            )
            self.pool = ThreadPoolExecutor(self.streams, thread_name_prefix="ort-stream")

    def warm_up(self, image_shape: tuple[int, int, int]) -> None:
        """One zero image of (3, H, W) ``image_shape`` through each session: all threads, and a stream's share.

        A session's first run allocates and plans (178 ms against 45 steady, seen on a 16-core host);
        Triton's model_warmup reaches only the session that the infer stage picks at that moment.
        """
        zeros = np.zeros((1, *image_shape), self.input_dtype)
        for session in (self.session, self.stream_session) if self.streams > 1 else (self.session,):
            self._run(session, zeros)

    def run(self, images: np.ndarray) -> np.ndarray:
        """``input_dtype`` (B, 3, H, W) → float32 (B, *head): ``run_outputs``' first."""
        return self.run_outputs(images)[0]

    def run_in_stream(self, images: np.ndarray) -> np.ndarray:
        """``input_dtype`` (B, 3, H, W) → float32 (B, *head): ``run_outputs_in_stream``'s first."""
        return self.run_outputs_in_stream(images)[0]

    def run_outputs(self, images: np.ndarray) -> Outputs:
        """``input_dtype`` (B, 3, H, W) → every output of the model, float32 (B, ...) each, the head first.

        The first B - B % streams images run side by side (when streams > 1), the rest in one run
        on all threads.
        """
        images = model_input(images, self.input_dtype)
        side_by_side = side_by_side_count(len(images), self.streams)
        done = list(self.pool.map(self._one, images[:side_by_side])) if side_by_side else []
        return self._run_batches(self.session, images[side_by_side:], done)

    def run_outputs_in_stream(self, images: np.ndarray) -> Outputs:
        """``run_outputs`` on one stream's share of the cores."""
        images = model_input(images, self.input_dtype)
        return self._run_batches(self.stream_session if self.streams > 1 else self.session, images, [])

    def _run_batches(self, session: ort.InferenceSession, images: np.ndarray, done: list[Outputs]) -> Outputs:
        """``done``, then the outputs of ``images`` in runs of at most max_batch_size; all of them, joined."""
        return run_in_chunks(lambda batch: self._run(session, batch), images, self.max_batch_size, done)

    def _one(self, image: np.ndarray) -> Outputs:
        """``input_dtype`` (3, H, W) on a stream's session → its outputs, float32 (1, ...) each."""
        return self._run(self.stream_session, image[None])

    def _run(self, session: ort.InferenceSession, batch: np.ndarray) -> Outputs:
        return tuple(session.run(self.output_names, {self.input_name: batch}))
