"""The pieces of classification serving that need no server: the classify transform, the top 5, the configs
prepare writes, the classification dataset and the client's output of a classification.

Served parity with Ultralytics is tests/test_classify.py's. The tiny classifier here is a graph of its own:
(1, 3, 32, 32) → average pool → a Gemm to ``nc`` logits → softmax, with Ultralytics' classify metadata and
class names class0, class1, ...
"""

from __future__ import annotations

import csv
import io

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image
from tiny_models import tiny_yolo

from client.annotate import annotate
from client.api import Classification, DetectionResult, outputs_from_config, parse_results
from client.cli import format_csv, format_table
from evaluation.classification import accuracy, load_classification_set
from evaluation.labels import DatasetError
from prepare.cli import main
from prepare.onnx_model import UnsupportedModelError, read_model_info
from prepare.prepare_model import prepare
from prepare.repository import STAGES, config_files
from python_backends.paths import PROJECT_ROOT
from python_backends.postprocess.classify import Classifier, top_classes
from python_backends.postprocess.postprocessor import ThresholdError
from python_backends.preprocess.classify import ClassifyPreprocessor, crop_geometry, crop_mapping, resize_and_crop
from python_backends.preprocess.cvcuda_preprocessor import GpuPreprocessingUnavailable
from python_backends.preprocess.select import create_preprocessor


def tiny_classifier(num_classes: int = 3, size: int = 32, task: str = "classify") -> onnx.ModelProto:
    """(1, 3, size, size) → (1, num_classes) softmax, with Ultralytics' classify metadata."""
    rng = np.random.default_rng(2)
    nodes = [
        helper.make_node("GlobalAveragePool", ["images"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("Gemm", ["flat", "w", "b"], ["logits"], transB=1),
        helper.make_node("Softmax", ["logits"], ["output0"], axis=1),
    ]
    inits = [
        numpy_helper.from_array(rng.standard_normal((num_classes, 3)).astype(np.float32) * 4, "w"),
        numpy_helper.from_array(np.zeros(num_classes, np.float32), "b"),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_cls",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, num_classes])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    names = {i: f"class{i}" for i in range(num_classes)}
    for key, value in {"task": task, "stride": "1", "imgsz": f"[{size}, {size}]", "names": str(names)}.items():
        model.metadata_props.add(key=key, value=value)
    return model


def torchvision_sizes(height: int, width: int, size: int) -> tuple[int, int, int, int]:
    """torchvision's Resize(size) then CenterCrop(size) on a PIL image, written out: (h, w, top, left)."""
    short, long = min(height, width), max(height, width)
    new_long = int(size * long / short)
    new_h, new_w = (new_long, size) if width <= height else (size, new_long)
    return new_h, new_w, int(round((new_h - size) / 2.0)), int(round((new_w - size) / 2.0))


@pytest.mark.parametrize(("height", "width"), [(1080, 810), (720, 1280), (600, 512), (224, 224), (100, 333), (7, 5)])
def test_the_crop_geometry_is_torchvisions_resize_and_centre_crop(height, width):
    geo = crop_geometry(height, width, 224, 224)
    assert (geo.resized_h, geo.resized_w, geo.top, geo.left) == torchvision_sizes(height, width, 224)


def test_the_classify_transform_is_pillows_bilinear_resize_then_the_centre_as_rgb_pixels():
    rng = np.random.default_rng(0)
    bgr = rng.integers(0, 256, (300, 200, 3), np.uint8)
    tensor, mapping = ClassifyPreprocessor(224, 224).from_bgr(bgr)
    resized = np.asarray(Image.fromarray(bgr[..., ::-1].copy()).resize((224, 336), Image.BILINEAR))  # RGB
    expected = resized[56:280].transpose(2, 0, 1)  # the served model divides by 255
    assert tensor.dtype == np.uint8 and tensor.shape == (3, 224, 224)
    np.testing.assert_array_equal(tensor, expected)
    np.testing.assert_allclose(mapping, [224 / 200, 0, -56, 200, 300])


def test_a_non_square_size_is_resized_to_exactly_and_an_image_of_the_size_is_kept():
    image = np.arange(64 * 96 * 3, dtype=np.uint8).reshape(64, 96, 3)
    assert resize_and_crop(image, 32, 64).shape == (32, 64, 3)
    np.testing.assert_array_equal(resize_and_crop(image[:64, :64], 64, 64), image[:64, :64])
    np.testing.assert_allclose(crop_mapping(64, 96, 32, 64), [0.5, 0, 0, 96, 64])


def test_the_classify_transform_is_picked_by_its_parameter_on_the_cpu_only():
    said = []
    picked = create_preprocessor("auto", 224, 224, log=said.append, transform="classify")
    assert isinstance(picked, ClassifyPreprocessor) and "classify transform runs on the CPU" in said[0]
    assert not isinstance(create_preprocessor("cpu", 224, 224, transform="letterbox"), ClassifyPreprocessor)
    with pytest.raises(GpuPreprocessingUnavailable, match="classify transform runs on the CPU only"):
        create_preprocessor("gpu", 224, 224, transform="classify")
    with pytest.raises(ValueError, match="transform must be one of letterbox, classify, got 'crop'"):
        create_preprocessor("cpu", transform="crop")


def test_the_top_5_is_by_descending_probability_padded_with_class_minus_1_and_score_0():
    classes, scores = top_classes(np.array([0.1, 0.6, 0.3], np.float32))
    assert classes.tolist() == [1, 2, 0, -1, -1] and classes.dtype == np.int32
    np.testing.assert_allclose(scores, [0.6, 0.3, 0.1, 0, 0])
    many, _ = top_classes(np.array([0.05, 0.3, 0.05, 0.2, 0.1, 0.1, 0.2], np.float32))
    assert many.tolist() == [1, 3, 6, 4, 5]  # ties in id order


def test_the_classifier_serves_the_probabilities_as_they_are_and_checks_the_thresholds():
    heads = np.array([[0.2, 0.8], [0.7, 0.3]], np.float32)
    mappings = np.array([[1, 0, 0, 640, 480], [1, 0, 0, 20, 10]], np.float32)
    out = Classifier(2).batch(heads, mappings, [None, 0.9], [0.5, None])
    np.testing.assert_array_equal(out["probs"], heads)
    assert out["top_classes"].tolist() == [[1, 0, -1, -1, -1], [0, 1, -1, -1, -1]]
    assert out["image_size"].tolist() == [[640, 480], [20, 10]]
    with pytest.raises(ThresholdError, match="conf_threshold must be a number in"):
        Classifier(2).batch(heads, mappings, [2.0, None], [None, None])
    with pytest.raises(ValueError, match=r"a classify head must be \(batch, 3\)"):
        Classifier(3).batch(heads, mappings, [None, None], [None, None])


def _configs(repository) -> dict[str, str]:
    return {str(p.relative_to(repository)): p.read_text() for s in STAGES for p in config_files(repository / s)}


def test_prepare_writes_a_classifiers_outputs_and_a_detector_prepared_over_it_gets_the_detect_configs(tmp_path):
    """The detector is prepared over the classifier's repository in place (no template copied first)."""
    for name, model in {"detector": tiny_yolo(), "classifier": tiny_classifier()}.items():
        onnx.save(model, str(tmp_path / f"{name}.onnx"))
    template = PROJECT_ROOT / "model_repository"
    prepare(tmp_path / "detector.onnx", tmp_path / "fresh", template=template)
    fresh = _configs(tmp_path / "fresh")
    repository = tmp_path / "repository"
    prepare(tmp_path / "classifier.onnx", repository, template=template)
    served = _configs(repository)
    for stage in ("yolov8", "yolov8_raw", "yolov8_postprocess"):
        config = served[f"{stage}/config.pbtxt"]
        assert 'name: "probs", data_type: TYPE_FP32, dims: [ 3 ]' in config, stage
        assert 'name: "top_classes", data_type: TYPE_INT32, dims: [ 5 ]' in config, stage
        assert 'name: "top_scores", data_type: TYPE_FP32, dims: [ 5 ]' in config, stage
        assert '"num_dets"' not in config and '"det_' not in config, stage  # no output, no map
    assert served["yolov8/config.pbtxt"].count('output_map { key: "probs", value: "probs" }') == 1
    assert 'key: "transform", value: { string_value: "classify" }' in served["yolov8_preprocess/config.pbtxt"]
    assert 'key: "task", value: { string_value: "classify" }' in served["yolov8_postprocess/config.pbtxt"]
    prepare(tmp_path / "detector.onnx", repository)
    assert _configs(repository) == fresh


def test_a_classifier_is_read_from_its_metadata_and_output_and_a_wrong_one_is_refused():
    info = read_model_info(tiny_classifier(num_classes=4))
    assert (info.task, info.head_dims(), info.input_height, info.class_names[-1]) == ("classify", [4], 32, "class3")
    wrong = tiny_classifier(num_classes=4)
    wrong.graph.output[0].type.tensor_type.shape.dim[1].dim_value = 5
    with pytest.raises(UnsupportedModelError, match="output has 5 class probabilities but the metadata names 4"):
        read_model_info(wrong)
    with pytest.raises(UnsupportedModelError, match=r"model task is 'rank', a task prepare does not know; served: "):
        read_model_info(tiny_classifier(task="rank"))


def test_int8_refuses_a_classifier_before_touching_the_repository(tmp_path, capsys):
    onnx.save(tiny_classifier(), str(tmp_path / "classifier.onnx"))
    args = ["--onnx", str(tmp_path / "classifier.onnx"), "--repository", str(tmp_path / "repository")]
    assert main([*args, "--int8", "--calibration", str(tmp_path)]) == 2
    assert "--int8 quantizes detectors" in capsys.readouterr().err and not (tmp_path / "repository").exists()


def test_the_split_is_val_then_validation_valid_and_test_and_images_take_their_folders_name(tmp_path):
    def image(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")

    with pytest.raises(DatasetError, match="no val, validation, valid or test folder"):
        load_classification_set(tmp_path)
    image(tmp_path / "test" / "cat" / "a.jpg")
    image(tmp_path / "test" / "dog" / "deeper" / "b.PNG")
    image(tmp_path / "test" / "dog" / "notes.txt")
    found = load_classification_set(tmp_path)
    assert found.split.name == "test" and found.names == ["cat", "dog"]
    assert sorted((p.name, label) for p, label in found.labels.items()) == [("a.jpg", "cat"), ("b.PNG", "dog")]
    top5 = {p: ["cat", "dog"] for p in found.labels}  # a.jpg right at top 1, b.PNG at top 2
    assert accuracy(found, top5).to_dict() == {"images": 2, "top1": 1, "top5": 2, "top1_acc": 0.5, "top5_acc": 1.0}
    image(tmp_path / "valid" / "cat" / "c.jpg")
    assert load_classification_set(tmp_path).split.name == "valid"
    (tmp_path / "val").mkdir()
    with pytest.raises(DatasetError, match="val: no images in class folders"):
        load_classification_set(tmp_path)


def _classified() -> list[DetectionResult]:
    out = {
        "probs": np.array([[0.2, 0.8]], np.float32),
        "top_classes": np.array([[1, 0, -1, -1, -1]], np.int32),
        "top_scores": np.array([[0.8, 0.2, 0, 0, 0]], np.float32),
        "image_size": np.array([[640, 480]], np.int32),
    }
    return parse_results(["a.jpg"], out, ["Normal", "Fall"])


def test_a_classification_result_gives_its_top_5_names_and_scores_in_json_csv_and_the_table():
    (result,) = _classified()
    assert outputs_from_config({"output": [{"name": "probs"}]}) == ("probs", "top_classes", "top_scores", "image_size")
    assert result.detections == [] and result.classification.top5 == [
        ("Fall", pytest.approx(0.8)),
        ("Normal", pytest.approx(0.2)),
    ]
    found = result.to_dict()["classification"]
    assert [t["class_name"] for t in found["top5"]] == ["Fall", "Normal"] and found["probs"] == pytest.approx(
        [0.2, 0.8]
    )
    rows = list(csv.DictReader(io.StringIO(format_csv([result]))))
    assert rows == [{"image": "a.jpg", "width": "640", "height": "480", "top1_class_id": "1",
                     "top1_class_name": "Fall", "top1_score": "0.80000", "top5_class_ids": "1;0",
                     "top5_class_names": "Fall;Normal", "top5_scores": "0.80000;0.20000"}]  # fmt: skip
    assert "Fall" in format_table([result]) and "top 5" in format_table([result])
    assert "classification" not in DetectionResult("b.jpg", 1, 1).to_dict()


def test_save_writes_the_top_5_in_the_top_left_corner():
    blank = np.zeros((200, 300, 3), np.uint8)
    drawn = annotate(
        blank, DetectionResult("x", 300, 200, classification=Classification([0.9, 0.1], [("Fall", 0.9)], [0]))
    )
    assert drawn[:25, :80].any()  # the band and its text
    assert not drawn[60:, :].any()  # one line: nothing below it
