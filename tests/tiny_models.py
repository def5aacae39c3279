"""Tiny YOLOv8-shaped ONNX models for the preparation tests and the metadata reference (numpy and onnx only)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def tiny_yolo(
    num_classes=3, size=64, names=None, out_channels=None, task="detect", dynamic_size=False
) -> onnx.ModelProto:
    """A YOLOv8-shaped ONNX: (1, 3, S, S) -> (1, 4 + nc, anchors), with Reshapes hard-coding batch 1.

    ``dynamic_size``: H, W and the anchors are symbolic, (1, 3, height, width) -> (1, 4 + nc, anchors).
    """
    channels = out_channels or 4 + num_classes
    rng = np.random.default_rng(1)
    nodes = [helper.make_node("Conv", ["images", "w"], ["feat"])]
    inits = [numpy_helper.from_array(rng.standard_normal((channels, 3, 1, 1)).astype(np.float32), "w")]
    parts = []
    for stride in (8, 16, 32):
        cells = (size // stride) ** 2
        nodes.append(
            helper.make_node("AveragePool", ["feat"], [f"p{stride}"], kernel_shape=[stride] * 2, strides=[stride] * 2)
        )
        shape = [1, channels, -1 if dynamic_size else cells]
        inits.append(numpy_helper.from_array(np.array(shape, np.int64), f"shape{stride}"))
        nodes.append(helper.make_node("Reshape", [f"p{stride}", f"shape{stride}"], [f"r{stride}"]))
        parts.append(f"r{stride}")
    nodes += [helper.make_node("Concat", parts, ["cat"], axis=2), helper.make_node("Sigmoid", ["cat"], ["output0"])]
    anchors = sum((size // s) ** 2 for s in (8, 16, 32))
    image_hw = ["height", "width"] if dynamic_size else [size, size]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, *image_hw])],
        [
            helper.make_tensor_value_info(
                "output0", TensorProto.FLOAT, [1, channels, "anchors" if dynamic_size else anchors]
            )
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    names = names if names is not None else {i: f"class{i}" for i in range(num_classes)}
    meta = {"task": task, "stride": "32", "imgsz": f"[{size}, {size}]", "names": str(names)}
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)
    return model


def names_only(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with nothing in its metadata but ``names``: no stride, task, batch or imgsz."""
    (names,) = [p.value for p in model.metadata_props if p.key == "names"]
    del model.metadata_props[:]
    model.metadata_props.add(key="names", value=names)
    return model
