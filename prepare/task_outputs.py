"""The outputs a task adds to yolov8_postprocess and the ensembles: ``det_keypoints`` (pose), ``det_obb`` (obb).

A detect repository has none of them, exactly as committed. prepare writes each one as a line of its own
(``TASK_OUTPUTS`` names them all), so that preparing a model of another task replaces them.
"""

from __future__ import annotations

import re

from prepare.onnx_model import YoloModelInfo
from python_backends.postprocess.tasks import OBB_VALUES

TASK_OUTPUTS = {
    "det_keypoints": "pose: x, y in original-image pixels and a score per keypoint; zero past num_dets",
    "det_obb": "obb: cx, cy, w, h in original-image pixels and the angle in radians; zero past num_dets",
}
_OUTPUT_LINE = re.compile(r'^ *\{ name: "(?:' + "|".join(TASK_OUTPUTS) + r')".*\n', re.M)
_MAP_LINE = re.compile(r'^ *output_map \{ key: "(?:' + "|".join(TASK_OUTPUTS) + r')".*\n', re.M)
_IMAGE_SIZE_MAP = re.compile(r'^( *)output_map \{ key: "image_size", value: "image_size" \}\n', re.M)


def task_output_dims(info: YoloModelInfo, max_det: int) -> dict[str, list[int]]:
    """The task's outputs and their dims without the batch: pose [max_det, K, 3], obb [max_det, 5]."""
    if info.task == "pose":
        return {"det_keypoints": [max_det, *info.kpt_shape]}
    if info.task == "obb":
        return {"det_obb": [max_det, OBB_VALUES]}
    return {}


def set_task_outputs(config: str, outputs: dict[str, list[int]]) -> str:
    """config.pbtxt text with exactly ``outputs`` (name → dims) of the task outputs, FP32, first in ``output``.

    In an ensemble (a config with ``ensemble_scheduling``), the step that maps ``image_size`` maps them too.
    """
    config = _MAP_LINE.sub("", _OUTPUT_LINE.sub("", config))
    lines = "".join(
        f'  {{ name: "{name}", data_type: TYPE_FP32, dims: [ {", ".join(map(str, d))} ] }},  # {TASK_OUTPUTS[name]}\n'
        for name, d in outputs.items()
    )
    config, count = re.subn(r"^output \[\n", lambda m: m.group(0) + lines, config, flags=re.M)
    if count != 1:
        raise ValueError(f"expected one output block in the config, found {count}")
    if "ensemble_scheduling" in config:

        def maps(match: re.Match) -> str:
            indent = match.group(1)
            return match.group(0) + "".join(f'{indent}output_map {{ key: "{n}", value: "{n}" }}\n' for n in outputs)

        config, count = _IMAGE_SIZE_MAP.subn(maps, config)
        if count != 1:
            raise ValueError(f"expected one step that maps image_size in the ensemble, found {count}")
    return config
