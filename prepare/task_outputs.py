"""The outputs a task adds to yolov8_postprocess and the ensembles: ``det_keypoints`` (pose), ``det_obb`` (obb),
``det_masks`` (segment), and the tensor a segment model adds between the stages: its prototypes, ``output1``.

A detect repository has none of them, exactly as committed. prepare writes each one as a line of its own
(``TASK_OUTPUTS`` names them all), so that preparing a model of another task replaces them.
"""

from __future__ import annotations

import re

from prepare.onnx_model import YoloModelInfo
from python_backends.postprocess.tasks import OBB_VALUES

TASK_OUTPUTS = {  # name → (data type, what it holds)
    "det_keypoints": ("TYPE_FP32", "pose: x, y in original-image pixels and a score per keypoint; zero past num_dets"),
    "det_obb": ("TYPE_FP32", "obb: cx, cy, w, h in original-image pixels and the angle in radians; zero past num_dets"),
    "det_masks": ("TYPE_STRING", "segment: each mask at the image's size as COCO compressed RLE; empty past num_dets"),
}
PROTOTYPES = "output1"  # a segment model's second output, yolov8_infer's and yolov8_postprocess's name for it
PROTOTYPES_COMMENT = "segment: the mask prototypes, float32 32 x H/4 x W/4"
_OUTPUT_LINE = re.compile(r'^ *\{ name: "(?:' + "|".join(TASK_OUTPUTS) + r')".*\n', re.M)
_MAP_LINE = re.compile(r'^ *output_map \{ key: "(?:' + "|".join(TASK_OUTPUTS) + r')".*\n', re.M)
_IMAGE_SIZE_MAP = re.compile(r'^( *)output_map \{ key: "image_size", value: "image_size" \}\n', re.M)
_PROTOTYPE_LINE = re.compile(r'^ *(?:\{ name|(?:input|output)_map \{ key): "' + PROTOTYPES + r'".*\n', re.M)
_PROTOTYPE_WARMUP = re.compile(r'\{ key: "' + PROTOTYPES + r'", value: \{[^{}]*\} \}, ')
_HEAD_MAP = re.compile(r'^( *)((?:input|output)_map) \{ key: "output0", value: "head" \}\n', re.M)


def task_output_dims(info: YoloModelInfo, max_det: int) -> dict[str, list[int]]:
    """The task's outputs and their dims without the batch: pose [max_det, K, 3], obb [max_det, 5],
    segment [max_det]."""
    if info.task == "pose":
        return {"det_keypoints": [max_det, *info.kpt_shape]}
    if info.task == "obb":
        return {"det_obb": [max_det, OBB_VALUES]}
    if info.task == "segment":
        return {"det_masks": [max_det]}
    return {}


def set_task_outputs(config: str, outputs: dict[str, list[int]]) -> str:
    """config.pbtxt text with exactly ``outputs`` (name → dims) of the task outputs, first in ``output``.

    In an ensemble (a config with ``ensemble_scheduling``), the step that maps ``image_size`` maps them too.
    """
    config = _MAP_LINE.sub("", _OUTPUT_LINE.sub("", config))
    lines = "".join(
        f'  {{ name: "{name}", data_type: {TASK_OUTPUTS[name][0]}, dims: [ {", ".join(map(str, d))} ] }},'
        f"  # {TASK_OUTPUTS[name][1]}\n"
        for name, d in outputs.items()
    )
    config = _first_in(config, "output", lines)
    if "ensemble_scheduling" in config:

        def maps(match: re.Match) -> str:
            indent = match.group(1)
            return match.group(0) + "".join(f'{indent}output_map {{ key: "{n}", value: "{n}" }}\n' for n in outputs)

        config, count = _IMAGE_SIZE_MAP.subn(maps, config)
        if count != 1:
            raise ValueError(f"expected one step that maps image_size in the ensemble, found {count}")
    return config


def set_prototypes(config: str, dims: list[int] | None, block: str | None = None) -> str:
    """config.pbtxt text that passes a segment model's prototypes ``output1`` (``dims`` without the batch), or,
    with ``dims`` None, none.

    ``block``: ``output`` for yolov8_infer, ``input`` for yolov8_postprocess (whose warm-up samples then carry
    zero prototypes); None for an ensemble, whose infer step maps them out beside the head and whose
    postprocess step maps them in.
    """
    config = _PROTOTYPE_WARMUP.sub("", _PROTOTYPE_LINE.sub("", config))
    if dims is None:
        return config
    shape = ", ".join(map(str, dims))
    if block is not None:
        line = f'  {{ name: "{PROTOTYPES}", data_type: TYPE_FP32, dims: [ {shape} ] }},  # {PROTOTYPES_COMMENT}\n'
        config = _first_in(config, block, line)
        if block == "input":
            sample = (
                f'{{ key: "{PROTOTYPES}", value: {{ data_type: TYPE_FP32, dims: [ {shape} ], zero_data: true }} }}, '
            )
            config = config.replace("inputs [ ", "inputs [ " + sample)
        return config

    def maps(match: re.Match) -> str:
        return match.group(0) + f'{match.group(1)}{match.group(2)} {{ key: "{PROTOTYPES}", value: "prototypes" }}\n'

    config, count = _HEAD_MAP.subn(maps, config)
    if count != 2:
        raise ValueError(f"expected the infer and postprocess steps to map the head in the ensemble, found {count}")
    return config


def _first_in(config: str, block: str, lines: str) -> str:
    """``lines`` first in the config's one ``block`` (``input`` or ``output``) list."""
    config, count = re.subn(rf"^{block} \[\n", lambda m: m.group(0) + lines, config, flags=re.M)
    if count != 1:
        raise ValueError(f"expected one {block} block in the config, found {count}")
    return config
