"""Model preparation: metadata, the batch rewrite (equal outputs), config patching, clear refusals."""

import json
import re

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from python_backends.prepare.cli import main
from python_backends.prepare.onnx_model import (
    UnsupportedModelError,
    make_batch_dynamic,
    read_model_info,
    verify_same_outputs,
)
from python_backends.prepare.prepare_model import prepare
from python_backends.prepare.repository import PROJECT_ROOT, set_parameter


def tiny_yolo(num_classes=3, size=64, names=None, out_channels=None, task="detect") -> onnx.ModelProto:
    """A YOLOv8-shaped ONNX: (1, 3, S, S) -> (1, 4 + nc, anchors), with Reshapes hard-coding batch 1."""
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
        inits.append(numpy_helper.from_array(np.array([1, channels, cells], np.int64), f"shape{stride}"))
        nodes.append(helper.make_node("Reshape", [f"p{stride}", f"shape{stride}"], [f"r{stride}"]))
        parts.append(f"r{stride}")
    nodes += [helper.make_node("Concat", parts, ["cat"], axis=2), helper.make_node("Sigmoid", ["cat"], ["output0"])]
    anchors = sum((size // s) ** 2 for s in (8, 16, 32))
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, channels, anchors])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    names = names if names is not None else {i: f"class{i}" for i in range(num_classes)}
    meta = {"task": task, "stride": "32", "imgsz": f"[{size}, {size}]", "names": str(names)}
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)
    return model


def test_metadata_is_read():
    info = read_model_info(tiny_yolo(num_classes=3, size=64))
    assert info.class_names == ("class0", "class1", "class2")
    assert (info.input_height, info.input_width, info.num_anchors, info.batch_dim) == (64, 64, 84, 1)


def test_batch_rewrite_gives_equal_outputs():
    model = tiny_yolo()
    dynamic, rewritten = make_batch_dynamic(model)
    assert rewritten == 3
    assert dynamic.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    images = np.random.default_rng(2).random((3, 3, 64, 64), dtype=np.float32)
    single = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    batched = ort.InferenceSession(dynamic.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = np.concatenate([single.run(None, {"images": images[i : i + 1]})[0] for i in range(3)])
    np.testing.assert_allclose(batched.run(None, {"images": images})[0], expected, rtol=1e-6, atol=1e-6)


def test_default_model_rewrite_is_verified(default_onnx):
    model = onnx.load(str(default_onnx))
    info = read_model_info(model)
    assert info.class_names == ("Normal", "Fall") and info.num_anchors == 8400
    dynamic, rewritten = make_batch_dynamic(model)
    assert rewritten == 5
    assert verify_same_outputs(model.SerializeToString(), dynamic.SerializeToString(), info, batch=2) < 1e-3


def test_prepare_installs_model_labels_and_configs(tmp_path):
    source = tmp_path / "tiny.onnx"
    onnx.save(tiny_yolo(num_classes=3, size=64), source)
    repo = tmp_path / "repo"
    summary = prepare(source, repo, max_det=50, template=PROJECT_ROOT / "model_repository")
    assert "3 classes" in summary
    assert (repo / "yolov8_infer" / "1" / "model.onnx").exists()
    assert (repo / "yolov8_postprocess" / "labels.txt").read_text().split() == ["class0", "class1", "class2"]
    for config in ("config.pbtxt", "configs/gpu.pbtxt"):  # the GPU variant follows the model too
        infer = (repo / "yolov8_infer" / config).read_text()
        assert re.search(r'name: "images".*?dims: \[ 3, 64, 64 \]', infer, re.S), config
        assert re.search(r'name: "output0".*?dims: \[ 7, 84 \]', infer, re.S), config
    post = (repo / "yolov8_postprocess" / "config.pbtxt").read_text()
    assert re.search(r'name: "det_boxes".*?dims: \[ 50, 4 \]', post, re.S)
    names = re.search(r'key: "class_names", value: \{ string_value: "((?:[^"\\]|\\.)*)"', post).group(1)
    assert json.loads(names.encode().decode("unicode_escape")) == ["class0", "class1", "class2"]
    assert (
        'key: "input_height", value: { string_value: "64" }'
        in (repo / "yolov8_preprocess" / "config.pbtxt").read_text()
    )
    assert re.search(r'name: "det_scores".*?dims: \[ 50 \]', (repo / "yolov8" / "config.pbtxt").read_text(), re.S)


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (tiny_yolo(out_channels=39), "channels but the metadata names 3 classes"),  # a seg-like head
        (tiny_yolo(task="segment"), "only YOLOv8 'detect'"),
    ],
)
def test_unusable_models_are_refused_clearly(model, message):
    with pytest.raises(UnsupportedModelError, match=message):
        read_model_info(model)


def test_wrong_rank_and_missing_names_are_refused():
    model = tiny_yolo()
    model.graph.input[0].type.tensor_type.shape.dim.pop()
    with pytest.raises(UnsupportedModelError, match="must be rank 4"):
        read_model_info(model)
    model = tiny_yolo()
    del model.metadata_props[:]
    with pytest.raises(UnsupportedModelError, match="no 'names'"):
        read_model_info(model)


def test_cli_reports_errors_without_a_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx file")
    assert main(["--onnx", str(bad), "--repository", str(tmp_path / "repo")]) == 2
    assert "not a readable ONNX model" in capsys.readouterr().err


def test_set_parameter_escapes_its_value_and_touches_nothing_else():
    config = '{ key: "class_names", value: { string_value: "[]" } },\n{ key: "other", value: { string_value: "0" } }'
    config = set_parameter(config, "class_names", '["a \\"b\\"", "c"]')
    quoted = re.search(r'key: "class_names", value: \{ string_value: ("(?:[^"\\]|\\.)*") \}', config).group(1)
    assert json.loads(quoted) == '["a \\"b\\"", "c"]'
    assert '{ key: "other", value: { string_value: "0" } }' in config
    with pytest.raises(ValueError, match="no parameter 'missing'"):
        set_parameter(config, "missing", "x")
