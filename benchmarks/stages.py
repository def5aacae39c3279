"""The three stages' own code in-process, set up as a repository's configs set up the served stages: no Triton.

``Stages`` preprocesses as ``yolov8_preprocess`` does (letterbox, or a classifier's classify transform, at the
config's size), runs the model on a CPU runtime as ``yolov8_infer`` builds it, with every output (a segment
model's prototypes ``output1`` beside the head ``output0``), and postprocesses as ``yolov8_postprocess`` does
(a task's detections, or a classifier's probabilities and top 5).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.engine_baseline import REFERENCE, engine_runtime
from client.stage_stats import STAGES
from prepare.pbtxt import triton_config
from python_backends.defaults import CPU_PRECISION
from python_backends.infer.base import InferenceRuntime
from python_backends.postprocess.classify import Classifier
from python_backends.postprocess.postprocessor import Postprocessor
from python_backends.postprocess.select import create_postprocessor
from python_backends.preprocess.preprocessor import Preprocessor
from python_backends.preprocess.select import preprocessor_from_config


def stage_configs(repository: Path) -> dict[str, dict]:
    """{stage: its config.pbtxt in ``repository``, as the parts of Triton's JSON that the stages read}."""
    return {model: triton_config((repository / model / "config.pbtxt").read_text()) for model in STAGES}


@dataclass(frozen=True)
class Stages:
    """Each stage's work: ``preprocessor`` (``from_bytes`` → uint8 (3, H, W) pixels, float32 (5,) LETTERBOX),
    ``runtime`` (a CPU runtime: ``run_outputs``) and ``postprocessor`` (``batch``)."""

    preprocessor: Preprocessor
    runtime: InferenceRuntime
    postprocessor: Postprocessor | Classifier

    @classmethod
    def of(
        cls, repository: Path, configs: dict[str, dict], runtime: str = REFERENCE, cpu_precision: str = CPU_PRECISION
    ) -> Stages:
        """The stages of ``repository`` from their ``configs`` ({stage: Triton's JSON, or ``stage_configs``}),
        the model run on CPU runtime ``runtime`` (``engine_runtime``)."""
        preprocessor = preprocessor_from_config(configs["yolov8_preprocess"], "cpu")
        return cls(preprocessor, engine_runtime(repository, configs["yolov8_infer"], runtime, cpu_precision),
                   create_postprocessor(configs["yolov8_postprocess"]))  # fmt: skip

    @property
    def segment(self) -> bool:
        return getattr(self.postprocessor, "task", "") == "segment"

    def infer(self, pixels: np.ndarray) -> tuple[np.ndarray, ...]:
        """uint8 (B, 3, H, W) → every output of the model, float32 (B, ...) each: the head (``output0``) first, a
        segment model's prototypes (``output1``) second."""
        return self.runtime.run_outputs(pixels)

    def postprocess_inputs(self, outputs: tuple[np.ndarray, ...], mappings: np.ndarray) -> dict[str, np.ndarray]:
        """``yolov8_postprocess``'s inputs by name for ``infer``'s ``outputs`` and float32 (B, 5) ``mappings``:
        ``output0``, ``LETTERBOX``, and a segment model's ``output1``."""
        found = {"output0": outputs[0], "LETTERBOX": mappings}
        return found | ({"output1": outputs[1]} if self.segment else {})

    def postprocess(self, outputs: tuple[np.ndarray, ...], mappings: np.ndarray) -> dict[str, np.ndarray]:
        """The served outputs by name for ``infer``'s ``outputs`` and float32 (B, 5) ``mappings``, at the config's
        thresholds."""
        defaults = [None] * len(mappings)
        prototypes = {"prototypes": outputs[1]} if self.segment else {}
        return self.postprocessor.batch(outputs[0], mappings, defaults, defaults, **prototypes)
