"""prepare and serving of (batch, max_det, 6) heads: end-to-end exports and exports with NMS inside the graph.

The models are small synthetic graphs built here with onnx.helper. Their output is a fixed set of rows
(x1, y1, x2, y2, score, class) in network-input pixels, whatever the image, so every served detection
is known in advance: mapped back through the letterbox, clipped to the image, thresholded.
"""

import ast

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from python_backends.prepare.onnx_model import UnsupportedModelError, read_model_info

SIZE = 64  # network input, H = W
ROWS = [  # x1, y1, x2, y2, score, class in 64x64 network pixels, by descending score as Ultralytics pads them
    (8, 20, 24, 40, 0.9, 1),
    (40, 10, 70, 30, 0.8, 0),  # past the right edge and above the image: clipped
    (0, 16, 10, 26, 0.3, 0),
    (5, 5, 10, 10, 0.2, 1),  # under the default confidence threshold (0.25)
]
MAX_DET = 8  # the model's rows: the four above, then zero rows
NAMES = {0: "person", 1: "bicycle"}


def export_args(**changes) -> str:
    """Ultralytics' ``args`` metadata of an ONNX export (8.4), with ``changes``."""
    args = {"batch": 1, "half": False, "dynamic": False, "simplify": True, "opset": None, "nms": False}
    return str(args | changes)


def end2end_yolo(
    rows=ROWS, max_det=MAX_DET, end2end="True", args=None, task="detect", first_image_only=False, columns=6
) -> onnx.ModelProto:
    """A (1, 3, 64, 64) -> (1, max_det, columns) graph whose rows are ``rows`` then zeros, for every image.

    The image enters through a Reshape that hard-codes batch 1, as Ultralytics' static exports do
    (the rewrite makes it batch-dynamic). ``first_image_only``: the graph reads image 0 alone and
    outputs one set of rows whatever the batch, like an NMS loop that the export unrolled at batch 1.
    """
    table = np.zeros((max_det, columns), np.float32)
    table[: len(rows), :6] = np.array(rows, np.float32)
    nodes = []
    source = "images"
    if first_image_only:
        nodes.append(helper.make_node("Slice", ["images", "zero", "one", "zero"], ["first"]))
        source = "first"
    nodes += [
        helper.make_node("ReduceMean", [source], ["mean"], axes=[1, 2, 3], keepdims=1),  # (B, 1, 1, 1)
        helper.make_node("Reshape", ["mean", "batch_one"], ["per_image"]),  # (B, 1, 1)
        helper.make_node("Mul", ["per_image", "zero_f"], ["nothing"]),
        helper.make_node("Add", ["nothing", "table"], ["output0"]),  # (B, max_det, columns)
    ]
    inits = [
        numpy_helper.from_array(np.array([1, 1, 1], np.int64), "batch_one"),
        numpy_helper.from_array(np.array([0], np.int64), "zero"),
        numpy_helper.from_array(np.array([1], np.int64), "one"),
        numpy_helper.from_array(np.array(0, np.float32), "zero_f"),
        numpy_helper.from_array(table, "table"),
    ]
    graph = helper.make_graph(
        nodes,
        "end2end",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, max_det, columns])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    meta = {
        "task": task,
        "stride": "32",
        "batch": "1",
        "imgsz": f"[{SIZE}, {SIZE}]",
        "names": str(NAMES),
        "args": args or export_args(),
        "end2end": end2end,
    }
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)
    return model


def nms_yolo(**args) -> onnx.ModelProto:
    """An export with NMS inside the graph (``args`` nms True), its loop unrolled at batch 1."""
    return end2end_yolo(end2end="False", args=export_args(nms=True, **args), first_image_only=True)


# --- what prepare reads from the export -------------------------------------------------------------


def test_an_end2end_export_is_read_as_an_end2end_head_with_the_models_max_det():
    info = read_model_info(end2end_yolo())
    assert (info.head, info.max_det, info.max_batch) == ("end2end", MAX_DET, None)
    assert info.head_dims() == [MAX_DET, 6] and info.class_names == ("person", "bicycle")


def test_six_columns_make_an_end2end_head_without_the_metadata_saying_so():
    """YOLOv10's exports carry no ``end2end`` key; Ultralytics itself goes by the last dim, 6."""
    model = end2end_yolo()
    kept = [(p.key, p.value) for p in model.metadata_props if p.key != "end2end"]
    del model.metadata_props[:]
    for key, value in kept:
        model.metadata_props.add(key=key, value=value)
    assert read_model_info(model).head == "end2end"


def test_nms_inside_the_graph_is_an_end2end_head_served_at_the_batch_its_loop_handles():
    assert read_model_info(nms_yolo()).max_batch == 1
    assert read_model_info(nms_yolo(dynamic=True, batch=4)).max_batch == 4  # padded to 4 inside the graph


def test_nms_inside_a_graph_of_a_fixed_batch_above_one_is_refused_with_the_export_to_make():
    with pytest.raises(UnsupportedModelError, match=r"exactly 2 images .* batch=1, or dynamic=True batch=2"):
        read_model_info(nms_yolo(batch=2))


def test_an_end2end_export_whose_output_is_not_six_columns_is_refused():
    with pytest.raises(UnsupportedModelError, match=r"expected \(batch, max_det, 6\)"):
        read_model_info(end2end_yolo(columns=7))


def test_a_raw_head_stays_raw_when_the_metadata_says_end2end_false():
    from test_prepare import tiny_yolo

    model = tiny_yolo(num_classes=3, size=64)
    model.metadata_props.add(key="end2end", value="False")
    model.metadata_props.add(key="args", value=export_args(nms=None))
    info = read_model_info(model)
    assert (info.head, info.max_det, info.max_batch, info.head_dims()) == ("raw", 0, None, [7, 84])


@pytest.mark.parametrize("task", ["segment", "pose", "obb", "classify", "track_everything"])
def test_other_tasks_are_refused_by_the_name_in_the_metadata(task):
    with pytest.raises(UnsupportedModelError, match=rf"model task is '{task}'.*only 'detect' models are served"):
        read_model_info(end2end_yolo(task=task))


def test_the_metadata_for_ultralytics_says_end2end_as_a_bool():
    from python_backends.prepare.onnx_model import ultralytics_metadata

    metadata = ultralytics_metadata(read_model_info(end2end_yolo()))
    assert metadata["end2end"] is True and metadata["args"]["nms"] is False
    assert ast.literal_eval(repr(metadata)) == metadata
    assert ultralytics_metadata(read_model_info(nms_yolo()))["args"]["nms"] is True
