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
    names = names if names is not None else {i: f"class{i}" for i in range(num_classes)}
    return yolo_model(nodes, inits, "tiny", channels, size, dynamic_size, task, names)


def names_only(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with nothing in its metadata but ``names``: no stride, task, batch or imgsz."""
    (names,) = [p.value for p in model.metadata_props if p.key == "names"]
    del model.metadata_props[:]
    model.metadata_props.add(key="names", value=names)
    return model


def tiny_detector(num_classes: int = 2, size: int = 128, seed: int = 3, dynamic_size: bool = False) -> onnx.ModelProto:
    """A YOLOv8-shaped detector small enough for accuracy control to rank in a second: (1, 3, S, S) ->
    (1, 4 + nc, anchors), a 3x3 and a 1x1 Conv, pooled per stride; boxes are sigmoids scaled to pixels (centres
    up to S, sizes up to S/2). Ops are named by module as in Ultralytics' exports (``/model.1`` makes the output),
    so ``prepare --int8`` finds the head. ``dynamic_size``: H, W and the anchors are symbolic, as in a
    ``dynamic=True`` export (served at ``imgsz``, S x S, unless ``prepare --input-size`` says otherwise)."""
    rng = np.random.default_rng(seed)
    channels = 4 + num_classes
    scale = np.array([size, size, size / 2, size / 2] + [1.0] * num_classes, np.float32).reshape(1, channels, 1)
    inits = [
        numpy_helper.from_array(rng.standard_normal((16, 3, 3, 3)).astype(np.float32), "w1"),
        numpy_helper.from_array((rng.standard_normal((channels, 16, 1, 1)) * 0.5).astype(np.float32), "w2"),
        numpy_helper.from_array(scale, "scale"),
    ]
    nodes = [
        helper.make_node("Conv", ["images", "w1"], ["c1"], pads=[1, 1, 1, 1], name="/model.0/conv/Conv"),
        helper.make_node("Relu", ["c1"], ["r1"], name="/model.0/act/Relu"),
        helper.make_node("Conv", ["r1", "w2"], ["feat"], name="/model.1/cv/conv/Conv"),
    ]
    parts = []
    for stride in (8, 16, 32):
        pool = helper.make_node(
            "AveragePool", ["feat"], [f"p{stride}"], kernel_shape=[stride] * 2, strides=[stride] * 2,
            name=f"/model.1/pool{stride}/AveragePool",
        )  # fmt: skip
        shape = np.array([1, channels, -1 if dynamic_size else (size // stride) ** 2], np.int64)
        inits.append(numpy_helper.from_array(shape, f"shape{stride}"))
        reshape = helper.make_node(
            "Reshape", [f"p{stride}", f"shape{stride}"], [f"r{stride}"], name=f"/model.1/R{stride}"
        )
        nodes += [pool, reshape]
        parts.append(f"r{stride}")
    nodes += [
        helper.make_node("Concat", parts, ["cat"], axis=2, name="/model.1/Concat"),
        helper.make_node("Sigmoid", ["cat"], ["sig"], name="/model.1/Sigmoid"),
        helper.make_node("Mul", ["sig", "scale"], ["output0"], name="/model.1/Mul"),
    ]
    names = {i: f"class{i}" for i in range(num_classes)}
    return yolo_model(nodes, inits, "tiny_detector", channels, size, dynamic_size, "detect", names)


def yolo_model(
    nodes: list, inits: list, name: str, channels: int, size: int, dynamic_size: bool, task: str, names: dict
) -> onnx.ModelProto:
    """The graph of ``nodes`` from ``images`` (1, 3, S, S) to ``output0`` (1, channels, anchors), H, W and the
    anchors symbolic with ``dynamic_size``, as an opset-13 model with Ultralytics' metadata (task, stride, imgsz,
    names)."""
    anchors = sum((size // s) ** 2 for s in (8, 16, 32))
    image_hw = ["height", "width"] if dynamic_size else [size, size]
    output_dims = [1, channels, "anchors" if dynamic_size else anchors]
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, *image_hw])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, output_dims)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    meta = {"task": task, "stride": "32", "imgsz": f"[{size}, {size}]", "names": str(names)}
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)
    return model
