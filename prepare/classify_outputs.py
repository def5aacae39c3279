"""The outputs of yolov8_postprocess and the ensembles for a classifier, or a detector's in their place.

A detector's configs (detect, pose, obb: the committed ones) output ``DETECTION_OUTPUTS``; a classifier's
output ``CLASSIFY_OUTPUTS`` in their place. ``image_size`` stays in both, and prepare writes each output as a
line of its own just before it, and each ensemble's map of it just before ``image_size``'s, so that
preparing a model of the other kind puts the other lines back exactly.
"""

from __future__ import annotations

import re

from python_backends.postprocess.classify import TOP_K

DETECTION_OUTPUTS = {  # name → (type, dims, comment); 300 is set to max_det afterwards
    "num_dets": ("TYPE_INT32", [1], "valid rows in the outputs below"),
    "det_boxes": ("TYPE_FP32", [300, 4], "x1, y1, x2, y2 in original-image pixels, clipped; zero past num_dets"),
    "det_scores": ("TYPE_FP32", [300], "confidence, descending"),
    "det_classes": ("TYPE_INT32", [300], "class id"),
}
CLASSIFY_COMMENTS = {
    "probs": "classify: each class's probability (the exported softmax)",
    "top_classes": f"classify: the {TOP_K} likeliest class ids, descending; -1 past the model's classes",
    "top_scores": "classify: their probabilities; 0 past the model's classes",
}
_NAMES = "|".join([*DETECTION_OUTPUTS, *CLASSIFY_COMMENTS])
_OUTPUT_LINE = re.compile(r'^ *\{ name: "(?:' + _NAMES + r')".*\n', re.M)
_MAP_LINE = re.compile(r'^ *output_map \{ key: "(?:' + _NAMES + r')".*\n', re.M)
_IMAGE_SIZE_OUTPUT = re.compile(r'^ *\{ name: "image_size"', re.M)
_IMAGE_SIZE_MAP = re.compile(r'^( *)output_map \{ key: "image_size", value: "image_size" \}\n', re.M)


def classify_outputs(num_classes: int) -> dict[str, tuple[str, list[int], str]]:
    """A classifier's outputs: probs FP32 [classes], top_classes INT32 [TOP_K], top_scores FP32 [TOP_K]."""
    return {
        "probs": ("TYPE_FP32", [num_classes], CLASSIFY_COMMENTS["probs"]),
        "top_classes": ("TYPE_INT32", [TOP_K], CLASSIFY_COMMENTS["top_classes"]),
        "top_scores": ("TYPE_FP32", [TOP_K], CLASSIFY_COMMENTS["top_scores"]),
    }


def set_kind_outputs(config: str, outputs: dict[str, tuple[str, list[int], str]]) -> str:
    """config.pbtxt text with ``outputs`` (``DETECTION_OUTPUTS`` or ``classify_outputs``) before ``image_size``,
    in place of either kind's; in an ensemble, their maps before ``image_size``'s."""
    config = _MAP_LINE.sub("", _OUTPUT_LINE.sub("", config))
    lines = "".join(
        f'  {{ name: "{name}", data_type: {dtype}, dims: [ {", ".join(map(str, dims))} ] }},  # {comment}\n'
        for name, (dtype, dims, comment) in outputs.items()
    )
    config, count = _IMAGE_SIZE_OUTPUT.subn(lambda m: lines + m.group(0), config)
    if count != 1:
        raise ValueError(f"expected one image_size output in the config, found {count}")
    if "ensemble_scheduling" in config:

        def maps(match: re.Match) -> str:
            indent = match.group(1)
            return "".join(f'{indent}output_map {{ key: "{n}", value: "{n}" }}\n' for n in outputs) + match.group(0)

        config, count = _IMAGE_SIZE_MAP.subn(maps, config)
        if count != 1:
            raise ValueError(f"expected one step that maps image_size in the ensemble, found {count}")
    return config
