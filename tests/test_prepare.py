"""Model preparation: metadata, the batch rewrite (equal outputs), config patching, clear refusals."""

import ast
import json
import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from google.protobuf import text_format
from tiny_models import names_only, tiny_yolo
from tritonclient.grpc import model_config_pb2

from prepare import cli, cpu_runtime
from prepare.cli import main
from prepare.int8_accuracy import served_postprocessor
from prepare.onnx_model import (
    UnsupportedModelError,
    make_batch_dynamic,
    read_model_info,
    verify_same_outputs,
    with_pixel_input,
)
from prepare.prepare_model import prepare
from prepare.repository import set_parameter
from python_backends.paths import PROJECT_ROOT


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


def test_the_pixel_input_divides_by_255_as_the_float_export_was_fed():
    """tiny_yolo (2 classes, 64x64): the installed graph on uint8 pixels gives, bit for bit on ONNX Runtime, the
    export's head on pixels / 255 in float32 (Ultralytics' input); preparing it twice changes nothing."""
    from python_backends.infer.base import model_input, pixels_of

    export = tiny_yolo()
    pixels_graph = with_pixel_input(export)
    assert pixels_graph.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert with_pixel_input(pixels_graph).SerializeToString() == pixels_graph.SerializeToString()
    pixels = np.random.default_rng(3).integers(0, 256, (1, 3, 64, 64), dtype=np.uint8)
    floats = np.divide(pixels, np.float32(255), dtype=np.float32)
    want = ort.InferenceSession(export.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"images": floats}
    )[0]
    got = ort.InferenceSession(pixels_graph.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"images": pixels}
    )[0]
    np.testing.assert_array_equal(got, want)
    levels = np.arange(256, dtype=np.uint8)
    np.testing.assert_array_equal(pixels_of(np.divide(levels, np.float32(255), dtype=np.float32)), levels)
    with pytest.raises(ValueError, match=r"takes uint8 pixels 0..255 \(a prepared model\), got float32"):
        model_input(floats, np.uint8)  # float images would truncate to 0 and 1
    with pytest.raises(ValueError, match=r"takes float32 in \[0, 1\] \(an export\), got uint8"):
        model_input(pixels, np.float32)


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


def with_metadata(model, **values):
    """``model`` with more metadata_props (key=value)."""
    for key, value in values.items():
        model.metadata_props.add(key=key, value=value)
    return model


def test_pose_and_obb_heads_are_read_with_their_extra_channels():
    pose = read_model_info(with_metadata(tiny_yolo(task="pose", out_channels=7 + 15), kpt_shape="[5, 3]"))
    assert (pose.task, pose.kpt_shape, pose.head_dims()) == ("pose", (5, 3), [22, 84])
    obb = read_model_info(tiny_yolo(task="obb", out_channels=8))
    assert (obb.task, obb.kpt_shape, obb.head_dims()) == ("obb", None, [8, 84])
    for info in (pose, obb):  # prepare --int8 --data decodes them as the server does
        postprocessor = served_postprocessor(info)
        assert (postprocessor.task, postprocessor.channels) == (info.task, info.head_dims()[0])


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (tiny_yolo(out_channels=39), "channels but the metadata names 3 classes"),  # a seg-like head
        (tiny_yolo(task="segment"), r"a segment model without its prototype output"),
        (tiny_yolo(task="classify"), r"output 'output0' of a classifier must be \(batch, classes\), got \[1, 7, 84\]"),
        (tiny_yolo(task="track_everything"), r"model task is 'track_everything', a task prepare does not know"),
        (tiny_yolo(task="pose", out_channels=4 + 3 + 51), r"a pose model without 'kpt_shape' in its metadata"),
        (
            with_metadata(tiny_yolo(task="pose", out_channels=7 + 10), kpt_shape="[5, 2]"),
            r"kpt_shape '\[5, 2\]': pose models with 3 values per keypoint \(x, y, score\) are served",
        ),
        (
            with_metadata(tiny_yolo(task="pose", out_channels=7 + 3), kpt_shape="[17, 3]"),
            r"output has 10 channels but the pose head of 3 classes has 58 \(4 \+ classes \+ 17 x 3 keypoint values\)",
        ),
        (tiny_yolo(task="obb"), r"output has 7 channels but the obb head of 3 classes has 8 \(4 \+ classes \+ 1 angle"),
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


METADATA_REFERENCE = Path(__file__).resolve().parent / "reference" / "ultralytics_metadata.json"


def decoded(value: object) -> object:
    """A value of ultralytics_metadata.json as Python: each ``{"pairs": [[key, value], ...]}`` is that dict."""
    if isinstance(value, dict):
        return {decoded(k): decoded(v) for k, v in value["pairs"]}
    if isinstance(value, list):
        return [decoded(v) for v in value]
    return value


def ultralytics_read(case: str, served: str) -> tuple[dict, dict]:
    """What Ultralytics made of ``served``, yolov8_infer's ``metadata`` parameter, in the reference's ``case``.

    Returns its Triton client's dict (``TritonRemoteModel.metadata``) and AutoBackend's attributes, as
    tests/reference/make_metadata_reference.py recorded them from a served model. The reference holds
    for ``served`` only if prepare writes the string that Ultralytics read, byte for byte.
    """
    reference = json.loads(METADATA_REFERENCE.read_text())["cases"][case]
    assert served == reference["metadata_string"], "not the string Ultralytics read: see make_metadata_reference.py"
    client = decoded(reference["client_metadata"])
    assert ast.literal_eval(served) == client  # a plain literal: nothing but data (Ultralytics 8.3 eval()s it)
    return client, decoded(reference["autobackend"])


def file_metadata(config_path) -> str:
    """The ``metadata`` parameter of a config.pbtxt, parsed as Triton parses the file."""
    config = text_format.Parse(config_path.read_text(), model_config_pb2.ModelConfig())
    return config.parameters["metadata"].string_value


def test_ultralytics_triton_client_gets_the_export_metadata(grpc_client, default_onnx):
    """``YOLO("grpc://host:8001/yolov8_infer", task="detect")`` gets real class names, imgsz, stride from Triton."""
    config = grpc_client.get_model_config("yolov8_infer", as_json=True)["config"]
    client, backend = ultralytics_read("default", config["parameters"]["metadata"]["string_value"])
    names = client["names"]
    assert names == backend["names"] == {0: "Normal", 1: "Fall"} and all(type(k) is int for k in names)
    dims = [int(d) for d in config["input"][0]["dims"]]
    assert dims == [3, 640, 640] and client["imgsz"] == backend["imgsz"] == dims[1:] == [640, 640]
    assert (backend["task"], backend["stride"], type(backend["batch"])) == ("detect", 32, int)
    export = {p.key: p.value for p in onnx.load(str(default_onnx)).metadata_props}
    assert list(client) == list(export)  # every key of the export, in its order
    metadata = backend["metadata"]
    assert metadata["description"] == export["description"] and "D:\\Human" in export["description"]  # backslashes
    assert metadata["args"]["dynamic"] is False and backend["dynamic"] is False and backend["channels"] == 3


def test_metadata_follows_the_input_size_and_holds_what_the_export_has(tmp_path):
    """A dynamic-H/W export served at 96x128: imgsz is the served size; absent optional keys stay absent."""
    source = tmp_path / "tiny.onnx"
    onnx.save(tiny_yolo(num_classes=2, size=64, dynamic_size=True, names={0: "a", 1: "b"}), source)
    repo = tmp_path / "repo"
    prepare(source, repo, template=PROJECT_ROOT / "model_repository", input_size=(96, 128))
    for config in ("config.pbtxt", "configs/gpu.pbtxt"):
        path = repo / "yolov8_infer" / config
        assert re.search(r'name: "images".*?dims: \[ 3, 96, 128 \]', path.read_text(), re.S), config
        client, backend = ultralytics_read("dynamic_hw_96x128", file_metadata(path))
        assert client == {
            "task": "detect",
            "stride": 32,
            "imgsz": [96, 128],
            "names": {0: "a", 1: "b"},
            "batch": 1,  # AutoBackend requires it; the export had none
        }, config
        assert backend["metadata"] == client | {"end2end": False, "dynamic": False}  # AutoBackend adds only these


def test_metadata_of_an_export_with_names_only(tmp_path):
    """No stride/task/batch/imgsz in the export: AutoBackend's required keys are filled, nothing else is made up."""
    source = tmp_path / "names_only.onnx"
    onnx.save(names_only(tiny_yolo(num_classes=1, size=32)), source)
    repo = tmp_path / "repo"
    prepare(source, repo, template=PROJECT_ROOT / "model_repository")
    client, backend = ultralytics_read("names_only", file_metadata(repo / "yolov8_infer" / "config.pbtxt"))
    assert client == {"names": {0: "class0"}, "imgsz": [32, 32], "stride": 32, "task": "detect", "batch": 1}
    assert backend["metadata"] == client | {"end2end": False, "dynamic": False}  # AutoBackend adds only these


# --- the CPU runtime that auto runs (cpu_runtime) ---------------------------------------------------


@pytest.mark.parametrize(
    ("p50_ms", "choice"),
    [
        ({"onnxruntime": 129.9, "openvino": 104.8}, "openvino"),  # 1.24x: measured here
        ({"onnxruntime": 110.0, "openvino": 100.0}, "onnxruntime"),  # 1.10x exactly: clearly faster
        ({"onnxruntime": 109.0, "openvino": 100.0}, "onnxruntime"),  # 1.09x: noise, not a reason to switch
        ({"onnxruntime": 100.0, "openvino": 120.0}, "onnxruntime"),
        ({"onnxruntime": 100.0}, "onnxruntime"),  # OpenVINO could not compile the model
    ],
)
def test_openvino_is_chosen_only_when_clearly_faster(p50_ms, choice):
    from prepare.cpu_runtime import choose

    assert choose(p50_ms) == choice


def _cpu_runtimes(repo) -> list[str]:
    configs = (repo / "yolov8_infer" / "config.pbtxt", repo / "yolov8_infer" / "configs" / "gpu.pbtxt")
    return [text_format.Parse(c.read_text(), model_config_pb2.ModelConfig()).parameters["cpu_runtime"].string_value
            for c in configs]  # fmt: skip


def test_the_runtimes_are_measured_at_the_served_size_of_a_dynamic_export(tmp_path, capsys):
    """An export of dynamic height and width has no size in its graph: both runtimes run at --input-size."""
    source = tmp_path / "dynamic.onnx"
    onnx.save(tiny_yolo(num_classes=3, size=64, dynamic_size=True), source)
    assert main(["--onnx", str(source), "--repository", str(tmp_path / "repo"), "--input-size", "96x128"]) == 0
    out = capsys.readouterr().out
    assert "input 96x128" in out and "CPU runtime for auto: " in out and "(p50 at batch 1: onnxruntime" in out


def test_cli_measures_both_runtimes_and_writes_the_choice_into_every_infer_config(tmp_path, capsys, monkeypatch):
    source = tmp_path / "tiny.onnx"
    onnx.save(tiny_yolo(num_classes=3, size=64), source)
    measured = []  # the real measurement, recorded: the line rounds its p50s, the choice is made on them unrounded
    monkeypatch.setattr(cli, "measure", lambda path, hw: measured.append(cpu_runtime.measure(path, hw)) or measured[-1])
    assert main(["--onnx", str(source), "--repository", str(tmp_path / "repo")]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    found = re.fullmatch(r"CPU runtime for auto: (\w+) \(p50 at batch 1: onnxruntime ([\d.]+) ms, openvino ([\d.]+) "
                         r"ms; OpenVINO [\d.]+x ONNX Runtime, taken from 1.10x\)", line)  # fmt: skip
    assert found, line
    (result,) = measured
    p50 = result.p50_ms
    assert (
        found.group(1)
        == result.choice
        == ("openvino" if p50["onnxruntime"] >= 1.1 * p50["openvino"] else "onnxruntime")
    )
    assert (float(found.group(2)), float(found.group(3))) == (round(p50["onnxruntime"], 1), round(p50["openvino"], 1))
    assert _cpu_runtimes(tmp_path / "repo") == [found.group(1)] * 2


@pytest.mark.parametrize("named", ["onnxruntime", "openvino"])
def test_cli_writes_a_named_cpu_runtime_without_measuring(tmp_path, capsys, named):
    source = tmp_path / "tiny.onnx"
    onnx.save(tiny_yolo(num_classes=3, size=64), source)
    assert main(["--onnx", str(source), "--repository", str(tmp_path / "repo"), "--cpu-runtime", named]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"CPU runtime for auto: {named} (--cpu-runtime)"
    assert _cpu_runtimes(tmp_path / "repo") == [named] * 2
