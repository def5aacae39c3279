"""ONNX Runtime on CPU."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort


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


class OnnxRuntimeRuntime:
    """Runs the model with onnxruntime's CPUExecutionProvider.

    A model whose batch dimension is fixed (not prepared) is run one image at a time.
    """

    name = "onnxruntime"
    device = "cpu"

    def __init__(self, model_path: str, intra_op_threads: int = 0, max_batch_size: int = 32):
        self.session = ort.InferenceSession(
            model_path, sess_options=session_options(intra_op_threads), providers=["CPUExecutionProvider"]
        )
        model_input = self.session.get_inputs()[0]
        self.input_name = model_input.name
        self.output_name = self.session.get_outputs()[0].name
        static_batch = model_input.shape[0]
        self.max_batch_size = static_batch if isinstance(static_batch, int) else max_batch_size

    def run(self, images: np.ndarray) -> np.ndarray:
        """float32 (B, 3, H, W) → float32 (B, 4 + num_classes, num_anchors)."""
        images = np.ascontiguousarray(images, dtype=np.float32)
        chunks = [
            self.session.run([self.output_name], {self.input_name: images[start : start + self.max_batch_size]})[0]
            for start in range(0, len(images), self.max_batch_size)
        ]
        return chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
