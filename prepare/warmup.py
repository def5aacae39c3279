"""Warm-up samples for Triton's ``model_warmup``: the data files in each model's ``warmup/`` and their dims.

Triton runs every ``model_warmup`` sample through each instance before it reports the model (and the
server) ready; a sample that fails fails the load. The files are written by ``prepare`` for the
installed model's input size and class count, next to the configs that name them.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

import cv2
import numpy as np

from prepare.onnx_model import YoloModelInfo

IMAGE_FILE = "image.bin"  # yolov8_preprocess: IMAGE, TYPE_STRING [1]
HEAD_FILE = (
    "head.bin"  # yolov8_postprocess: output0, float32 (4 + classes, anchors), end2end (max_det, 6), or (classes,)
)
LETTERBOX_FILE = "letterbox.bin"  # yolov8_postprocess: LETTERBOX, float32 (5,)
_SAMPLE = re.compile(r'\{ name: "batch_\d+", batch_size: \d+, (.*) \}')
_WARMUP = re.compile(r"model_warmup \[\n(.*?)\n\]", re.S)


def synthetic_jpeg(width: int = 800, height: int = 600) -> bytes:
    """An 800x600 JPEG (quality 85, about 77 kB) of gradients, shapes and noise, the same on every call.

    Larger than a 640 network input, so that warm-up resizes it as it would a photo: with CV-CUDA, a VGA
    sample (no resize) left 15 ms of set-up to the first request on an H100. Small (0.48 MP), so that it
    stays within the image limits a config may lower (``max_image_pixels``, ``max_image_bytes``): a
    warm-up sample over them would fail the load.
    """
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack([90 + 80 * np.sin(x / 97), 120 + 60 * np.cos(y / 131), 100 + 50 * np.sin((x + y) / 173)], -1)
    rng = np.random.default_rng(12)
    for _ in range(25):
        color = tuple(int(v) for v in rng.integers(0, 255, 3))
        corner = rng.integers(0, [width, height])
        cv2.rectangle(image, tuple(map(int, corner)), tuple(map(int, corner + rng.integers(20, 200, 2))), color, -1)
    image = np.clip(image + rng.normal(0, 6, image.shape), 0, 255).astype(np.uint8)
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
    assert ok, "OpenCV could not encode a JPEG"
    return encoded.tobytes()


def warmup_head(info: YoloModelInfo, boxes: int = 20) -> np.ndarray:
    """A head with ``boxes`` overlapping boxes above the confidence threshold, so postprocessing has work.

    Raw: float32 (4 + classes + extra, anchors), for NMS; the task's extra channels (keypoints, angle) are
    0. End2end: float32 (max_det, 6 + extra), the boxes in the first rows by descending score (the task's
    values 0), then zero rows, as the model pads. Classify: float32 (classes,) probabilities that sum to 1.
    """
    if info.task == "classify":
        logits = np.random.default_rng(0).normal(0, 1, len(info.class_names))
        return (np.exp(logits) / np.exp(logits).sum()).astype(np.float32)
    if info.head == "end2end":
        return _warmup_rows(info, min(boxes, info.max_det))
    head = np.zeros(info.head_dims(), np.float32)
    rng = np.random.default_rng(0)
    anchors = rng.choice(info.num_anchors, boxes, replace=False)
    size = np.array([[info.input_width], [info.input_height]], np.float32)
    head[0:2, anchors] = rng.uniform(0.2, 0.8, (2, boxes)) * size  # cx, cy
    head[2:4, anchors] = rng.uniform(0.05, 0.3, (2, boxes)) * size  # w, h
    head[4 + anchors % len(info.class_names), anchors] = rng.uniform(0.3, 0.95, boxes)
    return head


def _warmup_rows(info: YoloModelInfo, boxes: int) -> np.ndarray:
    """float32 (max_det, 6 + extra): ``boxes`` rows x1, y1, x2, y2, score, class inside the input (an OBB's
    cx, cy, w, h read from the same numbers stay inside too), then zero rows."""
    rng = np.random.default_rng(0)
    size = np.array([info.input_width, info.input_height], np.float32)
    centres, half = rng.uniform(0.2, 0.8, (boxes, 2)) * size, rng.uniform(0.025, 0.15, (boxes, 2)) * size
    head = np.zeros(info.head_dims(), np.float32)
    head[:boxes, 0:2], head[:boxes, 2:4] = centres - half, centres + half  # x1, y1, x2, y2
    head[:boxes, 4] = np.sort(rng.uniform(0.3, 0.95, boxes))[::-1]
    head[:boxes, 5] = np.arange(boxes) % len(info.class_names)
    return head


def write_warmup_files(repository: Path, info: YoloModelInfo) -> None:
    """Write the warm-up data that the preprocess and postprocess configs name."""
    pre = repository / "yolov8_preprocess" / "warmup"
    post = repository / "yolov8_postprocess" / "warmup"
    pre.mkdir(parents=True, exist_ok=True)
    post.mkdir(parents=True, exist_ok=True)
    jpeg = synthetic_jpeg()
    (pre / IMAGE_FILE).write_bytes(struct.pack("<I", len(jpeg)) + jpeg)  # one TYPE_STRING element
    (post / HEAD_FILE).write_bytes(warmup_head(info).tobytes())
    letterbox = [1.0, 0.0, 0.0, info.input_width, info.input_height]  # gain, pad_x, pad_y, width, height
    (post / LETTERBOX_FILE).write_bytes(np.array(letterbox, np.float32).tobytes())


def set_warmup_dims(config: str, key: str, dims: list[int]) -> str:
    """Replace the ``dims`` of every warm-up input ``key`` in config.pbtxt text (no warm-up: unchanged)."""
    pattern = re.compile(r'(key:\s*"' + re.escape(key) + r'",\s*value:\s*\{[^{}]*?dims:\s*\[)[^\]]*(\])')
    return pattern.sub(lambda m: m.group(1) + " " + ", ".join(map(str, dims)) + " " + m.group(2), config)


def without_warmup(config: str) -> str:
    """config.pbtxt text without its ``model_warmup`` block (none: unchanged)."""
    return _WARMUP.sub("", config)


def set_warmup_batch_sizes(config: str, batch_sizes: list[int]) -> str:
    """Make the ``model_warmup`` block one sample per batch size, each like the block's first sample."""
    block = _WARMUP.search(config)
    if block is None:
        raise ValueError("no model_warmup block in the config")
    rest = _SAMPLE.search(block.group(1)).group(1)
    samples = ",\n".join(f'  {{ name: "batch_{b}", batch_size: {b}, {rest} }}' for b in batch_sizes)
    return config[: block.start(1)] + samples + config[block.end(1) :]


def profile_batch_sizes(low: int, opt: int, high: int) -> list[int]:
    """The distinct batch sizes of a TensorRT profile, ascending: what the GPU config warms up."""
    return sorted({low, opt, high})
